"""Identities and sessions: `panorama user`, sign-in and out, session cookies, expiry, revocation,
the login rate limit, and the embedded default of `panorama run` (secret key, first administrator)."""
from __future__ import annotations

import getpass
import json
import logging
import os
import re
import stat
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import build_small_city
from dashboard import accounts
from dashboard.cli import app as cli
from dashboard.cli_access import FIRST_ADMIN, SECRET_FILE, announce_admin, embedded_secret, embedded_settings, first_admin
from dashboard.settings import PROJECT_ROOT, get_settings
from dashboard.store.schema import audit_log, create_schema, make_engine, sessions, users
from dashboard.web_access import CSRF_COOKIE, REMEMBER_S, SESSION_COOKIE

PASSWORD = "correct horse battery staple"
WRONG = "not-the-password-at-all"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def store(tmp_path):
    """The URL and engine of a SQLite store with the small city (districts north, south, east)."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    build_small_city(engine)
    yield url, engine
    engine.dispose()


def make_app(url: str, **settings):
    from dashboard.app import create_app

    settings.setdefault("login_rate_limit", "1000 per minute")
    return create_app(get_settings(database_url=url, anonymous="off", **settings))


def sign_in(client, name: str, password: str, **kw):
    """Post the sign-in form as a browser does (the CSRF token of the page it got)."""
    page = client.get("/login", **kw)
    csrf = CSRF_FIELD.search(page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf}, **kw)


def session_cookie(resp) -> str | None:
    """Return the Set-Cookie header of the session cookie in a response."""
    return next((h for h in resp.headers.getlist("Set-Cookie") if h.startswith(SESSION_COOKIE + "=")), None)


def audit_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def wait_until(cond, timeout: float):
    """Return the seconds until ``cond()`` held (polling), or fail after ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - t0


# --- hashes --------------------------------------------------------------------------------------

def test_users001_stored_hash_is_argon2id_and_never_the_password(store):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD, ["north"])
    new = accounts.reset_password(engine, "ann")
    with engine.connect() as conn:
        h = conn.execute(select(users.c.password_hash).where(users.c.name == "ann")).scalar()
    assert h.startswith("$argon2id$") and PASSWORD not in h and new not in h
    assert accounts.authenticate(engine, "ann", new) is not None
    assert accounts.authenticate(engine, "ann", PASSWORD) is None  # the old one no longer signs in
    logged = json.dumps(audit_rows(engine), default=str)
    assert PASSWORD not in logged and new not in logged and "user.reset_password" in logged


def test_users002_lifecycle_on_both_engines(engine):
    """Add, sign in, session, change role, disable, enable, reset: on SQLite and PostgreSQL."""
    build_small_city(engine)
    user, pw = accounts.add_user(engine, "Bea", "operator", districts=["south"], actor="t")
    assert (user.role, user.districts, user.disabled) == ("operator", ("south",), False)
    assert accounts.authenticate(engine, "bea", pw).name == "Bea"  # names are case-insensitive
    token = accounts.start_session(engine, user, 1)
    with engine.connect() as conn:
        assert accounts.session_user(conn, token).districts == ("south",)
    user = accounts.set_role(engine, "Bea", "viewer", all_districts=True, actor="t")
    assert (user.role, user.districts) == ("viewer", None)
    with engine.connect() as conn:
        assert accounts.session_user(conn, token) is None  # a role change ends the sessions
    token = accounts.start_session(engine, user, 1)
    accounts.set_disabled(engine, "Bea", True, actor="t")
    with engine.connect() as conn:
        assert accounts.session_user(conn, token) is None
    assert accounts.authenticate(engine, "Bea", pw) is None
    accounts.set_disabled(engine, "Bea", False, actor="t")
    new = accounts.reset_password(engine, "Bea", actor="t")
    assert accounts.authenticate(engine, "Bea", new).last_login_at is not None
    with pytest.raises(accounts.AccountError, match="already exists"):
        accounts.add_user(engine, "bea", "viewer")
    actions = [r["action"] for r in audit_rows(engine)]
    assert actions == ["user.add", "login", "user.set_role", "user.disable", "login.failed", "user.enable",
                       "user.reset_password", "login"]


# --- the CLI -------------------------------------------------------------------------------------

def run_cli(url: str, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["user", *args], input=input,
                              env={"PANORAMA_DATABASE_URL": url, "COLUMNS": "200"})


