"""CSRF: every state-changing request with an ambient credential (a session or a wall's device cookie)
carries the token of its ``_csrf_token`` cookie, or is refused 403 and changes nothing."""
from __future__ import annotations

import pytest
from _signed_in import CALLBACK, app_for, form_csrf, legend_body, sign_in, small_store, wall_refresh

from dashboard import accounts


@pytest.fixture
def setup(tmp_path):
    url, engine = small_store(tmp_path)
    return url, engine, app_for(url, tmp_path)


def test_csrf001_a_signed_in_users_callback_needs_the_token(setup):
    url, engine, app = setup
    c = app.server.test_client()
    csrf = sign_in(c, engine, "ann", "viewer")
    assert c.post(CALLBACK, json=legend_body(app)).status_code == 403
    assert c.post(CALLBACK, json=legend_body(app), headers={"X-CSRFToken": "0" * 40}).status_code == 403
    other = app.server.test_client()
    other_csrf = sign_in(other, engine, "bob", "viewer")  # another session's token is a wrong one
    assert c.post(CALLBACK, json=legend_body(app), headers={"X-CSRFToken": other_csrf}).status_code == 403
    r = c.post(CALLBACK, json=legend_body(app), headers={"X-CSRFToken": csrf})
    assert r.status_code == 200, r.data[:200]


def test_csrf002_a_wall_devices_callback_needs_the_token(setup):
    url, engine, app = setup
    _, token = accounts.add_device(engine, "wall", "/wall")
    c = app.server.test_client()
    assert c.get(f"/device/{token}").status_code == 303
    csrf = c.get_cookie("_csrf_token").value
    assert c.post(CALLBACK, json=wall_refresh(app)).status_code == 403
    assert c.post(CALLBACK, json=wall_refresh(app), headers={"X-CSRFToken": csrf[::-1]}).status_code == 403
    assert c.post(CALLBACK, json=wall_refresh(app), headers={"X-CSRFToken": csrf}).status_code == 200


def test_csrf003_logout_without_the_field_is_403_and_the_session_lives(setup):
    url, engine, app = setup
    c = app.server.test_client()
    csrf = sign_in(c, engine, "ann", "admin")
    assert c.post("/logout").status_code == 403
    assert c.post("/logout", data={"csrf": "nope"}).status_code == 403
    assert c.get("/admin").status_code == 200  # still signed in
    r = c.post("/logout", data={"csrf": csrf})
    assert r.status_code == 303 and c.get("/admin").status_code in (303, 401)


ADMIN_FORMS = {
    "users/add": {"name": "eve", "role": "admin"},
    "users/role": {"name": "bob", "role": "admin"},
    "users/disable": {"name": "bob"},
    "users/enable": {"name": "carl"},
    "users/reset": {"name": "bob"},
    "devices/add": {"name": "w2", "url": "/wall"},
    "devices/revoke": {"id": "1"},
    "embeds/sign": {"panel": "traffic.tti", "expires": "30d"},
    "embeds/rotate": {"confirm": "rotate"},
}


def _state(engine) -> tuple:
    """Everything an admin form could change, and the audit log's length."""
    from dashboard.store.schema import meta, users as users_table

    users = [(u.name, u.role, u.districts, u.disabled) for u in accounts.list_users(engine)]
    with engine.connect() as conn:
        hashes = sorted(r.password_hash for r in conn.execute(users_table.select()))
        key = [tuple(r) for r in conn.execute(meta.select().where(meta.c.key == accounts.EMBED_KEY))]
    devices = [(d.id, d.name, d.revoked_at) for d in accounts.list_devices(engine)]
    return users, hashes, key, devices, len(accounts.audit_tail(engine, 10_000))


@pytest.mark.parametrize("form", sorted(ADMIN_FORMS))
def test_csrf004_every_admin_form_without_the_field_is_403_and_changes_nothing(setup, form):
    url, engine, app = setup
    c = app.server.test_client()
    csrf = sign_in(c, engine, "ann", "admin")
    accounts.add_user(engine, "bob", "viewer")
    accounts.add_user(engine, "carl", "viewer")
    accounts.set_disabled(engine, "carl", True)
    accounts.add_device(engine, "w1", "/wall")
    accounts.ensure_embed_key(engine)
    before = _state(engine)
    for bad in ({}, {"csrf": ""}, {"csrf": csrf[:-1] + ("1" if csrf.endswith("0") else "0")}):
        r = c.post(f"/admin/{form}", data={**ADMIN_FORMS[form], **bad})
        assert r.status_code == 403, (form, bad, r.status_code)
        assert b"eve" not in r.data and _state(engine) == before, form
    ok = c.post(f"/admin/{form}", data={**ADMIN_FORMS[form], "csrf": csrf})
    assert ok.status_code == 200, (form, ok.data[:300])
    after = _state(engine)
    assert after != before, f"{form} with its csrf field changed nothing"
    assert accounts.audit_tail(engine, 1)[0]["actor"] == "ann"


def test_csrf005_the_login_form_without_the_field_is_403(setup):
    url, engine, app = setup
    _, password = accounts.add_user(engine, "ann", "viewer")
    c = app.server.test_client()
    token = form_csrf(c.get("/login").get_data(as_text=True))
    r = c.post("/login", data={"name": "ann", "password": password})
    assert r.status_code == 403 and not c.get_cookie("panorama_session")
    r = c.post("/login", data={"name": "ann", "password": password, "csrf": "x" * 40})
    assert r.status_code == 403 and not c.get_cookie("panorama_session")
    fresh = app.server.test_client()  # a token without the nonce cookie it was made for
    assert fresh.post("/login", data={"name": "ann", "password": password, "csrf": token}).status_code == 403
    r = c.post("/login", data={"name": "ann", "password": password, "csrf": token})
    assert r.status_code == 303 and c.get_cookie("panorama_session")
