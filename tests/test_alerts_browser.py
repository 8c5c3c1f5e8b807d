"""Browser tests of alerts on screen (dash_duo, headless Chromium): the wall's takeover by a critical
alert nobody acknowledged (its domain in focus, the map at its place, its age), released when it is
acknowledged through the API and, with a short ``[alerting] takeover_max``, after that time with the
next critical alert taking over from the queue; the manager's panel, a click zooming the map."""
from __future__ import annotations

import re
import shutil

import pytest
from _access_kit import PASSWORD, csrf, sign_in
from _alerts_kit import fire
from _demo import BEIJING, build_demo_store
from test_manager_browser import console_errors, wait_for

from dashboard import accounts
from dashboard.app import create_app
from dashboard.pages import wall
from dashboard.settings import Settings
from dashboard.store.schema import make_engine

pytestmark = pytest.mark.browser
REFRESH = 2
CHAOYANG = {"lon": [116.35156, 116.64551], "lat": [39.81055, 40.1084]}


def city_copy(folder, takeover_max: str) -> str:
    """Return a copy of Beijing's city folder whose ``[alerting] takeover_max`` is ``takeover_max``."""
    dst = folder / "beijing"
    shutil.copytree(BEIJING, dst)
    toml = dst / "city.toml"
    text, n = re.subn(r'(?m)^takeover_max = "[^"]*"', f'takeover_max = "{takeover_max}"', toml.read_text())
    assert n == 1
    toml.write_text(text)
    return str(dst)


def make_app(url, folder, city=None):
    kw = {"city": city} if city else {}
    return create_app(Settings(data_dir=folder, database_url=url, refresh_seconds=REFRESH, alert_tick_seconds=0, **kw))


def wall_state(dash_duo) -> dict:
    """Return the takeover's state, the wall's classes, focus, ticker and map view ({} before the wall is drawn)."""
    return dash_duo.driver.execute_script("""
        if (!document.getElementById('wall-ticker')) { return {}; }
        const t = document.getElementById('wall-takeover'), gd = document.querySelector('#wall-map .js-plotly-plot');
        const m = gd && gd.layout && gd.layout.map;
        return {shown: !!t && !t.hidden, text: t ? t.innerText : '', cls: document.getElementById('wall').className,
                focus: document.getElementById('wall-focus-name').textContent,
                ticker: document.getElementById('wall-ticker').innerText,
                center: m && m.center, zoom: m && m.zoom};""")


def inside(center, box) -> bool:
    return bool(center) and box["lon"][0] < center["lon"] < box["lon"][1] and box["lat"][0] < center["lat"] < box["lat"][1]


@pytest.fixture
def one_critical(tmp_path):
    url = build_demo_store(tmp_path, hours=1)
    fire(url, {"chaoyang": 2.4})
    accounts.add_user(make_engine(url), "otto", "operator", password=PASSWORD)
    return url


def test_alerts001_a_critical_alert_takes_the_wall_over_until_it_is_acknowledged(dash_duo, one_critical, tmp_path):
    app = make_app(one_critical, tmp_path)
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?focus=air_quality")  # traffic is not even in the playlist
    s = taken = wait_for(lambda: (lambda s: s if s.get("shown") and inside(s["center"], CHAOYANG) else None)(
        wall_state(dash_duo)))
    label = wall.DOMAINS["traffic"]["label"]
    assert "focus-traffic" in s["cls"] and "takeover" in s["cls"] and s["focus"] == label
    assert re.search(r"CRITICAL\s+NOT ACKNOWLEDGED\s+\d+ s ago\s+Heavy congestion\s+Chaoyang", s["text"]), s["text"]
    assert "more critical" not in s["text"]
    assert "CRITICAL" in s["ticker"] and "Heavy congestion" in s["ticker"] and "WARNING" in s["ticker"]
    # an operator acknowledges it through the API: the wall lets go, back to its own focus
    c = app.server.test_client()
    sign_in(c, "otto")
    alert = next(a for a in c.get("/api/alerts?severity=critical").get_json()["alerts"])
    r = c.post(f"/api/alerts/{alert['id']}/ack", json={"note": "on it"}, headers={"X-CSRFToken": csrf(c)})
    assert r.status_code == 200, r.get_data(as_text=True)
    s = wait_for(lambda: (lambda s: s if not s["shown"] else None)(wall_state(dash_duo)))
    assert "takeover" not in s["cls"] and "focus-air_quality" in s["cls"]
    # the map back to the whole city: the takeover had zoomed in to the district
    city = wait_for(lambda: (lambda t: t if t["zoom"] and not inside(t["center"], CHAOYANG) else None)(wall_state(dash_duo)))
    assert city["zoom"] < taken["zoom"] - 0.5, (city, taken)
    assert s["focus"] == wall.DOMAINS["air_quality"]["label"]
    assert console_errors(dash_duo) == []


