"""Contract tests over every registered layer and KPI: a new one needs no new test file."""
from __future__ import annotations


import pandas as pd
import pytest
from _demo import build_demo_store, empty_store, last_local

from dashboard.kpis import KPIS, compute_all
from dashboard.store.schema import make_engine
from layers import DEFAULT_LAYERS, DOMAINS, LAYER_BY_ID, LAYERS, LayerParams
from layers._common import untyped
from _layers import layer_frame

NOW = last_local(10, 30)  # a busy hour: every feed reports, buses run (kpi002)


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
        frame = layer_frame(conn, layer, params.now)
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
    with demo.connect() as conn:
        static, frame = layer.static(conn), layer_frame(conn, layer, NOW)
    params = LayerParams(now=float(frame["ts"].max()))  # the readings are current (the demo steps 5 min)
    traces = layer.traces(static, frame, params)
    assert len(traces) <= 3 < len(static)
    colours = set(untyped(traces[0]["marker"]["color"]).tolist())
    assert colours <= {-1, 0, 1, 2, 3} and colours - {-1}, "dots carry congestion bands"


@pytest.mark.parametrize("lid", ["traffic", "air_quality", "energy"])
def test_layer006_values_older_than_the_stale_age_are_drawn_and_ranked_stale(demo, lid):
    """The same readings, current at their own time and an hour (traffic, energy) or a day (air) later:
    later, no place keeps a current colour, every row says stale with its age."""
    from layers._common import STALE_COLOUR, stale_after

    layer = LAYER_BY_ID[lid]
    with demo.connect() as conn:
        static, frame = layer.static(conn), layer_frame(conn, layer, NOW)
    t = float(frame["ts"].max())
    late = t + stale_after(layer.domain) + 60
    kw = {"std": "cn"} if lid == "air_quality" else {}
    fresh, old = (layer.worst(static, frame, len(static), now=x, **kw) for x in (t, late))
    assert len(fresh) and not fresh["stale"].any() and (fresh["age_s"] < stale_after(layer.domain)).all()
    assert len(old) == len(fresh) and old["stale"].all() and (old["age_s"] > stale_after(layer.domain)).all()
    assert set(old["as_of"]) == set(fresh["as_of"]) and all(str(x).endswith("Z") for x in old["as_of"])
    assert set(old["band"]) == {"stale"}
    v = layer.values(static, frame, LayerParams(now=late))
    if lid == "traffic":
        assert set(untyped(v[0]["marker"]["color"]).tolist()) <= {-2, -1} and -2 in untyped(v[0]["marker"]["color"])
        assert (untyped(v[1]["customdata"])[:, 2] >= (late - t) // 60).all()
    elif lid == "air_quality":
        assert set(v[0]["marker"]["color"]) <= {STALE_COLOUR, "#5c6775"}
        marks = zip(v[0]["customdata"], v[0]["marker"]["color"])
        assert all("STALE" in c[4] for c, col in marks if col == STALE_COLOUR)
    else:
        assert all(z is None for z in v[0]["z"]) and any("STALE" in c[2] for c in v[0]["customdata"])


def test_layer007_picking_a_district_dims_the_others(demo):
    layer = LAYER_BY_ID["districts"]
    with demo.connect() as conn:
        static = layer.static(conn)
    ids = list(static["id"])
    v = layer.values(static, None, LayerParams(now=NOW, district=ids[2]))[0]
    assert v["z"] == [0 if i == ids[2] else 1 for i in ids]
    t = layer.traces(static, None, LayerParams(now=NOW, district=ids[2]))[0]
    assert t["zmin"] == 0 and t["zmax"] == 1 and t["colorscale"][-1][1].startswith("rgba(")
    assert set(layer.values(static, None, LayerParams(now=NOW))[0]["z"]) == {0}


def test_layer005_district_names_travel_with_the_districts_trace(demo):
    """Every district's name and label point, the most populous first (assets/district_labels.js
    draws them over the map in this order, dropping a later name that would overlap)."""
    layer = LAYER_BY_ID["districts"]
    params = LayerParams(now=NOW)
    with demo.connect() as conn:
        static = layer.static(conn)
    labels = layer.traces(static, layer.prepare({}), params)[0]["meta"]["labels"]
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
    assert {k.domain for k in KPIS} == {d.id for d in DOMAINS}  # every registered domain has KPIs, no other


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


def test_layer008_area_layers_are_exclusive_in_every_layer_list():
    """One district fill at a time, the last listed (a ticked box is appended); points and lines stack."""
    from dashboard.params import check_layers
    from layers import exclusive_areas

    areas = [lid for lid, layer in LAYER_BY_ID.items() if getattr(layer, "area", False)]
    assert set(areas) == {"energy", "satisfaction"}
    assert exclusive_areas(["energy", "traffic", "satisfaction", "air_quality"]) == \
        ["traffic", "satisfaction", "air_quality"]
    assert check_layers("satisfaction,districts,energy") == ["districts", "energy"]
    assert check_layers(["traffic", "air_quality", "districts"]) == ["traffic", "air_quality", "districts"]
