"""Browser tests of the wall ``/wall`` (dash_duo, headless Chromium)."""
from __future__ import annotations

import re
import time

import pytest
from _demo import build_demo_store, may_be_quiet
from test_manager_browser import console_errors, wait_for

from dashboard.app import create_app
from dashboard.pages.wall import DOMAINS
from dashboard.pages import wall
from dashboard.settings import Settings
from dashboard.store.schema import make_engine

pytestmark = pytest.mark.browser
REFRESH = 2
HEADLINES = [kid for ids in wall.HEADLINE.values() for kid in ids]
CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$|^[A-Z][A-Za-z0-9.₂₃]+$")  # a number, or a word value (PM2.5)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("wall"), hours=3)


@pytest.fixture(scope="module")
def old_store_url(tmp_path_factory):
    """A store whose newest readings are an hour old (the feeds stopped)."""
    return build_demo_store(tmp_path_factory.mktemp("wall-old"), hours=2, end=time.time() - 3600)


def make_app(url, tmp_path):
    return create_app(Settings(data_dir=tmp_path, database_url=url, refresh_seconds=REFRESH))


def set_viewport(dash_duo, width: int, height: int) -> None:
    """Make the browser's viewport exactly ``width`` × ``height`` (correcting for the window chrome)."""
    d = dash_duo.driver
    d.set_window_size(width, height)
    inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
    d.set_window_size(width + (width - inner[0]), height + (height - inner[1]))
    wait_for(lambda: d.execute_script("return [innerWidth, innerHeight]") == [width, height], timeout=5)


def layout_facts(dash_duo) -> dict:
    """Return the document and viewport sizes and each headline KPI's text, box and font size."""
    return dash_duo.driver.execute_script("""
        const out = {doc: [document.documentElement.scrollWidth, document.documentElement.scrollHeight,
                           document.body.scrollWidth, document.body.scrollHeight],
                     view: [innerWidth, innerHeight], kpis: {}};
        for (const v of document.querySelectorAll('.wall-tile .wk-value')) {
            const id = JSON.parse(v.id).kpi, r = v.getBoundingClientRect();
            const box = v.closest('.wall-kpi').getBoundingClientRect();
            out.kpis[id] = {text: v.textContent, font: parseFloat(getComputedStyle(v).fontSize),
                            rect: [r.left, r.top, r.right, r.bottom], box: [box.left, box.top, box.right, box.bottom],
                            scroll: [v.parentElement.scrollWidth, v.parentElement.clientWidth],
                            quiet: v.closest('.wall-kpi').classList.contains('quiet')};
        }
        return out;""")


CONTRAST_JS = """
function lum(c) { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); }
function rgba(s) { const m = s.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; }
function over(top, bottom) { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]); }
function background(e) {
    const layers = [];
    for (let n = e; n; n = n.parentElement) {
        const c = rgba(getComputedStyle(n).backgroundColor);
        if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [11, 16, 23, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
}
const bad = [], checked = [];
for (const e of document.querySelectorAll('.wall *')) {
    const own = [...e.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim()).map(n => n.textContent.trim()).join(' ');
    if (!own) continue;
    const cs = getComputedStyle(e), r = e.getBoundingClientRect();
    if (cs.visibility === 'hidden' || r.width === 0 || r.height === 0 || e.closest('[hidden]')) continue;
    if (e.closest('.js-plotly-plot')) continue;  // the map's own hover labels and attributions
    const fg = over(rgba(cs.color), background(e)), bg = background(e);
    const L1 = lum(fg), L2 = lum(bg), ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
    const size = parseFloat(cs.fontSize), large = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700);
    checked.push(own);
    if (ratio < (large ? 3 : 4.5)) bad.push([own.slice(0, 40), ratio.toFixed(2), size, cs.color, String(bg)]);
}
return {bad: bad, n: checked.length, text: document.body.innerText};
"""


