"""Wall devices: the CLI, claiming a token, a wall locked to its URL and districts, when it last
refreshed (also across gunicorn workers), and what a revoked wall is answered."""
from __future__ import annotations

import getpass
import io
import re
import time

import pytest
from _signed_in import CALLBACK, app_for, small_store, wall_refresh
from rich.console import Console
from typer.testing import CliRunner

from dashboard import accounts, cli_devices, web_access
from dashboard.cli import app as cli
from dashboard.store.schema import audit_log, devices


@pytest.fixture
def store(tmp_path, monkeypatch):
    url, engine = small_store(tmp_path)
    monkeypatch.setenv("PANORAMA_DATABASE_URL", url)
    return url, engine


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_device001_cli_adds_lists_and_revokes_with_one_line_errors_and_audit(store, monkeypatch):
    url, engine = store
    r = run("device", "add", "control room", "--url", "/wall?rotate=30&district=north",
            "--base-url", "https://panorama.city.gov/")
    assert r.exit_code == 0, r.output
    claim = re.search(r"https://panorama\.city\.gov/device/(\S+)", r.output)
    assert claim, r.output
    token = claim.group(1)
    with engine.connect() as conn:
        row = conn.execute(devices.select()).one()
        assert row.token_hash == accounts.digest(token) and token not in str(tuple(row))  # only its digest
        assert row.path == "/wall?district=north&rotate=30" and list(row.districts) == ["north"]
    buf = io.StringIO()
    monkeypatch.setattr(cli_devices, "out", Console(width=200, file=buf))  # a wide terminal: one line a row
    listed = run("device", "list")
    assert listed.exit_code == 0
    row_line = next(line for line in buf.getvalue().splitlines() if "control room" in line)
    assert re.search(r"\b1\s+control room\s+/wall\?district=north&rotate=30\s+north\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+"
                     r"never\s*$", row_line), row_line
    assert token not in buf.getvalue()  # shown once, at add
    for bad, why in ((["device", "add", "x", "--url", "/"], "a device shows a wall"),
                     (["device", "add", "x", "--url", "/wall?district=mars"], "unknown district 'mars'"),
                     (["device", "add", "x", "--url", "/wall?theme=dark"], "unknown wall parameter 'theme'"),
                     (["device", "add", "x", "--base-url", "ftp://x"], "the base URL is the app's origin"),
                     (["device", "revoke", "99"], "no device 99")):
        r = run(*bad)
        assert r.exit_code == 1 and why in r.output and len(r.output.strip().splitlines()) == 1, (bad, r.output)
    r = run("device", "revoke", str(row.id))
    assert r.exit_code == 0 and "revoked" in r.output
    assert accounts.list_devices(engine)[0].revoked_at is not None
    with engine.connect() as conn:
        actions = {(a.action, a.actor) for a in conn.execute(audit_log.select())}
    assert {("device.add", f"cli:{getpass.getuser()}"), ("device.revoke", f"cli:{getpass.getuser()}")} <= actions


def test_device002_a_claimed_wall_shows_its_own_wall_url_only(store, tmp_path):
    url, engine = store
    d, token = accounts.add_device(engine, "hall wall", "/wall?district=north&rotate=30")
    app = app_for(url, tmp_path)
    c = app.server.test_client()
    r = c.get(f"/device/{token}")
    assert r.status_code == 303 and r.headers["Location"] == "/wall?district=north&rotate=30"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert c.get("/wall?district=north&rotate=30").status_code == 200
    assert c.get("/wall?rotate=30&district=north").status_code == 200  # the same wall, parameters in another order
    for other in ("/wall?district=south&rotate=30", "/wall", "/wall?district=north&rotate=5", "/",
                  "/embed/traffic.tti", "/api/kpis", "/api/panels/map.json", "/admin"):
        assert c.get(other).status_code == 403, other
    csrf = c.get_cookie("_csrf_token").value
    ok = c.post(CALLBACK, json=wall_refresh(app, "north"), headers={"X-CSRFToken": csrf})
    assert ok.status_code == 200, ok.data[:300]
    other = c.post(CALLBACK, json=wall_refresh(app, "south"), headers={"X-CSRFToken": csrf})
    assert other.status_code == 403 and b"south" in other.data and b"north" not in other.data
    assert c.get("/device/not-a-token").status_code == 403


def test_device003_a_revoked_wall_is_told_so_within_the_gates_memory(store, tmp_path):
    url, engine = store
    d, token = accounts.add_device(engine, "wall", "/wall")
    app = app_for(url, tmp_path, anonymous="viewer")  # revoked: not the anonymous viewer either
    c = app.server.test_client()
    c.get(f"/device/{token}")
    csrf = c.get_cookie("_csrf_token").value
    assert c.post(CALLBACK, json=wall_refresh(app), headers={"X-CSRFToken": csrf}).status_code == 200
    accounts.revoke_device(engine, d.id)
    deadline = time.monotonic() + web_access.REMEMBER_S + 2
    while True:  # the gate may remember the device for REMEMBER_S
        r = c.post(CALLBACK, json=wall_refresh(app), headers={"X-CSRFToken": csrf})
        if r.status_code != 200 or time.monotonic() > deadline:
            break
    assert r.status_code == 403 and r.get_json()["error"] == web_access.DEVICE_REVOKED
    page = c.get("/wall")
    assert page.status_code == 403
    text = page.get_data(as_text=True)
    assert "This screen&#x27;s access was revoked" in text or "This screen's access was revoked" in text
    assert "wall-revoked" in text and "/assets/wall.css" in text
    assert c.get(f"/device/{token}").status_code == 403  # the claim URL is dead too
    # a browser without the device cookie is the anonymous viewer again
    fresh = app.server.test_client()
    assert fresh.get("/wall").status_code == 200