def test_users003_cli_add_list_set_role_disable_enable_reset(store):
    url, engine = store
    r = run_cli(url, "add", "ann", "--role", "viewer", "--district", "north", "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output  # a given password is not echoed
    assert accounts.authenticate(engine, "ann", PASSWORD).districts == ("north",)
    r = run_cli(url, "add", "bob", "--role", "operator")
    assert r.exit_code == 0, r.output
    generated = r.stdout.strip()  # the generated password alone on stdout, printed once
    assert len(generated) >= accounts.MIN_PASSWORD and r.output.count(generated) == 1
    assert accounts.authenticate(engine, "bob", generated) is not None

    r = run_cli(url, "list")
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert r.stdout.split()[:5] == ["name", "role", "districts", "disabled", "last"]
    assert rows["ann"][:4] == ["ann", "viewer", "north", "no"] and rows["ann"][4] != "never"
    assert rows["bob"][:4] == ["bob", "operator", "all", "no"]

    assert run_cli(url, "set-role", "ann", "operator", "--district", "north", "--district", "south").exit_code == 0
    assert accounts.authenticate(engine, "ann", PASSWORD).districts == ("north", "south")
    assert run_cli(url, "set-role", "ann", "admin", "--all-districts").exit_code == 0
    u = accounts.authenticate(engine, "ann", PASSWORD)
    assert (u.role, u.districts) == ("admin", None)

    assert run_cli(url, "disable", "bob").exit_code == 0
    assert accounts.authenticate(engine, "bob", generated) is None
    assert "yes" in next(line for line in run_cli(url, "list").stdout.splitlines() if line.startswith("bob"))
    assert run_cli(url, "enable", "bob").exit_code == 0
    assert accounts.authenticate(engine, "bob", generated) is not None

    r = run_cli(url, "reset-password", "bob", "--password-stdin", input="another long password\n")
    assert r.exit_code == 0 and "another long password" not in r.output
    assert accounts.authenticate(engine, "bob", "another long password") is not None
    r = run_cli(url, "reset-password", "bob")
    assert accounts.authenticate(engine, "bob", r.stdout.strip()) is not None

    me = f"cli:{getpass.getuser()}"
    admin_rows = [r for r in audit_rows(engine) if r["action"].startswith("user.")]
    assert [r["action"] for r in admin_rows] == ["user.add", "user.add", "user.set_role", "user.set_role",
                                                 "user.disable", "user.enable", "user.reset_password",
                                                 "user.reset_password"]
    assert {r["actor"] for r in admin_rows} == {me}
    assert PASSWORD not in json.dumps(audit_rows(engine), default=str)


@pytest.mark.parametrize("args, message", [
    (["disable", "nobody"], "error: no user named 'nobody'"),
    (["add", "cy", "--role", "boss"], "error: unknown role 'boss': choose one of viewer, operator, admin"),
    (["set-role", "ann", "chief"], "error: unknown role 'chief': choose one of viewer, operator, admin"),
    (["add", "cy", "--role", "viewer", "--district", "atlantis"],
     "error: unknown district 'atlantis': choose from east, north, south"),
    (["set-role", "ann", "viewer", "--district", "north", "--all-districts"],
     "error: give --district or --all-districts, not both"),
    (["add", "ann", "--role", "viewer"], "error: a user named 'ann' already exists"),
    (["add", "bad name", "--role", "viewer"], "error: a user name is 1-64 letters"),
    (["reset-password", "ann", "--password-stdin"], "error: a password is 10 to 1024 characters"),
])
def test_users004_cli_errors_are_one_line_and_change_nothing(store, args, message):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    before = audit_rows(engine)
    r = run_cli(url, *args, input="short\n")
    assert r.exit_code == 1
    assert r.stdout == "" and r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert audit_rows(engine) == before
    assert accounts.authenticate(engine, "ann", PASSWORD) is not None


def test_users005_cli_store_unreachable_or_not_made_is_one_line(tmp_path):
    r = run_cli("postgresql+psycopg://nobody@127.0.0.1:1/none", "list")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("error: the store cannot be reached (") and r.stderr.count("\n") == 1, r.stderr
    r = run_cli(f"sqlite:///{tmp_path / 'empty.sqlite'}", "add", "ann", "--role", "viewer")
    assert r.exit_code == 1 and r.stdout == ""
    assert "run `panorama init` or `panorama db upgrade`" in r.stderr and r.stderr.count("\n") == 1, r.stderr


# --- sign-in, sessions, sign-out -----------------------------------------------------------------

def test_users006_login_success_and_failure_are_audited_without_the_password(store):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD, ["north"])
    accounts.add_user(engine, "off", "viewer", PASSWORD)
    accounts.set_disabled(engine, "off", True)
    client = make_app(url).server.test_client()
    assert client.get("/api/kpis").status_code == 401
    r = sign_in(client, "ann", WRONG)
    assert r.status_code == 401 and "Wrong name or password" in r.get_data(as_text=True)
    assert WRONG not in r.get_data(as_text=True)
    assert sign_in(client, "nobody", WRONG).status_code == 401
    assert sign_in(client, "off", PASSWORD).status_code == 401
    r = sign_in(client, "ann", PASSWORD)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert client.get("/api/kpis").get_json()["district"] == "north"
    rows = [r for r in audit_rows(engine) if r["action"].startswith("login")]
    assert [(r["action"], r["actor"], (r["detail"] or {}).get("reason"), r["ip"]) for r in rows] == [
        ("login.failed", "ann", "wrong password", "127.0.0.1"),
        ("login.failed", "nobody", "unknown user", "127.0.0.1"),
        ("login.failed", "off", "disabled", "127.0.0.1"),
        ("login", "ann", None, "127.0.0.1")]
    logged = json.dumps(audit_rows(engine), default=str)
    assert PASSWORD not in logged and WRONG not in logged