def shows_a_number(k: dict, kid: str, url: str, district: str | None = None) -> bool:
    """Return whether a wall KPI (of :func:`layout_facts`) shows a number, or, only at night for the
    bus arrivals' KPIs, the quiet dash (judged without the product: no arrival in the last 30 min)."""
    t = k["text"].strip()
    return bool(NUMBER.match(t)) or (t == "—" and k["quiet"] and may_be_quiet(url, kid, district))


def check_fills_viewport(dash_duo, width, height, min_font, url):
    set_viewport(dash_duo, width, height)
    seen = []

    def settled():
        """The grid has reflowed: the same facts twice in a row at this size."""
        f = layout_facts(dash_duo)
        seen.append(f)
        return f if (f["view"] == [width, height] and len(f["kpis"]) == len(HEADLINES) and len(seen) > 1
                     and seen[-2] == f) else None

    f = wait_for(settled)
    assert f["doc"] == [width, height, width, height], f"document {f['doc']} vs viewport {f['view']}"
    for kid in HEADLINES:
        k = f["kpis"][kid]
        assert shows_a_number(k, kid, url), f"{kid} shows {k['text']!r} at {width}x{height}"
        left, top, right, bottom = k["box"]
        assert 0 <= left and 0 <= top and right <= width and bottom <= height, (kid, k["box"], width, height)
        assert k["rect"][2] <= k["box"][2] + 1, f"{kid}'s value is cut off at {width}x{height}: {k}"
        assert k["font"] >= min_font, f"{kid}: font {k['font']} px < {min_font} px at {width}x{height}"
    return f


def test_wall001_fills_1080p_and_4k_with_big_readable_numbers(dash_duo, store_url, tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=20)
    f1080 = check_fills_viewport(dash_duo, 1920, 1080, 48, store_url)
    # contrast of every visible text at 1080p (WCAG AA: 4.5, or 3 for large text), no CJK glyphs
    c = dash_duo.driver.execute_script(CONTRAST_JS)
    assert c["n"] > 40 and c["bad"] == [], c["bad"]
    assert not CJK.search(c["text"]), CJK.findall(c["text"])
    for word in ("updated", "Needs attention".upper(), "FOCUS"):
        assert word.lower() in c["text"].lower()
    assert re.search(r"\b\d\d:\d\d:\d\d\b", dash_duo.find_element("#wall-clock").text)
    # 4K: the same picture, type twice as large
    f4k = check_fills_viewport(dash_duo, 3840, 2160, 96, store_url)
    for kid in HEADLINES:
        assert f4k["kpis"][kid]["font"] >= 1.9 * f1080["kpis"][kid]["font"]
    # reflows for a portrait screen and a 32:9 screen
    check_fills_viewport(dash_duo, 1080, 1920, 48, store_url)
    check_fills_viewport(dash_duo, 3840, 1080, 48, store_url)
    assert console_errors(dash_duo) == []


