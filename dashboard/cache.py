"""The shared cache: flask-caching chosen by URL, computing each time bucket once, never failing.

``compute_once(key, bucket, fn)`` returns the value of ``key`` for the current time bucket. When
the bucket turns over, one caller (across threads, and across processes with Redis) computes it
under a lock; the others serve the previous bucket's value meanwhile, or wait briefly if there
is none — no stampede. If the cache backend is down, values are computed without it and the
outage is logged once; the cache is used again when it answers.

What the shared backends (Redis, a cache folder) hold is data only — msgpack of plain values, numpy
arrays, pandas frames and the allowed dataclasses (:class:`DataSerializer`) — never a pickle: whoever
can write to the Redis or the folder cannot make the app run code. Anything else read there is a miss.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import time
from typing import ClassVar
from urllib.parse import urlparse

import msgpack
import numpy as np
import pandas as pd
from dash import Patch
from flask_caching import Cache
from flask_caching.backends.filesystemcache import FileSystemCache
from flask_caching.backends.rediscache import RedisCache

log = logging.getLogger("panorama.cache")

#: How many keys a process keeps in memory before dropping those of older buckets.
MAX_LOCAL_KEYS = 256
#: How many per-key locks a process keeps before dropping those nobody holds.
MAX_LOCKS = 1024


# ----------------------------------------------------------------- data-only serialisation
#: The first bytes of every value this app writes to a shared backend (format version 1).
MAGIC = b"PNR1"
#: What is written for a value the format cannot hold: every reader takes it as a miss.
UNSHARED = b"PNR0"
#: Values larger than this (bytes) are neither written nor read: a planted giant is a miss.
MAX_VALUE_BYTES = 64 * 1024 * 1024
#: Dataclasses a cached value may contain ("module:qualname"); nothing else is ever constructed.
SAFE_DATACLASSES = frozenset({"layers._kpi:KpiValue", "layers._domain:Query", "dashboard.snapshot:Snapshot"})
#: Text dtypes of pandas kept as such (values as a list, missing ones as None).
_TEXT_DTYPES = frozenset({"str", "string", "string[python]", "string[pyarrow]"})
#: numpy dtype kinds stored as raw bytes: bool, integers, floats, complex, datetime, timedelta.
_RAW_KINDS = frozenset("biufcmM")

_EXT_TUPLE, _EXT_ARRAY, _EXT_SCALAR, _EXT_FRAME, _EXT_SERIES, _EXT_INDEX, _EXT_RANGE, _EXT_DATACLASS = range(1, 9)
_EXT_PATCH = 9  # a dash.Patch (the wall's map update): its location and operations, as data


class UnsafeValue(TypeError):
    """A value that the data-only format cannot hold (it is then not shared, only kept in memory)."""


def _array_parts(a) -> list:
    """Return a 1-d column (numpy array or pandas array) as [dtype, payload]."""
    dtype = a.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in _RAW_KINDS:
        a = np.ascontiguousarray(a)
        return [dtype.str, list(a.shape), a.tobytes()]
    name = str(dtype)
    if name in _TEXT_DTYPES or name == "object":
        missing = (lambda v: v is None) if name == "object" else (lambda v: v is None or v is pd.NA or (
            isinstance(v, float) and np.isnan(v)))  # a text column's missing values: None
        return [name, None, [None if missing(v) else v for v in (a.tolist() if hasattr(a, "tolist") else list(a))]]
    raise UnsafeValue(f"dtype {name} is not cached in a shared backend")


def _array_from(parts):
    dtype, shape, data = parts
    if shape is not None:
        dt = np.dtype(dtype)
        if dt.kind not in _RAW_KINDS:
            raise ValueError(f"dtype {dtype!r} not allowed")
        return np.frombuffer(data, dtype=dt).reshape(shape).copy()
    if dtype == "object":
        return np.array(data + [None], dtype=object)[:-1]  # never let numpy nest lists into 2-d
    if dtype not in _TEXT_DTYPES:
        raise ValueError(f"dtype {dtype!r} not allowed")
    return pd.array(data, dtype=dtype)


def _index_parts(ix: pd.Index) -> list:
    if isinstance(ix, pd.MultiIndex):
        raise UnsafeValue("a MultiIndex is not cached in a shared backend")
    if isinstance(ix, pd.RangeIndex):
        return msgpack.ExtType(_EXT_RANGE, _pack([ix.start, ix.stop, ix.step, ix.name]))
    return msgpack.ExtType(_EXT_INDEX, _pack([_array_parts(ix.array), ix.name]))


def _default(obj):
    """msgpack's hook for what it does not know: the allowed types as extension records."""
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in _RAW_KINDS:
            return msgpack.ExtType(_EXT_ARRAY, _pack(_array_parts(obj)))
        if obj.dtype == object and obj.ndim == 1:
            return msgpack.ExtType(_EXT_ARRAY, _pack(_array_parts(obj)))
        raise UnsafeValue(f"numpy array of dtype {obj.dtype}")
    if isinstance(obj, np.generic) and obj.dtype.kind in _RAW_KINDS:
        return msgpack.ExtType(_EXT_SCALAR, _pack([obj.dtype.str, obj.tobytes()]))
    if isinstance(obj, pd.DataFrame):
        if not all(isinstance(c, (str, int)) for c in obj.columns) or obj.columns.has_duplicates:
            raise UnsafeValue("frame columns must be unique str or int labels")
        cols = [[c, _array_parts(obj[c].array if not isinstance(obj[c].dtype, np.dtype) else obj[c].to_numpy())]
                for c in obj.columns]
        return msgpack.ExtType(_EXT_FRAME, _pack([cols, _index_parts(obj.index), dict(obj.attrs)]))
    if isinstance(obj, pd.Series):
        arr = obj.to_numpy() if isinstance(obj.dtype, np.dtype) else obj.array
        return msgpack.ExtType(_EXT_SERIES, _pack([_array_parts(arr), _index_parts(obj.index), obj.name,
                                                   dict(obj.attrs)]))
    if isinstance(obj, pd.Index):
        return _index_parts(obj)
    if isinstance(obj, Patch):
        return msgpack.ExtType(_EXT_PATCH, _pack([list(obj._location), list(obj._operations)]))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = f"{type(obj).__module__}:{type(obj).__qualname__}"
        if name in SAFE_DATACLASSES:
            return msgpack.ExtType(_EXT_DATACLASS, _pack(
                [name, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}]))
    raise UnsafeValue(f"{type(obj).__name__} is not cached in a shared backend")


