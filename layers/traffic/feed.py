"""Traffic simulator: speed and flow of every road segment, with peaks, smooth noise and incidents.

Speed ratio (speed / free-flow) = 1 - depth x demand(local time) + correlated noise, where
``depth`` is larger on the ring roads inside the 4th ring; incidents (a Poisson process on
10-minute slots, decided by hashes of (seed, slot)) slow a segment to 10–25 % of free-flow and
the segments that share a node with it to about half, fading out over their last minutes.
Flow follows Greenshields' fundamental diagram. Everything is a pure function of (seed, time).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from dashboard.feeds import keys_of, local_time, poisson, uniform, value_noise

#: Incidents start on slots of this many seconds and last at most ``INCIDENT_MAX_S``.
INCIDENT_SLOT_S = 600
INCIDENT_MIN_S = 20 * 60
INCIDENT_MAX_S = 60 * 60
INCIDENT_FADE_S = 10 * 60
#: Expected incident starts per 10-minute slot, city-wide: night and full-demand day.
INCIDENT_RATE_NIGHT = 0.12
INCIDENT_RATE_DAY = 0.45
#: Greenshields capacity per lane (veh/h) and the cap of a segment's flow.
LANE_CAPACITY_VPH = 2000.0
MAX_FLOW_VPH = 12_000.0
MIN_SPEED_KMH = 3.0

_RING = re.compile(r"(\d)\s*(?:st|nd|rd|th)?\s+ring", re.I)
_RING_ID = re.compile(r"^r(\d)-", re.I)
_RING_ZH = {"二环": 2, "三环": 3, "四环": 4, "五环": 5, "六环": 6}


def ring_number(name: str | None, seg_id: str | None = None) -> int:
    """Return the ring-road number a segment belongs to (2 for the 2nd Ring Road), 0 if none."""
    name = name or ""
    m = _RING.search(name)
    if m:
        return int(m.group(1))
    for zh, n in _RING_ZH.items():
        if zh in name:
            return n
    m = _RING_ID.match(seg_id or "")
    return int(m.group(1)) if m else 0


def demand(hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Return travel demand in [0, 1] by local hour and weekday (1 = the weekday peak)."""
    h = np.asarray(hour, dtype=float)
    wd = np.asarray(weekday) < 5

    def bump(c, w):
        return np.exp(-0.5 * ((h - c) / w) ** 2)

    # weekday: sharp morning peak (7–9) and a longer evening one (17–19:30), a busy midday
    morning = np.where(h < 8.0, bump(8.0, 0.75), bump(8.0, 0.9))
    evening = np.where(h < 18.25, bump(18.25, 1.0), bump(18.25, 1.1))
    day = 0.42 * np.clip((h - 6.0) / 2.0, 0, 1) * np.clip((21.5 - h) / 2.5, 0, 1)
    weekday = np.maximum.reduce([morning, evening, day, np.full_like(h, 0.04)])
    # weekend: a softer midday hump
    weekend = np.maximum(0.55 * bump(14.5, 3.2), 0.04)
    return np.where(wd, weekday, weekend)


