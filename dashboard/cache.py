"""The shared cache: flask-caching chosen by URL, computing each time bucket once, never failing.

``compute_once(key, bucket, fn)`` returns the value of ``key`` for the current time bucket. When
the bucket turns over, one caller (across threads, and across processes with Redis) computes it
under a lock; the others serve the previous bucket's value meanwhile, or wait briefly if there
is none — no stampede. If the cache backend is down, values are computed without it and the
outage is logged once; the cache is used again when it answers.
"""
from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlparse

from flask_caching import Cache

log = logging.getLogger("panorama.cache")

#: How many keys a process keeps in memory before dropping those of older buckets.
MAX_LOCAL_KEYS = 256
#: How many per-key locks a process keeps before dropping those nobody holds.
MAX_LOCKS = 1024


def cache_config(url: str, default_timeout: int = 300) -> dict:
    """Return a flask-caching config for ``simple://``, ``filesystem:///path`` or ``redis://…``."""
    u = urlparse(url or "simple://")
    if u.scheme in ("", "simple", "memory"):
        return {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": default_timeout,
                "CACHE_THRESHOLD": 300}  # expired buckets are pruned only past the threshold: keep it small
    if u.scheme == "filesystem":
        return {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": u.path or "/tmp/panorama-cache",
                "CACHE_DEFAULT_TIMEOUT": default_timeout, "CACHE_THRESHOLD": 5000}
    if u.scheme in ("redis", "rediss"):
        return {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url, "CACHE_DEFAULT_TIMEOUT": default_timeout,
                "CACHE_KEY_PREFIX": "panorama:",
                "CACHE_OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}}
    raise ValueError(f"unsupported PANORAMA_CACHE_URL scheme {u.scheme!r} (use simple://, filesystem:///dir or redis://)")


class BucketCache:
    """Compute-once-per-bucket over a flask-caching backend that may fail."""

    def __init__(self, cache: Cache, ttl: int):
        self.cache = cache
        self.ttl = ttl
        self._local = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._down_since: float | None = None
        self.computations = 0
        self._mem: dict[str, tuple[int, object]] = {}  # key -> (bucket, value): this process's copy

    # ------------------------------------------------------------- safe backend ops
    def _safe(self, op, *args, default=None):
        if self._down_since is not None and time.time() - self._down_since < 2:
            return default  # do not hammer a dead backend: retry every 2 s
        try:
            out = getattr(self.cache, op)(*args)
        except Exception as exc:  # redis.ConnectionError and friends
            if self._down_since is None:
                log.warning("cache backend unavailable (%s): computing without the shared cache", exc)
            self._down_since = time.time()
            return default
        if self._down_since is not None:
            log.warning("cache backend is back")
            self._down_since = None
        return out

    @property
    def healthy(self) -> bool:
        """Return False while the backend is known to be down."""
        return self._down_since is None

    def clear(self) -> None:
        """Forget every value: the shared backend's and this process's copies."""
        self._mem.clear()
        self._safe("clear")

    def _lock_for(self, key: str) -> threading.Lock:
        with self._local:
            if key not in self._locks and len(self._locks) >= MAX_LOCKS:
                for k, lk in list(self._locks.items()):  # idle locks go; a held one stays with its key
                    if not lk.locked():
                        del self._locks[k]
            return self._locks.setdefault(key, threading.Lock())

    def compute_once(self, key: str, bucket: int, fn, wait_s: float = 10.0):
        """Return ``fn()`` for ``key`` in ``bucket``, computed once across workers.

        A bucket's value never changes once computed, so each process also keeps the current one
        in memory: a screen's request then costs neither a backend round trip nor an unpickling.
        While another caller computes a new bucket, the previous bucket's value is served.
        """
        mine = self._mem.get(key)
        if mine is not None and mine[0] == bucket:
            return mine[1]
        full = f"{key}:{bucket}"
        v = self._safe("get", full)
        if v is not None:
            return self._keep(key, bucket, v)
        lock = self._lock_for(key)
        if not lock.acquire(blocking=False):
            prev = mine[1] if mine is not None and mine[0] == bucket - 1 else self._safe("get", f"{key}:{bucket - 1}")
            if prev is not None:
                return prev
            lock.acquire()
        try:
            mine = self._mem.get(key)
            if mine is not None and mine[0] == bucket:  # computed by another thread meanwhile
                return mine[1]
            v = self._safe("get", full)
            if v is not None:
                return self._keep(key, bucket, v)
            if self._down_since is not None:
                return self._keep(key, bucket, self._compute(fn))
            if self._safe("add", f"lock:{full}", 1, 30, default=True):
                try:
                    v = self._compute(fn)
                    self._safe("set", full, v, self.ttl)
                finally:
                    self._safe("delete", f"lock:{full}")
                return self._keep(key, bucket, v)
            # another process computes this bucket: serve its previous one, or wait for it
            prev = self._safe("get", f"{key}:{bucket - 1}")
            if prev is not None:
                return prev
            deadline = time.time() + wait_s
            while time.time() < deadline:
                time.sleep(0.02)
                v = self._safe("get", full)
                if v is not None:
                    return self._keep(key, bucket, v)
            return self._keep(key, bucket, self._compute(fn))
        finally:
            lock.release()

    def _keep(self, key: str, bucket: int, value):
        """Remember ``value`` as this process's copy of ``key`` for ``bucket``; return it."""
        self._mem[key] = (bucket, value)
        if len(self._mem) > MAX_LOCAL_KEYS:  # keys nobody asked for in the last two buckets go
            for k, (b, _v) in list(self._mem.items()):
                if b < bucket - 1:
                    self._mem.pop(k, None)
        return value

    def _compute(self, fn):
        self.computations += 1
        return fn()