def test_alerts002_a_takeover_ends_after_takeover_max_and_the_next_critical_one_follows(dash_duo, tmp_path):
    url = build_demo_store(tmp_path, hours=1)
    fire(url, {"chaoyang": 2.4, "haidian": 2.2})
    app = make_app(url, tmp_path, city_copy(tmp_path, "5s"))
    dash_duo.start_server(app)
    dash_duo.wait_for_page(f"{dash_duo.server_url}/wall?focus=energy&sound=1")
    first = wait_for(lambda: (lambda s: s if s.get("shown") else None)(wall_state(dash_duo)))
    assert "+1 more critical" in first["text"]
    where = "Haidian" if "Haidian" in first["text"] else "Chaoyang"
    second = wait_for(lambda: (lambda s: s if s.get("shown") and where not in s["text"] else None)(wall_state(dash_duo)),
                      timeout=15)
    assert "more critical" not in second["text"] and "focus-traffic" in second["cls"]
    done = wait_for(lambda: (lambda s: s if not s["shown"] else None)(wall_state(dash_duo)), timeout=15)
    assert "takeover" not in done["cls"] and "focus-energy" in done["cls"]
    # the ticker still tells both: a takeover ending acknowledges nothing
    assert done["ticker"].count("Heavy congestion") == 2
    # the tone: played, or the wall says the browser blocks it until someone clicks
    heard = dash_duo.driver.execute_script("""const a = document.getElementById('wall-sound'),
        n = document.getElementById('wall-sound-note');
        return [a && a.getAttribute('src'), a && a.played.length > 0, n && !n.hidden];""")
    assert heard[0] == wall.TONE and (heard[1] or heard[2]), heard
    assert app.server.test_client().get(wall.TONE).status_code == 200


