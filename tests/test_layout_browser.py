"""Layout at every screen size: no text or badge clipped, the wall's map at least half the width.

One page load per page and size (``/`` and ``/wall`` at 1920×1080, 1366×768, 3840×2160, 1080×1920 and
5120×1440), each measured with one script: every element with text (cards, tiles, badges, list rows,
their labels) shows all of it (scrollWidth ≤ clientWidth + 1, scrollHeight ≤ clientHeight + 1), is not
cut by an ancestor that hides overflow, and lies inside the viewport (the manager's page may scroll down).
"""
from __future__ import annotations

import pytest
from _alerts_kit import fire
from _demo import build_demo_store
from test_manager_browser import console_errors, wait_for
from test_wall_browser import make_app, set_viewport

pytestmark = pytest.mark.browser
SIZES = [(1920, 1080), (1366, 768), (3840, 2160), (1080, 1920), (5120, 1440)]

MANAGER_TEXT = (".topbar .brand, .city-name, .clock, .updated, .window-picker label, .btn, .banner, .domain-title, "
                ".kpi, .kpi-label, .kpi-badge, .kpi-value, .kpi-unit, .kpi-main, .kpi-delta, .kpi-note, .kpi-age, "
                ".legend, .legend-item, .layer-toggles label, .account-name, .account .btn, "
                # the alerts panel; the grid's cells wrap whole (AG Grid scrolls its rows in its own box)
                ".alerts-count, .alert-title, .alerts-grid .ag-header-cell-text")
WALL_TEXT = (".wall-cityname, .wall-sub, .wall-focus-now, .wall-notice, .wall-clock, .wall-date, .wall-updated, "
             ".wall-tile, .tile-title, .wall-kpi, .wk-label, .wk-main, .wk-value, .wk-badge, .wk-age, "
             ".focus-title, .worst-title, .worst-list li, .worst-place, .worst-value, .worst-detail, "
             ".att-title, .att, .att-badge, .att-dom, .att-place, .att-detail, .att-more, "
             ".map-caption, .wall-legend-item, .wall-user, "
             # the alert ticker and a critical alert's takeover
             ".tk-count, .tk-item, .tk-sev, .tk-place, .tk-summary, .tk-age, .wall-takeover, .to-head, .to-sev, "
             ".to-unacked, .to-age, .to-summary, .to-place, .to-more")

#: arguments: the selector of the elements with text, whether the page may scroll down.
MEASURE_JS = """
const [sel, scrolls] = arguments, W = innerWidth, H = innerHeight, bad = [];
const clips = (cs) => [cs.overflowX, cs.overflowY].some(o => o === 'hidden' || o === 'clip');
// wholly out of sight behind an ancestor that hides overflow (a list row that did not fit): not shown, not cut
const hidden = (e) => {
    const r = e.getBoundingClientRect();
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        if (!clips(getComputedStyle(a))) continue;
        const b = a.getBoundingClientRect();
        if (r.right <= b.left || r.left >= b.right || r.bottom <= b.top || r.top >= b.bottom) return true;
    }
    return false;
};
let n = 0;
for (const e of document.querySelectorAll(sel)) {
    const cs = getComputedStyle(e), r = e.getBoundingClientRect();
    if (!e.textContent.trim() || r.width === 0 || r.height === 0 || cs.visibility === 'hidden' || hidden(e)) continue;
    n++;
    const what = (e.className || e.tagName) + ' ' + JSON.stringify(e.textContent.trim().slice(0, 48));
    if (cs.display !== 'inline' && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)) {
        bad.push(what + ' overflows: ' + [e.scrollWidth, e.clientWidth, e.scrollHeight, e.clientHeight]);
    }
    if (r.left < -1 || r.right > W + 1 || (!scrolls && (r.top < -1 || r.bottom > H + 1))) {
        bad.push(what + ' outside the viewport: ' + [r.left, r.top, r.right, r.bottom].map(Math.round));
    }
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        const as = getComputedStyle(a);
        if (!clips(as)) continue;
        const b = a.getBoundingClientRect();
        if (r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1) {
            bad.push(what + ' cut by ' + (a.className || a.tagName) + ': '
                     + [r.left, r.top, r.right, r.bottom, b.left, b.top, b.right, b.bottom].map(Math.round));
            break;
        }
    }
}
const m = document.querySelector('.wall-map'), mr = m && m.getBoundingClientRect();
return {n: n, bad: bad, view: [W, H], map: mr ? mr.width / W : null};
"""


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """Beijing with alerts firing: two critical (one takes the wall over, "+1 more critical"), a
    station's warning, a city-wide info."""
    url = build_demo_store(tmp_path_factory.mktemp("layout"), hours=3)
    fire(url, {"chaoyang": 2.4, "haidian": 2.0})
    return url


