"""Meaning at a glance: a district's worst-place lists hold that district's worst (filter, then take
the top N), one colour per status on every screen (the tile and the map agree on a value), and the
wall's "needs attention" list ordered by severity with every alerting domain in view."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _demo import BEIJING, build_demo_store

from layers.air_quality import aqi as aqimod
from dashboard import views
from dashboard.app import create_app
from dashboard.kpis import KPI_BY_ID
from dashboard.live import visible_attention
from _layers import attention_items
from dashboard.pages import wall
from dashboard.settings import Settings
from dashboard.theme import (
    STATUS,
    STATUS_COLOURS,
)
from layers import LAYER_BY_ID, LayerParams
from layers._common import stale_after
from layers.air_quality.kpis import AQI_THRESHOLDS as AQI_STATUS_THRESHOLDS
from layers.energy.kpis import LOAD_THRESHOLDS
from layers.satisfaction.kpis import SATISFACTION_THRESHOLDS
from layers.traffic.layer import CONGESTION_BANDS

ROOT = Path(__file__).resolve().parents[1]
DAY = 86_400


def _html(rows) -> str:
    return json.dumps(rows, default=lambda o: o.to_plotly_json())


def _texts(rows, cls: str) -> list[str]:
    """Return the texts of the components of class ``cls`` in ``rows`` (Dash components)."""
    out = []

    def walk(c):
        if isinstance(c, (list, tuple)):
            for x in c:
                walk(x)
        elif hasattr(c, "to_plotly_json"):
            if getattr(c, "className", None) == cls:
                out.append(c.children)
            walk(getattr(c, "children", None))

    walk(rows)
    return out


# ------------------------------------------------------------------ 3. filter first, then the top N
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("glance")
    end = time.time()
    url = build_demo_store(root, hours=3, end=end)
    app = create_app(Settings(data_dir=root / "data", database_url=url, city=str(BEIJING), refresh_seconds=60))
    live = app.server.extensions["panorama"]
    return SimpleNamespace(live=live, client=app.server.test_client(), now=end, frames=live.layer_frames(end),
                           url=url, root=root)


def _with_data(live, frames, lid: str, district: str, current_at: float | None = None) -> int:
    """Count ``district``'s places of layer ``lid`` that have a value (independently of the layers);
    with ``current_at``, only values younger than the feed's stale age then."""
    static, f = live.static(lid), frames.get(lid)
    if current_at is not None and "ts" in f.columns:
        f = f[f["ts"] >= current_at - stale_after(lid)]
    if lid == "traffic":
        ids = set(static.loc[static["district_id"] == district, "id"])
        return int(f[f["asset_id"].isin(ids)]["speed_kmh"].notna().sum())
    if lid == "air_quality":
        ids = set(static.loc[static["district_id"] == district, "id"])
        rows = f[f["asset_id"].isin(ids)]
        return int(rows[["pm25", "pm10", "so2", "no2", "co", "o3"]].notna().any(axis=1).sum())
    col = {"energy": "load_mw", "satisfaction": "satisfaction"}[lid]
    ok = f[(f["district_id"] == district) & f[col].notna()]
    if lid == "energy":
        cap = static.set_index("id")["capacity_mw"]
        ok = ok[ok["district_id"].map(cap).notna()]
    return len(ok)


def _every_district(demo):
    """Yield (domain, district id, its name, its layer params, its places with data) for every pair."""
    live = demo.live
    names = dict(zip(live.districts()["id"], live.districts()["name"]))
    for dom in ("traffic", "air_quality", "energy", "satisfaction"):
        for d in sorted(live.district_ids()):
            yield dom, d, names[d], live.params(demo.now, "24h", d), _with_data(live, demo.frames, dom, d)


def test_glance001_drill_down_list_is_the_districts_own_top_n(demo):
    live, frames = demo.live, demo.frames
    for dom, d, name, params, have in _every_district(demo):
        df = views.worst_places(live, dom, frames, params, n=10)
        assert len(df) == min(10, have), (dom, d)
        assert set(df["district"]) <= {name}, (dom, d)
    # the city's busiest district has more than 10 segments: its list is full, not 3 of the city's top 10
    params = live.params(demo.now, "24h", "haidian")
    assert _with_data(live, frames, "traffic", "haidian") > 10
    assert len(views.worst_places(live, "traffic", frames, params, n=10)) == 10


