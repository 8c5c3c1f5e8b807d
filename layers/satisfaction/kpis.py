"""Service satisfaction's reads and KPIs: rating, share satisfied, open and overdue, time to close.

The requests are records of their own (``service_requests``), not readings: the reads are the
store's ``service_*`` functions, through the :class:`~dashboard.snapshot.Reader`.
"""
from __future__ import annotations

import numpy as np

from layers._domain import Frames, Query
from layers._kpi import change, plural

#: Closures the rating, share satisfied and time to close count: the last 30 days (and the 30 before).
SERVICE_WINDOW = 30 * 86_400
#: Mean rating (1–5) at which a district is a watch / an alert (the "Satisfaction" tile and the map).
SATISFACTION_THRESHOLDS = (4.0, 3.5)
#: Points of the open and overdue sparklines across the window.
SPARK_POINTS = 7


def latest(r) -> dict:
    """City-wide now: each district's rating of the last 30 days (the map) and its open requests past
    their due time, counted with the oldest due time (the attention list)."""
    from dashboard.store import readmodel as rm  # not at import: the store's modules import the registry

    end = int(r.q.now) + 1
    return {"by_district": r.read(rm.service_by_district, end - SERVICE_WINDOW, end, district=False),
            "overdue": r.read(rm.service_overdue_by_district, int(r.q.now), district=False)}


def spark_points(q: Query, n: int = SPARK_POINTS) -> list[int]:
    """The times the open and overdue counts are taken at: ``n`` across the window, the last now."""
    end, span = int(q.now), q.span
    return [end - span + i * span // (n - 1) for i in range(n)]


def history(r) -> dict:
    """The district's (or city's) closures of this 30 days and the previous 30, its open and overdue
    counts across the window, and its newest request event."""
    from dashboard.store import readmodel as rm

    end = int(r.q.now) + 1
    return {"current": r.read(rm.service_window, end - SERVICE_WINDOW, end),
            "previous": r.read(rm.service_window, end - 2 * SERVICE_WINDOW, end - SERVICE_WINDOW),
            "open_at": r.read(rm.service_open_at_many, tuple(spark_points(r.q))),
            "newest": r.read(rm.service_newest_ts)}


def reach(q: Query) -> int:
    """The oldest time the closure KPIs read: this 30 days and the previous 30."""
    return int(q.now) + 1 - 2 * SERVICE_WINDOW


def any_age(_q: Query) -> int:
    """The open-request KPIs count requests still open, opened at any time."""
    return 0


def _spark(f: Frames, col: str):
    d = f["current"][1]
    if col == "pct":
        return d["bucket"], (100 * d["satisfied"] / d["rated"].replace(0, np.nan)).to_numpy()
    return d["bucket"], d[col].to_numpy()


def satisfaction(f: Frames):
    cur, prev = f["current"][0], f["previous"][0]
    v, p = cur["satisfaction"], prev["satisfaction"]
    x, y = _spark(f, "satisfaction")
    return v, change(v, p), x, y, f["newest"], plural(cur["rated"], "rated closure")


def pct_satisfied(f: Frames):
    cur, prev = f["current"][0], f["previous"][0]
    v = 100 * cur["satisfied"] / cur["rated"] if cur["rated"] else None
    p = 100 * prev["satisfied"] / prev["rated"] if prev["rated"] else None
    x, y = _spark(f, "pct")
    return v, change(v, p), x, y, f["newest"], "rated 4 or 5"


def _open_at(f: Frames, t: int) -> dict:
    return f["open_at"][int(t)]


def open_requests(f: Frames):
    if f["newest"] is None:
        return None, None, [], [], None, ""
    xs = spark_points(f.q)
    ys = [_open_at(f, t)["open"] for t in xs]
    v = float(ys[-1])
    return v, v - ys[0], xs, ys, f["newest"], \
        f"{_open_at(f, xs[-1])['overdue']:,} overdue · open until closed, any age"


def overdue(f: Frames):
    if f["newest"] is None:
        return None, None, [], [], None, ""
    xs = spark_points(f.q)
    ys = [_open_at(f, t)["overdue"] for t in xs]
    v = float(ys[-1])
    o = _open_at(f, xs[-1])["open"]
    return v, v - ys[0], xs, ys, f["newest"], \
        f"{100 * v / o:.0f}% of open requests (any age) past SLA" if o else ""


def overdue_share(f: Frames, value):
    """The overdue KPI's status: overdue as a share (%) of all open requests."""
    o = _open_at(f, spark_points(f.q)[-1])["open"]
    return None if value is None else (100 * value / o if o else 0.0)


def median_close(f: Frames):
    cur, prev = f["current"][0], f["previous"][0]
    v, p = cur["median_hours"], prev["median_hours"]
    x, y = _spark(f, "hours")
    return v, change(v, p), x, y, f["newest"], \
        f"{cur['n']:,} closed in 30 d, median ±1 % (trend: daily mean)"
