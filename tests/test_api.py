"""The JSON API: /api/kpis against numbers computed independently from raw readings; /health."""
from __future__ import annotations


import pytest
from _demo import may_be_quiet, build_demo_store
from sqlalchemy import text

from layers.air_quality import aqi
from dashboard.app import create_app
from dashboard.kpis import KPIS
from layers import DOMAINS
from dashboard.settings import Settings
from dashboard.store.schema import make_engine


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("api"), hours=3)


@pytest.fixture(scope="module")
def client(store_url, tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("d"), database_url=store_url, refresh_seconds=5))
    return app.server.test_client()


def newest_raw(conn, kind: str, metric: str, district: str | None = None) -> dict[str, float]:
    """Return each asset's newest value of ``metric``, straight from the raw readings."""
    sql = ("SELECT a.id, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
           "WHERE a.kind = :k AND r.metric = :m AND (:d IS NULL OR a.district_id = :d) AND r.ts = "
           "(SELECT max(ts) FROM readings r2 WHERE r2.asset_pk = r.asset_pk AND r2.metric = r.metric)")
    return {a: v for a, v in conn.execute(text(sql), {"k": kind, "m": metric, "d": district}).all()}


def kpi(body, kid):
    return next(k for k in body["kpis"] if k["id"] == kid)


@pytest.mark.parametrize("district", [None, "chaoyang"])
def test_api001_values_equal_independent_computation(client, store_url, district):
    q = "/api/kpis?window=24h" + (f"&district={district}" if district else "")
    body = client.get(q).get_json()
    assert {k["id"] for k in body["kpis"]} == {k.id for k in KPIS}
    engine = make_engine(store_url)
    with engine.connect() as conn:
        loads = newest_raw(conn, "substation", "load_mw", district)
        speeds = newest_raw(conn, "road_segment", "speed_kmh", district)
        stations = {p: newest_raw(conn, "aq_station", p, district) for p in aqi.POLLUTANTS}
    assert kpi(body, "energy.load")["value"] == pytest.approx(sum(loads.values()), abs=0.01)
    assert kpi(body, "traffic.mean_speed")["value"] == pytest.approx(sum(speeds.values()) / len(speeds), abs=0.01)
    worst = max(aqi.aqi({p: stations[p].get(s) for p in aqi.POLLUTANTS})[0] or 0
                for s in set().union(*stations.values()))
    assert kpi(body, "air.aqi_worst")["value"] == worst
    for k in body["kpis"]:
        assert set(k) >= {"id", "label", "value", "unit", "delta", "status", "data_age_s", "as_of"}
        assert k["data_age_s"] is not None and k["as_of"].endswith("Z")
        if k["value"] is None:  # only a KPI with nothing scheduled now (the night's buses), saying so
            assert k["quiet"] and may_be_quiet(store_url, k["id"], district), k
        else:
            assert k["quiet"] is None


@pytest.mark.parametrize("query, fragment", [
    ("window=2h", "unknown window"),
    ("district=atlantis", "unknown district"),
    ("district=%27%3B%20DROP%20TABLE%20readings%3B--", "unknown district"),
    ("window=%3Cscript%3E", "unknown window"),
])
def test_api002_bad_parameters_are_400_with_a_reason(client, query, fragment):
    r = client.get(f"/api/kpis?{query}")
    assert r.status_code == 400
    msg = r.get_json()["error"]
    assert fragment in msg and "\n" not in msg and "Traceback" not in msg


def test_api003_health_reports_store_and_data_age(client):
    r = client.get("/health")
    assert r.status_code == 200
    h = r.get_json()
    assert h["store"] == "ok"
    assert set(h["domains"]) == {d.id for d in DOMAINS}  # every domain of the registry
    assert all(v is not None and v >= 0 for v in h["domains"].values())


