"""Contract tests over every registered layer and KPI: a new one needs no new test file."""
from __future__ import annotations

import time

import pandas as pd
import pytest
from _demo import build_demo_store, empty_store

from dashboard.kpis import KPIS, compute_all
from dashboard.store.schema import make_engine
from layers import DEFAULT_LAYERS, LAYER_BY_ID, LAYERS, LayerParams
from layers._common import untyped

NOW = time.time()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_engine(build_demo_store(tmp_path_factory.mktemp("demo"), hours=3, end=NOW))


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    return make_engine(empty_store(tmp_path_factory.mktemp("empty")))


def test_layer001_ids_unique_and_permanent():
    ids = [layer.id for layer in LAYERS]
    assert len(ids) == len(set(ids))
    assert {"traffic", "air_quality", "energy", "satisfaction", "districts"} <= set(ids)
    assert set(DEFAULT_LAYERS) <= set(LAYER_BY_ID)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.id)
@pytest.mark.parametrize("store", ["demo", "empty"])
def test_layer002_works_on_demo_and_empty(layer, store, request):
    engine = request.getfixturevalue(store)
    params = LayerParams(now=NOW)
    with engine.connect() as conn:
        static = layer.static(conn)
        frame = layer.query(conn, params)
    traces = layer.traces(static, frame, params)
    values = layer.values(static, frame, params)
    assert traces and len(values) == len(traces), "values() must patch exactly the traces traces() draws"
    for t in traces:
        assert t["type"] in ("scattermap", "choroplethmap"), "map traces only"
        assert t["meta"]["layer"] == layer.id
        assert "mapbox" not in t["type"]
    assert layer.legend(params), "every layer has a legend"
    assert isinstance(layer.worst(static, frame, 5), pd.DataFrame)
    # a frame with no rows at all (e.g. a feed that never reported) works too
    empty_frame = frame.iloc[0:0]
    assert len(layer.values(static, empty_frame, params)) == len(traces)


def test_layer003_traffic_is_few_traces_and_coloured_by_band(demo):
    layer = LAYER_BY_ID["traffic"]
    params = LayerParams(now=NOW)
    with demo.connect() as conn:
        static, frame = layer.static(conn), layer.query(conn, params)
    traces = layer.traces(static, frame, params)
    assert len(traces) <= 3 < len(static)
    colours = set(untyped(traces[0]["marker"]["color"]).tolist())
    assert colours <= {-1, 0, 1, 2, 3} and colours - {-1}, "dots carry congestion bands"


def test_layer005_district_names_travel_with_the_districts_trace(demo):
    """Every district's name and label point, the most populous first (assets/district_labels.js
    draws them over the map in this order, dropping a later name that would overlap)."""
    layer = LAYER_BY_ID["districts"]
    params = LayerParams(now=NOW)
    with demo.connect() as conn:
        static = layer.static(conn)
    labels = layer.traces(static, layer.query(None, params), params)[0]["meta"]["labels"]
    pops = dict(zip(static["name"], static["population"]))
    assert sorted(n for n, _, _ in labels) == sorted(static["name"])
    assert [pops[n] for n, _, _ in labels] == sorted(pops.values(), reverse=True)
    points = {n: (x, y) for n, x, y in labels}
    for r in static.itertuples():
        assert points[r.name] == (pytest.approx(r.label_lon, abs=1e-5), pytest.approx(r.label_lat, abs=1e-5))


def test_layer004_map_style_is_offline():
    from dashboard.theme import map_style

    style = map_style()
    assert style["version"] == 8 and "glyphs" not in style
    for src in style["sources"].values():
        assert src["type"] == "geojson" and not src["data"]["features"], "no tiles, nothing remote"


def test_kpi001_ids_unique_and_complete():
    ids = [k.id for k in KPIS]
    assert len(ids) == len(set(ids))
    assert {k.domain for k in KPIS} == {"traffic", "air_quality", "energy", "satisfaction"}


def test_kpi002_every_kpi_has_a_value_on_demo(demo):
    with demo.connect() as conn:
        values = compute_all(conn, NOW, "24h")
    missing = [k.id for k in values if k.value is None]
    assert not missing, f"KPIs without a value on demo data: {missing}"
    assert all(k.status in ("good", "warn", "bad") for k in values)


def test_kpi003_unknown_is_never_zero(empty):
    with empty.connect() as conn:
        values = compute_all(conn, NOW, "24h")
    for k in values:
        assert k.value is None, f"{k.id} shows {k.value!r} with no data"
        assert k.status == "unknown" and k.formatted() == "—"
