"""Production shape: gunicorn with 2 workers, PostgreSQL and Redis — and their faults.

Runs ``panorama serve --workers 2`` against a PostgreSQL cluster and a Redis server of the
test's own (``tests/_services.py``), so both can be stopped and restarted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redis_lib
from _demo import build_demo_store
from _services import Postgres, Redis, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _browser import capture_refresh, chromium  # noqa: E402

pytestmark = [pytest.mark.postgres]

REFRESH = 4  # seconds per refresh bucket (the wall sends its first refresh after one)


def http(method: str, url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """Return (status, headers, payload) of one request on a new connection."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Gunicorn:
    """``panorama serve --workers 2`` in a subprocess."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Gunicorn":
        panorama = Path(sys.executable).parent / "panorama"
        self.proc = subprocess.Popen([str(panorama), "serve", "--workers", "2", "--port", str(self.port)],
                                     env=self.env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=60)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL with 3 hours of Beijing, Redis, and gunicorn (2 workers) on them."""
    folder = tmp_path_factory.mktemp("prod")
    pg = Postgres().start()
    cache = Redis(folder).start()
    build_demo_store(folder, hours=3, url=pg.url)
    env = {"PANORAMA_DATABASE_URL": pg.url, "PANORAMA_CACHE_URL": cache.url, "PANORAMA_DATA_DIR": str(folder),
           "PANORAMA_REFRESH_SECONDS": str(REFRESH), "PANORAMA_BACKGROUND_REFRESH": "0"}
    server = Gunicorn(env, folder / "gunicorn.log").start()
    try:
        yield {"pg": pg, "redis": cache, "server": server, "log": folder / "gunicorn.log"}
    finally:
        server.stop()
        cache.stop()
        pg.cleanup()


def workers_health(base: str, tries: int = 80) -> dict[int, dict]:
    """Return /health of each worker, by pid (asks until two workers answered)."""
    seen: dict[int, dict] = {}
    for _ in range(tries):
        status, _h, body = http("GET", f"{base}/health")
        h = json.loads(body)
        seen[h["worker"]["pid"]] = h
        if len(seen) >= 2:
            break
    return seen


def test_fresh_workers_answer_their_first_requests(stack):
    server = stack["server"]
    driver = chromium()
    try:
        body = capture_refresh(driver, f"{server.base}/wall", tick="wall-tick", timeout=60)
    finally:
        driver.quit()
    server.stop()
    server.start()  # fresh workers: the captured refresh is the very first request each one sees
    # the same refresh until both workers have answered (on a fast host one worker can take a
    # whole burst): every answer, each worker's first included, must be the refresh
    answers, workers = [], set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(40):
            answers += pool.map(lambda _: http("POST", f"{server.base}/_dash-update-component", body), range(16))
            workers = {a[1]["X-Panorama-Worker"] for a in answers}
            if len(workers) == 2:
                break
    assert [a[0] for a in answers] == [200] * len(answers), [a[2][:200] for a in answers if a[0] != 200]
    assert len(workers) == 2, f"only {workers} answered {len(answers)} requests"
    for _status, _h, payload in answers:
        resp = json.loads(payload)["response"]
        assert "wall-map" in resp or any("map" in k for k in resp), list(resp)


def test_a_value_computed_once_is_served_to_every_worker(stack):
    base = stack["server"].base
    url = f"{base}/api/kpis?window=7d&district=haidian"
    start = int(time.time() // REFRESH)
    while int(time.time() // REFRESH) == start:  # a fresh bucket: nothing of it computed by an earlier request
        time.sleep(0.02)
    first = int(time.time() // REFRESH)
    before = {pid: h["worker"]["computations"] for pid, h in workers_health(base).items()}
    assert len(before) == 2
    # one request computes the bucket's values (the lock that makes a concurrent second one wait for them
    # is test_cache's); then bursts back to back until both workers have answered (one can take a burst)
    answers: list = [http("GET", url)]
    with ThreadPoolExecutor(8) as pool:
        while len({a[1]["X-Panorama-Worker"] for a in answers}) < 2 and len(answers) < 800:
            answers += pool.map(lambda _: http("GET", url), range(40))
    buckets = int(time.time() // REFRESH) - first + 1
    assert {a[0] for a in answers} == {200}
    assert len({a[1]["X-Panorama-Worker"] for a in answers}) == 2  # both workers answered …
    numbers = {json.dumps([(k["id"], k["value"], k["delta"]) for k in json.loads(a[2])["kpis"]]) for a in answers}
    assert len(numbers) <= buckets                                  # … the same numbers …
    after = {pid: h["worker"]["computations"] for pid, h in workers_health(base).items()}
    # … computed once (per bucket), by one of them: the bucket's base snapshot (current values) and this one
    assert sum(after[p] - before[p] for p in before) == 2 * buckets
    keys = redis_lib.Redis.from_url(stack["redis"].url).keys("panorama:snapshot:*")
    assert keys, "the KPI snapshot is not in Redis"


def test_pages_keep_loading_without_redis_and_use_it_again(stack):
    base, cache = stack["server"].base, stack["redis"]
    cache.stop()
    try:
        for path in ("/", "/wall", "/api/kpis?window=24h&district=chaoyang", "/health"):
            status, _h, payload = http("GET", base + path)
            assert status == 200, (path, payload[:300])
        degraded = workers_health(base)
        assert any(h["cache"] == "degraded" for h in degraded.values())
    finally:
        cache.start()
    # a dead backend is retried every 2 s: each worker notices on a cache call after that
    deadline = time.monotonic() + 30
    while True:
        http("GET", f"{base}/api/kpis?window=1h&district=dongcheng")
        healthy = workers_health(base)
        if len(healthy) == 2 and all(h["cache"] == "ok" for h in healthy.values()):
            break
        assert time.monotonic() < deadline, healthy
        time.sleep(0.2)
    assert redis_lib.Redis.from_url(cache.url).keys("panorama:snapshot:*"), "Redis is not used again"


def test_the_dashboard_recovers_from_a_postgresql_restart_without_a_restart(stack):
    base, pg = stack["server"].base, stack["pg"]
    status, _h, _b = http("GET", f"{base}/api/kpis?window=24h")
    assert status == 200
    pg.stop()
    try:
        status, _h, body = http("GET", f"{base}/health")
        assert status == 503 and "unreachable" in json.loads(body)["store"]
        status, _h, _b = http("GET", f"{base}/")
        assert status == 200  # the page shell still loads, its panels say the store is unavailable
    finally:
        pg.start()
    deadline = time.monotonic() + 20
    while True:
        hs = workers_health(base)
        if all(h["store"] == "ok" for h in hs.values()):
            break
        assert time.monotonic() < deadline, hs
        time.sleep(0.5)
    status, _h, body = http("GET", f"{base}/api/kpis?window=1h&district=fengtai")
    assert status == 200, body[:300]
    values = [k["value"] for k in json.loads(body)["kpis"]]
    assert any(v is not None for v in values)