def test_api004_dead_store_is_503_not_a_traceback(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/missing/dir/x.sqlite"))
    c = app.server.test_client()
    (tmp_path / "missing").mkdir(exist_ok=True)
    r = c.get("/health")
    assert r.status_code == 503 and "unreachable" in r.get_json()["store"]
    r = c.get("/api/kpis")
    assert r.status_code in (400, 503) and "Traceback" not in r.get_data(as_text=True)


class _WriteLock:
    """Another writer's long transaction on the store (a big ingest): SQLite's write lock, or on
    PostgreSQL an EXCLUSIVE lock on ``readings`` (reads go on, writes wait)."""

    def __init__(self, engine):
        self.url = engine.url.render_as_string(hide_password=False)
        self.dialect = engine.dialect.name

    def __enter__(self):
        if self.dialect == "sqlite":
            import sqlite3

            self.conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.conn = psycopg.connect(self.url.replace("+psycopg", ""))
            self.conn.execute("LOCK TABLE readings IN EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.close()


def _traffic_notification(t_to: str, speed: float) -> dict:
    return {"subscriptionId": "s1", "type": "Notification", "data": [{
        "id": "urn:ngsi-ld:TrafficFlowObserved:chang-an-1", "type": "TrafficFlowObserved",
        "dateObservedFrom": "2016-03-15T09:45:00Z", "dateObservedTo": t_to,
        "averageVehicleSpeed": speed, "intensity": 300, "refRoadSegment": "urn:ngsi-ld:RoadSegment:chang-an-1",
        "location": {"type": "LineString", "coordinates": [[116.39, 39.907], [116.41, 39.907]]}}]}


def test_api005_notify_while_the_store_is_busy_is_503_retry_after_and_the_retry_stores_it(engine, tmp_path):
    """Another writer holds the store: 503 with Retry-After, nothing half-stored; the resend is stored.

    Twice: a notification that adds its asset, then one for the asset already stored (whose first
    write is the readings' bulk insert, through the driver's own connection).
    """
    from dashboard.city import install_city, load_city
    from dashboard.settings import PROJECT_ROOT

    install_city(engine, load_city(PROJECT_ROOT / "data" / "beijing"))
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(Settings(data_dir=tmp_path, database_url=url, ngsi_token="tok", write_wait_seconds=0.2))
    client = app.server.test_client()
    auth = {"Authorization": "Bearer tok"}

    def counts():
        with engine.connect() as conn:
            return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                         for t in ("readings", "assets", "latest", "rejected"))

    for body, speed in ((_traffic_notification("2016-03-15T10:00:00Z", 42.5), 42.5),
                        (_traffic_notification("2016-03-15T10:15:00Z", 37.0), 37.0)):
        before = counts()
        with _WriteLock(engine):
            r = client.post("/ngsi-ld/notify", json=body, headers=auth)
            assert r.status_code == 503, r.get_data(as_text=True)
            assert int(r.headers["Retry-After"]) > 0
            msg = r.get_json()["error"]
            assert "busy" in msg and "nothing of this notification was stored" in msg and "Traceback" not in msg
            assert counts() == before, "nothing of the refused notification is in the store"
        r = client.post("/ngsi-ld/notify", json=body, headers=auth)  # the sender's retry
        assert r.status_code == 200, r.get_json()
        assert r.get_json()["counts"]["accepted"] == 2
        with engine.connect() as conn:
            got = conn.execute(text("SELECT r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                                    "WHERE a.id = 'chang-an-1' AND r.metric = 'speed_kmh' ORDER BY r.ts DESC")).first()
        assert got[0] == speed
    app.server.extensions["panorama"].writer().dispose()


def test_api011_dead_store_reason_is_short_and_the_driver_text_is_logged(tmp_path, caplog):
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/missing/dir/x.sqlite"))
    c = app.server.test_client()
    with caplog.at_level("WARNING", logger="panorama"):
        health, kpis = c.get("/health"), c.get("/api/kpis")
    assert health.status_code == 503 and health.get_json()["store"] == "unreachable"
    assert kpis.status_code == 503 and kpis.get_json()["error"] == "store unavailable: retry shortly"
    for r in (health, kpis):
        assert "sqlite" not in r.get_data(as_text=True).lower() and "OperationalError" not in r.get_data(as_text=True)
    assert "sqlite3.OperationalError" in caplog.text  # the operator still sees why


def _inline_script_hashes(html: str) -> set[str]:
    """Return the CSP hash of every inline script a page runs (not JSON data blocks)."""
    import base64
    import hashlib
    import re

    out = set()
    html = re.sub(r"<!--.*?-->", "", html, flags=re.DOTALL)  # Dash's IE-only alert is in a conditional comment
    for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL):
        if "src=" in attrs or "application/json" in attrs:
            continue
        out.add("'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'")
    return out


@pytest.mark.parametrize("url", ["/", "/wall", "/embed/traffic.tti", "/api/kpis", "/health", "/nonexistent"])
def test_api006_security_headers_on_every_answer(client, url):
    r = client.get(url)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] in ("strict-origin-when-cross-origin", "no-referrer")
    csp = r.headers["Content-Security-Policy"]
    scripts = next(d for d in csp.split(";") if d.strip().startswith("script-src")).split()
    assert "'self'" in scripts and "'unsafe-eval'" not in scripts and "'unsafe-inline'" not in scripts
    if r.mimetype == "text/html" and r.status_code == 200:  # every inline script of the page is allowed by hash
        assert _inline_script_hashes(r.get_data(as_text=True)) <= set(scripts)


def test_api007_worker_header_is_an_opaque_stable_id(client):
    import os
    import socket

    ids = {client.get(u).headers["X-Panorama-Worker"] for u in ("/health", "/api/panels", "/")}
    assert len(ids) == 1
    wid = ids.pop()
    assert socket.gethostname() not in wid and str(os.getpid()) not in wid and len(wid) >= 8


@pytest.mark.parametrize("url", ["/nonexistent", "/wall/extra", "/api/kpis/", "/embed", "/embed/", "/api/nope",
                                 "/wall/", "/index.html", "/..%2F..%2Fetc%2Fpasswd"])
def test_api008_unknown_paths_are_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code)
    assert "_dash-renderer" not in r.get_data(as_text=True)  # not the app's page


@pytest.mark.parametrize("url", ["/", "/?window=1h&district=chaoyang&layers=traffic", "/wall",
                                 "/wall?rotate=0&focus=traffic", "/embed/traffic.tti", "/embed/map?layers=traffic",
                                 "/api/kpis", "/api/kpis?window=7d", "/api/panels", "/health",
                                 "/api/geo/districts.geojson", "/_dash-layout", "/_dash-dependencies"])
def test_api009_every_current_url_still_answers(client, url):
    assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("url", ["/api/kpis?district=", "/api/panels/map.json?layers=traffic,", "/wall?focus=traffic,",
                                 "/?layers=traffic,", "/embed/map?layers=traffic,"])
def test_api010_overlong_query_strings_are_414(client, url):
    r = client.get(url + "traffic," * 1000)
    assert r.status_code == 414 and "longer than" in r.get_json()["error"]
