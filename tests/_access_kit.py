"""Principals, requests and real callback bodies for the access tests.

One demo store (Beijing, an hour of simulated history) serves two apps: ``PANORAMA_ANONYMOUS=off``
and ``=viewer``. Each principal is a Flask test client carrying its credential the way a browser
does (a session cookie from POST /login, a device cookie from GET /device/<token>, a signed embed
URL). Callback bodies are built as Dash's renderer builds them: from ``app.callback_map`` and the
component values of the layout the principal's own browser receives, with the one input a user
changes (the "interaction") set.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from dashboard import accounts, signing
from dashboard.access import CALLBACK_ENDPOINT, callback_key

#: The districts the scoped principals see, and one they do not.
OWN, OTHER = "chaoyang", "haidian"
#: The signed embed's panel and the unsigned embed panel every viewer may open.
EMBED_KPI = "traffic.tti"
EMBED_MAP = "map-traffic"
PASSWORD = "correct horse battery staple"


def sign_in(client, name: str, password: str = PASSWORD) -> None:
    """Sign ``client`` in through the login form, as a browser does (its CSRF field included)."""
    r = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', r.get_data(as_text=True)).group(1)
    r = client.post("/login", data={"name": name, "password": password, "csrf": token, "next": "/"})
    assert r.status_code == 303 and r.headers["Location"] == "/", (r.status_code, r.get_data()[:200])


def csrf(client) -> str | None:
    """Return the ``_csrf_token`` cookie Dash's renderer sends back as X-CSRFToken."""
    c = client.get_cookie("_csrf_token")
    return None if c is None else c.value


@dataclass
class Principal:
    """One kind of caller: how it is made, and what the access table says of it."""

    name: str
    kind: str  # none | anonymous | user | device | embed
    role: str | None = None
    districts: tuple[str, ...] | None = None
    client: object = None
    embed_url: str | None = None  # the signed embed's path and query
    wall: str = "/wall"  # a device's wall URL
    anonymous_app: bool = False

    @property
    def embed_args(self) -> dict:
        return dict(parse_qsl(urlsplit(self.embed_url).query))


@dataclass
class World:
    """The store, both apps and every principal."""

    engine: object
    app_off: object
    app_anon: object
    principals: dict[str, Principal] = field(default_factory=dict)

    def app_of(self, p: Principal):
        return self.app_anon if p.anonymous_app else self.app_off

    def gate(self):
        return self.app_off.server.extensions["panorama_access"]


def make_world(store_url: str, data_dir) -> World:
    """Create both apps on ``store_url`` and one principal of each kind."""
    from dashboard.app import create_app
    from dashboard.settings import Settings
    from dashboard.store import make_engine

    eng = make_engine(store_url)
    common = dict(data_dir=data_dir, database_url=store_url, refresh_seconds=5, ngsi_token="ngsi-test-token")
    w = World(eng, create_app(Settings(anonymous="off", **common)), create_app(Settings(anonymous="viewer", **common)))
    for name, role, ds in (("vera", "viewer", None), ("otto", "operator", None), ("ada", "admin", None),
                           ("sam", "viewer", [OWN])):
        accounts.add_user(eng, name, role, password=PASSWORD, districts=ds)
    ps = w.principals
    ps["nobody"] = Principal("nobody", "none", client=w.app_off.server.test_client())
    ps["anonymous"] = Principal("anonymous", "anonymous", "viewer", client=w.app_anon.server.test_client(),
                                anonymous_app=True)
    for pname, user, role, ds in (("viewer", "vera", "viewer", None), ("operator", "otto", "operator", None),
                                  ("admin", "ada", "admin", None), ("scoped", "sam", "viewer", (OWN,))):
        c = w.app_off.server.test_client()
        sign_in(c, user)
        ps[pname] = Principal(pname, "user", role, ds, client=c)
    wall = f"/wall?district={OWN}"
    _dev, token = accounts.add_device(eng, "lobby wall", wall)
    c = w.app_off.server.test_client()
    r = c.get(f"/device/{token}")
    assert r.status_code == 303 and r.headers["Location"] == wall
    ps["device"] = Principal("device", "device", districts=(OWN,), client=c, wall=wall)
    gate = w.gate()
    url = signing.url(gate.secret, gate.embed_key(), EMBED_KPI, {"district": OWN, "window": "24h"},
                      int(time.time()) + 3600)
    ps["embed"] = Principal("embed", "embed", districts=(OWN,), client=w.app_off.server.test_client(), embed_url=url)
    return w