class TrafficSim:
    """Simulate speed_kmh, flow_vph and incident for every segment of ``segments_frame``.

    Parameters
    ----------
    segments_frame : DataFrame with id, free_flow_kmh, length_m, lanes, from_node, to_node
        (and optionally name or ring)
    seed : the seed every random draw derives from
    step : seconds between live ticks; incident rows are written when the state differs from ts - step
    timezone : the city's timezone, for the daily profile
    """

    def __init__(self, segments_frame: pd.DataFrame, seed: int = 42, step: int = 5,
                 timezone: str = "Asia/Shanghai"):
        seg = segments_frame.reset_index(drop=True)
        self.seed = int(seed)
        self.step = int(step)
        self.timezone = timezone
        self.ids = seg["id"].astype(str).to_numpy(dtype=object)
        self.n = len(seg)
        self.vf = seg["free_flow_kmh"].to_numpy(dtype=float)
        self.lanes = seg["lanes"].to_numpy(dtype=float) if "lanes" in seg else np.full(self.n, 2.0)
        names = seg["name"].astype(str).to_numpy() if "name" in seg else np.full(self.n, "")
        if "ring" in seg:
            self.ring = seg["ring"].fillna(0).to_numpy(dtype=int)
        else:
            self.ring = np.array([ring_number(nm, i) for nm, i in zip(names, self.ids)], dtype=int)
        self.key = keys_of(self.ids)
        corridor = keys_of(names)  # a road's segments share part of their noise
        inner = (self.ring >= 2) & (self.ring <= 4)
        u = uniform(self.seed, 0x7D, self.key)
        # speed drop at full demand: 40–65 % inside the 4th ring, 25–45 % elsewhere
        self.depth = np.where(inner, 0.40 + 0.25 * u, 0.25 + 0.20 * u)
        self.corridor = corridor
        # neighbours: segments sharing a node (one hop)
        nodes = pd.DataFrame({
            "seg": np.r_[np.arange(self.n), np.arange(self.n)],
            "node": np.r_[seg["from_node"].astype(str).to_numpy(), seg["to_node"].astype(str).to_numpy()],
        }).drop_duplicates()
        pairs = nodes.merge(nodes, on="node")
        pairs = pairs[pairs["seg_x"] != pairs["seg_y"]].drop_duplicates(["seg_x", "seg_y"])
        self.nb_src = pairs["seg_x"].to_numpy()
        self.nb_dst = pairs["seg_y"].to_numpy()
        order = np.argsort(self.nb_src, kind="stable")
        self.nb_src, self.nb_dst = self.nb_src[order], self.nb_dst[order]
        self.nb_start = np.searchsorted(self.nb_src, np.arange(self.n + 1))
        # Greenshields: capacity = vf * kj / 4  ->  jam density per lane
        self.kj = 4.0 * LANE_CAPACITY_VPH / self.vf

    # ------------------------------------------------------------------ incidents
    def neighbours(self, i: int) -> np.ndarray:
        """Return the indices of the segments sharing a node with segment ``i``."""
        return self.nb_dst[self.nb_start[i]:self.nb_start[i + 1]]

    def incidents(self, t0: float, t1: float) -> pd.DataFrame:
        """Return the incidents that may be active at some time in [t0, t1].

        Columns: segment (index), start, end (epoch s), severity (speed ratio at the segment),
        neighbour_severity.
        """
        s0 = int(np.floor((t0 - INCIDENT_MAX_S) / INCIDENT_SLOT_S))
        s1 = int(np.floor(t1 / INCIDENT_SLOT_S))
        slots = np.arange(s0, s1 + 1, dtype=np.int64)
        lt = local_time(slots * INCIDENT_SLOT_S + INCIDENT_SLOT_S // 2, self.timezone)
        d = demand(lt["hour"], lt["weekday"])
        lam = INCIDENT_RATE_NIGHT + (INCIDENT_RATE_DAY - INCIDENT_RATE_NIGHT) * d
        count = poisson(lam, uniform(self.seed, 0x1C, slots), kmax=6)
        kmax = int(count.max(initial=0))
        if kmax == 0 or self.n == 0:
            return pd.DataFrame({c: np.zeros(0) for c in
                                 ["segment", "start", "end", "severity", "neighbour_severity"]})
        sl, j = np.nonzero(np.arange(kmax)[None, :] < count[:, None])
        s = slots[sl]
        start = s * INCIDENT_SLOT_S + np.floor(uniform(self.seed, 0x1D, s, j) * INCIDENT_SLOT_S).astype(np.int64)
        dur = INCIDENT_MIN_S + np.floor(uniform(self.seed, 0x1E, s, j) * (INCIDENT_MAX_S - INCIDENT_MIN_S))
        seg = np.minimum((uniform(self.seed, 0x1F, s, j) * self.n).astype(np.int64), self.n - 1)
        sev = 0.10 + 0.15 * uniform(self.seed, 0x20, s, j)
        nsev = 0.45 + 0.10 * uniform(self.seed, 0x21, s, j)
        out = pd.DataFrame({"segment": seg, "start": start, "end": start + dur.astype(np.int64),
                            "severity": sev, "neighbour_severity": nsev})
        return out[(out["end"] > t0) & (out["start"] <= t1)].reset_index(drop=True)

    def _incident_effect(self, ts: np.ndarray, inc: pd.DataFrame):
        """Return (speed-ratio ceiling (T, N), incident active (T, N) bool) for times ``ts``."""
        T = len(ts)
        ceiling = np.ones((T, self.n))
        active = np.zeros((T, self.n), dtype=bool)
        for seg, start, end, sev, nsev in inc[["segment", "start", "end", "severity",
                                               "neighbour_severity"]].itertuples(index=False, name=None):
            on = (ts >= start) & (ts < end)
            if not on.any():
                continue
            seg = int(seg)
            # full effect until the last INCIDENT_FADE_S, then easing back to free flow
            fade = np.clip((end - ts) / INCIDENT_FADE_S, 0.0, 1.0) * on
            lvl = 1.0 - (1.0 - sev) * fade
            ceiling[:, seg] = np.minimum(ceiling[:, seg], lvl)
            nb = self.neighbours(seg)
            if len(nb):
                nlvl = 1.0 - (1.0 - nsev) * fade
                ceiling[:, nb] = np.minimum(ceiling[:, nb], nlvl[:, None])
            active[:, seg] |= on
        return ceiling, active

    # ------------------------------------------------------------------ state
    def state(self, ts) -> dict[str, np.ndarray]:
        """Return speed (T, N), flow (T, N) and incident (T, N) at epoch seconds ``ts``."""
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        lt = local_time(ts, self.timezone)
        d = demand(lt["hour"], lt["weekday"])[:, None]  # (T, 1)
        t = ts[:, None].astype(float)
        # spatially correlated smooth noise: city-wide, per road (corridor) and per segment
        noise = (0.5 * value_noise(self.seed, 1, t, 1800, salt=0xA1)
                 + 0.6 * value_noise(self.seed, self.corridor[None, :], t, 900, salt=0xA2)
                 + 0.5 * value_noise(self.seed, self.key[None, :], t, 600, salt=0xA3)
                 + 0.3 * value_noise(self.seed, self.key[None, :], t, 120, salt=0xA4))
        ratio = 1.0 - self.depth[None, :] * d + noise * (0.012 + 0.035 * d)
        ratio = np.minimum(ratio, 0.99)
        inc = self.incidents(ts.min(), ts.max())
        ceiling, active = self._incident_effect(ts, inc)
        ratio = np.minimum(ratio, ceiling)
        speed = np.clip(ratio * self.vf[None, :], MIN_SPEED_KMH, self.vf[None, :])
        speed = np.minimum(np.round(speed, 1), self.vf[None, :])
        v = speed
        k = self.kj[None, :] * self.lanes[None, :] * (1.0 - v / self.vf[None, :])
        flow = np.minimum(np.round(k * v), MAX_FLOW_VPH)
        return {"speed": speed, "flow": np.maximum(flow, 0.0), "incident": active}

    def frames(self, ts, prev: float | None = None, full_incidents: bool = False) -> pd.DataFrame:
        """Return readings for ticks ``ts`` (ascending).

        Incident rows are written where the state differs from the previous tick (``prev`` for the
        first, default ``ts[0] - step``), or for every segment when ``full_incidents``.
        """
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        if len(ts) == 0 or self.n == 0:
            return _empty()
        p0 = int(ts[0] - self.step) if prev is None else int(prev)
        allts = np.r_[p0, ts]
        st = self.state(allts)
        T, N = len(ts), self.n
        tt = np.repeat(ts, N)
        ids = np.tile(self.ids, T)
        inc = st["incident"].astype(float)
        changed = inc[1:] != inc[:-1]
        if full_incidents:
            changed[0, :] = True
        ci, cj = np.nonzero(changed)
        return pd.DataFrame({
            "asset": np.concatenate([ids, ids, self.ids[cj]]),
            "metric": np.concatenate([np.full(T * N, "speed_kmh", dtype=object),
                                      np.full(T * N, "flow_vph", dtype=object),
                                      np.full(len(ci), "incident", dtype=object)]),
            "ts": np.concatenate([tt, tt, ts[ci]]),
            "value": np.concatenate([st["speed"][1:].ravel(), st["flow"][1:].ravel(), inc[1:][ci, cj]]),
        })

    def frame(self, ts: float, prev: float | None = None, full_incidents: bool = False) -> pd.DataFrame:
        """Return readings (asset, metric, ts, value) for every segment at one tick ``ts``."""
        return self.frames([int(ts)], prev=prev, full_incidents=full_incidents)

    def readings(self, ticks, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> pd.DataFrame | None:
        """Return the readings at ``ticks`` (the simulator's feed protocol, see :mod:`dashboard.feeds`):
        incident rows are transitions since ``prev``, every segment's state with ``full_incidents``."""
        return self.frames(ticks, prev=prev, full_incidents=full_incidents) if len(ticks) else None


def feed(ctx) -> TrafficSim | None:
    """Return the demo city's traffic feed (None without road segments)."""
    seg = ctx.assets("road_segment")
    if not len(seg):
        return None
    return TrafficSim(seg, seed=ctx.seed, step=ctx.step, timezone=ctx.tz)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"asset": pd.Series([], dtype=object), "metric": pd.Series([], dtype=object),
                         "ts": np.zeros(0, np.int64), "value": np.zeros(0)})