def test_users007_sign_in_ends_a_session_known_before_it(store):
    """Session fixation: whatever session cookie the browser had before, sign-in makes a new one and
    ends the old one in the store."""
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    accounts.add_user(engine, "eve", "viewer", PASSWORD)
    client = make_app(url).server.test_client()
    planted = "a-session-id-chosen-by-an-attacker"
    client.set_cookie(SESSION_COOKIE, planted)
    assert sign_in(client, "ann", PASSWORD).status_code == 303
    first = client.get_cookie(SESSION_COOKIE).value
    assert first != planted
    assert sign_in(client, "eve", PASSWORD).status_code == 303  # the same browser signs in again
    second = client.get_cookie(SESSION_COOKIE).value
    assert second not in (first, planted)
    with engine.connect() as conn:
        assert accounts.session_user(conn, first) is None  # ended, not merely replaced in the browser
        assert accounts.session_user(conn, second).name == "eve"
    other = make_app(url).server.test_client()
    other.set_cookie(SESSION_COOKIE, first)
    assert other.get("/api/kpis").status_code == 401


@pytest.mark.parametrize("base, hops, headers, secure", [
    ("http://localhost", 0, {}, False),
    ("https://localhost", 0, {}, True),
    ("http://localhost", 1, {"X-Forwarded-Proto": "https"}, True),  # behind one trusted proxy
    ("http://localhost", 0, {"X-Forwarded-Proto": "https"}, False),  # a client's own header counts for nothing
])
def test_users008_session_cookie_is_httponly_lax_and_secure_over_https(store, base, hops, headers, secure):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url, proxy_hops=hops, session_hours=2).server.test_client()
    r = sign_in(client, "ann", PASSWORD, base_url=base, headers=headers)
    assert r.status_code == 303
    cookie = session_cookie(r)
    parts = {p.strip().split("=")[0].lower(): p.strip() for p in cookie.split(";")}
    assert "httponly" in parts and parts["samesite"] == "SameSite=Lax" and parts["max-age"] == "Max-Age=7200"
    assert ("secure" in parts) is secure
    csrf = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith(CSRF_COOKIE + "="))
    assert ("Secure" in csrf) is secure and "HttpOnly" not in csrf  # Dash's renderer reads this one


def test_users009_proxy_hops_give_the_client_address_to_the_audit_log(store):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url, proxy_hops=1).server.test_client()
    sign_in(client, "ann", WRONG, headers={"X-Forwarded-For": "203.0.113.9"})
    assert audit_rows(engine)[-1]["ip"] == "203.0.113.9"


def test_users010_an_expired_session_goes_back_to_sign_in(store):
    """A session lasts PANORAMA_SESSION_HOURS: past its end the same cookie signs in nobody, although
    the process remembered the session a moment ago (it never remembers one past its expiry)."""
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url, session_hours=3 / 3600).server.test_client()  # a three-second session
    sign_in(client, "ann", PASSWORD)
    assert client.get("/api/kpis").status_code == 200
    with engine.connect() as conn:
        expires = conn.execute(select(sessions.c.expires_at)).scalar()
    wait_until(lambda: client.get("/api/kpis").status_code == 401, 10)
    late = time.time() - expires
    assert late >= -0.01, "signed out before the session's end"
    assert late <= REMEMBER_S + 1, f"still signed in {late:.1f} s after the session's end"
    r = client.get("/?window=7d")
    assert r.status_code == 303 and r.headers["Location"] == "/login?next=/%3Fwindow%3D7d"