def test_glance002_wall_worst_rows_are_the_districts_own(demo):
    listed = 0
    for dom, d, name, params, _ in _every_district(demo):
        rows = wall.worst_rows(demo.live, dom, demo.frames, params)
        want = min(wall.WORST_ROWS, _with_data(demo.live, demo.frames, dom, d, demo.now))  # current ones only
        details = _texts(rows, "worst-detail")
        assert len(details) == want, (dom, d, _html(rows)[:300])
        assert all(t.startswith(name) for t in details), (dom, d, details)
        if not want:
            assert _texts(rows, "worst-empty"), (dom, d)
        listed += len(details)
    assert listed >= 16  # at least every district's energy and satisfaction rows


def test_glance003_panel_exports_list_every_place_of_the_district(demo):
    live = demo.live
    for lid in ("traffic", "air_quality", "energy"):
        for d in ("haidian", "yanqing", "dongcheng"):
            j = demo.client.get(f"/api/panels/map-{lid}.json?district={d}").get_json()
            rows = [p for p in j["places"] if p["layer"] == lid]
            assert {p["district"] for p in rows} <= {d}, (lid, d)
            assert len(rows) == _with_data(live, live.layer_frames(), lid, d), (lid, d)
            csv_rows = demo.client.get(f"/api/panels/map-{lid}.csv?district={d}").data.decode().splitlines()[1:]
            assert len(csv_rows) == len(rows), (lid, d)


# ------------------------------------------------------------------ 7. one colour per status
OLD_STATUS_HEX = ["#56b4e9", "#f0e442", "#ff7043", "#00c853", "#ffeb3b", "#ff9800", "#f44336", "#ab47bc",
                  "#b0375a", "#d03c8f", "#e8590c", "#f0c419", "#4cb5f5", "#5c6775", "#8a6d00", "#c2410c",
                  "#9fd3f0", "#ff8a65"]


def _aq_frame(pm25: list[float]) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    now = time.time()
    static = pd.DataFrame({"id": [f"s{i}" for i in range(len(pm25))], "name": [f"Station {i}" for i in range(len(pm25))],
                           "district_id": "d1", "lon": 116.4, "lat": 39.9})
    frame = pd.DataFrame({"asset_id": static["id"], "pm25": pm25, "ts": now - 60})
    return static, frame, now


@pytest.mark.parametrize("thresholds", [None, (51.0, 101.0)])
def test_glance004_a_value_has_its_kpi_status_colour_on_the_map(thresholds):
    """For AQIs across every band (123 among them), the map marker's colour is the colour of the
    status the AQI KPI gives the same value (the registry's thresholds, or the city's)."""
    pm25 = [0, 20, 35, 60, 75, 88, 93, 115, 150, 200, 300, 400]
    static, frame, now = _aq_frame(pm25)
    extra = {"thresholds": {"air.aqi_worst": thresholds}} if thresholds else {}
    v = LAYER_BY_ID["air_quality"].values(static, frame, LayerParams(now=now, extra=extra))[0]
    aqis, _ = aqimod.aqi_frame(frame[["pm25"]].assign(pm10=np.nan, so2=np.nan, no2=np.nan, co=np.nan, o3=np.nan), "cn")
    kpi = KPI_BY_ID["air.aqi_worst"]
    ctx = _frames({"air.aqi_worst": thresholds} if thresholds else {})
    seen = set()
    for a, colour in zip(np.asarray(aqis, float), v["marker"]["color"]):
        status = kpi.status(ctx, float(a))
        seen.add(status)
        assert colour == STATUS[status][0], (a, status, colour)
    assert seen == {"good", "warn", "bad"}
    assert 123 in {int(a) for a in aqis}  # the example: yellow WATCH on the tile, orange on the map


def _frames(thresholds: dict):
    """Empty frames of a query with the city's ``thresholds``: what a KPI's status reads them from."""
    from layers._domain import Frames, Query

    return Frames(Query(now=0, thresholds=tuple((k, tuple(v)) for k, v in thresholds.items())))


