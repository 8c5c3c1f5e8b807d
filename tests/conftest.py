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

# Many apps live in one test process: no background refreshers unless a test asks for one.
os.environ.setdefault("PANORAMA_BACKGROUND_REFRESH", "0")
# ... and no alert evaluator ticking by itself (tests drive the evaluator, or set this themselves)
os.environ.setdefault("PANORAMA_ALERT_TICK_SECONDS", "0")
# The screens' tests read as the anonymous viewer of the embedded default; access tests set their own.
os.environ.setdefault("PANORAMA_ANONYMOUS", "viewer")
os.environ.setdefault("PANORAMA_SECRET_KEY", "test-secret-key-of-at-least-32-characters")
os.environ.setdefault("PANORAMA_API_RATE_LIMIT", "100000 per minute")

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


def _worker_index() -> int:
    """Return this pytest-xdist worker's number (gw0 -> 0), 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


WORKER = _worker_index()
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# each xdist worker flushes a Redis database of its own (14 belongs to bench_viewers.py)
DEFAULT_REDIS = f"redis://127.0.0.1:6379/{(15, 13, 12, 11, 10, 9, 8, 7)[WORKER % 8]}"
DEFAULT_MQTT = "127.0.0.1:1883"


def _own_dash_ports() -> None:
    """dash.testing numbers its servers' ports from 58050 in every process: xdist workers would clash."""
    from dash.testing.application_runners import BaseDashRunner

    BaseDashRunner._next_port = 58050 + 400 * WORKER


_own_dash_ports()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``-n N --dist loadgroup`` (``make test``): every browser test on one worker, one at a time
    (two Chromiums and their servers on two cores made both slow and timing checks flaky); every other
    test file whole on one worker (its module fixtures built once)."""
    if config.getoption("dist", None) != "loadgroup":
        return
    for item in items:
        path = item.nodeid.split("::")[0]
        browser = "dash_duo" in getattr(item, "fixturenames", ()) or item.get_closest_marker("browser") is not None \
            or "browser" in path
        item.add_marker(pytest.mark.xdist_group("browser" if browser else path))

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

# Fixtures of the SQL store tests (test_store, test_ingest, test_readmodel, test_kpis,
# test_cli_ingest): an empty store on either engine, a tiny hand-made city, Beijing installed.

#: The repository root (tests run from anywhere).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Service-request categories of the small city: id -> SLA hours.
SMALL_CITY_SLA = {"pothole": 48.0, "noise": 4.0}


def _square(lon: float, lat: float, size: float = 0.1) -> str:
    """Return a GeoJSON polygon: a square with its south-west corner at (lon, lat)."""
    import json

    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def _line(lon: float, lat: float) -> str:
    import json

    return json.dumps({"type": "LineString", "coordinates": [[lon, lat], [lon + 0.01, lat]]})


def _point(lon: float, lat: float) -> str:
    import json

    return json.dumps({"type": "Point", "coordinates": [lon, lat]})


@pytest.fixture(scope="session")
def _pg_store_engine(pg_url):
    """One engine on the session's throwaway PostgreSQL database (commits need not reach disk)."""
    from dashboard.store.schema import make_engine

    eng = make_engine(pg_url, pool_size=2, connect_args={"options": "-c synchronous_commit=off"})
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """An empty store (schema created) on SQLite (temp file) or PostgreSQL (schema rebuilt per test)."""
    from dashboard.store.schema import create_schema, drop_schema, make_engine

    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
        create_schema(eng)
        try:
            yield eng
        finally:
            eng.dispose()
    else:
        eng = request.getfixturevalue("_pg_store_engine")
        drop_schema(eng)
        create_schema(eng)
        yield eng