def _dataclass(name: str):
    if name not in SAFE_DATACLASSES:  # checked before anything is imported
        raise ValueError(f"dataclass {name!r} not allowed")
    module, _, qual = name.partition(":")
    return getattr(importlib.import_module(module), qual)


def _ext_hook(code: int, data: bytes):
    """msgpack's hook for extension records: rebuild only the allowed types, from data."""
    v = _unpack(data)
    if code == _EXT_TUPLE:
        return tuple(v)
    if code == _EXT_ARRAY:
        return np.asarray(_array_from(v))
    if code == _EXT_SCALAR:
        dt = np.dtype(v[0])
        if dt.kind not in _RAW_KINDS:
            raise ValueError(f"dtype {v[0]!r} not allowed")
        return np.frombuffer(v[1], dtype=dt)[0]
    if code == _EXT_RANGE:
        return pd.RangeIndex(v[0], v[1], v[2], name=v[3])
    if code == _EXT_INDEX:
        return pd.Index(_array_from(v[0]), name=v[1])
    if code == _EXT_FRAME:
        cols, index, attrs = v
        out = pd.DataFrame({c: _array_from(p) for c, p in cols}, index=index)
        out.attrs.update(attrs)
        return out
    if code == _EXT_SERIES:
        arr, index, name, attrs = v
        out = pd.Series(_array_from(arr), index=index, name=name)
        out.attrs.update(attrs)
        return out
    if code == _EXT_DATACLASS:
        return _dataclass(v[0])(**v[1])
    if code == _EXT_PATCH:
        location, operations = v
        if not (isinstance(location, list) and isinstance(operations, list)
                and all(isinstance(o, dict) and isinstance(o.get("operation"), str) for o in operations)):
            raise ValueError("malformed patch record")
        patch = Patch(location=location)
        patch._operations = operations
        return patch
    raise ValueError(f"unknown record type {code}")