@pytest.mark.parametrize("lid, kid, values, lo, hi", [
    ("energy", "energy.capacity_share", [0, 40, 74, 76, 80, 89, 91, 99, 100, 130], 0, 100),
    ("satisfaction", "service.satisfaction", [1, 2.5, 3.4, 3.6, 3.9, 4.1, 4.8, 5], 1, 5),
])
@pytest.mark.parametrize("city", [None, "own"])
def test_glance014_a_district_has_its_kpi_status_colour_on_the_map(lid, kid, values, lo, hi, city):
    """A choropleth fills each district in the colour of the status its KPI tile gives the value
    (the registry's thresholds, or the city's own), as the map image draws it."""
    from dashboard.map_image import scale_colour

    kpi = KPI_BY_ID[kid]
    own = {kid: (80.0, 95.0) if kpi.higher_is_worse else (3.0, 2.0)} if city else {}
    static = pd.DataFrame({"id": [f"d{i}" for i in range(len(values))], "name": "x", "population": 1,
                           "area_km2": 1.0, "label_lon": 0.0, "label_lat": 0.0, "geometry": None})
    trace = LAYER_BY_ID[lid].traces(static.assign(capacity_mw=100.0), pd.DataFrame(),
                                    LayerParams(now=time.time(), extra={"geojson_url": "/x", "thresholds": own}))[0]
    ctx = _frames(own)
    for v in values:
        status = kpi.status(ctx, float(v))
        rgba = scale_colour(trace["colorscale"], float(v), trace["zmin"], trace["zmax"])
        got = "#" + "".join(f"{round(c):02x}" for c in rgba[:3])
        assert got == STATUS[status][0], (lid, v, status, got)
    legend = dict(LAYER_BY_ID[lid].legend(LayerParams(now=time.time(), extra={"thresholds": own})))
    assert set(legend.values()) == {STATUS[k][0] for k in ("good", "warn", "bad")}
    assert (LOAD_THRESHOLDS if lid == "energy" else SATISFACTION_THRESHOLDS) == (kpi.warn, kpi.bad)


def test_glance005_map_legend_and_attention_levels_use_the_status_colours():
    params = LayerParams(now=time.time())
    aq = {c: lbl for lbl, c in LAYER_BY_ID["air_quality"].legend(params)}
    assert set(aq) == {STATUS["good"][0], STATUS["warn"][0], STATUS["bad"][0]}
    assert "WATCH" in aq[STATUS["warn"][0]] and aq[STATUS["bad"][0]].startswith("151+ ALERT")
    # a jammed road is an ALERT in the attention list and drawn in the alert colour; heavy is a watch
    assert CONGESTION_BANDS[0][3] == STATUS["bad"][0] and CONGESTION_BANDS[1][3] == STATUS["warn"][0]
    assert {c for _, c in LAYER_BY_ID["traffic"].legend(params)} >= {STATUS[k][0] for k in ("good", "warn", "bad")}
    assert AQI_STATUS_THRESHOLDS == (KPI_BY_ID["air.aqi_worst"].warn, KPI_BY_ID["air.aqi_worst"].bad)


def _css_vars(block: str) -> dict:
    return dict(re.findall(r"--(good|warn|bad|unknown):\s*(#[0-9a-fA-F]{6})", block))


def test_glance006_css_status_variables_are_the_theme_table():
    css = (ROOT / "assets" / "theme.css").read_text()
    root = css[css.index(":root"):css.index("}", css.index(":root"))]
    light = css[css.index(".theme-light"):css.index("}", css.index(".theme-light"))]
    for block, theme in ((root, "dark"), (light, "light")):
        want = {k: STATUS_COLOURS[theme][k] for k in ("good", "warn", "bad", "unknown")}
        assert {k: v.lower() for k, v in _css_vars(block).items()} == want, theme
    # the good colour is no longer the accent's blue: OK reads as "fine", not as "selected"
    assert STATUS["good"][0] != "#56b4e9"