def test_wall002_rotation_moves_the_focus(dash_duo, store_url, tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?rotate=2&focus=traffic,air_quality")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=20)
    set_viewport(dash_duo, 1920, 1080)

    def state():
        return dash_duo.driver.execute_script(
            "const gd = document.querySelector('#wall-map .js-plotly-plot'); const vis = {};"
            "for (const t of (gd && gd.data) || []) vis[t.meta.layer] = t.visible !== false;"
            "const p = [...document.querySelectorAll('.focus-panel')].find(e => getComputedStyle(e).display !== 'none');"
            "return {cls: document.getElementById('wall').className, vis: vis,"
            " name: document.getElementById('wall-focus-name').textContent, panel: p && p.className,"
            " worst: p ? p.querySelectorAll('.worst-list li').length : 0};")

    # the playlist may have moved on while the page loaded: wait for traffic's turn, then the next
    s = wait_for(lambda: (x := state()) and "focus-traffic" in x["cls"] and x["vis"].get("traffic")
                 and not x["vis"].get("air_quality") and x, timeout=16)
    assert s["name"] == "Traffic" and "panel-traffic" in s["panel"] and s["worst"] >= 1
    s = wait_for(lambda: (x := state()) and "focus-air_quality" in x["cls"] and x["vis"].get("air_quality")
                 and not x["vis"].get("traffic") and x, timeout=16)
    assert s["name"] == "Air quality" and "panel-air_quality" in s["panel"] and s["worst"] >= 1
    wait_for(lambda: "focus-traffic" in state()["cls"], timeout=16)  # and back: a playlist
    assert console_errors(dash_duo) == []


def test_wall003_outage_keeps_last_picture_with_banner_then_recovers(dash_duo, store_url, tmp_path):
    app = make_app(store_url, tmp_path)
    live = app.server.extensions["panorama"]
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=20)
    wait_for(lambda: dash_duo.find_element("#wall-updated").text.startswith("updated"))
    before = layout_facts(dash_duo)["kpis"]
    good, dead = live.engine, make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'gone.sqlite'}")
    banner = "#wall-banner"
    try:
        live.engine = dead
        wait_for(lambda: dash_duo.driver.execute_script(
            "const b = document.getElementById('wall-banner'); return b && !b.hidden"), timeout=2 * REFRESH + 2)
        assert re.match(r"STALE since \d\d:\d\d", dash_duo.find_element(banner).text)
        # one more refresh answered during the outage (assets/wall_live.js notes each answer's time)
        answered = dash_duo.driver.execute_script("return window.panoramaWallOk || 0")
        wait_for(lambda: dash_duo.driver.execute_script("return window.panoramaWallOk || 0") > answered,
                 timeout=2 * REFRESH + 2)
        during = layout_facts(dash_duo)["kpis"]
        for kid in HEADLINES:  # the last good picture stays: numbers, not blanks
            assert during[kid]["text"] == before[kid]["text"] or NUMBER.match(during[kid]["text"]), kid
            assert shows_a_number(during[kid], kid, store_url), kid
        assert dash_duo.driver.find_elements("css selector", ".wall .maplibregl-canvas")
    finally:
        live.engine = good
    wait_for(lambda: dash_duo.driver.execute_script(
        "return document.getElementById('wall-banner').hidden"), timeout=2 * REFRESH + 4)
    after = layout_facts(dash_duo)["kpis"]
    assert all(shows_a_number(after[k], k, store_url) for k in HEADLINES)
    assert console_errors(dash_duo) == []