def build_small_city(engine) -> dict:
    """A tiny city written straight into the tables.

    Districts ``north`` (pop 1,000), ``south`` (3,000) and ``east`` (500, no assets);
    roads ``r1`` (north, 60 km/h free flow), ``r2`` (north, 80), ``r3`` (south, 50);
    stations ``s1`` (north) and ``s2`` (south); substations ``p1`` (north, 100 MW) and
    ``p2`` (south, 200 MW); categories ``pothole`` (48 h SLA) and ``noise`` (4 h).
    Returns a dict with ``districts`` (id -> population), ``assets`` (id -> dict of kind,
    district, attributes, pk), ``categories`` (id -> SLA hours) and the ``engine``.
    """
    from sqlalchemy import insert, select

    from dashboard.store.schema import assets, districts, meta, service_categories

    dists = {"north": 1000, "south": 3000, "east": 500}
    corners = {"north": (116.0, 40.1), "south": (116.0, 39.9), "east": (116.2, 40.0)}
    assets_spec = {
        "r1": ("road_segment", "north", {"free_flow_kmh": 60.0, "length_m": 500, "lanes": 2}),
        "r2": ("road_segment", "north", {"free_flow_kmh": 80.0, "length_m": 900, "lanes": 3}),
        "r3": ("road_segment", "south", {"free_flow_kmh": 50.0, "length_m": 300, "lanes": 1}),
        "s1": ("aq_station", "north", {"category": "urban"}),
        "s2": ("aq_station", "south", {"category": "urban"}),
        "p1": ("substation", "north", {"capacity_mw": 100.0}),
        "p2": ("substation", "south", {"capacity_mw": 200.0}),
    }
    with engine.begin() as conn:
        conn.execute(insert(districts), [
            {"id": d, "name": d.title(), "population": pop, "area_km2": 100.0,
             "label_lon": corners[d][0] + 0.05, "label_lat": corners[d][1] + 0.05,
             "geometry": _square(*corners[d])}
            for d, pop in dists.items()])
        rows = []
        for i, (aid, (kind, dist, attrs)) in enumerate(assets_spec.items()):
            lon, lat = corners[dist][0] + 0.02 + 0.01 * i, corners[dist][1] + 0.05
            geom = _line(lon, lat) if kind == "road_segment" else _point(lon, lat)
            rows.append({"id": aid, "kind": kind, "district_id": dist, "name": aid.upper(),
                         "lon": lon, "lat": lat, "geometry": geom, "attributes": attrs})
        conn.execute(insert(assets), rows)
        conn.execute(insert(service_categories), [
            {"id": c, "name": c.title(), "sla_hours": h} for c, h in SMALL_CITY_SLA.items()])
        conn.execute(insert(meta), [{"key": "city", "value": "Small"}, {"key": "timezone", "value": "UTC"}])
        pks = {r.id: r.pk for r in conn.execute(select(assets.c.id, assets.c.pk))}
    return {
        "engine": engine,
        "districts": dists,
        "assets": {a: {"kind": k, "district": d, "attributes": at, "pk": pks[a]}
                   for a, (k, d, at) in assets_spec.items()},
        "categories": dict(SMALL_CITY_SLA),
    }


@pytest.fixture
def small_city(engine):
    """The tiny hand-made city of :func:`build_small_city` in the ``engine`` store."""
    return build_small_city(engine)


@pytest.fixture(scope="session")
def small_city_builder():
    """:func:`build_small_city`, for fixtures of wider scope than ``engine``."""
    return build_small_city


@pytest.fixture(scope="session")
def beijing_engine(tmp_path_factory):
    """A SQLite store with the Beijing demo city installed (no history)."""
    from dashboard.city import install_city, load_city
    from dashboard.store.schema import create_schema, make_engine

    city_dir = REPO_ROOT / "data" / "beijing"
    if not (city_dir / "city.toml").is_file():
        pytest.skip("demo city data missing")
    path = tmp_path_factory.mktemp("beijing") / "store.sqlite"
    eng = make_engine(f"sqlite:///{path}")
    create_schema(eng)
    install_city(eng, load_city(city_dir))
    try:
        yield eng
    finally:
        eng.dispose()


def _expected_rollups(rows, city):
    """Compute the rollups of ``rows`` independently of the product: plain Python loops.

    ``rows``: (asset_id, metric, ts, value) readings that were stored; ``city``: the
    :func:`small_city` dict. Returns ``(asset, district)`` where ``asset`` maps
    (res, asset_id, metric, bucket) and ``district`` maps (res, district_or_*, metric, bucket)
    to [n, sum, min, max]. Derived series: tti = free_flow / max(speed, 1), congested =
    1 if speed < free_flow / 2 else 0, capacity_mw = the substation's capacity per load reading.
    """
    def add(table, key, v):
        cur = table.get(key)
        if cur is None:
            table[key] = [1, v, v, v]
        else:
            cur[0] += 1
            cur[1] += v
            cur[2] = min(cur[2], v)
            cur[3] = max(cur[3], v)

    asset, district = {}, {}
    for aid, metric, ts, value in rows:
        a = city["assets"][aid]
        series = [(metric, value)]
        if metric == "speed_kmh":
            ff = a["attributes"].get("free_flow_kmh", 60.0)
            series.append(("tti", ff / max(value, 1.0)))
            series.append(("congested", 1.0 if value < 0.5 * ff else 0.0))
        if metric == "load_mw" and "capacity_mw" in a["attributes"]:
            series.append(("capacity_mw", float(a["attributes"]["capacity_mw"])))
        for res in (300, 3600):
            bucket = ts - ts % res
            add(asset, (res, aid, metric, bucket), value)
            for m, v in series:
                add(district, (res, a["district"], m, bucket), v)
                add(district, (res, "*", m, bucket), v)
    return asset, district


@pytest.fixture(scope="session")
def expected_rollups():
    """The independent rollup oracle (see :func:`_expected_rollups`)."""
    return _expected_rollups
