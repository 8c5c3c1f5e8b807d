"""Traffic's reads and KPIs: travel-time index, mean speed, congested share, active incidents."""
from __future__ import annotations

import numpy as np
import pandas as pd

from layers._domain import Frames, Query
from layers._kpi import delta_vs_start, nan_none, newest

KIND = "road_segment"
#: Free-flow speed (km/h) of a segment whose asset has none: the ingest's default for the derived series.
FREE_FLOW_KMH = 60.0
#: Incidents last under an hour: the incident walk starts this long before the window.
INCIDENT_LOOKBACK_S = 3600


def latest(r) -> dict:
    """Current speed and incident state of every segment, with its free-flow speed."""
    w = r.latest(KIND, ["speed_kmh", "incident"], attrs=("free_flow_kmh",))
    return {"roads": w.assign(free_flow_kmh=w["free_flow_kmh"].fillna(FREE_FLOW_KMH))}


def incident_reach(q: Query) -> int:
    """The oldest time the incidents KPI reads: an hour before the window."""
    return q.start - INCIDENT_LOOKBACK_S


def history(r) -> dict:
    """The window's district (or city) series of the travel-time index, speed, congested share, and
    of incident readings from an hour before it."""
    return {"tti": r.rollup("tti"), "speed": r.rollup("speed_kmh"), "congested": r.rollup("congested"),
            "incident": r.rollup("incident", start=incident_reach(r.q))}


def _speeds(f: Frames) -> pd.DataFrame:
    """The segments that have a speed reading (shared by three KPIs)."""
    def pick():
        r = f["roads"]
        return r[r["speed_kmh"].notna()]
    return f.memo("speeds", pick)


def tti(f: Frames):
    r = _speeds(f)
    v = nan_none((r["free_flow_kmh"] / np.maximum(r["speed_kmh"], 1.0)).mean()) if len(r) else None
    s = f["tti"]
    return v, delta_vs_start(v, s.bucket, s.mean), s.bucket, s.mean, newest(r), ""


def mean_speed(f: Frames):
    r = _speeds(f)
    v = nan_none(r["speed_kmh"].mean()) if len(r) else None
    s = f["speed"]
    return v, delta_vs_start(v, s.bucket, s.mean), s.bucket, s.mean, newest(r), ""


def congested(f: Frames):
    r = _speeds(f)
    v = nan_none(100.0 * (r["speed_kmh"] < 0.5 * r["free_flow_kmh"]).mean()) if len(r) else None
    s = f["congested"]
    y = s.mean * 100
    return v, delta_vs_start(v, s.bucket, y), s.bucket, y, newest(r), ""


def incidents(f: Frames):
    q = f.q
    r = f["roads"]
    if r.empty:
        return None, None, [], [], None, ""
    active = float((r["incident"] == 1).sum())
    # walk the rollup forward from an hour before the window (incidents last under an hour):
    # a 1 reading starts an incident, a 0 ends one; a 0 with none active (a feed restating
    # its state after a restart) is ignored by the clip at zero
    s = f["incident"]
    starts = s.sum
    ends = s.n - s.sum
    walk, level = [], 0.0
    for a, b in zip(starts, ends):
        level = max(0.0, level + a - b)
        walk.append(level)
    keep = s.bucket >= q.start // q.res * q.res
    xs, ys = s.bucket[keep], np.asarray(walk)[keep]
    return active, delta_vs_start(active, xs, ys), xs, ys, newest(_speeds(f)), \
        f"{int(starts[keep].sum())} started in {q.window}"
