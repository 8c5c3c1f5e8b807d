"""Hostile HTTP: every route of one route table and every Dash callback, fed generated input.

Whatever arrives, the app answers without a 500, without a traceback, and within a size bound;
callback requests never answer 500 either. Bounded examples (hypothesis), so the file stays fast.
"""
from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
from _demo import build_demo_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.app import create_app
from dashboard.export import FORMATS, MAX_PIXELS, panel_ids
from dashboard.settings import Settings
from layers import LAYER_BY_ID

#: The largest answer a data route may give; images are bounded by their pixel count.
MAX_DATA_ANSWER = 1_000_000
MAX_IMAGE_ANSWER = 4 * MAX_PIXELS

DISTRICTS = ["chaoyang", "haidian", "atlantis", "", "*", "x" * 5000]
LAYERS = list(LAYER_BY_ID)


def _values(*good: str) -> st.SearchStrategy[str]:
    """Valid values, junk text, numbers, repeated and oversized lists."""
    return st.one_of(
        st.sampled_from(list(good) or [""]),
        st.text(max_size=30),
        st.integers(-10 ** 6, 10 ** 6).map(str),
        st.sampled_from(["nan", "inf", "-1", "1e308", "0", "<script>", "'; DROP TABLE readings;--"]),
        st.lists(st.sampled_from([*LAYERS, "nope"]), max_size=12).map(",".join),
        st.integers(1, 3000).map(lambda n: "traffic," * n),
    )


PANEL_PARAMS = {
    "window": _values("1h", "24h", "7d"), "district": _values(*DISTRICTS), "theme": _values("dark", "light"),
    "refresh": _values("5", "60"), "layers": _values("traffic", "districts,energy"),
    "width": _values("200", "320", "801"), "height": _values("150", "240"), "scale": _values("1", "0.5", "2"),
}

#: ONE table: each route (a path template and how to fill it) and the query parameters it takes.
ROUTES = {
    "/api/kpis": ({}, {"window": PANEL_PARAMS["window"], "district": PANEL_PARAMS["district"]}),
    "/api/panels": ({}, {}),
    "/api/panels/{panel}.{fmt}": ({"panel": st.sampled_from([*panel_ids(), "nope", "../etc/passwd"]),
                                   "fmt": st.sampled_from([*FORMATS, "gif", ""])}, PANEL_PARAMS),
    "/api/geo/districts.geojson": ({}, {}),
    "/health": ({}, {}),
    "/": ({}, {"window": PANEL_PARAMS["window"], "district": PANEL_PARAMS["district"],
               "layers": PANEL_PARAMS["layers"]}),
    "/wall": ({}, {"rotate": _values("0", "30"), "focus": _values("traffic", "energy,traffic"),
                   "district": PANEL_PARAMS["district"]}),
    "/embed/{panel}": ({"panel": st.sampled_from([*panel_ids(), "nope", ""])}, PANEL_PARAMS),
    "/{junk}": ({"junk": st.text(max_size=40)}, {}),
}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("fuzz"), hours=2)


@pytest.fixture(scope="module")
def app(store_url, tmp_path_factory):
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("fuzz-data"), database_url=store_url,
                               refresh_seconds=3600))


@st.composite
def requests_(draw):
    """A URL of some route of :data:`ROUTES`, its path and query filled with generated values."""
    template = draw(st.sampled_from(sorted(ROUTES)))
    path_parts, params = ROUTES[template]
    path = template.format(**{k: quote(draw(v), safe="") for k, v in path_parts.items()})
    names = draw(st.lists(st.sampled_from(sorted(params) or ["x"]), unique=True, max_size=len(params)))
    query = "&".join(f"{n}={quote(draw(params[n]) if n in params else 'y', safe=',')}" for n in names)
    return template, path + ("?" + query if query else "")


