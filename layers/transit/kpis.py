"""Public transport's reads and KPIs: on-time share, mean delay, headway regularity, buses in service.

The arrival KPIs are over the arrivals of the last 30 minutes (the district's 5-min rollups, so
every arrival counts, not only each stop's newest); their trends are the same rollups over the
window.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from layers._domain import Frames
from layers._kpi import Quiet, delta_vs_start, newest, plural
from layers.transit.timetable import DAY_S

LINE, STOP, VEHICLE = "transit_line", "transit_stop", "transit_vehicle"
#: An arrival is on time from 1 min early to 5 min late (s).
ON_TIME_BAND = (-60.0, 300.0)
#: A headway is regular within ±50 % of the scheduled one (actual ÷ scheduled).
REGULAR_BAND = (0.5, 1.5)
#: The arrival KPIs' "now": arrivals of the last 30 minutes (5-min buckets).
RECENT_S = 1800
#: A bus is in service when it reported its position in the last 5 minutes.
IN_SERVICE_S = 300
#: The rollup series the KPIs read: frame name -> metric or derived series.
SERIES = {"on_time": "transit_on_time", "delay": "arrival_delay_s", "regular": "transit_headway_regular",
          "running": "vehicles_running"}
RECENT = ("on_time", "delay", "regular")


def on_time(values, attrs=None) -> np.ndarray:
    """Return 1 where an arrival delay (s) is within :data:`ON_TIME_BAND`, else 0 (the derived series)."""
    v = np.asarray(values, dtype=float)
    return ((v >= ON_TIME_BAND[0]) & (v <= ON_TIME_BAND[1])).astype(float)


def regular(values, attrs=None) -> np.ndarray:
    """Return 1 where a headway ratio is within :data:`REGULAR_BAND`, else 0 (the derived series)."""
    v = np.asarray(values, dtype=float)
    return ((v >= REGULAR_BAND[0]) & (v <= REGULAR_BAND[1])).astype(float)


def latest(r) -> dict:
    """Current positions and delays of the buses, each stop's newest arrival, each line's buses on duty."""
    return {"vehicles": r.latest(VEHICLE, ["veh_lon", "veh_lat", "veh_delay_s"], attrs=("line_no",)),
            "stops": r.latest(STOP, ["arrival_delay_s", "headway_s", "headway_ratio"],
                              attrs=("line_no", "direction", "first_s", "last_s")),
            "lines": r.latest(LINE, ["vehicles_running"], attrs=("line_no",))}


def history(r) -> dict:
    """The window's series of the district (or city), then the last 30 minutes at 5 min (a slice of
    the window's when it is read at 5 min), and how many lines and buses the district has."""
    q = r.q
    out = {name: r.rollup(m) for name, m in SERIES.items()}
    out.update({f"{name}_recent": r.rollup(SERIES[name], start=int(q.now) - RECENT_S, res=300) for name in RECENT})
    out["n_lines"] = r.asset_count(LINE, q.district)
    out["n_vehicles"] = r.asset_count(VEHICLE, q.district)
    return out


def _recent_mean(f: Frames, name: str) -> tuple[float | None, int]:
    """Return the mean of series ``name`` over the last 30 minutes and how many values it has."""
    s = f[f"{name}_recent"]
    n = int(np.sum(s.n)) if len(s) else 0
    return (float(np.sum(s.sum) / n) if n else None), n


def local_second(now: float, tz: str) -> float:
    """Return the local second of the day (in ``tz``) at ``now``."""
    t = datetime.fromtimestamp(now, ZoneInfo(tz))
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def scheduled_recently(stops: pd.DataFrame, now: float, tz: str, span_s: float = RECENT_S) -> bool | None:
    """Return whether any of ``stops`` had an arrival scheduled in the ``span_s`` before ``now`` (its
    ``first_s``..``last_s``, local seconds of the day; a span reaching back over midnight counts
    yesterday's evening too); None when no stop says when it is served."""
    if stops is None or not len(stops) or "first_s" not in stops.columns or "last_s" not in stops.columns:
        return None
    first = pd.to_numeric(stops["first_s"], errors="coerce").to_numpy(dtype=float)
    last = pd.to_numeric(stops["last_s"], errors="coerce").to_numpy(dtype=float)
    known = np.isfinite(first) & np.isfinite(last)
    if not known.any():
        return None
    if (~known).any():
        return True  # a stop whose service hours are unknown may be served at any hour
    sod = local_second(now, tz)
    spans = [(sod - span_s, sod)] if sod >= span_s else [(0.0, sod), (DAY_S + sod - span_s, DAY_S)]
    return bool(any(((first <= b) & (last >= a)).any() for a, b in spans))


