"""Helpers of the access tests of walls, embeds, the admin page and CSRF: a small store, an app with
``PANORAMA_ANONYMOUS=off``, a signed-in client, and the callback bodies browsers send."""
from __future__ import annotations

import json
import re

from conftest import build_small_city

from dashboard import accounts
from dashboard.app import create_app
from dashboard.settings import get_settings
from dashboard.store.schema import create_schema, make_engine

CALLBACK = "/_dash-update-component"


def small_store(folder) -> tuple[str, object]:
    """Return (URL, engine) of a SQLite store holding the tiny city of ``build_small_city``."""
    url = f"sqlite:///{folder / 'access.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    build_small_city(engine)
    return url, engine


def app_for(url: str, folder, **overrides):
    """Return the app on ``url`` with no anonymous reading unless ``overrides`` say otherwise."""
    return create_app(get_settings(database_url=url, data_dir=folder, **{"anonymous": "off", **overrides}))


def form_csrf(html: str) -> str:
    """Return the ``csrf`` field of the first form of a page."""
    return re.search(r"name=['\"]csrf['\"] value=['\"]([^'\"]+)['\"]", html).group(1)


def sign_in(client, engine, name: str = "ann", role: str = "admin", districts=None) -> str:
    """Add a user, sign ``client`` in as them; return their CSRF token (the ``_csrf_token`` cookie)."""
    _, password = accounts.add_user(engine, name, role, districts=districts)
    csrf = form_csrf(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf})
    assert r.status_code == 303, r.data[:200]
    return client.get_cookie("_csrf_token").value


def embed_refresh(app, spec: dict, n: int = 1) -> dict:
    """The body a browser sends for an embedded KPI's live refresh, with the page's ``embed-spec``."""
    output = next(k for k in app.callback_map if k.startswith("..embed-value.children"))
    outs = [{"id": s.rsplit(".", 1)[0], "property": s.rsplit(".", 1)[1]} for s in output.strip(".").split("...")]
    return {"output": output, "outputs": outs, "changedPropIds": ["embed-kpi-tick.n_intervals"],
            "inputs": [{"id": "embed-kpi-tick", "property": "n_intervals", "value": n}],
            "state": [{"id": "embed-spec", "property": "data", "value": spec}]}


def wall_refresh(app, district: str | None = None) -> dict:
    """The body a browser sends for the wall's live refresh."""
    from dashboard.pages.wall import DOMAIN_IDS, HEADLINE

    output = next(k for k in app.callback_map if "wall-traces.data" in k)
    kpis = [{"type": "wall-kpi", "kpi": k, "slot": "tile"} for d in DOMAIN_IDS for k in HEADLINE[d]]
    worst = [{"type": "wall-worst", "domain": d} for d in DOMAIN_IDS]
    outputs = []
    for s in output[2:-2].split("..."):
        cid, _, prop = s.rpartition(".")
        if cid.startswith("{"):
            ids = kpis if "kpi" in json.loads(cid) else worst
            outputs.append([{"id": {**i, "type": json.loads(cid)["type"]}, "property": prop} for i in ids])
        else:
            outputs.append({"id": cid.split("@")[0], "property": prop})
    return {"output": output, "outputs": outputs, "changedPropIds": ["wall-tick.n_intervals"],
            "inputs": [{"id": "wall-tick", "property": "n_intervals", "value": 1}],
            "state": [{"id": "wall-focus", "property": "data", "value": DOMAIN_IDS[0]},
                      {"id": "wall-traces", "property": "data", "value": None},
                      {"id": "wall-config", "property": "data", "value": {"district": district}},
                      [{"id": i, "property": "id", "value": i} for i in kpis],
                      [{"id": w, "property": "id", "value": w} for w in worst]]}


def legend_body(app) -> dict:
    """The body of the manager's legend callback (a cheap callback of a signed-in page)."""
    output = next(k for k in app.callback_map if k == "legend.children")
    return {"output": output, "outputs": {"id": "legend", "property": "children"},
            "inputs": [{"id": "layers", "property": "value", "value": ["traffic"]}],
            "changedPropIds": ["layers.value"]}
