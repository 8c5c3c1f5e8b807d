"""Security headers on every kind of response, and a browser that runs the manager under its CSP
with no violation."""
from __future__ import annotations

import re
import time

import pytest
from _access_kit import OTHER, body, interaction, layout_of, make_world, post_callback, server_callbacks
from _demo import build_demo_store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("headers")
    return make_world(build_demo_store(folder, hours=1), folder)


def _refresh(world, who: str):
    c = world.principals[who].client
    comps = layout_of(c, "/")
    values, trigger = interaction("dashboard.pages.manager.refresh", comps, None)
    return post_callback(c, body(world.app_off, server_callbacks(world.app_off)["dashboard.pages.manager.refresh"],
                                 comps, values, trigger))


RESPONSES = {
    "page": lambda w: w.principals["viewer"].client.get("/"),
    "wall page": lambda w: w.principals["viewer"].client.get("/wall"),
    "embed page": lambda w: w.principals["viewer"].client.get("/embed/traffic.tti"),
    "layout": lambda w: w.principals["viewer"].client.get("/_dash-layout", headers={"Referer": "http://localhost/"}),
    "callback": lambda w: _refresh(w, "viewer"),
    "callback kept answer": lambda w: (_refresh(w, "viewer"), _refresh(w, "viewer"))[1],
    "api": lambda w: w.principals["viewer"].client.get("/api/kpis"),
    "api panel": lambda w: w.principals["viewer"].client.get("/api/panels/traffic.tti.csv"),
    "health": lambda w: w.principals["nobody"].client.get("/health"),
    "login page": lambda w: w.principals["nobody"].client.get("/login"),
    "sign-in redirect": lambda w: w.principals["nobody"].client.get("/"),
    "401 api": lambda w: w.principals["nobody"].client.get("/api/kpis"),
    "403 page": lambda w: w.principals["scoped"].client.get(f"/?district={OTHER}"),
    "403 callback": lambda w: w.principals["device"].client.post("/_dash-update-component", json={}),
    "404 page": lambda w: w.principals["viewer"].client.get("/no-such-page"),
    "404 route": lambda w: w.principals["viewer"].client.get("/api/no-such-route"),
    "400 api": lambda w: w.principals["viewer"].client.get("/api/kpis?window=forever"),
    "static asset": lambda w: w.principals["nobody"].client.get("/assets/theme.css"),
    "script bundle": lambda w: w.principals["nobody"].client.get(re.search(
        r'src="(/_dash-component-suites/[^"]+)"', w.principals["viewer"].client.get("/").get_data(as_text=True)
    ).group(1)),
    "favicon": lambda w: w.principals["nobody"].client.get("/_favicon.ico"),
}


def script_src(csp: str) -> list[str]:
    """Return the sources of a CSP's script-src directive (default-src when it has none)."""
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    return directives.get("script-src", directives.get("default-src"))


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_headers001_every_response_carries_the_security_headers(world, kind):
    r = RESPONSES[kind](world)
    csp = r.headers.get("Content-Security-Policy", "")
    sources = script_src(csp)
    assert sources, (kind, r.status_code, csp)
    assert "'unsafe-eval'" not in csp and "'unsafe-inline'" not in sources, csp
    assert "*" not in sources and "data:" not in sources, csp
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert r.headers.get("Referrer-Policy") in ("strict-origin-when-cross-origin", "no-referrer", "same-origin")


def test_headers002_the_kinds_are_really_different(world):
    """The statuses above cover success, redirect and every error the gate and the routes give."""
    got = {kind: RESPONSES[kind](world).status_code for kind in RESPONSES}
    assert {200, 303, 400, 401, 403, 404} <= set(got.values()), got


# ----------------------------------------------------------------------------- in a browser
@pytest.mark.browser
def test_headers003_the_manager_runs_under_its_csp_in_a_browser(dash_duo, tmp_path):
    """The manager loads, draws its map and refreshes with no CSP violation in the console; an inline
    script injected afterwards is refused, and that refusal is in the same console (the check can fail)."""
    from dashboard.app import create_app
    from dashboard.settings import Settings

    url = build_demo_store(tmp_path, hours=1)
    app = create_app(Settings(data_dir=tmp_path, database_url=url, refresh_seconds=2))
    dash_duo.start_server(app)
    dash_duo.wait_for_element(".maplibregl-canvas", timeout=20)
    first = _wait(lambda: dash_duo.find_element("#updated").text)
    _wait(lambda: (t := dash_duo.find_element("#updated").text) and t != first and t, timeout=30)  # a refresh
    logs = dash_duo.get_logs() or []
    assert [e for e in logs if "Content Security Policy" in e.get("message", "")] == []
    dash_duo.driver.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.appendChild(s);")
    assert dash_duo.driver.execute_script("return window.injected === undefined")
    seen = _wait(lambda: [e for e in dash_duo.get_logs() or [] if "Content Security Policy" in e.get("message", "")])
    assert seen


def _wait(fn, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")