def _answer_ok(template: str, url: str, r) -> None:
    body = r.get_data()
    assert r.status_code < 500, (url[:200], r.status_code, body[:300])
    assert b"Traceback" not in body and b'File "/' not in body, url[:200]
    image = template.endswith(".{fmt}") and r.mimetype.startswith("image/")
    assert len(body) <= (MAX_IMAGE_ANSWER if image else MAX_DATA_ANSWER), (url[:200], len(body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests_())
def test_fuzz001_every_route_answers_without_500_traceback_or_oversize(app, req):
    template, url = req
    _answer_ok(template, url, app.server.test_client().get(url))


# ------------------------------------------------------------------------------------ callbacks

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from([*DISTRICTS, *LAYERS, "24h", "7d", "traffic.tti", "traffic", "map", "/wall", "?window=1h"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["points", "location", "panel", "args", "district", "id", "kpi", "domain", "layers", "x"]),
        inner, max_size=4),
    max_leaves=12)


def _deps(app) -> list[tuple[str, dict]]:
    """Every server-side callback of the app: (output key, its callback_map entry)."""
    app.server.test_client().get("/")  # Dash finishes its callback map at the first request
    return [(out, cb) for out, cb in app.callback_map.items() if cb.get("callback") is not None]


@st.composite
def _outputs(draw, output: str):
    """The ``outputs`` of a request for the callback ``output``: a pattern output matches 0-3 components."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    out = []
    for p in parts:
        cid, _, prop = p.rpartition(".")
        cid = json.loads(cid) if cid.startswith("{") else cid
        if isinstance(cid, dict):
            keys = [draw(st.sampled_from(["traffic.tti", "energy", "x"])) for _ in range(draw(st.integers(0, 3)))]
            out.append([{"id": {k: (key if v == ["ALL"] else v) for k, v in cid.items()}, "property": prop}
                        for key in keys])
        else:
            out.append({"id": cid, "property": prop})
    return out if output.startswith("..") else out[0]


@st.composite
def _entry(draw, spec: dict):
    """One ``inputs``/``state`` entry for the dependency ``spec``, its value generated."""
    if spec["id"].startswith("{"):
        pattern = json.loads(spec["id"])
        n = draw(st.integers(0, 3))
        return [{"id": {k: (draw(st.text(max_size=12) | st.sampled_from(["traffic.tti", "traffic", "x"]))
                            if v == ["ALL"] else v) for k, v in pattern.items()},
                 "property": spec["property"], "value": draw(JSON)} for _ in range(n)]
    return {"id": spec["id"], "property": spec["property"], "value": draw(JSON)}


@st.composite
def callback_bodies(draw, deps):
    output, cb = draw(st.sampled_from(deps))
    inputs = [draw(_entry(s)) for s in cb["inputs"]]
    state = [draw(_entry(s)) for s in cb.get("state", [])]
    first = inputs[0]
    changed = (f"{json.dumps(first[0]['id'], separators=(',', ':'))}.{first[0]['property']}"
               if isinstance(first, list) and first else f"{cb['inputs'][0]['id']}.{cb['inputs'][0]['property']}")
    body = {"output": output, "outputs": draw(_outputs(output)), "inputs": inputs, "state": state,
            "changedPropIds": [draw(st.sampled_from([changed, "{bad.n_clicks", "whole-city.n_clicks",
                                                     "drill-close.n_clicks"]))]}
    # now and then a structural forgery: a part missing, or replaced by generated JSON
    mutate = draw(st.sampled_from([None] * 6 + ["output", "outputs", "inputs", "state", "changedPropIds"]))
    if mutate:
        body[mutate] = draw(JSON)
    return body


@pytest.fixture(scope="module")
def deps(app):
    return _deps(app)


def test_fuzz002_every_server_callback_is_fuzzed(deps):
    names = " ".join(out for out, _ in deps)
    for part in ("district.value", "url.search", "legend.children", "drill-kpi.data", "drill-trend.figure",
                 "embed-value", "embed-map.figure", "wall-map.figure", "page.children", "map.figure"):
        assert part in names


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz003_every_callback_input_never_answers_500(app, deps, data, caplog):
    body = data.draw(callback_bodies(deps))
    with caplog.at_level(logging.CRITICAL):
        r = app.server.test_client().post("/_dash-update-component", json=body)
    assert r.status_code < 500, (json.dumps(body)[:400], r.status_code, r.data[:300])
    assert b"Traceback" not in r.data


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b"{" * 3, b"[]", b"{}", b'{"output": 1}', b"null",
                                 b'{"output":"url.search","inputs":"x"}', b"x" * 300_000])
def test_fuzz004_malformed_callback_bodies_are_4xx(app, raw):
    r = app.server.test_client().post("/_dash-update-component", data=raw, content_type="application/json")
    assert 400 <= r.status_code < 500, (raw[:40], r.status_code)
    assert b"Traceback" not in r.data


def _forged_drill(app, district: str) -> dict:
    output = next(k for k in app.callback_map if "drill-trend.figure" in k)
    return {"output": output, "outputs": [{"id": i, "property": p} for i, p in (
                ("drill-title", "children"), ("drill-trend", "figure"),
                ("drill-grid", "rowData"), ("drill-grid", "columnDefs"))],
            "inputs": [{"id": "drill-kpi", "property": "data", "value": "traffic.tti"},
                       {"id": "window", "property": "value", "value": "24h"},
                       {"id": "district", "property": "value", "value": district}],
            "changedPropIds": ["district.value"]}


def _forged_wall_refresh(app, district: str) -> dict:
    output = next(k for k in app.callback_map if "wall-traces.data" in k)
    from dashboard.pages.wall import DOMAIN_IDS, HEADLINE

    kpis = [{"type": "wall-kpi", "kpi": k, "slot": "tile"} for d in DOMAIN_IDS for k in HEADLINE[d]]
    worst = [{"type": "wall-worst", "domain": d} for d in DOMAIN_IDS]
    specs = output[2:-2].split("...")
    outputs = []
    for s in specs:
        cid, _, prop = s.rpartition(".")
        if cid.startswith("{"):
            pattern = json.loads(cid)
            ids = kpis if "kpi" in pattern else worst
            outputs.append([{"id": {**i, "type": pattern["type"]}, "property": prop} for i in ids])
        else:
            outputs.append({"id": cid.split("@")[0], "property": prop})
    return {"output": output, "outputs": outputs, "changedPropIds": ["wall-tick.n_intervals"],
            "inputs": [{"id": "wall-tick", "property": "n_intervals", "value": 1}],
            "state": [{"id": "wall-focus", "property": "data", "value": "traffic"},
                      {"id": "wall-traces", "property": "data", "value": ["districts", "traffic"]},
                      {"id": "wall-config", "property": "data", "value": {"district": district}},
                      [{"id": i, "property": "id", "value": i} for i in kpis],
                      [{"id": w, "property": "id", "value": w} for w in worst]]}


@pytest.mark.parametrize("forge", [_forged_drill, _forged_wall_refresh])
def test_fuzz005_forged_districts_are_neither_computed_nor_kept(store_url, tmp_path, forge):
    app = create_app(Settings(data_dir=tmp_path, database_url=store_url, refresh_seconds=3600,
                              background_refresh=True))  # whose keys the refresher would recompute
    live = app.server.extensions["panorama"]
    client = app.server.test_client()
    live.stop()  # the keys it would refresh are what counts, not its running
    assert client.post("/_dash-update-component", json=forge(app, "chaoyang")).status_code == 200  # the real one
    for i in range(40):
        district = f"forged-{i}-" + "x" * (2000 if i % 2 else 10)
        r = client.post("/_dash-update-component", json=forge(app, district))
        assert r.status_code in (200, 204), r.data[:200]
    kept = " ".join([*live.cache._mem, *live.cache._locks, *live._recent])
    assert "forged" not in kept, "a forged district got a cache key"
    assert "chaoyang" in kept


def _body(app, output_part: str, values: dict, changed: str | None = None) -> dict:
    """A well-formed request for the callback whose output key contains ``output_part``: each input or
    state ``id.property`` gets ``values`` (None when absent; pattern-matching ones a list of entries)."""
    output = next(k for k in app.callback_map if output_part in k and app.callback_map[k].get("callback"))
    cb = app.callback_map[output]

    def entry(spec):
        key = f"{spec['id']}.{spec['property']}"
        if spec["id"].startswith("{"):
            return values.get(key, [])
        return {"id": spec["id"], "property": spec["property"], "value": values.get(key)}

    outs = []
    for p in (output[2:-2].split("...") if output.startswith("..") else [output]):
        cid, _, prop = p.rpartition(".")
        outs.append([] if cid.startswith("{") else {"id": cid, "property": prop})
    first = cb["inputs"][0]
    return {"output": output, "outputs": outs if output.startswith("..") else outs[0],
            "inputs": [entry(s) for s in cb["inputs"]], "state": [entry(s) for s in cb.get("state", [])],
            "changedPropIds": [changed or f"{first['id']}.{first['property']}"]}


def _kpi_ids(*ids):
    return [{"id": {"type": "kpi", "id": i}, "property": "id", "value": v} for i, v in ids]


NEST = [[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]
#: Forged callback requests of issue 14: unknown ids, lists where strings belong, malformed clickData,
#: deep nesting (18 of these 20 answered 500 on 32185ea).
FORGED = {
    "drill unknown window": ("drill-trend.figure", {"drill-kpi.data": "traffic.tti", "window.value": "2y"}),
    "drill kpi as a list": ("drill-trend.figure", {"drill-kpi.data": ["traffic.tti"], "window.value": "24h"}),
    "drill window as a list": ("drill-trend.figure", {"drill-kpi.data": "traffic.tti", "window.value": ["24h"]}),
    "refresh unknown KPI id": ("kpi-live.data", {"tick.n_intervals": 1, "window.value": "24h", "layers.value": [],
                                                 '{"id":["ALL"],"type":"kpi"}.id':
                                                     _kpi_ids(("traffic.tti", {"type": "kpi", "id": "nope"}))}),
    "refresh KPI id not an object": ("kpi-live.data", {"tick.n_intervals": 1, "layers.value": ["traffic"],
                                                       '{"id":["ALL"],"type":"kpi"}.id':
                                                           _kpi_ids(("traffic.tti", "traffic.tti"))}),
    "refresh layers as objects": ("kpi-live.data", {"tick.n_intervals": 1, "layers.value": [{"a": 1}]}),
    "sync_url window as a number": ("url.search", {"window.value": 1, "layers.value": ["traffic"]}),
    "sync_url layers nested": ("url.search", {"window.value": "24h", "layers.value": NEST}),
    "legend layers as a bool": ("legend.children", {"layers.value": True}),
    "clickData points a string": ("district.value", {"map.clickData": {"points": "x"}}),
    "clickData points numbers": ("district.value", {"map.clickData": {"points": [1, 2]}}),
    "clickData location a list": ("district.value", {"map.clickData": {"points": [{"location": ["x"]}]}}),
    # (the wall's layer switch on a rotation runs in the browser: no server callback to forge)
    "wall unknown domain": ("wall-traces.data", {"wall-tick.n_intervals": 1, "wall-config.data": {},
                                                 '{"domain":["ALL"],"type":"wall-worst"}.id': [
                                                     {"id": {"type": "wall-worst", "domain": "x"}, "property": "id",
                                                      "value": {"type": "wall-worst", "domain": "mars"}}]}),
    "wall config a list": ("wall-traces.data", {"wall-tick.n_intervals": 1, "wall-config.data": ["x"]}),
    "embed spec args a string": ("embed-value", {"embed-kpi-tick.n_intervals": 1,
                                                 "embed-spec.data": {"panel": "traffic.tti", "args": "x"}}),
    "embed spec panel a list": ("embed-map.figure", {"embed-map-tick.n_intervals": 1,
                                                     "embed-spec.data": {"panel": ["map"], "args": {}}}),
    "router pathname a list": ("page.children", {"url.pathname": ["/wall"]}),
    "router pathname a number": ("page.children", {"url.pathname": 7, "url.search": 1}),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_fuzz006_forged_callback_inputs_are_4xx_or_no_update(app, case):
    part, values = FORGED[case]
    r = app.server.test_client().post("/_dash-update-component", json=_body(app, part, values))
    assert r.status_code in (200, 204, 400), (case, r.status_code, r.data[:300])
    assert b"Traceback" not in r.data