def _pack(value) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True, strict_types=True)


def _unpack(data: bytes):
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def dumps(value) -> bytes:
    """Return ``value`` in the data-only format; raise :class:`UnsafeValue` for what it cannot hold."""
    try:
        out = MAGIC + _pack(value)
    except UnsafeValue:
        raise
    except (OverflowError, ValueError, TypeError) as exc:
        raise UnsafeValue(str(exc)) from exc
    if len(out) > MAX_VALUE_BYTES:
        raise UnsafeValue(f"value of {len(out):,} bytes is larger than {MAX_VALUE_BYTES:,}")
    return out


class _NotShared:
    """What reading the marker of an unshareable value returns: the value exists but only in the
    process that computed it (a reader computes its own instead of waiting for it)."""

    def __repr__(self) -> str:
        return "NOT_SHARED"


NOT_SHARED = _NotShared()


def loads(data):
    """Return the value ``data`` holds, :data:`NOT_SHARED` for the marker of a value the format could not
    hold, or None (a miss) for anything this app did not write."""
    if data == UNSHARED:
        return NOT_SHARED
    if not isinstance(data, (bytes, bytearray)) or not data.startswith(MAGIC) or len(data) > MAX_VALUE_BYTES:
        if data is not None and data != UNSHARED:
            log.warning("ignored a cache value that is not in the data-only format (%d bytes)", len(data))
        return None
    try:
        return _unpack(bytes(data[len(MAGIC):]))
    except Exception as exc:  # noqa: BLE001 - malformed data of any kind is a miss, never an error
        log.warning("ignored a malformed cache value (%s: %s)", type(exc).__name__, str(exc)[:200])
        return None


class DataSerializer:
    """A cachelib serializer that never unpickles: :func:`dumps` / :func:`loads` (Redis), dump/load (files).

    A value the format cannot hold is written as a marker that reads as a miss (logged once per type),
    so the shared cache never fails a request; the process still keeps its own copy in memory.
    """

    _warned: ClassVar[set] = set()

    def dumps(self, value, protocol=None) -> bytes:
        try:
            return dumps(value)
        except UnsafeValue as exc:
            if str(exc) not in self._warned and len(self._warned) < 100:  # once per kind of value
                self._warned.add(str(exc))
                log.warning("not sharing a cache value: %s", exc)
            return UNSHARED

    def loads(self, data):
        return loads(data)

    def dump(self, value, f) -> None:
        f.write(self.dumps(value))

    def load(self, f):
        return self.loads(f.read(MAX_VALUE_BYTES + 1))


class SafeRedisCache(RedisCache):
    """flask-caching's Redis backend with :class:`DataSerializer` instead of pickle."""

    serializer = DataSerializer()


class SafeFileSystemCache(FileSystemCache):
    """flask-caching's folder backend with :class:`DataSerializer` instead of pickle."""

    serializer = DataSerializer()