def test_alerts003_the_manager_lists_alerts_and_a_click_zooms_the_map(dash_duo, one_critical, tmp_path):
    dash_duo.start_server(make_app(one_critical, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/")
    cells = wait_for(lambda: [e for e in dash_duo.driver.find_elements("css selector", "#alerts-grid .ag-row")
                              if "Heavy congestion" in e.text])
    assert "CRITICAL" in cells[0].text and "Chaoyang" in cells[0].text
    dash_duo.driver.execute_script("arguments[0].querySelector('[col-id=place]').click()", cells[0])
    wait_for(lambda: "Heavy congestion" in dash_duo.find_element("#alert-title").text)
    assert "system · open" in dash_duo.find_element("#alert-history").text

    def zoomed():
        m = dash_duo.driver.execute_script("const g = document.querySelector('#map .js-plotly-plot');"
                                           "return g && g.layout.map && [g.layout.map.center, g.layout.map.zoom];")
        return m if m and inside(m[0], CHAOYANG) and m[1] > 9 else None

    wait_for(zoomed)
    # the anonymous viewer reads: no action buttons
    assert dash_duo.driver.find_elements("css selector", "#alert-actions") == []
    assert console_errors(dash_duo) == []


# ----------------------------------------------------------------------------- markers on the manager's map
def map_state(dash_duo) -> dict:
    """Return the manager map's view and its alert and incident traces ({} before the map is drawn)."""
    return dash_duo.driver.execute_script("""
        const gd = document.querySelector('#map .js-plotly-plot'), m = gd && gd.layout && gd.layout.map;
        if (!m || !gd._fullLayout.map) { return {}; }
        const t = (uid) => { const i = gd.data.findIndex(d => d.uid === uid);
            const d = gd.data[i]; return !d ? null : {index: i, lon: Array.from(d.lon), lat: Array.from(d.lat),
            text: Array.from(d.text), customdata: Array.from(d.customdata), size: d.marker.size}; };
        return {center: m.center, zoom: m.zoom, alerts: t('alerts'), incidents: t('incidents')};""")


def screen_xy(dash_duo, lon: float, lat: float, dx: float = 0) -> tuple[float, float]:
    """Return where (lon, lat) is drawn on the map, in the browser window's pixels (``dx`` to its right)."""
    return dash_duo.driver.execute_script("""
        const gd = document.querySelector('#map .js-plotly-plot'), map = gd._fullLayout.map._subplot.map;
        const r = map.getCanvas().getBoundingClientRect(), p = map.project([arguments[0], arguments[1]]);
        return [r.left + p.x + arguments[2], r.top + p.y];""", lon, lat, dx)


def mouse(dash_duo, xy, click: bool = False) -> None:
    """Move the mouse to window pixel ``xy`` (and click there), as a person does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    chain = ActionChains(dash_duo.driver)
    builder = ActionBuilder(dash_duo.driver)
    builder.pointer_action.move_to_location(int(xy[0]), int(xy[1]))
    builder.perform()
    if click:
        chain.click().perform()


def viewport(dash_duo, width: int, height: int) -> None:
    """Make the browser's viewport ``width`` × ``height`` (the window around it a little larger)."""
    d = dash_duo.driver
    d.set_window_size(width, height)
    inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
    d.set_window_size(width + (width - inner[0]), height + (height - inner[1]))


def hover_text(dash_duo) -> str:
    return dash_duo.driver.execute_script(
        "return [...document.querySelectorAll('#map .hoverlayer .hovertext')].map(e => e.textContent).join(' | ');")


@pytest.fixture
def critical_in_incident(one_critical):
    """The Chaoyang critical alert in an open air-pollution incident owned by otto: (store URL, incident id)."""
    from sqlalchemy import select

    from dashboard.city import load_city
    from dashboard.incidents import store as istore
    from dashboard.store.schema import alerts

    engine = make_engine(one_critical)
    kind = load_city(BEIJING).incidents.type("air-pollution")
    with engine.begin() as c:
        aid = c.execute(select(alerts.c.id).where(alerts.c.district_id == "chaoyang",
                                                  alerts.c.severity == "critical")).scalar_one()
        row, _ = istore.open_incident(c, "otto", kind, alert_ids=[aid], owner="otto")
    engine.dispose()
    return one_critical, row["id"]


def test_alerts004_an_open_incident_is_a_ring_at_its_place_and_a_click_opens_it(dash_duo, critical_in_incident,
                                                                                tmp_path):
    url, iid = critical_in_incident
    viewport(dash_duo, 1920, 1080)
    dash_duo.start_server(make_app(url, tmp_path))
    # the districts alone: at the whole city's zoom a road's hover point a few pixels away wins the hover
    dash_duo.wait_for_page(f"{dash_duo.server_url}/?layers=districts")
    s = wait_for(lambda: (lambda s: s if s.get("incidents") and s["incidents"]["lon"] else None)(map_state(dash_duo)))
    inc, al = s["incidents"], s["alerts"]
    # a ring (two discs, the wider one outside) under the alerts' dots, at its alert's place: Chaoyang
    assert inc["index"] < al["index"] and len(inc["lon"]) == 2 and inc["size"][0] > inc["size"][1] > 20
    assert inside({"lon": inc["lon"][0], "lat": inc["lat"][0]}, CHAOYANG)
    k = al["customdata"].index(next(i for i, t in zip(al["customdata"], al["text"]) if "Chaoyang" in t
                                    and "CRITICAL" in t))
    assert (inc["lon"][0], inc["lat"][0]) == (al["lon"][k], al["lat"][k])
    assert inc["text"][0] == f"Incident #{iid} · Air-pollution episode · owner otto · open · Chaoyang"
    # the mouse on the ring (beside the alert's dot) shows the incident's hover text
    ring = screen_xy(dash_duo, inc["lon"][0], inc["lat"][0], dx=(inc["size"][1] / 2 + 20 / 2) / 2 + 2)
    assert dash_duo.driver.execute_script("return document.elementFromPoint(...arguments).tagName", *ring) == "CANVAS"
    mouse(dash_duo, ring)
    wait_for(lambda: f"Incident #{iid}" in hover_text(dash_duo))
    # a click on it shows the incident (its next step, its timeline) and zooms to its place
    mouse(dash_duo, ring, click=True)
    title = wait_for(lambda: (lambda t: t if f"Incident #{iid}" in t else None)(dash_duo.find_element("#alert-title").text))
    assert "owner otto" in title and "Air-pollution episode" in title
    hist = dash_duo.find_element("#alert-history").text
    assert "Next: step 1 of" in hist and "otto · open" in hist and "alerts" in hist
    z = wait_for(lambda: (lambda t: t if t["zoom"] > s["zoom"] + 0.5 and inside(t["center"], CHAOYANG) else None)(
        map_state(dash_duo)))
    assert z["zoom"] > 9
    assert console_errors(dash_duo) == []


def test_alerts005_a_click_on_an_alerts_dot_selects_its_row_and_zooms_the_map(dash_duo, one_critical, tmp_path):
    viewport(dash_duo, 1920, 1080)  # smaller, the legend lies over Chaoyang's dot
    dash_duo.start_server(make_app(one_critical, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/")
    s = wait_for(lambda: (lambda s: s if s.get("alerts") and s["alerts"]["lon"] else None)(map_state(dash_duo)))
    al = s["alerts"]
    k = next(i for i, t in enumerate(al["text"]) if "CRITICAL" in t and "Chaoyang" in t)
    assert not inside(s["center"], CHAOYANG) and s["zoom"] < 9  # the whole city before the click
    xy = screen_xy(dash_duo, al["lon"][k], al["lat"][k])
    assert dash_duo.driver.execute_script("return document.elementFromPoint(...arguments).tagName", *xy) == "CANVAS"
    mouse(dash_duo, xy, click=True)
    row = wait_for(lambda: dash_duo.driver.find_elements("css selector", "#alerts-grid .ag-row-selected"))
    assert len(row) == 1 and row[0].get_attribute("row-id") == str(al["customdata"][k]) and "Chaoyang" in row[0].text
    wait_for(lambda: "Heavy congestion" in dash_duo.find_element("#alert-title").text)
    z = wait_for(lambda: (lambda t: t if inside(t["center"], CHAOYANG) and t["zoom"] > 9 else None)(map_state(dash_duo)))
    assert z["zoom"] > s["zoom"] + 0.5
    assert console_errors(dash_duo) == []


def test_alerts006_the_alerts_grid_never_scrolls_sideways_at_1366x768(dash_duo, one_critical, tmp_path):
    d = dash_duo.driver
    viewport(dash_duo, 1366, 768)
    dash_duo.start_server(make_app(one_critical, tmp_path))
    dash_duo.wait_for_page(f"{dash_duo.server_url}/")
    assert d.execute_script("return [window.innerWidth, window.innerHeight]") == [1366, 768]
    wait_for(lambda: d.find_elements("css selector", "#alerts-grid .ag-row"))

    def fitted():
        g = d.execute_script("""const v = document.querySelector('#alerts-grid .ag-center-cols-viewport');
            return {scroll: v.scrollWidth, client: v.clientWidth,
                    cols: [...document.querySelectorAll('#alerts-grid .ag-header-cell')].map(c => c.getAttribute('col-id'))};""")
        return g if g["scroll"] <= g["client"] else None

    g = wait_for(fitted)
    assert {"severity", "since", "place", "state", "owner"} <= set(g["cols"]), g
    assert console_errors(dash_duo) == []