def test_users011_logout_ends_the_session_in_the_store(store):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url).server.test_client()
    sign_in(client, "ann", PASSWORD)
    token = client.get_cookie(SESSION_COOKIE).value
    assert client.post("/logout").status_code == 403  # no CSRF token: a forged sign-out does nothing
    assert client.get("/api/kpis").status_code == 200
    r = client.post("/logout", data={"csrf": client.get_cookie(CSRF_COOKIE).value})
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert client.get_cookie(SESSION_COOKIE) is None
    with engine.connect() as conn:
        assert conn.execute(select(sessions.c.ended_at)).scalar() is not None
    replay = make_app(url).server.test_client()
    replay.set_cookie(SESSION_COOKIE, token)  # the old cookie, kept by someone
    assert replay.get("/api/kpis").status_code == 401
    assert audit_rows(engine)[-1]["action"] == "logout"


@pytest.mark.parametrize("change", [
    lambda e: accounts.set_disabled(e, "ann", True, actor="t"),
    lambda e: accounts.reset_password(e, "ann", actor="t"),
], ids=["disable", "reset-password"])
def test_users012_disabling_or_a_new_password_stops_a_live_session_within_a_second(store, change):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url).server.test_client()
    sign_in(client, "ann", PASSWORD)
    assert client.get("/api/kpis").status_code == 200  # the gate now remembers this session
    change(engine)  # from another process (the CLI): this app is not told
    took = wait_until(lambda: client.get("/api/kpis").status_code == 401, REMEMBER_S + 1)
    assert took <= REMEMBER_S + 0.5