def cache_config(url: str, default_timeout: int = 300) -> dict:
    """Return a flask-caching config for ``simple://``, ``filesystem:///path`` or ``redis://…``."""
    u = urlparse(url or "simple://")
    if u.scheme in ("", "simple", "memory"):
        return {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": default_timeout,
                "CACHE_THRESHOLD": 300}  # expired buckets are pruned only past the threshold: keep it small
    if u.scheme == "filesystem":
        return {"CACHE_TYPE": "dashboard.cache.SafeFileSystemCache", "CACHE_DIR": u.path or "/tmp/panorama-cache",
                "CACHE_DEFAULT_TIMEOUT": default_timeout, "CACHE_THRESHOLD": 5000}
    if u.scheme in ("redis", "rediss"):
        return {"CACHE_TYPE": "dashboard.cache.SafeRedisCache", "CACHE_REDIS_URL": url, "CACHE_DEFAULT_TIMEOUT": default_timeout,
                "CACHE_KEY_PREFIX": "panorama:",
                "CACHE_OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}}
    raise ValueError(f"unsupported PANORAMA_CACHE_URL scheme {u.scheme!r} (use simple://, filesystem:///dir, redis:// or rediss://)")


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
        # keys whose values the shared backend cannot hold: computed by each process for itself, never
        # waited for (another process's copy would never arrive)
        self._unshared: set[str] = set()
        # an in-process backend (simple://) shares nothing with other processes: the memory copy is
        # the value, and copying it into the backend (a pickle per value) would only cost time
        self.in_process = type(getattr(cache, "cache", None)).__name__ == "SimpleCache"

    # ------------------------------------------------------------- safe backend ops
    def _safe(self, op, *args, default=None):
        if self._down_since is not None and time.time() - self._down_since < 2:
            return default  # do not hammer a dead backend: retry every 2 s
        try:
            out = getattr(self.cache, op)(*args)
        except Exception as exc:  # noqa: BLE001 - redis.ConnectionError and friends
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
        While another caller computes a new bucket, the previous bucket's value is served. A value
        the shared backend cannot hold (its marker reads :data:`NOT_SHARED`) is computed by each
        process for itself from then on: nobody waits for a copy that never comes.
        """
        mine = self._mem.get(key)
        if mine is not None and mine[0] == bucket:
            return mine[1]
        full = f"{key}:{bucket}"
        v = None if key in self._unshared else self._shared(key, full)
        if v is not None:
            return self._keep(key, bucket, v)
        lock = self._lock_for(key)
        if not lock.acquire(blocking=False):
            prev = mine[1] if mine is not None and mine[0] == bucket - 1 else \
                None if key in self._unshared else self._shared(key, f"{key}:{bucket - 1}")
            if prev is not None:
                return prev
            lock.acquire()
        try:
            mine = self._mem.get(key)
            if mine is not None and mine[0] == bucket:  # computed by another thread meanwhile
                return mine[1]
            local = self._down_since is not None or self.in_process or key in self._unshared
            v = None if local else self._shared(key, full)
            if v is not None:
                return self._keep(key, bucket, v)
            if local:
                return self._keep(key, bucket, self._compute(fn))
            if self._safe("add", f"lock:{full}", 1, 30, default=True):
                try:
                    v = self._compute(fn)
                    self._safe("set", full, v, self.ttl)
                finally:
                    self._safe("delete", f"lock:{full}")
                return self._keep(key, bucket, v)
            # another process computes this bucket: serve its previous one, or wait for it
            prev = self._shared(key, f"{key}:{bucket - 1}")
            if prev is not None:
                return prev
            deadline = time.time() + wait_s
            while time.time() < deadline and key not in self._unshared:
                time.sleep(0.02)
                v = self._shared(key, full)
                if v is not None:
                    return self._keep(key, bucket, v)
            return self._keep(key, bucket, self._compute(fn))
        finally:
            lock.release()

    def _shared(self, key: str, full: str):
        """Return the backend's value of ``full``, or None; note a key whose value it cannot hold."""
        v = self._safe("get", full)
        if v is NOT_SHARED:
            if len(self._unshared) >= MAX_LOCKS:
                self._unshared.clear()
            self._unshared.add(key)
            return None
        return v

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