def test_glance007_no_other_status_colour_literals_remain():
    files = [*ROOT.glob("layers/*.py"), *ROOT.glob("dashboard/pages/*.py"), *ROOT.glob("assets/*.css"),
             *ROOT.glob("assets/*.js"), ROOT / "dashboard" / "report.py", ROOT / "dashboard" / "export.py",
             ROOT / "dashboard" / "map_image.py", ROOT / "dashboard" / "views.py", ROOT / "dashboard" / "live.py"]
    found = [(f.relative_to(ROOT).as_posix(), h) for f in files for h in OLD_STATUS_HEX if h in f.read_text().lower()]
    assert not found
    # the layers read every colour from the theme
    literal = [(f.name, m) for f in ROOT.glob("layers/*.py") for m in re.findall(r"#[0-9a-fA-F]{6}\b", f.read_text())]
    assert not literal


# ------------------------------------------------------------------ 8. needs attention
def _statics_frames(now: float, roads=(), stations=(), loads=()):
    """Hand-made statics and frames: roads (name, district, % of free flow), stations (name,
    district, pm25), districts' loads (name, % of capacity)."""
    tr = pd.DataFrame({"id": [f"r{i}" for i in range(len(roads))], "name": pd.Series([r[0] for r in roads], dtype=object),
                       "district_id": [r[1] for r in roads], "lon": 0.0, "lat": 0.0,
                       "free_flow_kmh": 100.0, "direction": "north"})
    tf = pd.DataFrame({"asset_id": tr["id"], "speed_kmh": [float(r[2]) for r in roads], "ts": now - 60,
                       "incident": 0})
    aq = pd.DataFrame({"id": [f"a{i}" for i in range(len(stations))], "name": [s[0] for s in stations],
                       "district_id": [s[1] for s in stations]})
    af = pd.DataFrame({"asset_id": aq["id"], "pm25": [float(s[2]) for s in stations], "ts": now - 60})
    ids = ["changping", "haidian", "daxing", *[f"d{i}" for i in range(20)]]
    en = pd.DataFrame({"id": ids, "name": [i.title() for i in ids], "capacity_mw": 100.0})
    ef = pd.DataFrame({"district_id": [x[0] for x in loads], "load_mw": [float(x[1]) for x in loads],
                       "renewable_mw": 0.0, "ts": now - 60})
    return {"traffic": tr, "air_quality": aq, "energy": en}, {"traffic": tf, "air_quality": af, "energy": ef}


def _overdue(now: float, counts: dict, past_s: float = 30 * DAY) -> pd.DataFrame:
    rows = [{"district_id": d, "due_at": now - past_s + i} for d, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["district_id", "due_at"])


def test_glance008_attention_ordered_by_how_far_past_not_by_name():
    now = time.time()
    statics, frames = _statics_frames(now)
    items = attention_items(statics, frames, _overdue(now, {"changping": 31, "daxing": 12, "haidian": 55}), now)
    assert [i["place"] for i in items] == ["Haidian", "Changping", "Daxing"]
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


def test_glance009_every_alerting_domain_is_in_view():
    """A screenful of overdue districts no longer hides the polluted station or the slow road."""
    now = time.time()
    statics, frames = _statics_frames(now, roads=[("Ring Road", "d1", 40)], stations=[("Dongsi", "d2", 100)])
    counts = {f"d{i}": 40 + i for i in range(15)}
    items = attention_items(statics, frames, _overdue(now, counts), now)
    shown, rest = visible_attention(items, wall.ATTENTION_ROWS)
    assert len(shown) == wall.ATTENTION_ROWS and len(rest) == len(items) - wall.ATTENTION_ROWS
    assert {i["domain"] for i in shown} == {"satisfaction", "air_quality", "traffic"}
    # the worst of each domain first (most severe first), then the rest by severity: a screen that
    # fits fewer rows than asked for (the list is cut from the bottom) still shows every domain
    assert [i["domain"] for i in shown[:3]] == ["satisfaction", "air_quality", "traffic"]
    assert [i["level"] for i in shown] == ["bad", "warn", "warn"] + ["bad"] * (wall.ATTENTION_ROWS - 3)
    rows = wall.attention_rows(items)
    assert _texts(rows, "att-dom").count("Air") == 1 and _texts(rows, "att-dom").count("Traffic") == 1
    assert _texts(rows, "att-place")[0].startswith("D14")  # the district with the most overdue first
    assert f"{len(items)} in a bad band" in _html(rows)  # the count of every alert, above the rows