def test_device004_last_refresh_is_written_at_most_every_15_s_and_never_moves_back(store, tmp_path, monkeypatch):
    url, engine = store
    d, token = accounts.add_device(engine, "wall", "/wall")
    app = app_for(url, tmp_path)
    gate = app.server.extensions["panorama_access"]
    c = app.server.test_client()
    c.set_cookie("panorama_device", token)
    assert web_access.SEEN_EVERY_S == 15.0
    gate._seen_flushed = time.monotonic()
    for _ in range(3):
        assert c.get("/wall").status_code == 200
    assert accounts.list_devices(engine)[0].last_seen_at is None  # noted, not yet written
    gate._seen_flushed -= web_access.SEEN_EVERY_S  # 15 s later
    before = int(time.time())
    assert c.get("/wall").status_code == 200
    seen = accounts.list_devices(engine)[0].last_seen_at
    assert seen is not None and seen >= before
    # another gunicorn worker flushes an older note after this one: the time stays
    accounts.touch_devices(engine, {d.id: seen - 40})
    assert accounts.list_devices(engine)[0].last_seen_at == seen
    accounts.touch_devices(engine, {d.id: seen + 5})
    assert accounts.list_devices(engine)[0].last_seen_at == seen + 5
    assert accounts.seen_text(seen + 5, seen + 17) == "12 s ago" and accounts.seen_text(None) == "never"


def test_device005_two_workers_gates_each_write_what_they_saw(store, tmp_path):
    """Two apps on one store stand for two gunicorn workers: each remembers and writes on its own."""
    url, engine = store
    d, token = accounts.add_device(engine, "wall", "/wall")
    apps = [app_for(url, tmp_path), app_for(url, tmp_path)]
    clients = []
    for a in apps:
        c = a.server.test_client()
        c.set_cookie("panorama_device", token)
        clients.append(c)
        a.server.extensions["panorama_access"]._seen_flushed = time.monotonic() - web_access.SEEN_EVERY_S
    assert clients[0].get("/wall").status_code == 200
    first = accounts.list_devices(engine)[0].last_seen_at
    assert first is not None
    accounts.revoke_device(engine, d.id)
    for a in apps:
        a.server.extensions["panorama_access"].forget()
    assert [c.get("/wall").status_code for c in clients] == [403, 403]  # revocation reaches every worker


def test_device006_walls_read_their_credential_once_and_still_see_every_revocation(store, tmp_path, monkeypatch):
    """A thousand walls each refreshing every 5 s must not each read their device or session from the
    store (that cost seconds at p50 on PostgreSQL): a worker reads a credential once, then only the
    access revision (at most every REMEMBER_S, whatever the number of walls). Each action that revokes
    or narrows a credential, done by another worker, changes the revision: seen at the next read."""
    url, engine = store
    accounts.add_user(engine, "ann", "operator", "a long password")
    d, token = accounts.add_device(engine, "wall", "/wall")
    app = app_for(url, tmp_path)
    gate = app.server.extensions["panorama_access"]
    reads = {"device": 0, "session": 0, "revision": 0}
    for name, kind in (("device_of", "device"), ("session_of", "session"), ("access_revision", "revision")):
        real = getattr(accounts, name)
        monkeypatch.setattr(accounts, name, lambda *a, _r=real, _k=kind, **k: reads.__setitem__(_k, reads[_k] + 1)
                            or _r(*a, **k))
    wall = app.server.test_client()
    wall.set_cookie("panorama_device", token)
    user = app.server.test_client()
    user.set_cookie("panorama_session", accounts.start_session(engine, accounts.list_users(engine)[0], 1))

    def due():  # REMEMBER_S later: the worker reads the revision again
        gate._revision_read -= web_access.REMEMBER_S

    for _ in range(20):  # twenty refreshes, the revision read again before each
        due()
        assert wall.get("/wall").status_code == 200 and user.get("/api/kpis").status_code == 200
    assert reads == {"device": 1, "session": 1, "revision": 20}, reads
    # another worker (no forget() here) ends the session, then revokes the device
    accounts.set_role(engine, "ann", "viewer")
    assert user.get("/api/kpis").status_code == 200, "not yet read: within REMEMBER_S"
    due()
    assert user.get("/api/kpis").status_code == 401 and wall.get("/wall").status_code == 200
    accounts.revoke_device(engine, d.id)
    due()
    assert wall.get("/wall").status_code == 403
