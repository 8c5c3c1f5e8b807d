"""The per-bucket cache: one computation per bucket across threads, no stampede, degrade on backend
failure, and the background refresher that keeps what screens ask for warm."""
from __future__ import annotations

import sys
import threading
import time

import pytest
from flask import Flask
from flask_caching import Cache

from dashboard.cache import BucketCache, cache_config


def make_cache() -> BucketCache:
    app = Flask("t")
    cache = Cache()
    cache.init_app(app, config=cache_config("simple://"))
    return BucketCache(cache, ttl=60)


def wait_until(cond, timeout: float = 20.0, what: str = "condition"):
    """Return cond()'s first truthy value, polling until ``timeout`` seconds have passed (then fail)."""
    deadline = time.monotonic() + timeout
    while not (v := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return v


def inside(thread: threading.Thread, function: str) -> bool:
    """Return True while ``thread`` runs (or waits) somewhere inside ``function``."""
    f = sys._current_frames().get(thread.ident)
    while f is not None:
        if f.f_code.co_name == function:
            return True
        f = f.f_back
    return False


def all_arrived(threads, computing: dict) -> bool:
    """True once one thread computes (``computing["thread"]``) and every other waits in compute_once."""
    first = computing.get("thread")
    return first is not None and all(inside(t, "compute_once") for t in threads if t is not first)


def test_cache001_many_threads_one_computation():
    bc = make_cache()
    calls, computing, release = [], {}, threading.Event()

    def slow():
        calls.append(1)
        computing["thread"] = threading.current_thread()
        release.wait(20)  # computing until every other caller has arrived
        return {"v": 42}

    results = []
    threads = [threading.Thread(target=lambda: results.append(bc.compute_once("k", 7, slow))) for _ in range(12)]
    for t in threads:
        t.start()
    wait_until(lambda: all_arrived(threads, computing), what="every caller to arrive during the computation")
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"v": 42}] * 12


def test_cache002_turnover_serves_previous_bucket_while_one_computes():
    bc = make_cache()
    bc.compute_once("k", 1, lambda: {"b": 1})
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(20)  # still computing while the other caller asks
        return {"b": 2}

    t = threading.Thread(target=lambda: bc.compute_once("k", 2, slow))
    t.start()
    assert started.wait(20)
    got = []
    other = threading.Thread(target=lambda: got.append(bc.compute_once("k", 2, lambda: {"b": "other"})))
    other.start()
    other.join(20)  # answered while the computation still runs: the caller does not wait for it
    assert not release.is_set() and got == [{"b": 1}], "previous bucket, no second computation, no waiting"
    release.set()
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
        # the refresher recomputes the key for new buckets, by itself
        wait_until(lambda: live.cache.computations >= n + 2, what="the refresher to compute two new buckets")
        key = next(k for k in live.cache._mem if k.startswith("snapshot:"))

        def ready_and_asked():
            """A screen's request in a bucket the refresher has computed: None if the bucket turned meanwhile."""
            bucket = live.bucket()
            if live.cache._mem[key][0] != bucket:
                return None
            before = live.cache.computations
            live.kpis("24h", None)
            return (live.cache.computations == before,) if live.bucket() == bucket else None

        assert wait_until(ready_and_asked, what="a request inside a computed bucket") == (True,), \
            "a screen's request finds the bucket ready"
    finally:
        live.stop()


def redis_cache(url: str) -> BucketCache:
    app = Flask("w")
    cache = Cache()
    cache.init_app(app, config=cache_config(url))
    return BucketCache(cache, ttl=60)


def test_cache005_workers_sharing_redis_compute_a_bucket_once(redis_url):
    workers = [redis_cache(redis_url) for _ in range(2)]  # two processes' worth of caches
    calls, computing, release = [], {}, threading.Event()

    def compute():
        calls.append(1)
        computing["thread"] = threading.current_thread()
        release.wait(20)  # computing until every other caller, of both workers, has arrived
        return {"v": len(calls)}

    key = f"test:{time.time()}"
    results = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.compute_once(key, 1, compute)))
               for w in workers for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: all_arrived(threads, computing), what="every caller to arrive during the computation")
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"v": 1}] * 6
    assert all(w.healthy for w in workers)


