"""Energy's reads and KPIs: load now, share of rated capacity, energy used today, renewables."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from layers._domain import Frames, Query
from layers._kpi import delta_vs_start, newest, plural

KIND = "substation"
#: Share of rated capacity (%) at which a district's load is a watch / an alert (the "Of capacity" tile).
LOAD_THRESHOLDS = (75.0, 90.0)


def latest(r) -> dict:
    """Current load and renewable supply of every substation, with its rated capacity."""
    return {"substations": r.latest(KIND, ["load_mw", "renewable_mw"], attrs=("capacity_mw",))}


def _midnights(q: Query) -> tuple[int, int]:
    now = datetime.fromtimestamp(q.now, ZoneInfo(q.tz))
    m = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(m.timestamp()), int((m - timedelta(days=1)).timestamp())


def yesterday_midnight(q: Query) -> int:
    """The oldest time "used today" reads: yesterday's midnight, city time."""
    return _midnights(q)[1]


def history(r) -> dict:
    """The window's series of the district (or city), and today's and yesterday's load at 5 min."""
    q = r.q
    _, y_midnight = _midnights(q)
    two_days = r.rollup("load_mw", start=y_midnight, res=300)  # the wider range first: one read
    return {"load": r.rollup("load_mw"), "capacity": r.rollup("capacity_mw"),
            "renewable": r.rollup("renewable_mw"), "load_2d": two_days,
            "n": r.asset_count(KIND, q.district)}


def _reporting(f: Frames) -> pd.DataFrame:
    ss = f["substations"]
    return ss[ss["load_mw"].notna()] if len(ss) else ss


def _total(f: Frames, s) -> np.ndarray:
    """A summed metric's district/city total per bucket: the rollup's mean × substations."""
    return s.mean * f["n"]


def load_now(f: Frames):
    ss = _reporting(f)
    v = float(ss["load_mw"].sum()) if len(ss) else None
    s = f["load"]
    total = _total(f, s)
    return v, delta_vs_start(v, s.bucket, total), s.bucket, total, newest(ss), plural(len(ss), "substation")


def capacity_share(f: Frames):
    """Load as a share of rated capacity (also the load KPI's status: computed once)."""
    return f.memo("capacity_share", lambda: _capacity_share(f))


def _capacity_share(f: Frames):
    ss = _reporting(f)
    cap = ss["capacity_mw"].sum() if len(ss) else 0
    v = float(100 * ss["load_mw"].sum() / cap) if cap else None
    s, c = f["load"], f["capacity"]
    y = 100 * s.sum / c.at("sum", s.bucket) if len(s) else []
    return v, delta_vs_start(v, s.bucket, np.asarray(y)), s.bucket, y, newest(ss), \
        f"of {cap:,.0f} MW rated" if cap else ""


def consumption_today(f: Frames):
    v, d, xs, ys, as_of, note = _consumption_today(f)
    if f.q.window != "24h" and v is not None:  # a day's total, the same in every window: say so
        note = f"since midnight, not the {f.q.window} window" + (f" · {note}" if note else "")
    return v, d, xs, ys, as_of, note


def _consumption_today(f: Frames):
    q = f.q
    midnight, y_midnight = _midnights(q)
    elapsed = int(q.now) - midnight
    s = f["load_2d"]
    yday, today = s.before(midnight), s.since(midnight)
    ytotal = _total(f, yday)[yday.bucket < y_midnight + elapsed]
    if today.empty:
        return None, None, [], [], None, ""
    cum = np.cumsum(_total(f, today) * 300 / 3600)
    v = float(cum[-1])
    p = float((ytotal * 300 / 3600).sum()) if len(ytotal) else None
    ss = f["substations"]
    # a sum over a period with holes is not the period's consumption: say so, and compare only
    # whole periods (one bucket may be missing: the current one before its first reading)
    span = f"{elapsed / 3600:.1f}"
    if len(today) < elapsed // 300:  # of elapsed // 300 + 1 buckets so far
        return v, None, today.bucket, cum, newest(ss), \
            f"partial: {min(300 * len(today), elapsed) / 3600:.1f} of {span} h measured"
    if len(ytotal) < -(-elapsed // 300) - 1:  # of ⌈elapsed / 300⌉ buckets
        return v, None, today.bucket, cum, newest(ss), \
            f"yesterday incomplete ({min(300 * len(ytotal), elapsed) / 3600:.1f} of {span} h): no comparison"
    note = "" if not p else f"{100 * (v - p) / p:+.1f}% vs yesterday by this hour"
    return v, (v - p) if p else None, today.bucket, cum, newest(ss), note


def renewable_share(f: Frames):
    ss = f["substations"].dropna(subset=["load_mw"]) if len(f["substations"]) else f["substations"]
    load = ss["load_mw"].sum() if len(ss) else 0
    v = float(100 * ss["renewable_mw"].fillna(0).sum() / load) if load else None
    r, lo = f["renewable"], f["load"]
    y = 100 * r.sum / lo.at("sum", r.bucket) if len(r) else np.array([], dtype=float)
    return v, delta_vs_start(v, r.bucket, y), r.bucket, y, newest(ss), ""
