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