# ----------------------------------------------------------------------------- layouts and bodies
def components(tree) -> dict:
    """Return every component of a layout JSON with an id: stringified id -> props."""
    from dash._utils import stringify_id

    out, stack = {}, [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            props = node.get("props") if "props" in node and "type" in node else None
            if props is None:
                continue
            if "id" in props:
                out[stringify_id(props["id"])] = props
            for v in props.values():
                if isinstance(v, (dict, list)):
                    stack.append(v)
    return out


def layout_of(client, page: str) -> dict:
    """Return the components of the layout a browser at ``page`` receives."""
    r = client.get("/_dash-layout", headers={"Referer": "http://localhost" + page})
    assert r.status_code == 200, (page, r.status_code, r.get_data()[:200])
    return components(r.get_json())


def _matches(pattern: dict, cid) -> bool:
    return isinstance(cid, dict) and set(cid) == set(pattern) and all(
        v == ["ALL"] or cid[k] == v for k, v in pattern.items())


def _item(spec_id: str, prop: str, comps: dict, with_value: bool, values: dict):
    """Return the body entry of one dependency: {id, property[, value]}, or a list for a pattern."""
    prop = prop.split("@")[0]
    if spec_id.startswith("{"):
        pattern = json.loads(spec_id)
        out = []
        for key, props in comps.items():
            if key.startswith("{") and _matches(pattern, json.loads(key)):
                e = {"id": json.loads(key), "property": prop}
                if with_value:
                    e["value"] = values.get((key, prop), props.get(prop))
                out.append(e)
        return out
    e = {"id": spec_id, "property": prop}
    if with_value:
        e["value"] = values.get((spec_id, prop), comps.get(spec_id, {}).get(prop))
    return e


def body(app, key: str, comps: dict, values: dict | None = None, trigger: str | None = None) -> dict:
    """Return the request Dash's renderer sends for the callback of output ``key`` on a page with
    ``comps``: ``values`` overrides (stringified id, property) -> value; ``trigger`` the changed prop."""
    cb = app.callback_map[key]
    values = values or {}
    outs = key[2:-2].split("...") if key.startswith("..") else [key]
    outputs = [_item(*o.rsplit(".", 1), comps, False, values) for o in outs]
    b = {"output": key, "outputs": outputs if key.startswith("..") else outputs[0],
         "inputs": [_item(i["id"], i["property"], comps, True, values) for i in cb["inputs"]],
         "state": [_item(s["id"], s["property"], comps, True, values) for s in cb["state"]],
         "changedPropIds": [trigger or f"{cb['inputs'][0]['id']}.{cb['inputs'][0]['property']}"]}
    return b


def server_callbacks(app) -> dict[str, str]:
    """Return the access key (module.function) of every callback that runs on the server -> its output key."""
    return {callback_key(cb["callback"]): out for out, cb in app.callback_map.items() if cb.get("callback")}


def page_of(callback: str, district: str | None = None) -> str:
    """Return the page (path and query) whose layout holds a callback's components."""
    mod = callback.rsplit(".", 1)[0]
    q = f"?district={district}" if district else ""
    return {"dashboard.pages.manager": "/" + q, "dashboard.pages.alerts_panel": "/" + q, "dashboard.pages.wall": "/wall" + q,
            "dashboard.pages.embed": None}.get(mod, "/" + q)


def interaction(callback: str, comps: dict, district: str | None) -> tuple[dict, str | None]:
    """Return what a user does to fire ``callback`` (values set, the changed property): a tick, a
    click on a district's shape or a KPI card, a new window."""
    tick = {"dashboard.pages.manager.refresh": "tick", "dashboard.pages.wall.refresh": "wall-tick",
            "dashboard.pages.embed.refresh_kpi": "embed-kpi-tick",
            "dashboard.pages.embed.refresh_map": "embed-map-tick"}.get(callback)
    if tick:
        return {(tick, "n_intervals"): 1}, f"{tick}.n_intervals"
    first_kpi = next((k for k in comps if k.startswith('{"id":') and '"type":"kpi"}' in k), None)
    if callback.endswith("manager.pick_district"):
        return {("map", "clickData"): {"points": [{"location": district or OWN}]}, ("district", "value"): None}, \
            "map.clickData"
    if callback.endswith("manager.open_drill"):
        return {(first_kpi, "n_clicks"): 1}, f"{first_kpi}.n_clicks"
    if callback.endswith("manager.drill"):
        return {("drill-kpi", "data"): json.loads(first_kpi)["id"]}, "drill-kpi.data"
    if callback.endswith("manager.sync_url"):
        return {("window", "value"): "7d"}, "window.value"
    if callback.endswith("manager.fly_to"):
        return {}, "district.value"
    if callback.endswith("manager.legend"):
        return {}, "layers.value"
    # the alerts panel (dashboard/pages/alerts_panel.py): its refresh, a selection, a group's chip, an action
    if callback.endswith("alerts_panel.alert_rows"):
        return {("tick", "n_intervals"): 1}, "tick.n_intervals"
    if callback.endswith("alerts_panel.alert_pick"):
        return {("alerts-grid", "selectedRows"): []}, "alerts-grid.selectedRows"
    if callback.endswith("alerts_panel.alert_group"):  # a click on the first chip over the grid
        chip = '{"slot":"0","type":"alerts-group"}'
        return {(chip, "n_clicks"): 1, ("alerts-group-keys", "data"): [[district or OWN, "traffic"]]}, f"{chip}.n_clicks"
    if callback.endswith("alerts_panel.alert_act"):
        return {("alert-ack", "n_clicks"): 1}, "alert-ack.n_clicks"
    if callback == "dashboard.app.route":
        return {("rendered", "data"): None}, "url.pathname"
    return {}, None


def post_callback(client, payload: dict, extra_headers: dict | None = None):
    """POST a callback body as the renderer does (with the X-CSRFToken of the page's cookie)."""
    headers = {"Content-Type": "application/json", **(extra_headers or {})}
    token = csrf(client)
    if token:
        headers["X-CSRFToken"] = token
    return client.post(CALLBACK_ENDPOINT, data=json.dumps(payload), headers=headers)


def with_query(path: str, **args) -> str:
    """Return ``path`` with ``args`` set in its query."""
    u = urlsplit(path)
    q = dict(parse_qsl(u.query))
    q.update({k: v for k, v in args.items() if v is not None})
    return u.path + ("?" + urlencode(q) if q else "")
