"""The admin page: admins only; users, walls, signed links and the embed key changed from it, each
change audited with the admin as actor; secrets shown once; the manager links to it for admins only."""
from __future__ import annotations

import html
import re
import time

import pytest
from _signed_in import CALLBACK, app_for, form_csrf, sign_in, small_store

from dashboard import accounts


@pytest.fixture
def setup(tmp_path):
    url, engine = small_store(tmp_path)
    return url, engine, app_for(url, tmp_path)


def once(page: str) -> str:
    """The secret a form's answer shows once."""
    return html.unescape(re.search(r"class='admin-secret' readonly value='([^']+)'", page).group(1))


def test_admin001_only_a_signed_in_admin_opens_it(setup, tmp_path):
    url, engine, app = setup
    assert app.server.test_client().get("/admin").headers["Location"] == "/login?next=/admin"
    for role in ("viewer", "operator"):
        c = app.server.test_client()
        sign_in(c, engine, role, role)
        r = c.get("/admin")
        assert r.status_code == 403 and b"Users" not in r.data
    _, token = accounts.add_device(engine, "wall", "/wall")
    d = app.server.test_client()
    d.get(f"/device/{token}")
    assert d.get("/admin").status_code == 403
    anon = app_for(url, tmp_path, anonymous="viewer").server.test_client()
    assert anon.get("/admin").status_code == 403
    c = app.server.test_client()
    sign_in(c, engine, "boss", "admin")
    r = c.get("/admin")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    page = r.get_data(as_text=True)
    assert "<script" not in page and "style=" not in page  # the CSP allows no inline script
    assert "/assets/theme.css" in page and "/assets/admin.css" in page
    for section in ("Users", "Wall devices", "Signed embeds", "Embed key", "Audit log"):
        assert f">{section}<" in page, section


def test_admin002_users_added_changed_and_reset_with_the_password_shown_once(setup):
    url, engine, app = setup
    c = app.server.test_client()
    sign_in(c, engine, "boss", "admin")
    csrf = form_csrf(c.get("/admin").get_data(as_text=True))
    r = c.post("/admin/users/add", data={"name": "ann", "role": "operator", "districts": ["north"], "csrf": csrf})
    password = once(r.get_data(as_text=True))
    assert accounts.authenticate(engine, "ann", password).districts == ("north",)
    assert password not in c.get("/admin").get_data(as_text=True)  # once
    r = c.post("/admin/users/add", data={"name": "ann", "role": "viewer", "csrf": csrf})
    assert r.status_code == 400 and "already exists" in r.get_data(as_text=True)
    c.post("/admin/users/role", data={"name": "ann", "role": "viewer", "csrf": csrf})
    assert [u for u in accounts.list_users(engine) if u.name == "ann"][0].districts is None  # none chosen: all
    c.post("/admin/users/disable", data={"name": "ann", "csrf": csrf})
    assert accounts.authenticate(engine, "ann", password) is None
    c.post("/admin/users/enable", data={"name": "ann", "csrf": csrf})
    new = once(c.post("/admin/users/reset", data={"name": "ann", "csrf": csrf}).get_data(as_text=True))
    assert new != password and accounts.authenticate(engine, "ann", new) and not accounts.authenticate(engine, "ann",
                                                                                                       password)
    audit = [(a["actor"], a["action"]) for a in accounts.audit_tail(engine)]
    for action in ("user.add", "user.set_role", "user.disable", "user.enable", "user.reset_password"):
        assert ("boss", action) in audit, action
    rows = c.get("/admin").get_data(as_text=True)
    assert "user.reset_password" in rows and password not in rows and new not in rows


