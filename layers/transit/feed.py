"""Public transport simulator: buses running their lines' timetables, late by a daily pattern.

Each bus ``v`` runs ``lag(v, t)`` seconds behind its timetable (:mod:`layers.transit.timetable`):
where it is at ``t`` is where the timetable puts it at ``t - lag``. The lag is a base that grows
in the peaks (08:00, 18:00), smooth noise per bus and per line, and now and then (more often in
the peaks) a bump of most of a headway: the bus behind catches up, the two run bunched. Arrivals
at a stop are the times the bus's position passes it (``t = scheduled + lag(t)``, solved by a few
fixed-point steps), so they agree with the positions. Everything is a pure function of (seed,
bus, time): any chunking gives the same readings.

Readings: per bus on duty at each tick ``veh_lon``, ``veh_lat``, ``veh_delay_s``; per line at
each tick ``vehicles_running``; per stop at each arrival ``arrival_delay_s``, ``headway_s`` (since
the line's previous bus at that stop) and ``headway_ratio`` (÷ the scheduled headway).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dashboard.feeds import key_of, uniform, utc_offset_s, value_noise
from layers.transit.timetable import DAY_S, Plan, every_nth

#: Peaks of the delay pattern: (local hour, width in hours).
PEAKS = ((8.0, 1.0), (18.0, 1.3))
BASE_LAG_S, PEAK_LAG_S = 40.0, 240.0
NOISE_S, PEAK_NOISE_S = 35.0, 70.0
#: Chance per bus and hour of a bunching bump, off-peak and extra at the peak.
BUMP_P, PEAK_BUMP_P = 0.03, 0.10
#: A bump's size as a share of the scheduled headway (at most BUMP_MAX_S), rise and fall (× its size).
BUMP_SHARE, BUMP_MAX_S, BUMP_RISE, BUMP_FALL = (0.7, 0.95), 720.0, 4.0, 3.0
#: How far arrivals are searched around a chunk: the most a bus can be late and early (s).
MAX_LAG_S, MIN_LAG_S = 1800.0, -600.0
SECANT_STEPS = 3
_M_PER_DEG = 111_320.0


def peak(hour) -> np.ndarray:
    """Return how much of a peak local ``hour`` is in: 0 (night) … 1 (08:00, 18:00)."""
    h = np.asarray(hour, dtype=float)
    return sum(np.exp(-((h - c) / w) ** 2) for c, w in PEAKS)


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class _Clock:
    """Local seconds of the day of epoch times, in one zone (a fixed offset when the range has one)."""

    def __init__(self, tz: str, t0: float, t1: float):
        self.tz = tz
        a, b = utc_offset_s(t0 - MAX_LAG_S - DAY_S, tz), utc_offset_s(t1 + DAY_S, tz)
        self.offset = a if a == b else None

    def sod(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        if self.offset is not None:
            return np.mod(t + self.offset, DAY_S)
        whole = np.floor(t)
        idx = pd.DatetimeIndex(pd.to_datetime(whole.ravel().astype(np.int64), unit="s", utc=True)).tz_convert(self.tz)
        s = (idx.hour.to_numpy() * 3600 + idx.minute.to_numpy() * 60 + idx.second.to_numpy()).reshape(t.shape)
        return s + (t - whole)


class _Line:
    """One line's geometry, timetable, stops and buses, as arrays."""

    def __init__(self, row, stops: pd.DataFrame, vehicles: pd.DataFrame, seed: int):
        self.id = str(row["id"])
        self.plan = Plan.of(row)
        path = np.asarray(row["path"], dtype=float)
        if path.ndim != 2 or path.shape[0] < 2 or path.shape[1] != 2:
            raise ValueError(f"line {self.id}: path must be a list of at least two [lon, lat]")
        self.lon, self.lat = path[:, 0], path[:, 1]
        kx = _M_PER_DEG * math.cos(math.radians(float(self.lat.mean())))
        seg = np.hypot(np.diff(self.lon) * kx, np.diff(self.lat) * _M_PER_DEG)
        cum = np.r_[0.0, np.cumsum(seg)]
        self.cum = cum * (self.plan.length_m / cum[-1])  # the stated length wins: stops' dist_m are on it
        self.vkey = np.array([key_of(f"{self.id}/{v}") for v in range(self.plan.vehicles)], dtype=np.int64)
        self.lkey = key_of(self.id)
        self.stop_ids = stops["id"].astype(str).to_numpy(dtype=object)
        self.stop_dir = stops["direction"].to_numpy(dtype=np.int64)
        dist = stops["dist_m"].to_numpy(dtype=float)
        # running time from the stop's direction's first terminus
        along = np.where(self.stop_dir == 0, dist, self.plan.length_m - dist)
        self.stop_offset = np.clip(along, 0, self.plan.length_m) / self.plan.length_m * self.plan.run_s
        self.veh_ids = vehicles["id"].astype(str).to_numpy(dtype=object)
        self.veh_slot = vehicles["slot"].to_numpy(dtype=np.int64)
        if ((self.veh_slot < 0) | (self.veh_slot >= self.plan.vehicles)).any():
            raise ValueError(f"line {self.id}: a bus's slot must be 0 … {self.plan.vehicles - 1}")
        self.seed = seed

    def position(self, dist) -> tuple[np.ndarray, np.ndarray]:
        """Return lon, lat at ``dist`` metres along the line (from terminus A)."""
        return np.interp(dist, self.cum, self.lon), np.interp(dist, self.cum, self.lat)