def test_wall004_old_data_is_marked_stale(dash_duo, old_store_url, tmp_path):
    dash_duo.start_server(make_app(old_store_url, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall")
    dash_duo.wait_for_element(".wall-tile", timeout=20)
    kpi = dash_duo.driver.execute_script(
        "const v = [...document.querySelectorAll('.wall-tile .wk-value')].find(e => JSON.parse(e.id).kpi === 'traffic.tti');"
        "const k = v.closest('.wall-kpi'); return {cls: k.className, age: k.querySelector('.wk-age').textContent,"
        " colour: getComputedStyle(v).color, text: v.textContent};")
    assert "stale" in kpi["cls"].split() and kpi["age"].startswith("STALE"), kpi
    assert "h old" in kpi["age"] or "min old" in kpi["age"], kpi
    assert kpi["colour"] == "rgb(163, 173, 185)", kpi  # greyed
    assert NUMBER.match(kpi["text"])  # still shows the last value
    caption = dash_duo.find_element(".caption-traffic")
    assert "stale" in caption.get_attribute("class") and "STALE" in caption.text
    assert console_errors(dash_duo) == []


def test_wall005_invalid_parameters_fall_back_with_a_notice(dash_duo, store_url, tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?rotate=soon&focus=weather&district=atlantis&zoom=3")
    notice = dash_duo.wait_for_element("#wall-notice", timeout=20)
    text = notice.text
    for part in ("rotate", "weather", "atlantis", "zoom"):
        assert part in text, text
    assert notice.is_displayed()
    # the default playlist (all four domains, rotating every 30 s) and the whole city
    assert re.search(r"focus-(traffic|air_quality|energy|satisfaction)", dash_duo.find_element("#wall").get_attribute("class"))
    assert dash_duo.find_element("#wall-where").text.lower().endswith("whole city")
    wait_for(lambda: all(shows_a_number(k, kid, store_url) for kid, k in layout_facts(dash_duo)["kpis"].items()))
    assert console_errors(dash_duo) == []


def test_wall006_district_parameter_filters_the_wall(dash_duo, store_url, tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?district=haidian&focus=energy&rotate=0")
    dash_duo.wait_for_element(".wall-tile", timeout=20)
    assert "haidian" in dash_duo.find_element("#wall-where").text.lower()
    assert dash_duo.driver.execute_script("return document.getElementById('wall-notice').hidden")
    assert "focus-energy" in dash_duo.find_element("#wall").get_attribute("class")
    assert console_errors(dash_duo) == []


VIEW_JS = """
const gd = document.querySelector('#wall-map .js-plotly-plot');
const sp = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
if (!sp || !sp.map) return null;
const b = sp.map.getBounds();
return {zoom: sp.map.getZoom(), kept: gd.layout.map.zoom, w: [b.getWest(), b.getEast()], s: [b.getSouth(), b.getNorth()],
        updated: document.getElementById('wall-updated').textContent, refitted: !!window.panoramaWallInsets};
"""


def test_wall007_map_fits_the_screen_and_live_refreshes_keep_the_fit(dash_duo, store_url, tmp_path):
    """On a screen larger than the server's guess the map is refitted to the city's districts, clear of
    the caption and the legend, and the refreshes that follow (which re-render the figure Dash keeps)
    leave that view alone."""
    app = make_app(store_url, tmp_path)
    box = app.server.extensions["panorama"].bounds()  # the districts' extent
    dash_duo.start_server(app)
    set_viewport(dash_duo, 2560, 1440)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=20)

    def fitted():
        v = dash_duo.driver.execute_script(VIEW_JS)
        f = dash_duo.driver.execute_script(FIT_JS, box)
        if not v or not f or not v["refitted"] or abs(v["zoom"] - v["kept"]) > 0.01:
            return None  # the browser's own fit, not the server's guess (which may fit a screen by chance)
        return v if fits(f) else None

    since = {}

    def settled():
        """A fitted view that a refresh left alone (after the resize, plotly redraws at its own pace)."""
        v = fitted()
        if not v:
            return None
        if not since or abs(since["zoom"] - v["zoom"]) > 0.01:
            since.update(v)
            return None
        return v if v["updated"] != since["updated"] else None

    first = wait_for(settled, timeout=30)
    assert first["zoom"] > 7.5  # the whole municipality, not the world
    seen = {first["updated"]}
    while len(seen) < 3:  # two live refreshes later
        v = wait_for(lambda: (x := dash_duo.driver.execute_script(VIEW_JS)) and x["updated"] not in seen and x,
                     timeout=4 * REFRESH + 10)
        seen.add(v["updated"])
        assert fitted() is not None and abs(v["zoom"] - first["zoom"]) < 0.01, v
    assert console_errors(dash_duo) == []


def fits(f: dict) -> bool:
    """True when the box measured by FIT_JS lies between the caption and the legend, and fills the
    free width or the free height (a 4 % margin each side)."""
    inside = -1 <= f["nw"][0] and f["se"][0] <= f["w"] + 1 and f["cap"] - 1 <= f["nw"][1] and f["se"][1] <= f["leg"] + 1
    tight = (f["se"][0] - f["nw"][0] > 0.8 * f["w"]) or (f["se"][1] - f["nw"][1] > 0.8 * (f["leg"] - f["cap"]))
    return inside and tight


FIT_JS = """
const gd = document.querySelector('#wall-map .js-plotly-plot');
const sp = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
if (!sp || !sp.map) return null;
const b = arguments[0], box = gd.getBoundingClientRect();
const p0 = sp.map.project([b.lon[0], b.lat[1]]), p1 = sp.map.project([b.lon[1], b.lat[0]]);
const shown = (sel) => Array.from(document.querySelectorAll(sel)).find(e => e.offsetParent !== null);
const cap = shown('.wall-map .map-caption'), leg = shown('.wall-map .wall-legend');
return {zoom: gd.layout.map.zoom, w: box.width, h: box.height, nw: [p0.x, p0.y], se: [p1.x, p1.y],
        cap: cap.getBoundingClientRect().bottom - box.top, leg: leg.getBoundingClientRect().top - box.top,
        text: document.body.innerText};
"""


def test_wall010_requests_only_city_fits_its_districts_clear_of_caption_and_legend(dash_duo, tmp_path):
    """A city with boundaries and service requests only: the wall draws (no "Error loading layout"),
    says which domains have no assets, and fits its districts between the caption and the legend at
    1920×1080 and at 1366×768."""
    from _subset_city import build_subset_city

    city = build_subset_city(tmp_path / "city", with_requests=True)
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=city["url"], city=str(city["folder"]),
                              refresh_seconds=REFRESH))
    box = app.server.extensions["panorama"].bounds()
    dash_duo.start_server(app)
    for width, height in ((1920, 1080), (1366, 768)):
        set_viewport(dash_duo, width, height)
        if width == 1920:
            dash_duo.wait_for_page(f"{dash_duo.server_url}/wall")

        def fitted():
            f = dash_duo.driver.execute_script(FIT_JS, box)
            return f if f and f["w"] > width / 4 and fits(f) else None

        f = wait_for(fitted, timeout=30)
        assert f["zoom"] > 8, f
        assert "Error loading layout" not in f["text"]
        for msg in ("no road segments in this city", "no stations in this city", "no substations in this city"):
            assert msg in f["text"], msg
        assert "Service satisfaction" in dash_duo.find_element("#wall-focus-name").text
    assert console_errors(dash_duo) == []


OUTAGE_JS = """
const rect = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const shown = (e) => e && !e.closest('[hidden]') && getComputedStyle(e).display !== 'none'
    && e.getBoundingClientRect().width > 0;
const banner = document.getElementById('wall-offline');
const gd = document.querySelector('#wall-map .js-plotly-plot');
const value = [...document.querySelectorAll('.wall-tile .wk-value')].find(e => JSON.parse(e.id).kpi === 'energy.load');
const age = [...document.querySelectorAll('.wall-tile .wk-age')].find(e => JSON.parse(e.id).kpi === 'energy.load');
return {
    banner: shown(banner) ? {text: banner.textContent, rect: rect(banner)} : null,
    covered: [...document.querySelectorAll('.wall-map .map-caption, .wall-tile, .wall-head > :not(.wall-banner)')]
        .filter(shown).map(e => ({cls: e.className, rect: rect(e)})),
    captions: [...document.querySelectorAll('.wall-map .map-caption')].filter(shown).map(e => e.className),
    visible: ((gd && gd.data) || []).filter(t => t.visible !== false).map(t => t.meta.layer),
    colour: getComputedStyle(value).color, value: value.textContent, age: age.textContent,
    focus: document.getElementById('wall-focus-name').textContent,
};
"""


def _overlap(a, b) -> bool:
    return a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1


def test_wall011_server_silent_banner_in_header_values_grey_ages_tick_map_follows_caption(dash_duo, store_url,
                                                                                           tmp_path):
    """With the server's answers failing (a stopped server, a dead proxy), the browser alone: shows
    "STALE since" within two refresh intervals, in the header (covering neither the map caption nor
    the tiles), greys the values, keeps their ages ticking, and keeps the map's layer in step with
    its caption as the focus rotates. When answers come back, all of that goes."""
    from flask import request

    from dashboard.store.ingest import Ingestor
    from _store_helpers import asset_attributes

    app = make_app(store_url, tmp_path)
    down = {"on": False}

    @app.server.before_request
    def fail_when_down():
        if down["on"] and request.path.endswith("_dash-update-component"):
            return "server stopped", 503

    # fresh readings, so that an age counts seconds (and visibly ticks)
    engine = make_engine(store_url)
    with engine.connect() as conn:
        subs = asset_attributes(conn, "substation")
    now = int(time.time())
    Ingestor(engine).ingest([{"asset": a, "metric": "load_mw", "ts": now, "value": 0.5 * at["capacity_mw"]}
                             for a, at in zip(subs["id"], subs["attributes"])], source="test", now=now)
    dash_duo.start_server(app)
    set_viewport(dash_duo, 1920, 1080)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?rotate=5&focus=traffic,air_quality")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=20)
    def facts():
        return dash_duo.driver.execute_script(OUTAGE_JS)

    wait_for(lambda: re.match(r"^\d+ s ago$", facts()["age"]), timeout=20)
    assert facts()["banner"] is None and facts()["colour"] != "rgb(163, 173, 185)"

    down["on"] = True
    # within two refresh intervals of the last answer (plus the one-second clock tick and slack)
    f = wait_for(lambda: (x := facts())["banner"] and x, timeout=2 * REFRESH + 2)
    assert re.match(r"STALE since \d\d:\d\d", f["banner"]["text"]), f["banner"]
    for other in f["covered"]:  # a bar in the header: the caption, the tiles, the clock stay in view
        assert not _overlap(f["banner"]["rect"], other["rect"]), (f["banner"], other)
    wait_for(lambda: facts()["colour"] == "rgb(163, 173, 185)", timeout=2)  # greyed
    assert NUMBER.match(f["value"])  # the last good value stays
    # the ages tick on in the browser
    wait_for(lambda: (x := facts()["age"]) != f["age"] and re.match(r"^\d+ s ago$", x), timeout=5)
    # the focus rotates and the map's layer follows its caption, with no answer from the server
    for _ in range(2):
        focus = facts()["focus"]
        g = wait_for(lambda focus=focus: (x := facts())["focus"] != focus and x, timeout=10)
        dom = {DOMAINS[d]["label"]: d for d in DOMAINS}[g["focus"]]

        def in_step(dom=dom):
            x = facts()
            return (x["focus"] == DOMAINS[dom]["label"] and [c.split()[1] for c in x["captions"]] == [f"caption-{dom}"]
                    and set(x["visible"]) == set(wall.layers_for(dom)))

        wait_for(in_step, timeout=5)  # the focus stays 5 s: the caption and the map agree within it
        assert facts()["banner"] is not None
    down["on"] = False
    wait_for(lambda: (x := facts())["banner"] is None and x["colour"] != "rgb(163, 173, 185)", timeout=2 * REFRESH + 4)


def test_wall014_clock_has_date_and_zone_names_scale_and_stations_are_named(dash_duo, tmp_path):
    """The clock says which day and time zone ("Sun 6 Dec · CST/UTC+8"); district names scale with the
    screen as the values do; the focused air-quality map names its stations, no two names overlapping."""
    from zoneinfo import ZoneInfo

    # a store of its own, fresh: run after the module's other tests, the shared one named no station
    # (passing alone, failing in every full run; cause not yet found)
    dash_duo.start_server(make_app(build_demo_store(tmp_path / "store", hours=3), tmp_path))
    set_viewport(dash_duo, 1920, 1080)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?focus=air_quality&rotate=0")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=20)
    tz = ZoneInfo("Asia/Shanghai")  # the demo city, Beijing
    date = wait_for(lambda: dash_duo.find_element("#wall-date").text)
    assert date in {wall.date_zone(time.time() - 60, tz), wall.date_zone(time.time(), tz)}, date
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} [A-Z][a-z]{2} · CST/UTC\+8", date), date

    labels_js = """
        const vis = (sel) => [...document.querySelectorAll(sel)].filter(s => s.style.visibility === 'visible'
            && s.offsetParent !== null).map(s => { const r = s.getBoundingClientRect();
            return {text: s.textContent, font: parseFloat(getComputedStyle(s).fontSize), box: [r.left, r.top, r.right, r.bottom]}; });
        const gd = document.querySelector('#wall-map .js-plotly-plot');
        const st = gd && gd.data && gd.data.find(t => t.meta && t.meta.layer === 'air_quality');
        return {districts: vis('.wall-map .district-label'), stations: vis('.wall-map .station-label'),
                names: st ? st.text : [], vmin: Math.min(innerWidth, innerHeight)};"""
    f = wait_for(lambda: (x := dash_duo.driver.execute_script(labels_js)) and len(x["stations"]) >= 3
                 and len(x["districts"]) >= 3 and x, timeout=45)  # a loaded host draws late
    for d in f["districts"]:
        assert d["font"] >= 0.02 * f["vmin"], f"district name {d['text']} at {d['font']} px on a {f['vmin']} px screen"
    assert all(s["text"] in f["names"] for s in f["stations"]), f["stations"]
    shown = f["stations"] + f["districts"]
    for i, a in enumerate(shown):
        for b in shown[i + 1:]:
            overlap = a["box"][0] < b["box"][2] and b["box"][0] < a["box"][2] and a["box"][1] < b["box"][3] \
                and b["box"][1] < a["box"][3]
            assert not overlap, f"{a['text']} overlaps {b['text']}"
    # 4K: the same names, twice as large
    set_viewport(dash_duo, 3840, 2160)
    big = wait_for(lambda: (x := dash_duo.driver.execute_script(labels_js)) and x["vmin"] == 2160
                   and x["districts"] and x, timeout=20)
    assert min(d["font"] for d in big["districts"]) >= 1.9 * min(d["font"] for d in f["districts"])
    assert console_errors(dash_duo) == []


