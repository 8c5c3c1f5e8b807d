"""Built-in feeds: a replay of real air-quality data and simulators for traffic, energy and services.

Every simulated value is a pure function of ``(seed, asset, time)``: random numbers come from
hashing those keys (:func:`uniform`), never from numpy's global state, so the same seed and
the same timestamp give the same value whenever, and in whatever chunks, it is computed.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finaliser of ``x`` (uint64 array, wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _u64(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint64:
        return a
    if a.dtype.kind == "f":
        a = np.floor(a)
    return np.asarray(a, dtype=np.int64).view(np.uint64)


def hash64(*keys) -> np.ndarray:
    """Return a uint64 hash of broadcast integer key arrays (deterministic across runs and machines)."""
    with np.errstate(over="ignore"):
        h = np.full((), 0x243F6A8885A308D3, dtype=np.uint64)
        for k in keys:
            h = _mix(h ^ (_u64(k) + _GOLDEN))
        return np.atleast_1d(h)


def uniform(*keys) -> np.ndarray:
    """Return uniform numbers in [0, 1), one per broadcast key tuple."""
    return (hash64(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal(*keys) -> np.ndarray:
    """Return standard normal numbers, one per broadcast key tuple (Box-Muller on two hashes)."""
    u1 = uniform(*keys, 0x51)
    u2 = uniform(*keys, 0x52)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def poisson(lam: np.ndarray, u: np.ndarray, kmax: int | None = None) -> np.ndarray:
    """Return Poisson counts for rates ``lam`` by inverting the CDF at uniforms ``u``."""
    lam = np.asarray(lam, dtype=float)
    u = np.asarray(u, dtype=float)
    kmax = kmax or int(max(8, np.ceil(lam.max(initial=0) + 8 * np.sqrt(lam.max(initial=0)) + 4)))
    p = np.exp(-lam)
    cdf = p.copy()
    k = np.zeros(np.broadcast(lam, u).shape, dtype=np.int64)
    for i in range(1, kmax + 1):
        more = u > cdf
        if not more.any():
            break
        k += more
        p = p * lam / i
        cdf = cdf + p
    return k


def key_of(text: str) -> int:
    """Return a stable 63-bit integer key for a string (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.blake2b(str(text).encode(), digest_size=8).digest(), "little") >> 1


def keys_of(texts) -> np.ndarray:
    """Return :func:`key_of` for each string, as an int64 array."""
    return np.array([key_of(t) for t in texts], dtype=np.int64)


def value_noise(seed: int, key, t: np.ndarray, period: float, salt: int = 0) -> np.ndarray:
    """Return smooth standard-normal-ish noise: hashed values at multiples of ``period``, eased between.

    ``key`` and ``t`` broadcast; the value at a time depends only on (seed, key, salt, time).
    """
    t = np.asarray(t, dtype=float)
    x = t / period
    s = np.floor(x)
    f = x - s
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: continuous slope at the knots
    a = normal(seed, salt, key, s)
    b = normal(seed, salt, key, s + 1)
    return a + (b - a) * f


def local_time(ts, timezone: str) -> dict[str, np.ndarray]:
    """Return local calendar parts of epoch seconds: hour (fractional), weekday, doy, month, day."""
    ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
    idx = pd.DatetimeIndex(pd.to_datetime(ts, unit="s", utc=True)).tz_convert(timezone)
    hour = idx.hour.to_numpy() + idx.minute.to_numpy() / 60.0 + idx.second.to_numpy() / 3600.0
    return {
        "hour": hour.astype(float),
        "weekday": idx.day_of_week.to_numpy(),
        "doy": idx.day_of_year.to_numpy(),
        "month": idx.month.to_numpy(),
        "day": idx.day.to_numpy(),
        "hour_int": idx.hour.to_numpy(),
    }


def utc_offset_s(ts: float, timezone: str) -> int:
    """Return the UTC offset of ``timezone`` at epoch ``ts``, in seconds."""
    t = pd.Timestamp(int(ts), unit="s", tz="UTC").tz_convert(timezone)
    return int(t.utcoffset().total_seconds())


def local_hours(t0: float, t1: float, timezone: str) -> np.ndarray:
    """Return the epoch seconds of every whole local hour ``h`` with ``t0 < h <= t1``."""
    off = utc_offset_s(t1, timezone) % 3600  # whole-hour zones: 0; India: 1800
    first = (np.floor((t0 - off) / 3600) + 1) * 3600 + off
    if first > t1:
        return np.zeros(0, dtype=np.int64)
    return np.arange(int(first), int(t1) + 1, 3600, dtype=np.int64)


__all__ = ["hash64", "uniform", "normal", "poisson", "key_of", "keys_of", "value_noise",
           "local_time", "local_hours", "utc_offset_s"]


# ---------------------------------------------------------------------------- the feed protocol
class FeedContext:
    """What a domain's ``feed(ctx)`` gets to build its demo feed from (see :mod:`dashboard.feeds.simulator`).

    ``assets(kind)``: that kind's assets (id, name, district and their attributes as columns);
    ``districts``: id, population, area_km2, label_lon, label_lat, geometry; ``categories``: the
    service categories; ``provided``: what feeds built before offer the others (e.g.
    ``"city_temperature"``: epoch seconds → °C), a feed adds to it with :meth:`provide`.

    A feed has ``readings(ticks, t0, t1, prev=None, full_incidents=False)`` → readings (asset,
    metric, ts, value) at the simulator's ticks in (t0, t1] (None when it has none), and may have
    ``events(t0, t1, now, backlog_from=None)`` → records of its domain opened or changed in
    (t0, t1] as known at ``now`` (``backlog_from``: also those opened since then still open at
    t0), stored by its domain's ``records.ingest(conn, frame, source, now)``.
    """

    def __init__(self, city, seed: int, step: int, tz: str, assets, districts, categories):
        self.city, self.seed, self.step, self.tz = city, int(seed), int(step), tz
        self._assets = assets
        self.districts = districts
        self.categories = categories
        self.provided: dict = {}

    def assets(self, kind: str):
        """Return the assets of ``kind`` (an empty frame when the city has none)."""
        return self._assets(kind)

    def provide(self, name: str, value) -> None:
        """Offer ``value`` to the feeds built after this one."""
        self.provided[name] = value