def test_glance010_domains_compare_by_how_far_past_their_threshold():
    """An AQI far into its alert band outranks a district just past its overdue alert, and a jammed
    road at a crawl outranks one just under the jammed line."""
    now = time.time()
    statics, frames = _statics_frames(now, roads=[("Slowish", "d1", 24), ("Crawl", "d2", 2)],
                                      stations=[("Dongsi", "d2", 230)], loads=[("d3", 99)])
    items = attention_items(statics, frames, _overdue(now, {"d4": 6}), now)
    order = [i["place"] for i in items]
    assert order.index("Dongsi") < order.index("D4") and order.index("Crawl · north") < order.index("Slowish · north")
    assert all(0 <= i["score"] <= 1 for i in items)


@pytest.mark.parametrize("past_s, word", [(557 * 3600, "23 d"), (5 * 3600, "5 h"), (40 * 60, "40 min")])
def test_glance011_overdue_durations_in_human_units(past_s, word):
    now = time.time()
    statics, frames = _statics_frames(now)
    items = attention_items(statics, frames, _overdue(now, {"haidian": 2}, past_s), now)
    assert items[0]["detail"].endswith(f"oldest {word} past SLA"), items[0]["detail"]
    assert "557 h" not in items[0]["detail"]


def test_glance012_wall_rows_fit_1080p_cut_on_a_word_boundary():
    now = time.time()
    long_road = "Jinggang'ao Expressway (G4) Beijing–Hong Kong–Macau Section"
    statics, frames = _statics_frames(now, roads=[(long_road, "d1", 10)],
                                      stations=[("Beijing Olympic Sports Center Monitoring Station", "d2", 200)])
    items = attention_items(statics, frames, _overdue(now, {"haidian": 155}), now)
    rows = wall.attention_rows(items)
    places, details = _texts(rows, "att-place"), _texts(rows, "att-detail")
    assert len(places) == len(items) == 3
    for text, limit, full in [*zip(places, [wall.PLACE_CHARS] * 3, [i["place"] for i in items]),
                              *zip(details, [wall.DETAIL_CHARS] * 3, [i["detail"] for i in items])]:
        assert len(text) <= limit, text
        if text != full:
            head = text.removesuffix("…")
            assert text.endswith("…") and full.startswith(head), (text, full)
            assert full[len(head)] in " ·,(", (text, full)  # cut between words, never inside one
    assert any(t.endswith("…") for t in places)
    # the fit itself
    assert wall.fit("AQI 180 ≥ 151 · Moderately polluted · PM2.5", 34) == "AQI 180 ≥ 151 · Moderately…"
    assert wall.fit("short", 34) == "short"


OVERFLOW_JS = """
    const out = [];
    for (const el of document.querySelectorAll('.att-place, .att-detail, .worst-place, .worst-detail')) {
        if (el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
            out.push([el.className, el.textContent, el.scrollWidth, el.clientWidth]);
    }
    return {n: document.querySelectorAll('.att-place, .att-detail').length, cut: out};"""


@pytest.mark.browser
def test_glance013_no_wall_row_is_cut_by_the_browser_at_1080p(dash_duo, demo):
    """On a 1920×1080 wall every attention and worst-now row shows its whole (server-shortened) text."""
    from test_manager_browser import wait_for
    from test_wall_browser import set_viewport

    dash_duo.start_server(create_app(Settings(data_dir=demo.root / "data-browser", database_url=demo.url,
                                              city=str(BEIJING), refresh_seconds=60)))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?focus=satisfaction&rotate=0")
    dash_duo.wait_for_element(".att-detail", timeout=30)
    set_viewport(dash_duo, 1920, 1080)
    def rows_drawn():
        f = dash_duo.driver.execute_script(OVERFLOW_JS)
        return f if f["n"] >= 4 else None

    facts = wait_for(rows_drawn)
    assert facts["cut"] == [], facts["cut"]