def served_recently(f: Frames) -> bool:
    """Return whether a bus was scheduled in the last 30 minutes at a stop of the place (the stops'
    timetable, as their arrivals carry it), else on a line of the city (the static lines, when no stop
    reported: a store that begins at night); True when neither says."""
    q = f.q
    known = scheduled_recently(f["stops"], q.now, q.tz)
    if known is None and f.static is not None:
        from layers.transit.layer import lines_of  # the layer imports this module

        known = scheduled_recently(lines_of(f.static), q.now, q.tz)
    return known is not False


def _recent_kpi(f: Frames, name: str, times: float, per: float, word: str):
    """A KPI over the last 30 minutes of series ``name`` (× ``times`` / ``per``), its trend the window's.
    With no arrival while no stop of the place was served (night): quiet, not "no data"."""
    v, n = _recent_mean(f, name)
    v = None if v is None else times * v / per
    s = f[name]
    y = times * np.asarray(s.mean, dtype=float) / per
    if n:
        note = f"{plural(n, word)} in the last 30 min"
    elif not f.memo("served_recently", lambda: served_recently(f)):  # the three arrival KPIs ask it
        note = Quiet("no bus service now")
    else:
        note = f"no {word} in the last 30 min"
    return v, delta_vs_start(v, s.bucket, y), s.bucket, y, f.memo("feed_as_of", lambda: feed_as_of(f)), note


def feed_as_of(f: Frames) -> int | None:
    """Return the transit feed's newest report, city-wide: one feed serves every district, and its
    lines count their buses on duty every period, also at night, so neither a quiet evening nor a
    district whose stops no bus served in the last minutes is a stale feed (the newest arrival alone
    would say so)."""
    city = f if f.city is None else f.city
    times = [t for t in (newest(city.get(n)) for n in ("stops", "lines", "vehicles")) if t is not None]
    return max(times) if times else None


def on_time_share(f: Frames):
    return _recent_kpi(f, "on_time", 100, 1, "arrival")


def mean_delay(f: Frames):
    return _recent_kpi(f, "delay", 1, 60, "arrival")  # minutes


def regularity(f: Frames):
    return _recent_kpi(f, "regular", 100, 1, "headway")


def in_service_now(vehicles: pd.DataFrame, now: float) -> np.ndarray:
    """Return which buses of ``vehicles`` reported a position in the last :data:`IN_SERVICE_S`."""
    if vehicles is None or not len(vehicles):
        return np.zeros(0, dtype=bool)
    ts = pd.to_numeric(vehicles["ts"], errors="coerce").to_numpy(dtype=float)
    lon = pd.to_numeric(vehicles["veh_lon"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(lon) & (ts >= now - IN_SERVICE_S) & (ts <= now + 60)


def in_service(f: Frames):
    """Buses that reported in the last 5 min; the lines' own counts say the feed is alive at night."""
    veh, lines = f["vehicles"], f["lines"]
    times = [t for t in (newest(veh), newest(lines)) if t is not None]
    as_of = max(times) if times else None
    v = float(in_service_now(veh, f.q.now).sum()) if as_of is not None else None
    s = f["running"]
    total = np.asarray(s.mean, dtype=float) * f["n_lines"]  # a line's mean count × lines: the district's buses
    fleet = f.get("n_vehicles") or 0
    return v, delta_vs_start(v, s.bucket, total), s.bucket, total, as_of, \
        f"of {plural(fleet, 'bus', 'buses')}" if fleet else ""
