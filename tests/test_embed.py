"""/embed/<panel-id> framed by a page on another local origin (dash_duo, headless Chromium)."""
from __future__ import annotations

import http.server
import re
import threading
import time
from urllib.parse import parse_qs, quote, urlparse

import pytest
from _demo import build_demo_store
from selenium.webdriver.common.by import By

from dashboard.app import create_app
from dashboard.settings import Settings

pytestmark = pytest.mark.browser


class _Host(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        src = parse_qs(urlparse(self.path).query).get("src", [""])[0]
        body = (f"<!doctype html><title>host</title><h1>Intranet page</h1>"
                f"<iframe id='panel' src='{src}' width='520' height='300'></iframe>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def host():
    """A static host page on another origin: 127.0.0.1:<own port> (the app runs on localhost:8050)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Host)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("embed"), hours=3)


def _frame_text(dash_duo, timeout=15.0) -> str:
    """Return the iframe's text once the panel value shows digits ('' if the frame never shows the panel)."""
    d = dash_duo.driver
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        d.switch_to.default_content()
        d.switch_to.frame(d.find_element(By.ID, "panel"))
        vals = d.find_elements(By.CSS_SELECTOR, ".embed-value")
        text = vals[0].text if vals else ""
        d.switch_to.default_content()
        if re.search(r"\d", text):
            return text
        time.sleep(0.3)
    return text


def test_embed001_allowed_origin_renders_live_panel(dash_duo, host, store_url, tmp_path):
    app = create_app(Settings(data_dir=tmp_path, database_url=store_url, refresh_seconds=2,
                              frame_ancestors=f"'self' {host}"))
    dash_duo.start_server(app)
    src = f"{dash_duo.server_url}/embed/traffic.mean_speed?window=1h&theme=light&refresh=2"
    dash_duo.driver.get(f"{host}/host?src={quote(src)}")
    text = _frame_text(dash_duo)
    assert re.search(r"\d", text), "the framed panel shows no number"
    d = dash_duo.driver
    d.switch_to.frame(d.find_element(By.ID, "panel"))
    panel = d.find_element(By.CSS_SELECTOR, ".embed-kpi")
    assert "theme-light" in panel.get_attribute("class")
    assert d.find_elements(By.CSS_SELECTOR, "#embed-spark .main-svg"), "sparkline not drawn"
    assert not d.find_elements(By.CSS_SELECTOR, ".topbar"), "the embed shows the panel alone"
    size = d.execute_script("const r = document.querySelector('.embed').getBoundingClientRect();"
                            "return [r.width, r.height, innerWidth, innerHeight];")
    assert size[0] == size[2] and size[1] == size[3], f"panel does not fill its iframe: {size}"
    d.switch_to.default_content()


def test_embed002_other_origin_refused(dash_duo, host, store_url, tmp_path):
    app = create_app(Settings(data_dir=tmp_path, database_url=store_url, refresh_seconds=2))  # default: 'self'
    dash_duo.start_server(app)
    dash_duo.driver.get(f"{host}/host?src={dash_duo.server_url}/embed/traffic.mean_speed")
    assert _frame_text(dash_duo, timeout=4) == ""
    logs = " ".join(e["message"] for e in dash_duo.get_logs() or [])
    assert "frame-ancestors" in logs, logs[:500]
    d = dash_duo.driver
    d.switch_to.frame(d.find_element(By.ID, "panel"))
    assert not d.find_elements(By.CSS_SELECTOR, ".embed"), "the browser showed a refused panel"
    d.switch_to.default_content()
    # the app's own origin may frame it; the whole map with chosen layers; HTTP errors
    import requests

    dash_duo.driver.get(f"{dash_duo.server_url}/embed/map?layers=traffic,air_quality&theme=light&refresh=2")
    dash_duo.wait_for_element("#embed-map .main-svg", timeout=15)
    layers = dash_duo.driver.execute_script(
        "return document.querySelector('#embed-map .js-plotly-plot').data.map(t => t.meta.layer)")
    assert set(layers) == {"traffic", "air_quality"}
    base = dash_duo.server_url
    assert requests.get(f"{base}/embed/no.such.panel").status_code == 404
    assert requests.get(f"{base}/embed/..%2F..%2Fetc%2Fpasswd").status_code == 404
    r = requests.get(f"{base}/embed/traffic.tti?window=%3Cscript%3Ex%3C/script%3E")
    assert r.status_code == 400 and "&lt;script&gt;" in r.text and "<script>x" not in r.text
    assert requests.get(f"{base}/").headers["X-Frame-Options"] == "DENY"


def _csp_violations(dash_duo) -> list[str]:
    """Return the console's Content-Security-Policy complaints (refused scripts, eval, workers)."""
    return [e["message"] for e in dash_duo.get_logs() or []
            if "Content Security Policy" in e["message"] or "unsafe-eval" in e["message"]]


def test_embed003_pages_render_and_maps_draw_under_the_script_policy(dash_duo, store_url, tmp_path):
    app = create_app(Settings(data_dir=tmp_path, database_url=store_url, refresh_seconds=2))
    dash_duo.start_server(app)
    import requests

    csp = requests.get(dash_duo.server_url + "/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "unsafe-inline" not in csp
    dash_duo.wait_for_page(f"{dash_duo.server_url}/?layers=districts,traffic,air_quality")
    dash_duo.wait_for_element(".maplibregl-canvas", timeout=30)  # the map drew (MapLibre, its worker)
    deadline = time.time() + 20
    while time.time() < deadline and not re.search(r"\d", dash_duo.find_element(".kpi-value").text):
        time.sleep(0.2)
    assert re.search(r"\d", dash_duo.find_element(".kpi-value").text), "KPIs never filled in"
    assert dash_duo.find_element("#clock").text, "the clientside clock did not run"
    dash_duo.driver.get(f"{dash_duo.server_url}/embed/map?layers=traffic&refresh=2")
    dash_duo.wait_for_element("#embed-map .maplibregl-canvas", timeout=30)
    dash_duo.driver.get(f"{dash_duo.server_url}/wall")
    dash_duo.wait_for_element(".wall .maplibregl-canvas", timeout=30)
    assert _csp_violations(dash_duo) == []