def test_wall012_parameter_notices_sit_in_the_header_and_cover_nothing(dash_duo, store_url, tmp_path):
    """A rotation with one domain in focus, or one out of range, says it is ignored, in the header bar
    (not over the map's legend)."""
    dash_duo.start_server(make_app(store_url, tmp_path))
    set_viewport(dash_duo, 1920, 1080)
    for query, words in (("focus=traffic&rotate=30", ("rotate", "ignored", "Traffic", "nothing to rotate")),
                         ("rotate=1", ("rotate", "ignored", "2–3600"))):
        dash_duo.driver.get(f"{dash_duo.server_url}/wall?{query}")
        notice = dash_duo.wait_for_element("#wall-notice", timeout=20)
        assert notice.is_displayed(), query
        for w in words:
            assert w in notice.text, (query, notice.text)
        f = dash_duo.driver.execute_script("""
            const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
            const n = document.getElementById('wall-notice');
            return {inHead: !!n.closest('.wall-head'), notice: box(n), map: box(document.querySelector('.wall-map')),
                    head: box(document.querySelector('.wall-head'))};""")
        n, m, h = f["notice"], f["map"], f["head"]
        assert f["inHead"] and h[0] <= n[0] and n[2] <= h[2] and h[1] <= n[1] and n[3] <= h[3], (query, f)
        assert n[3] <= m[1], f"the notice covers the map: {f}"
    # the header says the focus stays put
    assert dash_duo.find_element(".wall-focus-rotate").text == "every 30 s"  # rotate=1 fell back to 30 s
    assert console_errors(dash_duo) == []


def test_wall013_a_caption_without_data_says_so_once():
    k = wall._placeholder("traffic.tti")
    text, _ = wall.caption(k, "traffic", time.time())
    assert text == "Traffic · road congestion · no data yet", text