class TransitSim:
    """Simulate the buses, lines and stops of a city (see the module docstring).

    Parameters
    ----------
    lines : DataFrame with id, path ([[lon, lat], …]), length_m, speed_kmh, layover_s, vehicles
        (and optionally first_h, last_h)
    stops : DataFrame with id, line (line id), direction (0: A→B, 1: B→A), dist_m (from A)
    vehicles : DataFrame with id, line, slot (0 … vehicles - 1)
    """

    def __init__(self, lines: pd.DataFrame, stops: pd.DataFrame, vehicles: pd.DataFrame, seed: int = 42,
                 timezone: str = "Asia/Shanghai"):
        self.seed, self.tz = int(seed), timezone
        for name, df, cols in (("stops", stops, ("id", "line", "direction", "dist_m")),
                               ("vehicles", vehicles, ("id", "line", "slot"))):
            missing = [c for c in cols if c not in df.columns] if len(df) else []
            if missing:
                raise KeyError(f"transit {name} lack the attribute(s) {', '.join(missing)}")
        empty = pd.DataFrame(columns=["id", "line", "direction", "dist_m", "slot"])
        by_line_s = {k: g for k, g in stops.groupby(stops["line"].astype(str))} if len(stops) else {}
        by_line_v = {k: g for k, g in vehicles.groupby(vehicles["line"].astype(str))} if len(vehicles) else {}
        self.lines = [_Line(r, by_line_s.get(str(r["id"]), empty), by_line_v.get(str(r["id"]), empty), self.seed)
                      for _, r in lines.sort_values("id").iterrows()]

    # ------------------------------------------------------------------ the lag behind the timetable
    def lag(self, vkey, lkey, headway_s, t, clock: _Clock) -> np.ndarray:
        """Return how many seconds the bus of key ``vkey`` (on the line of key ``lkey``, peak headway
        ``headway_s``) runs behind its timetable at epoch ``t`` (all broadcast)."""
        t = np.asarray(t, dtype=float)
        pk = peak(clock.sod(t) / 3600.0)
        lag = (BASE_LAG_S + PEAK_LAG_S * pk
               + (NOISE_S + PEAK_NOISE_S * pk) * value_noise(self.seed, vkey, t, 1800, salt=0x7A1)
               + 45.0 * pk * value_noise(self.seed, lkey, t, 3600, salt=0x7A2))
        w_now = np.floor(t / 3600.0)
        for back in (0, 1, 2):  # a bump lasts at most 7 × 12 min: one started two hours back may still be on
            w = w_now - back
            w_start = w * 3600.0
            p = BUMP_P + PEAK_BUMP_P * peak(clock.sod(w_start + 1800.0) / 3600.0)
            hit = uniform(self.seed, 0x7B0, vkey, w) < p
            if not hit.any():
                continue
            start = w_start + 3600.0 * uniform(self.seed, 0x7B1, vkey, w)
            share = BUMP_SHARE[0] + (BUMP_SHARE[1] - BUMP_SHARE[0]) * uniform(self.seed, 0x7B2, vkey, w)
            size = share * np.minimum(every_nth(clock.sod(start)) * headway_s, BUMP_MAX_S)
            x = (t - start) / (BUMP_RISE * size)
            y = (t - start - BUMP_RISE * size) / (BUMP_FALL * size)
            bump = np.where(x < 1, _smooth(x), 1.0 - _smooth(y)) * size
            lag = lag + np.where(hit & (t >= start), bump, 0.0)
        return lag

    # ------------------------------------------------------------------ buses at ticks
    def vehicles_at(self, line: _Line, ticks, clock: _Clock) -> dict[str, np.ndarray]:
        """Return, at each tick (rows) for each bus slot (columns): on duty, lon, lat, lag.

        Bus ``v`` runs slots ``v, v + V, …``: the timetable time ``tau`` falls in one cycle of it,
        out on the A leg (then a layover at B) or back on the B leg (then a layover at A)."""
        ticks = np.asarray(ticks, dtype=float)
        plan = line.plan
        V = plan.vehicles
        v = np.arange(V)
        lag = self.lag(line.vkey[None, :], line.lkey, plan.headway_s, ticks[:, None], clock)
        tau = clock.sod(ticks)[:, None] - lag  # where the timetable is for each bus
        h, C = plan.headway_s, plan.cycle_s
        c = np.floor((tau - v[None, :] * h) / C)
        j = (v[None, :] + c * V).astype(np.int64)
        p = tau - j * h
        leg_a = p < plan.run_s + plan.layover_s
        q = np.where(leg_a, p, p - plan.run_s - plan.layover_s)
        frac = np.clip(q / plan.run_s, 0.0, 1.0)
        # on duty on a trip that runs and at the terminus before and after one (the layover)
        resting = q >= plan.run_s
        on = np.where(leg_a, plan.runs(j, 0) | (resting & plan.runs(j, 1)),
                      plan.runs(j, 1) | (resting & plan.runs(j + V, 0))) & (q >= 0)
        dist = plan.length_m * np.where(leg_a, frac, 1.0 - frac)
        lon, lat = line.position(dist)
        return {"on": on, "lon": lon, "lat": lat, "lag": lag}

    # ------------------------------------------------------------------ arrivals at stops
    def _arrive(self, c: dict, sched, clock: _Clock) -> np.ndarray:
        """Return when the buses of candidates ``c`` reach points scheduled at epoch ``sched``: the root
        of ``t - sched - lag(t)`` (one fixed-point step, then the secant method: the lag may change by
        half a second a second while a bunched bus catches up, too steep for fixed-point steps alone)."""
        def g(t):
            return t - sched - self.lag(c["vkey"], c["lkey"], c["h"], t, clock)

        a = sched + self.lag(c["vkey"], c["lkey"], c["h"], sched, clock)
        ga = g(a)
        b = a - ga
        for _ in range(SECANT_STEPS):
            gb = g(b)
            step = gb - ga
            ok = np.abs(step) > 1e-9
            nxt = np.where(ok, b - gb * (b - a) / np.where(ok, step, 1.0), b)
            a, ga, b = b, gb, nxt
        return np.clip(b, sched + MIN_LAG_S, sched + MAX_LAG_S)

    def _candidates(self, lo: float, hi: float, clock: _Clock) -> dict | None:
        """Return every (line, slot, stop) whose scheduled arrival is in (lo, hi] and whose trip runs,
        with its bus's keys, the peak headway and the slots 1–3 back that run (NaN when none)."""
        mids = np.unique([t - clock.sod(t) for t in np.arange(lo - DAY_S, hi + DAY_S, DAY_S / 2)])
        parts = []
        for li, line in enumerate(self.lines):
            plan = line.plan
            for d in (0, 1):
                mine = np.flatnonzero(line.stop_dir == d)
                if not len(mine):
                    continue
                off = line.stop_offset[mine]
                for m in mids:
                    base = m + d * (plan.run_s + plan.layover_s)
                    j_lo = max(0, int(np.floor((lo - base - off.max()) / plan.headway_s)))
                    j_hi = min(int(DAY_S // plan.headway_s) + 1, int(np.ceil((hi - base) / plan.headway_s)))
                    if j_hi < j_lo:
                        continue
                    j = np.arange(j_lo, j_hi + 1, dtype=np.int64)
                    j = j[plan.runs(j, d)]
                    if not len(j):
                        continue
                    jj, ss = np.repeat(j, len(mine)), np.tile(mine, len(j))
                    sched = base + jj * plan.headway_s + np.tile(off, len(j))
                    keep = (sched > lo) & (sched <= hi)
                    if not keep.any():
                        continue
                    jj, ss, sched = jj[keep], ss[keep], sched[keep]
                    back = np.zeros(len(jj))
                    for k in (3, 2, 1):  # the line's previous bus here: the nearest earlier slot that runs
                        back[plan.runs(jj - k, d)] = k
                    parts.append({"line": np.full(len(jj), li), "j": jj, "stop": ss, "sched": sched, "back": back,
                                  "V": np.full(len(jj), plan.vehicles), "h": np.full(len(jj), plan.headway_s),
                                  "lkey": np.full(len(jj), line.lkey, dtype=np.int64)})
        if not parts:
            return None
        c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        c["vkey"] = _gather([ln.vkey for ln in self.lines], c["line"], np.mod(c["j"], c["V"]))
        return c

    def arrivals(self, t0: float, t1: float, clock: _Clock) -> pd.DataFrame | None:
        """Return the arrivals at every stop in (t0, t1]: stop, ts, delay, headway, ratio."""
        c = self._candidates(t0 - MAX_LAG_S, t1 - MIN_LAG_S, clock)
        if c is None:
            return None
        t = self._arrive(c, c["sched"], clock)
        ts = np.floor(t)
        keep = (ts > t0) & (ts <= t1)
        if not keep.any():
            return None
        c = {k: v[keep] for k, v in c.items()}
        t, ts = t[keep], ts[keep]
        prev_t = np.full(len(t), np.nan)
        has = c["back"] > 0
        if has.any():
            p = {k: v[has] for k, v in c.items()}
            pj = p["j"] - p["back"].astype(np.int64)
            p["vkey"] = _gather([ln.vkey for ln in self.lines], p["line"], np.mod(pj, p["V"]))
            prev_t[has] = self._arrive(p, p["sched"] - p["back"] * p["h"], clock)
        headway = np.maximum(t - prev_t, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(has, headway / (c["back"] * c["h"]), np.nan)
        stop_ids = np.concatenate([ln.stop_ids for ln in self.lines]) if self.lines else np.array([], dtype=object)
        first = np.cumsum([0] + [len(ln.stop_ids) for ln in self.lines])[:-1]
        out = pd.DataFrame({"asset": stop_ids[first[c["line"]] + c["stop"]], "ts": ts.astype(np.int64),
                            "delay": np.round(t - c["sched"]), "headway": np.round(headway),
                            "ratio": np.round(ratio, 3), "sched": c["sched"]})
        # two bunched buses reaching a stop in the same second: one reading per second, the bus due first
        out = out.sort_values(["asset", "ts", "sched"], kind="stable").drop_duplicates(["asset", "ts"])
        return out.drop(columns="sched").reset_index(drop=True)

    # ------------------------------------------------------------------ the feed protocol
    def readings(self, ticks, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> pd.DataFrame | None:
        """Return the readings at ``ticks`` and the arrivals in (t0, t1] (see :mod:`dashboard.feeds`)."""
        ticks = np.asarray(ticks, dtype=np.int64)
        if not self.lines:
            return None
        clock = _Clock(self.tz, float(min(t0, ticks.min(initial=t0))), float(max(t1, ticks.max(initial=t1))))
        cols: dict[str, list] = {"asset": [], "metric": [], "ts": [], "value": []}

        def add(asset, metric, ts, value):
            cols["asset"].append(np.asarray(asset, dtype=object))
            cols["metric"].append(np.full(len(value), metric, dtype=object))
            cols["ts"].append(np.asarray(ts, dtype=np.int64))
            cols["value"].append(np.asarray(value, dtype=float))

        for line in self.lines:
            if len(ticks):
                st = self.vehicles_at(line, ticks, clock)
                add(np.full(len(ticks), line.id, dtype=object), "vehicles_running", ticks, st["on"].sum(axis=1))
                if len(line.veh_ids):
                    on = st["on"][:, line.veh_slot]
                    ti, vi = np.nonzero(on)
                    ids, ts = line.veh_ids[vi], ticks[ti]
                    slot = line.veh_slot[vi]
                    add(ids, "veh_lon", ts, np.round(st["lon"][ti, slot], 5))
                    add(ids, "veh_lat", ts, np.round(st["lat"][ti, slot], 5))
                    add(ids, "veh_delay_s", ts, np.round(st["lag"][ti, slot]))
        arr = self.arrivals(float(t0), float(t1), clock)
        if arr is not None and len(arr):
            add(arr["asset"], "arrival_delay_s", arr["ts"], arr["delay"])
            known = np.isfinite(arr["ratio"].to_numpy())
            add(arr["asset"][known], "headway_s", arr["ts"][known], arr["headway"][known])
            add(arr["asset"][known], "headway_ratio", arr["ts"][known], arr["ratio"][known])
        if not cols["asset"]:
            return None
        out = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
        return out if len(out) else None


def _gather(per_line: list[np.ndarray], line: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Return ``per_line[line[i]][index[i]]`` for every i (one flat take, no Python loop)."""
    first = np.cumsum([0] + [len(a) for a in per_line])[:-1]
    flat = np.concatenate(per_line) if per_line else np.array([], dtype=np.int64)
    return flat[first[line] + index]


def feed(ctx) -> TransitSim | None:
    """Return the demo city's transit feed (None without bus lines)."""
    lines = ctx.assets("transit_line")
    if not len(lines):
        return None
    return TransitSim(lines, ctx.assets("transit_stop"), ctx.assets("transit_vehicle"), seed=ctx.seed,
                      timezone=ctx.tz)