def test_users013_login_rate_limit_per_address_and_per_name(store):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url, login_rate_limit="5 per minute").server.test_client()
    codes = [sign_in(client, "ann", WRONG).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    r = sign_in(client, "someone-else", WRONG)
    assert r.status_code == 429  # the address is spent
    page = r.get_data(as_text=True)  # the sign-in page again, saying why and how long, with its form
    assert "Too many sign-in attempts (5 per 1 minute)" in page and 'name="password"' in page
    assert int(r.headers["Retry-After"]) <= 60
    api = make_app(url, api_rate_limit="2 per minute").server.test_client()
    assert sign_in(api, "ann", PASSWORD, environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 303
    codes = [api.get("/api/kpis").status_code for _ in range(3)]  # per signed-in session
    assert codes == [200, 200, 429] and "too many requests" in api.get("/api/kpis").get_json()["error"]

    client = make_app(url, login_rate_limit="5 per minute").server.test_client()
    codes = [sign_in(client, "ann", WRONG, environ_base={"REMOTE_ADDR": f"198.51.100.{i}"}).status_code
             for i in range(6)]
    assert codes == [401] * 5 + [429]  # one name from many addresses
    r = sign_in(client, "ann", PASSWORD, environ_base={"REMOTE_ADDR": "198.51.100.99"})
    assert r.status_code == 429  # even the right password, until the minute is over
    assert sign_in(client, "other", WRONG, environ_base={"REMOTE_ADDR": "198.51.100.99"}).status_code == 401


# --- the screens ---------------------------------------------------------------------------------

def _layout(client, page: str = "/") -> str:
    r = client.get("/_dash-layout", headers={"Referer": "http://localhost" + page})
    assert r.status_code == 200
    return r.get_data(as_text=True)


def test_users014_screens_show_who_is_signed_in_and_sign_out_works(store):
    url, engine = store
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    client = make_app(url).server.test_client()
    sign_in(client, "ann", PASSWORD)
    layout = json.loads(_layout(client))
    text = json.dumps(layout)
    assert '"ann"' in text and "Sign out" in text and "Sign in" not in text
    button = re.search(r'\{[^{}]*"children": "Sign out"[^{}]*\}', text).group(0)
    token = json.loads(button)["value"]
    assert json.loads(button)["name"] == "csrf" and token == client.get_cookie(CSRF_COOKIE).value
    assert '"action": "/logout"' in text and '"method": "post"' in text
    wall = _layout(client, "/wall")
    assert '"wall-user"' in wall and "Sign out" not in wall
    assert client.post("/logout", data={"csrf": token}).status_code == 303  # the form's own field signs out
    assert client.get("/api/kpis").status_code == 401


def test_users015_the_anonymous_viewer_gets_a_sign_in_link(store):
    from dashboard.app import create_app

    url, _ = store
    client = create_app(get_settings(database_url=url, anonymous="viewer")).server.test_client()
    text = json.dumps(json.loads(_layout(client, "/?window=7d")))
    assert '"href": "/login?next=/%3Fwindow%3D7d"' in text and "Sign out" not in text
    assert "wall-user" not in _layout(client, "/wall")


# --- the embedded default and the secret key -----------------------------------------------------

def test_users016_run_keeps_a_private_secret_key_and_reuses_it(tmp_path):
    key = embedded_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert len(key) >= 60 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert embedded_secret(tmp_path) == key  # the next run: the same key, sessions survive a restart
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no temporary file left
    s = embedded_settings(environ={}, data_dir=tmp_path)
    assert (s.anonymous, s.secret_key.get_secret_value()) == ("viewer", key)
    s = embedded_settings(environ={"PANORAMA_ANONYMOUS": "off", "PANORAMA_SECRET_KEY": "k" * 40},
                          data_dir=tmp_path / "other", anonymous="off", secret_key="k" * 40)
    assert s.anonymous == "off" and not (tmp_path / "other").exists()  # the environment wins
    path.write_text("short\n")
    with pytest.raises(ValueError, match="delete it to make a new one"):
        embedded_secret(tmp_path)


def test_users017_first_run_makes_the_admin_once_and_shows_its_password_once(store, capsys):
    _, engine = store
    password = first_admin(engine)
    assert password and accounts.authenticate(engine, FIRST_ADMIN, password).role == "admin"
    announce_admin(password)
    shown = capsys.readouterr()
    assert shown.err.count(password) == 1 and shown.out == ""
    assert f"panorama user reset-password {FIRST_ADMIN}" in shown.err
    assert first_admin(engine) is None  # later runs: nothing made, nothing shown
    accounts.set_role(engine, FIRST_ADMIN, "viewer")
    accounts.add_user(engine, "root", "admin")
    assert first_admin(engine) is None  # another administrator exists
    with engine.connect() as conn:
        assert conn.execute(select(users.c.name).where(users.c.role == "admin")).scalars().all() == ["root"]


def test_users018_serve_without_a_secret_key_is_one_line_exit_2(tmp_path):
    env = {"PANORAMA_DATA_DIR": str(tmp_path), "PANORAMA_DATABASE_URL": "", "PANORAMA_SECRET_KEY": "",
           "COLUMNS": "400"}
    for workers in ("1", "2"):
        r = CliRunner().invoke(cli, ["serve", "--workers", workers], env=env)
        assert r.exit_code == 2 and r.stdout == ""
        assert r.stderr.startswith("error: PANORAMA_SECRET_KEY is not set: make one with") and \
            r.stderr.count("\n") == 1, r.stderr
    r = CliRunner().invoke(cli, ["serve"], env={**env, "PANORAMA_SECRET_KEY": "too-short-a-secret"})
    assert r.exit_code == 2 and "has 18 characters, fewer than 32" in r.stderr
    assert "too-short-a-secret" not in r.output  # never the key itself


def test_users019_gunicorn_entry_point_without_a_secret_key_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "PANORAMA_SECRET_KEY": "", "PANORAMA_DATA_DIR": str(tmp_path), "PANORAMA_DATABASE_URL": "",
           "PYTHONPATH": str(PROJECT_ROOT)}
    r = subprocess.run([sys.executable, "-c", "import app"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: PANORAMA_SECRET_KEY is not set") and r.stderr.count("\n") == 1, r.stderr


def test_users020_no_password_or_secret_key_in_logs(store, caplog):
    url, engine = store
    secret = "a-secret-key-that-must-never-be-logged-0123456789"
    caplog.set_level(logging.DEBUG)
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    app = make_app(url, secret_key=secret)
    client = app.server.test_client()
    sign_in(client, "ann", WRONG)
    sign_in(client, "ann", PASSWORD)
    client.get("/api/kpis")
    r = run_cli(url, "reset-password", "ann", "--password-stdin", input="yet another password\n")
    assert r.exit_code == 0
    settings = get_settings(secret_key=secret)
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    text = caplog.text
    assert "sign-in failed for 'ann'" in text  # the failed sign-in is logged: the check below looked at it
    for s in (PASSWORD, WRONG, "yet another password", secret):
        assert s not in text
