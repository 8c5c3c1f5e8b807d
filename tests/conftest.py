"""Shared test infrastructure: headless Chromium options and external services.

Service fixtures (``pg_url``, ``redis_url``, ``mqtt_host_port``) skip the test
when the service cannot be reached, unless ``PANORAMA_REQUIRE_SERVICES`` or
``CI`` is set, in which case they fail (``make test`` sets the former).
``bash scripts/ensure_test_env.sh`` installs and starts everything.
"""
from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest

CHROMIUM_BINARY = Path("/usr/bin/chromium")

CHROME_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--window-size=1600,1000",
)

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_MQTT = "127.0.0.1:1883"

_FALSE_VALUES = {"", "0", "false", "no", "off"}


# --------------------------------------------------------------------------- browser


def pytest_setup_options():
    """Chrome options for dash_duo (hook of dash.testing)."""
    from selenium.webdriver.chrome.options import Options

    class _Options(Options):
        # dash.testing sets goog:loggingPrefs={"browser": "SEVERE"} after this
        # hook; keep ours so tests can read every console message.
        def set_capability(self, name, value):
            if name == "goog:loggingPrefs" and name in self._caps:
                return
            super().set_capability(name, value)

    options = _Options()
    for arg in CHROME_ARGUMENTS:
        options.add_argument(arg)
    if CHROMIUM_BINARY.exists():
        options.binary_location = str(CHROMIUM_BINARY)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


# --------------------------------------------------------------------------- services


def services_required() -> bool:
    """True when unreachable services must fail the run instead of skipping."""
    return any(
        os.environ.get(var, "").strip().lower() not in _FALSE_VALUES
        for var in ("PANORAMA_REQUIRE_SERVICES", "CI")
    )


def require_service(name: str, ok: bool, why: str) -> None:
    """Do nothing when ``ok``; else fail (services required) or skip the test."""
    if ok:
        return
    message = f"{name} is not available: {why}"
    if services_required():
        pytest.fail(
            f"{message} (PANORAMA_REQUIRE_SERVICES/CI is set; "
            "run `bash scripts/ensure_test_env.sh`)",
            pytrace=False,
        )
    pytest.skip(message)


def _tcp_open(host: str, port: int, timeout: float = 2.0) -> str | None:
    """Return None when host:port accepts a TCP connection, else the error text."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc}"


@pytest.fixture(scope="session")
def pg_url():
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this session.

    The database (``panorama_t_<hex>``) is created on the server given by
    ``PANORAMA_TEST_PG`` and dropped at the end of the session.
    """
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql
    from sqlalchemy.engine import make_url

    base = make_url(os.environ.get("PANORAMA_TEST_PG") or DEFAULT_PG)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    shown = base.render_as_string(hide_password=True)

    def admin_connect():
        return psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)

    conn, error = None, ""
    try:
        conn = admin_connect()
    except psycopg.Error as exc:
        error = f"cannot connect to {shown}: {str(exc).strip()}"
    require_service("PostgreSQL", conn is not None, error)

    name = f"panorama_t_{secrets.token_hex(6)}"
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def redis_url():
    """URL of a Redis database reserved for tests (``PANORAMA_TEST_REDIS``).

    The database is flushed at the start and at the end of the session.
    """
    redis = pytest.importorskip("redis")

    url = os.environ.get("PANORAMA_TEST_REDIS") or DEFAULT_REDIS
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
        error = ""
    except redis.RedisError as exc:
        error = f"cannot reach {url}: {exc}"
    require_service("Redis", not error, error)

    client.flushdb()
    try:
        yield url
    finally:
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture(scope="session")
def mqtt_host_port() -> tuple[str, int]:
    """``(host, port)`` of the MQTT broker (``PANORAMA_TEST_MQTT`` = ``host[:port]``)."""
    spec = os.environ.get("PANORAMA_TEST_MQTT") or DEFAULT_MQTT
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "1883")
    host = host.strip("[]") or "127.0.0.1"
    error = _tcp_open(host, int(port))
    require_service("MQTT broker", error is None, error or "")
    return host, int(port)


# --- store fixtures ---
