"""Service-request simulator: arrivals by district, resolution times, satisfaction.

Arrivals per district and 10-minute slot are Poisson with a rate proportional to the
population (about one request per 10,000 residents a day, more by day than by night). Each
request's category, place, resolution time (lognormal around its category's SLA, ~80 % in
time) and satisfaction (falling as the closure gets later) derive from hashes of
(seed, district, slot, k): the whole life of a request is known from the moment it opens,
and what is *visible* at a time is cut at that time.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dashboard.feeds import hash64, keys_of, local_time, normal, poisson, uniform

SLOT_S = 600
DAY_S = 86_400
#: Requests per resident per day.
RATE_PER_RESIDENT_DAY = 1e-4
#: Resolution time / SLA is lognormal: P(within SLA) = 0.8 with this sigma.
RESOLUTION_SIGMA = 0.8
RESOLUTION_MU = -0.8416 * RESOLUTION_SIGMA
#: Every request is closed within this many seconds (below the 60-day window of ``closures``).
MAX_RESOLUTION_S = 59 * DAY_S
CLOSURE_LOOKBACK_S = 60 * DAY_S
#: Share of closed requests whose requester gives a rating.
RATED_SHARE = 0.8


def _diurnal(hour: np.ndarray) -> np.ndarray:
    """Return the arrival-rate weight by local hour (mean 1 over a day): busy by day, quiet at night."""
    def raw(h):
        return (0.12 + np.exp(-0.5 * ((h - 11.0) / 3.2) ** 2)
                + 0.55 * np.exp(-0.5 * ((h - 19.5) / 2.0) ** 2))
    grid = np.linspace(0, 24, 24 * 12, endpoint=False)
    return raw(np.asarray(hour, dtype=float)) / raw(grid).mean()


def satisfaction_mean(lateness: np.ndarray) -> np.ndarray:
    """Return the mean satisfaction (1–5) for resolution time / SLA."""
    return np.interp(lateness, [0.0, 0.5, 1.0, 2.0, 4.0], [4.7, 4.5, 3.8, 2.4, 1.3])


class ServiceSim:
    """Simulate Open311-like service requests.

    Parameters
    ----------
    districts_frame : DataFrame with id, population and optionally geometry (shapely or GeoJSON
        text) or label_lon/label_lat, for the request locations
    categories_frame : DataFrame with id, name, sla_hours (and optionally weight, the category mix)
    seed : the seed every random draw derives from
    """

    def __init__(self, districts_frame: pd.DataFrame, categories_frame: pd.DataFrame, seed: int = 42,
                 timezone: str = "Asia/Shanghai"):
        d = districts_frame.reset_index(drop=True)
        c = categories_frame.reset_index(drop=True)
        self.seed = int(seed)
        self.timezone = timezone
        self.districts = d["id"].astype(str).to_numpy(dtype=object)
        pop = pd.to_numeric(d["population"], errors="coerce") if "population" in d else pd.Series(np.nan, d.index)
        self.population = pop.fillna(pop.median() if pop.notna().any() else 100_000).to_numpy(dtype=float)
        self.dkey = keys_of(self.districts)
        self.categories = c["id"].astype(str).to_numpy(dtype=object)
        self.cat_names = c["name"].astype(str).to_numpy(dtype=object) if "name" in c else self.categories
        self.sla_h = c["sla_hours"].to_numpy(dtype=float)
        if "weight" in c:
            w = c["weight"].to_numpy(dtype=float)
        else:  # a fixed mix per city, not per seed: quick jobs are the commonest
            w = (0.6 + uniform(0, 0xC0, keys_of(self.categories))) / np.sqrt(np.maximum(self.sla_h, 1.0)) ** 0.5
        self.cat_cdf = np.cumsum(w / w.sum())
        self._geoms = self._geometries(d)
        self._blocks: dict[int, dict[str, np.ndarray]] = {}

    @staticmethod
    def _geometries(d: pd.DataFrame) -> list:
        import shapely
        from shapely.geometry import shape

        out = []
        for i in range(len(d)):
            g = d["geometry"].iloc[i] if "geometry" in d else None
            if isinstance(g, str):
                g = shape(json.loads(g))
            if g is not None:
                shapely.prepare(g)
            if g is None and {"label_lon", "label_lat"} <= set(d.columns):
                from shapely.geometry import Point

                g = Point(float(d["label_lon"].iloc[i]), float(d["label_lat"].iloc[i])).buffer(0.02)
            out.append(g)
        return out

    # ------------------------------------------------------------------ generation
    def _block(self, day: int) -> dict[str, np.ndarray]:
        """Return every request opened on UTC day ``day`` (cached): a pure function of (seed, day)."""
        b = self._blocks.get(day)
        if b is not None:
            return b
        slots = np.arange(day * (DAY_S // SLOT_S), (day + 1) * (DAY_S // SLOT_S), dtype=np.int64)
        hour = local_time(slots * SLOT_S + SLOT_S // 2, self.timezone)["hour"]
        lam = (self.population[:, None] * RATE_PER_RESIDENT_DAY / (DAY_S / SLOT_S)) * _diurnal(hour)[None, :]
        dk = self.dkey[:, None]
        count = poisson(lam, uniform(self.seed, 0x5A, dk, slots[None, :]))
        kmax = int(count.max(initial=0))
        di, si, j = np.nonzero(np.arange(kmax)[None, None, :] < count[:, :, None]) if kmax else (
            np.zeros(0, int), np.zeros(0, int), np.zeros(0, int))
        s = slots[si]
        key = (self.seed, self.dkey[di], s, j)
        opened = s * SLOT_S + np.floor(uniform(*key, 0x01) * SLOT_S).astype(np.int64)
        cat = np.minimum(np.searchsorted(self.cat_cdf, uniform(*key, 0x02), side="right"), len(self.cat_cdf) - 1)
        sla_s = self.sla_h[cat] * 3600.0
        res = sla_s * np.exp(RESOLUTION_MU + RESOLUTION_SIGMA * normal(*key, 0x03))
        res = np.clip(np.round(res), 300, MAX_RESOLUTION_S).astype(np.int64)
        lateness = res / sla_s
        sat = np.clip(np.round(satisfaction_mean(lateness) + 0.55 * normal(*key, 0x04)), 1, 5)
        sat = np.where(uniform(*key, 0x05) < RATED_SHARE, sat, np.nan)
        lon, lat = self._locate(di, key)
        h = hash64_hex(*key, 0x06)
        order = np.argsort(opened, kind="stable")
        b = {"id": h[order], "district": di[order], "category": cat[order], "opened_at": opened[order],
             "due_at": (opened + np.round(sla_s).astype(np.int64))[order], "closed_at": (opened + res)[order],
             "satisfaction": sat[order], "lon": lon[order], "lat": lat[order]}
        if len(self._blocks) > 120:
            self._blocks.pop(next(iter(self._blocks)))
        self._blocks[day] = b
        return b

    def _locate(self, di: np.ndarray, key) -> tuple[np.ndarray, np.ndarray]:
        """Return a point inside each request's district (the first of 16 hashed candidates inside)."""
        import shapely

        lon = np.full(len(di), np.nan)
        lat = np.full(len(di), np.nan)
        cand = np.arange(16)[:, None]
        for d, g in enumerate(self._geoms):
            sel = np.flatnonzero(di == d)
            if g is None or not len(sel):
                continue
            x0, y0, x1, y1 = g.bounds
            k = tuple(np.asarray(p)[sel][None, :] if np.ndim(p) else p for p in key)
            x = x0 + (x1 - x0) * uniform(*k, 0x100 + cand)
            y = y0 + (y1 - y0) * uniform(*k, 0x200 + cand)
            inside = shapely.contains_xy(g, x, y)
            first = inside.argmax(axis=0)
            cols = np.arange(len(sel))
            p = g.representative_point()
            ok = inside.any(axis=0)
            lon[sel] = np.where(ok, x[first, cols], p.x)
            lat[sel] = np.where(ok, y[first, cols], p.y)
        return np.round(lon, 6), np.round(lat, 6)

    def _select(self, day0: int, day1: int, mask_fn) -> dict[str, np.ndarray]:
        parts = []
        for day in range(day0, day1 + 1):
            b = self._block(day)
            m = mask_fn(b)
            if m.any():
                parts.append({k: v[m] for k, v in b.items()})
        if not parts:
            b = self._block(day1)
            return {k: v[:0] for k, v in b.items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _frame(self, r: dict[str, np.ndarray], now: float) -> pd.DataFrame:
        closed = r["closed_at"] <= now
        return pd.DataFrame({
            "id": r["id"],
            "category": self.categories[r["category"]],
            "district": self.districts[r["district"]],
            "lon": r["lon"], "lat": r["lat"],
            "description": self.cat_names[r["category"]],
            "opened_at": r["opened_at"].astype(np.int64),
            "due_at": r["due_at"].astype(np.int64),
            "closed_at": pd.Series(r["closed_at"], dtype="Int64").where(closed),
            "status": np.where(closed, "closed", "open").astype(object),
            "satisfaction": pd.Series(np.nan_to_num(r["satisfaction"]).astype(np.int64), dtype="Int64").where(
                closed & np.isfinite(r["satisfaction"])),
        })

    # ------------------------------------------------------------------ public
    def frame(self, t0: float, t1: float, now: float | None = None) -> pd.DataFrame:
        """Return the requests opened in (t0, t1] with their state as known at ``now`` (default t1)."""
        now = t1 if now is None else now
        r = self._select(int(t0 // DAY_S), int(t1 // DAY_S),
                         lambda b: (b["opened_at"] > t0) & (b["opened_at"] <= t1))
        return self._frame(r, now)

    def closures(self, t0: float, t1: float) -> pd.DataFrame:
        """Return the requests (opened in the last 60 days) whose closure falls in (t0, t1], closed."""
        r = self._select(int((t0 - CLOSURE_LOOKBACK_S) // DAY_S), int(t1 // DAY_S),
                         lambda b: (b["closed_at"] > t0) & (b["closed_at"] <= t1))
        return self._frame(r, t1)

    # ------------------------------------------------------------------ the simulator's feed protocol
    def readings(self, ticks, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> None:
        """Return no readings: requests are records of their own (see :meth:`events`)."""
        return None

    def events(self, t0: float, t1: float, now: float, backlog_from: float | None = None) -> pd.DataFrame:
        """Return the requests opened in (t0, t1] as known at ``now``, and (``backlog_from``) those
        opened in the :data:`CLOSURE_LOOKBACK_S` before it still open or closed after it.

        When ``now`` is the period's end (a live tick), the requests opened earlier and closed in
        the period come too, closed (an earlier tick wrote them open); the last copy of an id wins.
        A backfill knows every state at its end or later: its earlier chunks wrote them closed.
        """
        reqs = self.frame(t0, t1, now=now)
        if backlog_from is not None:
            old = self.frame(backlog_from - CLOSURE_LOOKBACK_S, backlog_from, now=now)
            old = old[old["closed_at"].isna() | (old["closed_at"] > backlog_from)]
            reqs = pd.concat([old, reqs], ignore_index=True)
        if now <= t1:
            reqs = pd.concat([reqs, self.closures(t0, t1)], ignore_index=True).drop_duplicates("id", keep="last")
        return reqs


def hash64_hex(*keys) -> np.ndarray:
    """Return request ids ``SR-<16 hex digits>`` from hashed keys."""
    return np.array([f"SR-{int(v):016x}" for v in hash64(*keys)], dtype=object)


def feed(ctx) -> ServiceSim | None:
    """Return the demo city's service-request feed (None without districts or service categories)."""
    if not len(ctx.districts) or not len(ctx.categories):
        return None
    return ServiceSim(ctx.districts, ctx.categories, seed=ctx.seed, timezone=ctx.tz)


__all__ = ["ServiceSim", "satisfaction_mean", "feed"]