def test_cache006_unreachable_redis_degrades_not_fails():
    bc = redis_cache("redis://127.0.0.1:1/0")  # nothing listens there
    assert bc.compute_once("k", 1, lambda: {"x": 1}) == {"x": 1}
    assert not bc.healthy


# --------------------------------------------------------------- what the shared backends hold: data only
class _RunsOnLoad:
    """A pickle that, when unpickled, runs a shell command (what an attacker with Redis access plants)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    from _demo import build_demo_store

    return build_demo_store(tmp_path_factory.mktemp("cache-demo"), hours=1)


@pytest.fixture
def own_redis(tmp_path):
    """A throwaway Redis server of this test (nothing else reads or writes it)."""
    from _services import Redis

    server = Redis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def _app(url: str, cache_url: str, tmp_path):
    from dashboard.app import create_app
    from dashboard.settings import Settings

    # an hour's bucket: the planted keys stay the ones the app reads for the whole test
    return create_app(Settings(data_dir=tmp_path, database_url=url, cache_url=cache_url, refresh_seconds=3600))


def _kpis_without_age(client) -> dict:
    resp = client.get("/api/kpis?window=24h")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    for k in body["kpis"]:
        k.pop("data_age_s")  # measured at the request: differs between two requests
    return body


def test_cache007_planted_pickle_in_redis_does_not_run_and_reads_as_a_miss(demo_url, own_redis, tmp_path):
    import pickle

    import redis

    marker = tmp_path / "pwned"
    app = _app(demo_url, own_redis.url, tmp_path)
    live = app.server.extensions["panorama"]
    key = live.key(live.query("24h", None))
    evil = b"!" + pickle.dumps(_RunsOnLoad(marker))  # exactly what flask-caching's RedisCache writes
    r = redis.Redis.from_url(own_redis.url)
    b = live.bucket()
    for bucket in (b - 1, b, b + 1):  # this bucket, the previous one (served during a recompute), the next
        r.set(f"panorama:{key}:{bucket}", evil)
    got = _kpis_without_age(app.server.test_client())
    assert not marker.exists(), "the planted pickle ran a command"
    expected = _kpis_without_age(_app(demo_url, "simple://", tmp_path).server.test_client())
    assert got == expected, "the app answers as without the planted value (a miss, computed afresh)"
    stored = r.get(f"panorama:{key}:{live.bucket()}")
    assert stored.startswith(b"PNR1") and b"posix" not in stored, "the app replaced it with data of its own"
    # another worker reads that value back as the same KPIs, without computing them
    other = _app(demo_url, own_redis.url, tmp_path)
    assert _kpis_without_age(other.server.test_client()) == expected
    assert other.server.extensions["panorama"].cache.computations == 0
    assert not marker.exists()


def test_cache008_planted_pickle_in_cache_folder_does_not_run(demo_url, tmp_path):
    import pickle
    import struct

    marker = tmp_path / "pwned"
    folder = tmp_path / "cache"
    app = _app(demo_url, f"filesystem://{folder}", tmp_path)
    live = app.server.extensions["panorama"]
    backend = live.cache.cache.cache
    key = live.key(live.query("24h", None))
    b = live.bucket()
    for bucket in (b - 1, b, b + 1):  # what cachelib's FileSystemCache writes: expiry (0 = never), pickle
        with open(backend._get_filename(f"{key}:{bucket}"), "wb") as f:
            f.write(struct.pack("I", 0) + pickle.dumps(_RunsOnLoad(marker)))
    got = _kpis_without_age(app.server.test_client())
    assert not marker.exists(), "the planted pickle ran a command"
    assert got == _kpis_without_age(_app(demo_url, "simple://", tmp_path).server.test_client())


def test_cache009_live_values_round_trip_the_data_only_format(demo_url, tmp_path):
    """What the screens cache (KPIs, layer frames, the attention list) comes back equal, types and all."""
    import pandas as pd

    from dashboard.cache import dumps, loads

    live = _app(demo_url, "simple://", tmp_path).server.extensions["panorama"]
    kpis = live.kpis("24h", None)
    assert loads(dumps(kpis)) == kpis and all(type(k).__name__ == "KpiValue" for k in loads(dumps(kpis)))
    frames = live.layer_frames()
    back = loads(dumps(frames))
    assert back.keys() == frames.keys() and back["now"] == frames["now"]
    for name, frame in frames.items():
        if isinstance(frame, pd.DataFrame):
            pd.testing.assert_frame_equal(back[name], frame)
    attention = live.attention()
    assert loads(dumps(attention)) == attention
    assert loads(dumps({"png": b"\x89PNG", "t": (1, 2.5)})) == {"png": b"\x89PNG", "t": (1, 2.5)}
    # the snapshots themselves (what Redis shares between workers): every domain's frames, KPIs, attention
    for snap in (live.base(), live.snapshot("24h", None), live.snapshot("7d", sorted(live.district_ids())[0])):
        back = loads(dumps(snap))
        assert type(back).__name__ == "Snapshot" and back.query == snap.query and back.kpis == snap.kpis
        assert back.attention == snap.attention and back.counts == snap.counts
        assert back.latest.keys() == snap.latest.keys()
        for dom, frames in snap.latest.items():
            assert back.latest[dom].keys() == frames.keys(), dom
            for name, f in frames.items():
                if isinstance(f, pd.DataFrame):
                    pd.testing.assert_frame_equal(back.latest[dom][name], f, check_dtype=False)
                else:
                    assert back.latest[dom][name] == f, (dom, name)


def _ext(code: int, parts) -> bytes:
    import msgpack

    return b"PNR1" + msgpack.packb(msgpack.ExtType(code, msgpack.packb(parts)))


@pytest.mark.parametrize("data", [
    b"!" + __import__("pickle").dumps({"a": 1}),  # a pickle, even a harmless one
    b"PNR1\xc7\x03\x08abc",  # our magic, then a dataclass record that is not msgpack
    _ext(8, ["os:system", {"command": "true"}]),  # a "dataclass" that is not on the allowed list
    _ext(2, ["|O", [1], b"\x00" * 8]),  # an object array from raw memory
    b"PNR1\xff\xff",
    b"",
])
def test_cache010_anything_else_read_is_a_miss(data):
    from dashboard.cache import DataSerializer

    assert DataSerializer().loads(data) is None


def test_cache011_redis_with_a_password_in_the_url(tmp_path):
    from _services import Redis

    server = Redis(tmp_path, password="s3cret-pw").start()
    try:
        workers = [redis_cache(server.url) for _ in range(2)]
        calls = []
        assert workers[0].compute_once("k", 1, lambda: calls.append(1) or {"v": 1}) == {"v": 1}
        assert workers[1].compute_once("k", 1, lambda: calls.append(1) or {"v": 2}) == {"v": 1}
        assert calls == [1] and all(w.healthy for w in workers), "one computation, shared through Redis"
        wrong = redis_cache(server.url.replace("s3cret-pw", "wrong"))
        assert wrong.compute_once("k", 2, lambda: {"v": 3}) == {"v": 3}, "a wrong password degrades, never fails"
        assert not wrong.healthy
    finally:
        server.stop()


def test_cache012_rediss_tls_with_a_password(tmp_path):
    from _services import Redis

    server = Redis(tmp_path, password="tls-pw", tls=True).start()
    try:
        assert server.url.startswith("rediss://:tls-pw@")
        workers = [redis_cache(server.url) for _ in range(2)]
        calls = []
        assert workers[0].compute_once("k", 1, lambda: calls.append(1) or {"v": 1}) == {"v": 1}
        assert workers[1].compute_once("k", 1, lambda: calls.append(1) or {"v": 2}) == {"v": 1}
        assert calls == [1] and all(w.healthy for w in workers)
        plain = redis_cache(server.url.replace("rediss://", "redis://").split("?")[0])
        assert plain.compute_once("k", 2, lambda: {"v": 3}) == {"v": 3} and not plain.healthy
    finally:
        server.stop()


def test_cache013_a_value_the_format_cannot_hold_is_served_but_not_shared(own_redis):
    workers = [redis_cache(own_redis.url) for _ in range(2)]
    odd = {"s": {1, 2}}  # a set: not in the data-only format
    assert workers[0].compute_once("odd", 1, lambda: odd) == odd, "served from the process's own copy"
    calls = []
    assert workers[1].compute_once("odd", 1, lambda: calls.append(1) or {"s": {3}}) == {"s": {3}}
    assert calls == [1], "the other worker found a miss and computed its own"
    assert all(w.healthy for w in workers), "not a backend failure"


def test_cache014_per_key_locks_are_bounded():
    bc = make_cache()
    for i in range(3000):  # e.g. one forged district per request
        assert bc.compute_once(f"kpis:forged-{i}", 1, lambda i=i: i) == i
    assert len(bc._locks) <= 1024, len(bc._locks)


def test_cache015_a_held_lock_is_never_dropped():
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


def test_cache016_nobody_waits_for_a_value_another_worker_cannot_share(own_redis):
    """A value the shared format cannot hold exists only in the worker that computed it: a worker
    waiting for it stops as soon as the other's marker lands and computes its own, and from then on
    computes that key for itself without the cross-worker lock (the wall's stalls of ~5 s every
    third bucket, 1,000 screens, came from waiting the full wait for a copy that never came)."""
    import redis

    workers = [redis_cache(own_redis.url) for _ in range(2)]
    release, computing, got = threading.Event(), {}, {}

    def slow_odd():
        computing["thread"] = threading.current_thread()
        release.wait(20)
        return {"s": {1}}  # a set: not in the data-only format

    first = threading.Thread(target=lambda: got.setdefault(0, workers[0].compute_once("odd", 1, slow_odd)))
    first.start()
    wait_until(lambda: computing.get("thread") is first, what="the first worker to compute")
    second = threading.Thread(target=lambda: got.setdefault(
        1, workers[1].compute_once("odd", 1, lambda: {"s": {2}}, wait_s=600)))
    second.start()
    wait_until(lambda: inside(second, "compute_once"), what="the second worker to wait")
    release.set()
    first.join(30)
    second.join(30)  # with the old wait it would sit here for 600 s
    assert not second.is_alive(), "the second worker still waits for a value that cannot come"
    assert got == {0: {"s": {1}}, 1: {"s": {2}}}, "each worker served its own copy"
    assert "odd" in workers[1]._unshared
    # the next bucket: another process holds the backend lock forever, yet this worker does not wait
    redis.Redis.from_url(own_redis.url).set("panorama:lock:odd:2", b"1", ex=60)
    later = threading.Thread(target=lambda: got.setdefault(2, workers[1].compute_once("odd", 2, lambda: {"s": {3}},
                                                                                       wait_s=600)))
    later.start()
    later.join(30)
    assert not later.is_alive() and got[2] == {"s": {3}}
    assert all(w.healthy for w in workers)


def test_cache017_the_walls_map_patch_is_shared_between_workers(demo_url, tmp_path):
    """The wall's refresh keeps a plotly Patch (map values only); it crosses the shared cache as data
    and comes back the same operations, so one worker computes it for every worker."""
    import json

    from dash import Patch

    from dashboard import views
    from dashboard.cache import dumps, loads
    from dashboard.pages.wall import DOMAIN_IDS, WINDOW, layers_for

    live = _app(demo_url, "simple://", tmp_path).server.extensions["panorama"]
    frames = live.layer_frames()
    patch = views.map_patch(live, frames, live.params(time.time(), WINDOW, None), layers_for(DOMAIN_IDS[0]),
                            set_visibility=False)
    assert isinstance(patch, Patch) and patch._operations
    back = loads(dumps({"fig": patch}))["fig"]
    assert isinstance(back, Patch)
    from plotly.utils import PlotlyJSONEncoder

    assert json.dumps(back.to_plotly_json(), cls=PlotlyJSONEncoder) == \
        json.dumps(patch.to_plotly_json(), cls=PlotlyJSONEncoder)