def test_admin003_walls_added_with_the_claim_url_once_listed_with_last_refresh_and_revoked(setup):
    url, engine, app = setup
    c = app.server.test_client()
    sign_in(c, engine, "boss", "admin")
    csrf = form_csrf(c.get("/admin").get_data(as_text=True))
    claim = once(c.post("/admin/devices/add", data={"name": "lobby", "url": "/wall?district=south",
                                                    "csrf": csrf}).get_data(as_text=True))
    assert re.fullmatch(r"http://localhost/device/[\w-]{40,}", claim)
    wall = app.server.test_client()
    assert wall.get(claim.removeprefix("http://localhost")).headers["Location"] == "/wall?district=south"
    d = accounts.list_devices(engine)[0]
    page = c.get("/admin").get_data(as_text=True)
    assert re.search(r"lobby</td><td><code>/wall\?district=south</code></td><td>South</td>.*?<td class='seen'>never</td>",
                     page), page[page.find("lobby") - 100:page.find("lobby") + 400]
    accounts.touch_devices(engine, {d.id: int(time.time()) - 12})
    seen = re.search(r"<td class='seen'>([^<]+)</td>", c.get("/admin").get_data(as_text=True)).group(1)
    assert re.fullmatch(r"1[2-4] s ago", seen), seen
    r = c.post("/admin/devices/revoke", data={"id": str(d.id), "csrf": csrf})
    assert "revoked" in r.get_data(as_text=True) and accounts.list_devices(engine)[0].revoked_at
    assert ("boss", "device.revoke") in [(a["actor"], a["action"]) for a in accounts.audit_tail(engine)]
    assert c.post("/admin/devices/revoke", data={"id": "x", "csrf": csrf}).status_code == 400


def test_admin004_signed_link_from_the_form_and_rotation_after_confirming(setup):
    url, engine, app = setup
    c = app.server.test_client()
    sign_in(c, engine, "boss", "admin")
    csrf = form_csrf(c.get("/admin").get_data(as_text=True))
    r = c.post("/admin/embeds/sign", data={"panel": "traffic.tti", "district": "north", "window": "1h",
                                           "theme": "dark", "expires": "7d", "csrf": csrf})
    link = once(r.get_data(as_text=True))
    path = link.removeprefix("http://localhost")
    viewer = app.server.test_client()  # no cookie
    assert viewer.get(path).status_code == 200
    bad = c.post("/admin/embeds/sign", data={"panel": "traffic.tti", "layers": "traffic", "expires": "7d",
                                             "csrf": csrf})
    assert bad.status_code == 400 and "layers is only for the whole map panel" in bad.get_data(as_text=True)
    ask = c.post("/admin/embeds/rotate", data={"csrf": csrf})
    assert ask.status_code == 200 and "Rotate the embed key?" in ask.get_data(as_text=True)
    assert viewer.get(path).status_code == 200  # asking rotated nothing
    done = c.post("/admin/embeds/rotate", data={"csrf": csrf, "confirm": "rotate"})
    assert "embed key rotated" in done.get_data(as_text=True)
    assert viewer.get(path).status_code == 403
    actions = [(a["actor"], a["action"]) for a in accounts.audit_tail(engine)]
    assert ("boss", "embed.sign") in actions and ("boss", "embed.rotate_key") in actions


def test_admin005_the_manager_links_to_it_for_admins_only(setup):
    url, engine, app = setup

    def header(c, csrf=None) -> str:
        output = next(k for k in app.callback_map if k.startswith("..page.children"))
        body = {"output": output, "outputs": [{"id": "page", "property": "children"},
                                              {"id": "rendered", "property": "data"}],
                "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
                "state": [{"id": "url", "property": "search", "value": ""},
                          {"id": "rendered", "property": "data", "value": None}],
                "changedPropIds": ["url.pathname"]}
        r = c.post(CALLBACK, json=body, headers={"X-CSRFToken": csrf} if csrf else {})
        assert r.status_code == 200, r.data[:200]
        return r.get_data(as_text=True)

    admin, viewer = app.server.test_client(), app.server.test_client()
    link = '"children":"Admin","className":"btn admin-link","href":"\\u002fadmin"'  # Dash escapes "/" in JSON
    assert link in header(admin, sign_in(admin, engine, "boss", "admin"))
    assert "admin-link" not in header(viewer, sign_in(viewer, engine, "ann", "viewer"))