def _wall_ready(dash_duo) -> bool:
    return dash_duo.driver.execute_script(
        "return !!document.querySelector('.wall .maplibregl-canvas')"
        " && [...document.querySelectorAll('.wall-tile .wk-value')].every(v => v.textContent.trim() !== '—' || v.closest('.wall-kpi.quiet'))"
        " && document.querySelector('#wall-clock').textContent !== ''"
        " && !!document.querySelector('#wall-ticker .tk-item') && !document.querySelector('#wall-takeover').hidden")


def _manager_ready(dash_duo) -> bool:
    return dash_duo.driver.execute_script(
        "return !!document.querySelector('#map .maplibregl-canvas')"
        " && document.querySelectorAll('.kpi .kpi-value').length >= 18"
        " && !!document.querySelector('#updated') && document.querySelector('#updated').textContent !== ''"
        " && document.querySelectorAll('#alerts-grid .ag-row').length >= 4")


def measure_at(dash_duo, path: str, size: tuple[int, int], ready, sel: str, scrolls: bool) -> dict:
    set_viewport(dash_duo, *size)
    dash_duo.driver.get(dash_duo.server_url + path)
    wait_for(lambda: ready(dash_duo), timeout=40)
    return wait_for(lambda: (f := dash_duo.driver.execute_script(MEASURE_JS, sel, scrolls))
                    and f["view"] == list(size) and f, timeout=10)


def test_layout001_wall_shows_every_text_whole_and_the_map_half_the_width_at_five_sizes(dash_duo, store_url,
                                                                                         tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    problems = {}
    for w, h in SIZES:
        f = measure_at(dash_duo, "/wall?rotate=0", (w, h), _wall_ready, WALL_TEXT, scrolls=False)
        assert f["n"] > 40, f"only {f['n']} texts measured at {w}x{h}"
        if f["bad"]:
            problems[f"{w}x{h}"] = f["bad"]
        if w > h:
            assert f["map"] >= 0.5, f"the map takes {f['map']:.0%} of the width at {w}x{h}"
    assert problems == {}, problems
    assert console_errors(dash_duo) == []


def test_layout002_manager_shows_every_text_whole_at_five_sizes(dash_duo, store_url, tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    problems = {}
    for w, h in SIZES:
        f = measure_at(dash_duo, "/", (w, h), _manager_ready, MANAGER_TEXT, scrolls=True)
        assert f["n"] > 60, f"only {f['n']} texts measured at {w}x{h}"
        if f["bad"]:
            problems[f"{w}x{h}"] = f["bad"]
    assert problems == {}, problems
    assert console_errors(dash_duo) == []


def test_layout003_small_screens_fold_the_legend_into_a_chip_and_fit_four_cards_a_row(dash_duo, store_url,
                                                                                        tmp_path):
    dash_duo.start_server(make_app(store_url, tmp_path))
    set_viewport(dash_duo, 1366, 768)
    dash_duo.driver.get(dash_duo.server_url + "/?layers=traffic,air_quality,energy,satisfaction,districts")
    wait_for(lambda: _manager_ready(dash_duo), timeout=40)
    f = dash_duo.driver.execute_script("""
        const m = document.querySelector('.map-wrap').getBoundingClientRect();
        const l = document.querySelector('#legend').getBoundingClientRect();
        const tops = [...document.querySelectorAll('.domain-traffic .kpi')].map(e => Math.round(e.getBoundingClientRect().top));
        return {share: (l.width * l.height) / (m.width * m.height), text: document.querySelector('#legend').innerText,
                tops: tops, corner: [l.left - m.left, m.bottom - l.bottom]};""")
    assert f["share"] < 0.02, f"the legend covers {f['share']:.0%} of the map at 1366x768"
    assert f["corner"][0] < 20 and f["corner"][1] < 20, f  # in the map's bottom-left corner
    assert len(f["tops"]) == 4 and len(set(f["tops"])) == 1, f"traffic's 4 cards take rows at {f['tops']}"
    # the chip opens on keyboard focus, showing every layer's legend
    dash_duo.driver.execute_script("document.querySelector('#legend').focus()")
    opened = wait_for(lambda: dash_duo.driver.execute_script(
        "const l = document.querySelector('#legend'); return l.getBoundingClientRect().height > 100 && l.innerText;"))
    assert "Jammed" in opened
    assert console_errors(dash_duo) == []
