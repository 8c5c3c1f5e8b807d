"""The role × route matrix, generated from the access tables and the live app.

Coverage: every Flask route, every server-side Dash callback and every page the router serves is
in :mod:`dashboard.access` (and the check reports a route or callback that is not). Matrix: each
principal (no identity, the anonymous viewer, viewer, operator, admin, a district-scoped viewer, a
wall device, a signed embed) × every route, page, layout and callback, with real parameters and
real callback bodies; the expected answer comes from the tables, and a denied body carries no KPI
value, no district name and nothing longer than a one-line reason.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from _access_kit import (csrf, EMBED_KPI, EMBED_MAP, OTHER, OWN, body, interaction, layout_of, make_world,
                         post_callback, server_callbacks, with_query)
from _demo import build_demo_store
from dash import Dash, Input, Output, html

from dashboard import access
from dashboard.access import CALLBACK_ENDPOINT, CALLBACKS, OWN_TOKEN, PUBLIC, RANK, ROUTES

PRINCIPALS = ("nobody", "anonymous", "viewer", "operator", "admin", "scoped", "device", "embed")
PAGE_URLS = ("/", "/wall", "/embed")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    return make_world(build_demo_store(folder, hours=1), folder)


@pytest.fixture(scope="module")
def secrets_(world):
    """What a denied body must never hold: every district's name, and every KPI value the admin sees
    (city-wide and per district) as the API and the cards write it."""
    from dashboard import views

    live = world.app_off.server.extensions["panorama"]
    names = list(live.districts()["name"])
    values = set()
    for d in (None, OWN, OTHER):
        for window in ("1h", "24h", "7d"):
            for k in live.kpis(window, d):
                if isinstance(k.value, (int, float)) and not isinstance(k.value, bool):
                    values |= {json.dumps(k.value), views.kpi_state(k)["value"]}
    return names, {v for v in values if len(v) >= 3 and any(c.isdigit() for c in v)}


# ----------------------------------------------------------------------------- (a) coverage
def missing_from_tables(app) -> list[str]:
    """Return every route, server callback and router page of ``app`` that the access tables lack."""
    app.server.test_client().get("/_dash-dependencies")  # Dash merges its callbacks on the first request
    out = [f"route {r.endpoint}" for r in app.server.url_map.iter_rules() if r.endpoint not in ROUTES]
    out += [f"callback {k}" for k in server_callbacks(app) if k not in CALLBACKS]
    from dashboard.app import PAGE_PATHS
    from dashboard.pages.embed import PREFIX

    out += [f"page {p}" for p in (*PAGE_PATHS, PREFIX + EMBED_KPI) if access.page_rule(p) is None]
    return out


def test_access001_every_route_callback_and_page_is_in_the_table(world):
    assert missing_from_tables(world.app_off) == []
    assert missing_from_tables(world.app_anon) == []


def test_access002_the_coverage_check_reports_what_is_missing(world):
    """A throwaway app with one route and one callback of its own: both are reported."""
    app = Dash(__name__)
    app.layout = html.Div([html.Button(id="b"), html.Div(id="o")])

    @app.callback(Output("o", "children"), Input("b", "n_clicks"))
    def throwaway_callback(n):
        return n

    @app.server.get("/throwaway")
    def throwaway_route():
        return "x"

    missing = missing_from_tables(app)
    assert "route throwaway_route" in missing
    assert f"callback {__name__}.throwaway_callback" in missing


# ----------------------------------------------------------------------------- (b) the matrix
@dataclass(frozen=True)
class Case:
    """One request of the matrix: a route (with real parameters), a page, a layout or a callback."""

    id: str
    endpoint: str
    page: str | None = None  # the page it shows or acts on (/, /wall, /embed)
    callback: str | None = None
    status: int | None = None  # the route's own answer when it is public or checks its own token


def _bundle_case() -> Case:
    return Case("bundle", "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>", status=200)


#: The admin forms, each posted with a value it refuses (400, nothing changed): field -> value.
ADMIN_FORMS = {"admin.user_add": ("/admin/users/add", {"name": "", "role": "viewer"}),
               "admin.user_role": ("/admin/users/role", {"name": "nobody-at-all", "role": "king"}),
               "admin.user_disable": ("/admin/users/disable", {"name": "nobody-at-all"}),
               "admin.user_enable": ("/admin/users/enable", {"name": "nobody-at-all"}),
               "admin.user_reset": ("/admin/users/reset", {"name": "nobody-at-all"}),
               "admin.device_add": ("/admin/devices/add", {"name": "wall", "url": "/not-a-wall"}),
               "admin.device_revoke": ("/admin/devices/revoke", {"id": "x"}),
               "admin.embed_sign": ("/admin/embeds/sign", {"panel": "no-such-panel"})}
#: Cases answered as a form or an API: no identity gets 401, not the sign-in page's redirect.
POSTED = {"alert ack unknown", "silence add without scope", "silence end unknown", "admin rotate unconfirmed",
          *(f"admin {e.removeprefix('admin.')} refused" for e in ADMIN_FORMS)}


def cases(app) -> list[Case]:
    """Every request of the matrix, one per route of ``app`` (pages, layouts and callbacks one per
    page and callback); a route this cannot make a real request for fails :func:`test_access003`."""
    out = [Case(f"page {p}", "/" if p == "/" else "/<path:path>", page=p) for p in PAGE_URLS]
    out += [Case(f"layout {p}", "/_dash-layout", page=p) for p in PAGE_URLS]
    out += [Case("dependencies", "/_dash-dependencies"), Case("reload-hash", "/_reload-hash"), _bundle_case(),
            Case("favicon", "/_favicon.ico", status=200), Case("static", "static", status=404),
            Case("assets", "_dash_assets.static", status=200), Case("api kpis", "api_kpis"),
            Case("api panels", "api_panels"), Case("api panel kpi.json", "api_panel"),
            Case("api panel map.csv", "api_panel", page="csv"),
            Case("geojson", "districts_geojson", status=200), Case("ngsi no bearer", "ngsi_notify", status=401),
            Case("health", "health", status=200), Case("login page", "access.login", status=200),
            Case("logout without csrf", "access.logout", status=403),
            Case("device unknown token", "access.device", status=403),
            # alerts (dashboard/alerts/web.py): an id no alert has answers 404 to whoever may ask
            Case("alerts list", "alerts.list_alerts"), Case("alert unknown", "alerts.get_alert", status=404),
            Case("alert history unknown", "alerts.alert_history", status=404),
            Case("alert ack unknown", "alerts.alert_action", status=404),
            Case("silences list", "alerts.list_silences"),
            Case("silence add without scope", "alerts.add_silence", status=400),
            Case("silence end unknown", "alerts.end_silence", status=404),
            # the admin page (dashboard/admin.py): forms with their CSRF field and input that changes nothing
            Case("admin page", "admin.page_view"), Case("admin rotate unconfirmed", "admin.embed_rotate"),
            *[Case(f"admin {e.removeprefix('admin.')} refused", e, status=400) for e in ADMIN_FORMS],
            # incidents (dashboard/incidents/web.py): likewise an unknown id or type
            Case("incidents list", "incidents.list_incidents"), Case("incident types", "incidents.incident_types"),
            Case("incident unknown", "incidents.get_incident", status=404),
            Case("incident open unknown type", "incidents.open_incident", status=400),
            Case("incident note unknown", "incidents.incident_action", status=404)]
    for key in sorted(server_callbacks(app)):
        if key == "dashboard.app.route":
            out += [Case(f"callback route {p}", CALLBACK_ENDPOINT, page=p, callback=key) for p in PAGE_URLS]
        else:
            out.append(Case(f"callback {key.removeprefix('dashboard.pages.')}", CALLBACK_ENDPOINT, callback=key))
    return out


def _live_app():
    """The app the parameter list is generated from (its routes and callbacks are every app's)."""
    import os

    from dashboard.app import create_app
    from dashboard.settings import Settings

    app = create_app(Settings(database_url="sqlite:///" + os.devnull))
    app.server.test_client().get("/_dash-dependencies")
    return app


CASES = cases(_live_app())


def test_access003_the_matrix_has_a_request_for_every_route():
    covered = {c.endpoint for c in CASES}
    assert sorted(set(ROUTES) - covered) == []
    assert {c.callback for c in CASES if c.callback} == set(server_callbacks(_live_app()))


def page_url(p, page: str) -> str:
    """Return the URL a principal opens for a page: its own district's for the scoped ones, a
    device's registered wall, a signed embed's own link."""
    q = {"district": OWN} if p.districts else {}
    if page == "/wall" and p.kind == "device":
        return p.wall
    if page == "/embed":
        return p.embed_url if p.kind == "embed" else with_query(f"/embed/{EMBED_KPI}", **q)
    return with_query(page, **q)


def _allows(p, rule) -> bool:
    """Whether the access table lets principal ``p`` use ``rule`` (independent of the gate's code)."""
    if rule.level in (PUBLIC, OWN_TOKEN):
        return True
    if p.kind == "device":
        return rule.devices
    if p.kind == "embed":
        return rule.embeds
    return RANK[p.role] >= RANK[rule.level]


def expected(p, case: Case) -> str:
    """Return ``allow``, ``deny`` (403) or ``none`` (no identity: 401, a page 303 to /login)."""
    rule = ROUTES[case.endpoint]
    if rule.level in (PUBLIC, OWN_TOKEN):
        return "allow"
    carries = p.kind not in ("none", "embed") or (
        p.kind == "embed" and (case.page == "/embed" and case.endpoint != "api_panel" and case.page != "csv"
                               or case.id == "api panel kpi.json"
                               or case.callback is not None and case.callback != "dashboard.app.route"))
    if not carries:
        return "none"
    rules = [rule]
    if case.callback:
        rules.append(CALLBACKS[case.callback])
    if case.page in PAGE_URLS and (case.callback is None or case.callback == "dashboard.app.route") \
            and case.endpoint != "api_panel":
        rules.append(access.page_rule(urlsplit(page_url(p, case.page)).path))
    if case.id == "dependencies":
        rules.append(rule)
    if not all(_allows(p, r) for r in rules):
        return "deny"
    return "allow"


def _layout_principal(world, p, page: str):
    """Whose layout a callback body is built from: the principal's own when it may open the page,
    else the admin's of the same URL (the body a browser of someone else would send)."""
    case = Case("layout", "/_dash-layout", page=page)
    return p if expected(p, case) == "allow" else world.principals["admin"]


def callback_body(world, p, case: Case) -> dict:
    app = world.app_of(p)
    key = server_callbacks(app)[case.callback]
    page = case.page or {"dashboard.pages.manager": "/", "dashboard.pages.alerts_panel": "/", "dashboard.pages.wall": "/wall",
                         "dashboard.pages.embed": "/embed"}[case.callback.rsplit(".", 1)[0]]
    url = page_url(p, page)
    if case.callback.endswith("refresh_map"):
        url = url if p.kind == "embed" else with_query(url.replace(EMBED_KPI, EMBED_MAP))
    who = _layout_principal(world, p, page)
    comps = layout_of(who.client, url if who is p else url)
    values, trigger = interaction(case.callback, comps, OWN if p.districts else None)
    if case.callback == "dashboard.app.route":
        u = urlsplit(url)
        values.update({("url", "pathname"): u.path, ("url", "search"): "?" + u.query if u.query else ""})
    b = body(app, key, comps, values, trigger)
    if p.kind == "embed" and case.callback != "dashboard.app.route":
        spec = {"panel": EMBED_KPI, "args": p.embed_args}
        items = [i for i in b["state"] if isinstance(i, dict) and i.get("id") == "embed-spec"]
        if items:
            items[0]["value"] = spec
        else:
            b["state"].append({"id": "embed-spec", "property": "data", "value": spec})
    return b


def send(world, p, case: Case, secrets_):
    """Make the case's request as principal ``p``; return the response."""
    c = p.client
    q = {"district": OWN} if p.districts else {}
    if case.callback:
        return post_callback(c, callback_body(world, p, case))
    if case.endpoint in ("/", "/<path:path>"):
        return c.get(page_url(p, case.page))
    if case.endpoint in ("/_dash-layout", "/_dash-dependencies"):
        return c.get(case.endpoint, headers={"Referer": "http://localhost" + page_url(p, case.page or "/")})
    if case.endpoint == "api_kpis":
        return c.get(with_query("/api/kpis?window=24h", **q))
    if case.id == "api panel kpi.json":
        if p.kind == "embed":
            return c.get(with_query(f"/api/panels/{EMBED_KPI}.json", **p.embed_args))
        return c.get(with_query(f"/api/panels/{EMBED_KPI}.json?window=24h", **q))
    if case.id == "api panel map.csv":
        return c.get(with_query(f"/api/panels/{EMBED_MAP}.csv", **q))
    if case.id == "bundle":
        index = world.principals["admin"].client.get("/").get_data(as_text=True)
        return c.get(re.search(r'src="(/_dash-component-suites/[^"]+)"', index).group(1))
    if case.id == "static":
        return c.get("/static/nothing-here.txt")
    if case.id == "assets":
        return c.get("/assets/theme.css")
    if case.id == "ngsi no bearer":
        return c.post("/ngsi-ld/notify", json={"id": "x"})
    if case.id == "logout without csrf":
        return c.post("/logout")
    if case.id == "device unknown token":
        return c.get("/device/not-a-device-token")
    posts = {"alert ack unknown": ("/api/alerts/999999/ack", {"note": "x"}),
             "silence add without scope": ("/api/silences", {"reason": "works", "minutes": 30}),
             "silence end unknown": ("/api/silences/999999/end", {}),
             "incident open unknown type": ("/api/incidents", {"type": "no-such-type"}),
             "incident note unknown": ("/api/incidents/999999/note", {"note": "x"})}
    forms = {f"admin {e.removeprefix('admin.')} refused": v for e, v in ADMIN_FORMS.items()}
    forms["admin rotate unconfirmed"] = ("/admin/embeds/rotate", {})
    if case.id in forms:
        path, data = forms[case.id]
        return c.post(path, data={**data, "csrf": csrf(c) or ""})
    if case.id in posts:
        path, body = posts[case.id]
        token = csrf(c)
        return c.post(path, json=body, headers={"X-CSRFToken": token} if token else {})
    paths = {"dependencies": "/_dash-dependencies", "reload-hash": "/_reload-hash", "favicon": "/_favicon.ico",
             "api panels": "/api/panels", "geojson": "/api/geo/districts.geojson", "health": "/health",
             "login page": "/login", "alerts list": "/api/alerts", "alert unknown": "/api/alerts/999999",
             "alert history unknown": "/api/alerts/999999/history", "silences list": "/api/silences",
             "incidents list": "/api/incidents", "incident types": "/api/incident-types",
             "incident unknown": "/api/incidents/999999",
             "admin page": "/admin"}
    return c.get(paths[case.id])


def assert_no_leak(r, secrets_, request_text: str = ""):
    names, values = secrets_
    text = r.get_data(as_text=True)
    assert len(text) < 1500, text[:300]
    for n in names:
        assert n not in text or n in request_text, (n, text[:300])
    for v in values:
        assert not re.search(rf"(?<![\d.]){re.escape(v)}(?![\d])", text), (v, text[:300])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("who", PRINCIPALS)
def test_access004_matrix(world, secrets_, who, case):
    p = world.principals[who]
    want = expected(p, case)
    r = send(world, p, case, secrets_)
    if want == "allow":
        assert r.status_code == (case.status or 200), (r.status_code, r.get_data()[:300])
        if p.districts and ROUTES[case.endpoint].level != PUBLIC:
            other = world.app_off.server.extensions["panorama"].districts()
            other = [n for i, n in zip(other["id"], other["name"]) if i != OWN]
            text = r.get_data(as_text=True)
            seen = [m for n in other for m in re.finditer(rf"\b{re.escape(n)}\b", text)]
            assert not seen, f"another district's name in {who}'s {case.id}: " + \
                text[max(0, seen[0].start() - 200):seen[0].end() + 50] if seen else ""
        return
    if want == "none":
        api = case.callback or case.endpoint.startswith(("api_", "alerts.", "incidents.")) or case.id in POSTED
        if api:
            assert r.status_code == 401, (r.status_code, r.get_data()[:300])
        else:
            assert r.status_code == 303 and r.headers["Location"].startswith("/login?next="), r.status_code
    else:
        assert r.status_code == 403, (r.status_code, r.get_data()[:300])
    assert_no_leak(r, secrets_)


def test_access005_the_matrix_has_both_answers(world):
    """No identity gets nothing but public routes; the admin gets everything; a device and a signed
    embed get their own screens and nothing else (a table edited to allow all fails here)."""
    got = {who: {expected(world.principals[who], c) for c in CASES if ROUTES[c.endpoint].level not in (PUBLIC, OWN_TOKEN)}
           for who in PRINCIPALS}
    assert got["nobody"] == {"none"} and got["admin"] == {"allow"}
    assert got["device"] == {"allow", "deny"} and got["embed"] == {"allow", "deny", "none"}
