"""The per-bucket cache: one computation per bucket across threads, no stampede, degrade on backend
failure, and the background refresher that keeps what screens ask for warm."""
from __future__ import annotations

import threading
import time

from flask import Flask
from flask_caching import Cache

from dashboard.cache import BucketCache, cache_config


def make_cache() -> BucketCache:
    app = Flask("t")
    cache = Cache()
    cache.init_app(app, config=cache_config("simple://"))
    return BucketCache(cache, ttl=60)


def test_cache001_many_threads_one_computation():
    bc = make_cache()
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return {"v": 42}

    results = []
    threads = [threading.Thread(target=lambda: results.append(bc.compute_once("k", 7, slow))) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"v": 42}] * 12


def test_cache002_turnover_serves_previous_bucket_while_one_computes():
    bc = make_cache()
    bc.compute_once("k", 1, lambda: {"b": 1})
    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.5)
        return {"b": 2}

    t = threading.Thread(target=lambda: bc.compute_once("k", 2, slow))
    t.start()
    started.wait(2)
    t0 = time.perf_counter()
    assert bc.compute_once("k", 2, lambda: {"b": "other"}) == {"b": 1}, "previous bucket, no second computation"
    assert time.perf_counter() - t0 < 0.2
    t.join()
    assert bc.compute_once("k", 2, lambda: {"b": "other"}) == {"b": 2}


class Broken:
    """A cache backend that is down."""

    def __getattr__(self, name):
        def fail(*a, **k):
            raise ConnectionError("redis down")
        return fail


def test_cache003_dead_backend_degrades_and_recovers():
    bc = make_cache()
    good = bc.cache
    bc.cache = Broken()
    assert bc.compute_once("k", 1, lambda: {"x": 1}) == {"x": 1}
    assert not bc.healthy
    bc.cache = good
    bc._down_since = time.time() - 10  # the retry pause has passed
    assert bc.compute_once("k", 2, lambda: {"x": 2}) == {"x": 2}
    assert bc.healthy


def test_cache004_background_refresher_keeps_asked_keys_warm(beijing_engine, tmp_path):
    from dashboard.app import create_app
    from dashboard.settings import Settings

    url = str(beijing_engine.url)
    app = create_app(Settings(data_dir=tmp_path, database_url=url, refresh_seconds=1, background_refresh=True))
    live = app.server.extensions["panorama"]
    try:
        live.kpis("24h", None)
        n = live.cache.computations
        time.sleep(2.6)
        assert live.cache.computations >= n + 2, "the refresher recomputed the key for new buckets"
        before = live.cache.computations
        live.kpis("24h", None)
        assert live.cache.computations == before, "a screen's request finds the bucket ready"
    finally:
        live.stop()


def redis_cache(url: str) -> BucketCache:
    app = Flask("w")
    cache = Cache()
    cache.init_app(app, config=cache_config(url))
    return BucketCache(cache, ttl=60)


def test_cache005_workers_sharing_redis_compute_a_bucket_once(redis_url):
    workers = [redis_cache(redis_url) for _ in range(2)]  # two processes' worth of caches
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.2)
        return {"v": len(calls)}

    key = f"test:{time.time()}"
    results = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.compute_once(key, 1, compute)))
               for w in workers for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"v": 1}] * 6
    assert all(w.healthy for w in workers)


def test_cache006_unreachable_redis_degrades_not_fails():
    bc = redis_cache("redis://127.0.0.1:1/0")  # nothing listens there
    assert bc.compute_once("k", 1, lambda: {"x": 1}) == {"x": 1}
    assert not bc.healthy


def test_cache007_per_key_locks_are_bounded():
    bc = make_cache()
    for i in range(3000):  # e.g. one forged district per request
        assert bc.compute_once(f"kpis:forged-{i}", 1, lambda i=i: i) == i
    assert len(bc._locks) <= 1024, len(bc._locks)


def test_cache008_a_held_lock_is_never_dropped():
    from dashboard import cache as cachemod

    bc = make_cache()
    held = bc._lock_for("busy")
    held.acquire()
    try:
        for i in range(cachemod.MAX_LOCKS + 10):
            bc._lock_for(f"k{i}")
        assert bc._lock_for("busy") is held  # a caller waiting on it and a new one share one lock
    finally:
        held.release()
