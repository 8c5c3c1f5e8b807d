"""The KPI registry: every headline number of the four domains, declared once.

A KPI's ``id`` is permanent (it appears in URLs, exports and the API); ``label`` is display only.
Each KPI computes from the read model a :class:`KpiValue`: value, unit, change vs the previous
period, sparkline, status from thresholds and the age of its newest data. Unknown is ``None``,
never 0. No Dash or Flask here: tests call :func:`compute_all` with a connection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from dashboard.store import readmodel as rm

#: How often each domain's feed reports, in seconds; older than 3 periods = stale.
FEED_PERIOD = {"traffic": 60, "energy": 60, "satisfaction": 900}
STALE_PERIODS = 3
SERVICE_WINDOW = 30 * 86_400


@dataclass
class KpiValue:
    """One KPI, computed."""

    id: str
    domain: str
    label: str
    unit: str
    value: float | str | None
    delta: float | None
    delta_label: str
    status: str  # good | warn | bad | unknown
    as_of: int | None
    age_s: float | None
    stale: bool
    spark_x: list[int] = field(default_factory=list)
    spark_y: list[float] = field(default_factory=list)
    note: str = ""
    decimals: int = 0
    no_assets: str = ""  # e.g. "no stations in this city": the domain has nothing to measure (not "no data yet")
    loading: str = ""  # "history loading (40 %)": its window reaches into days a background fill has not written yet

    def as_json(self) -> dict:
        """Return the API form of this KPI (no sparkline)."""
        v = self.value
        if isinstance(v, float):
            v = round(v, self.decimals + 2)
        return {"id": self.id, "domain": self.domain, "label": self.label, "value": v, "unit": self.unit,
                "delta": None if self.delta is None else round(self.delta, self.decimals + 2),
                "delta_label": self.delta_label, "status": self.status, "stale": self.stale,
                "data_age_s": None if self.age_s is None else round(self.age_s, 1),
                "as_of": None if self.as_of is None else datetime.fromtimestamp(self.as_of, timezone.utc).isoformat().replace("+00:00", "Z"),
                "note": " · ".join(x for x in (self.loading, self.note or self.no_assets) if x)}

    def formatted(self) -> str:
        """Return the value as shown on screen ('—' when unknown)."""
        if self.value is None:
            return "—"
        if isinstance(self.value, str):
            return self.value
        return f"{self.value:,.{self.decimals}f}"


class Ctx:
    """What a KPI computation needs: a connection, the time, the window and the district."""

    def __init__(self, conn: Connection, now: float, window: str = "24h", district: str | None = None,
                 aqi_standard: str = "cn", thresholds: dict[str, tuple[float, float]] | None = None):
        if window not in rm.WINDOWS:
            raise ValueError(f"unknown window {window!r} (choose {', '.join(rm.WINDOWS)})")
        self.conn, self.now, self.window, self.district, self.std = conn, float(now), window, district, aqi_standard
        self.span = rm.WINDOWS[window]
        self.res = rm.WINDOW_RES[window]
        self.start = int(now) - self.span
        self._memo: dict = {}
        self.thresholds = thresholds or {}

    def memo(self, key, fn):
        """Compute ``fn()`` once per context."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def series(self, metric: str, start: int | None = None, res: int | None = None) -> rm.Rollup:
        """Return the district (or city) rollup of ``metric`` from ``start`` (default window start) to now."""
        start = self.start if start is None else start
        res = res or self.res
        return self.memo(("series", metric, start, res), lambda: self._series(metric, start // res * res, res))

    def _series(self, metric: str, lo: int, res: int) -> rm.Rollup:
        # a range inside one already read (to the same end) is a slice of it: one query per
        # metric and resolution when the widest range is asked for first
        have = self._memo.get(("read", metric, res))
        if have is not None and have[0] <= lo:
            return have[1].since(lo) if have[0] < lo else have[1]
        r = rm.district_rollup(self.conn, metric, lo, int(self.now) + 1, res, self.district)
        self._memo[("read", metric, res)] = (lo, r)
        return r

    def asset_count(self, kind: str) -> int:
        """Return the number of assets of ``kind`` in the selection."""
        return self.memo(("count", kind), lambda: rm.asset_count(self.conn, kind, self.district))

    @cached_property
    def tz(self) -> ZoneInfo:
        """Return the city's timezone."""
        return ZoneInfo(rm.city_meta(self.conn).get("timezone", "UTC"))

    # --------------------------------------------------------------- traffic
    @cached_property
    def roads(self) -> pd.DataFrame:
        """Return latest speed and incident state per segment with its free-flow speed."""
        w = rm.latest_wide(self.conn, "road_segment", ["speed_kmh", "incident"], self.district,
                           attrs=("free_flow_kmh",))
        w["free_flow_kmh"] = w["free_flow_kmh"].fillna(60.0)
        return w

    @cached_property
    def roads_speed(self) -> pd.DataFrame:
        """Return the segments that have a speed reading."""
        r = self.roads
        return r[r["speed_kmh"].notna()]

    # --------------------------------------------------------------- energy
    @cached_property
    def substations(self) -> pd.DataFrame:
        """Return latest load and renewable supply per substation with its capacity."""
        return rm.latest_wide(self.conn, "substation", ["load_mw", "renewable_mw"], self.district,
                              attrs=("capacity_mw",))

    def load_series(self, metric: str = "load_mw", start: int | None = None,
                    res: int | None = None) -> tuple[rm.Rollup, np.ndarray]:
        """Return a summed substation metric's rollup and its district/city total per bucket (mean × assets)."""
        def total():
            s = self.series(metric, start, res)
            return s, s.mean * self.asset_count("substation")
        return self.memo(("load", metric, start, res), total)

    # --------------------------------------------------------------- services
    def service_stats(self, start: int, end: int) -> dict:
        """Return closed-request statistics for [start, end)."""
        return self.service_window(start, end)[0]

    def service_window(self, start: int, end: int) -> tuple[dict, pd.DataFrame]:
        """Return closed-request statistics and their daily series for [start, end)."""
        return self.memo(("svc", start, end), lambda: rm.service_window(self.conn, start, end, self.district))

    def open_at(self, t: int) -> dict:
        """Return open and overdue counts at ``t`` (the sparkline's times are counted in one query)."""
        if ("open", t) not in self._memo:
            times = sorted({int(t), *(int(x) for x in _svc_points(self))})
            for k, v in rm.service_open_at_many(self.conn, times, self.district).items():
                self._memo[("open", k)] = v
        return self._memo[("open", int(t))]

    @cached_property
    def service_as_of(self) -> int | None:
        """Return the newest service-request event time."""
        return rm.service_newest_ts(self.conn, self.district)

    @cached_property
    def population(self) -> float:
        """Return the population of the selection."""
        d = rm.district_populations(self.conn)
        if self.district:
            d = d[d.index == self.district]
        return float(d.fillna(0).sum())


@dataclass(frozen=True)
class Kpi:
    """A KPI declaration.

    ``compute(ctx)`` returns (value, delta, spark_x, spark_y, as_of, note). Thresholds: status is
    ``bad`` beyond ``bad``, ``warn`` beyond ``warn`` (in the worse direction), else ``good``.
    """

    id: str  # permanent: saved in URLs and exports, never changes
    domain: str
    label: str  # display only
    unit: str
    compute: Callable[[Ctx], tuple]
    warn: float | None = None
    bad: float | None = None
    higher_is_worse: bool = True
    decimals: int = 0
    delta_label: str = "vs {window} ago"
    status_from: Callable[[Ctx, object], float | None] | None = None  # value used for status, if not the value
    #: the oldest time its value, change and trend read (default: the window's start)
    reach: Callable[[Ctx], int] | None = None

    def reaches(self, ctx: Ctx) -> int:
        """Return the oldest time this KPI reads in ``ctx``."""
        return int(self.reach(ctx)) if self.reach else ctx.start

    def status(self, ctx: Ctx, value) -> str:
        """Return good/warn/bad/unknown for ``value`` (the city's thresholds override the registry's)."""
        v = self.status_from(ctx, value) if self.status_from else value
        warn, bad = ctx.thresholds.get(self.id, (self.warn, self.bad))
        if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) or warn is None:
            return "unknown" if v is None or (isinstance(v, float) and math.isnan(v)) else "good"
        sign = 1 if self.higher_is_worse else -1
        if sign * v >= sign * bad:
            return "bad"
        if sign * v >= sign * warn:
            return "warn"
        return "good"

    def evaluate(self, ctx: Ctx) -> KpiValue:
        """Compute this KPI in ``ctx``."""
        value, delta, sx, sy, as_of, note = self.compute(ctx)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if delta is not None and not math.isfinite(delta):
            delta = None
        age = None if as_of is None else max(0.0, ctx.now - as_of)
        stale = age is None or age > STALE_PERIODS * FEED_PERIOD[self.domain]
        return KpiValue(
            id=self.id, domain=self.domain, label=self.label, unit=self.unit, value=value, delta=delta,
            delta_label=self.delta_label.format(window=ctx.window), status=self.status(ctx, value),
            as_of=None if as_of is None else int(as_of), age_s=age, stale=bool(stale and value is not None),
            spark_x=np.asarray(sx).astype(np.int64).tolist(), spark_y=_finite_or_none(sy),
            note=note, decimals=self.decimals)


# ---------------------------------------------------------------------------- helpers
def _finite_or_none(ys) -> list:
    """Return ``ys`` as a list of floats, None where not finite."""
    arr = np.asarray(ys, dtype=float)
    out = arr.tolist()
    for i in np.flatnonzero(~np.isfinite(arr)).tolist():
        out[i] = None
    return out


def _nan_none(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _change(now_value, previous):
    """Return the change from ``previous`` to ``now_value``, or None when either is unknown."""
    return None if now_value is None or previous is None else now_value - previous


def _delta_vs_start(now_value, xs, ys):
    """Return now_value minus the first point of the window's trend (≈ one window ago)."""
    if now_value is None or len(ys) == 0 or isinstance(now_value, str):
        return None
    first = ys[0]
    return None if first is None or not np.isfinite(first) else float(now_value) - float(first)


def plural(n: int, word: str, many: str | None = None) -> str:
    """Return "1 station", "2 stations" (``many`` for an irregular plural)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _ts(df: pd.DataFrame) -> int | None:
    return None if df.empty or df["ts"].isna().all() else int(df["ts"].max())


# ---------------------------------------------------------------------------- traffic
def _tti(ctx: Ctx):
    r = ctx.roads_speed
    v = _nan_none((r["free_flow_kmh"] / np.maximum(r["speed_kmh"], 1.0)).mean()) if len(r) else None
    s = ctx.series("tti")
    return v, _delta_vs_start(v, s.bucket, s.mean), s.bucket, s.mean, _ts(r), ""


def _mean_speed(ctx: Ctx):
    r = ctx.roads_speed
    v = _nan_none(r["speed_kmh"].mean()) if len(r) else None
    s = ctx.series("speed_kmh")
    return v, _delta_vs_start(v, s.bucket, s.mean), s.bucket, s.mean, _ts(r), ""


def _congested(ctx: Ctx):
    r = ctx.roads_speed
    v = _nan_none(100.0 * (r["speed_kmh"] < 0.5 * r["free_flow_kmh"]).mean()) if len(r) else None
    s = ctx.series("congested")
    y = s.mean * 100
    return v, _delta_vs_start(v, s.bucket, y), s.bucket, y, _ts(r), ""


def _incidents(ctx: Ctx):
    r = ctx.roads
    if r.empty:
        return None, None, [], [], None, ""
    active = float((r["incident"] == 1).sum())
    # walk the rollup forward from an hour before the window (incidents last under an hour):
    # a 1 reading starts an incident, a 0 ends one; a 0 with none active (a feed restating
    # its state after a restart) is ignored by the clip at zero
    s = ctx.series("incident", start=ctx.start - 3600)
    starts = s.sum
    ends = s.n - s.sum
    walk, level = [], 0.0
    for a, b in zip(starts, ends):
        level = max(0.0, level + a - b)
        walk.append(level)
    keep = s.bucket >= ctx.start // ctx.res * ctx.res
    xs, ys = s.bucket[keep], np.asarray(walk)[keep]
    return active, _delta_vs_start(active, xs, ys), xs, ys, _ts(ctx.roads_speed), \
        f"{int(starts[keep].sum())} started in {ctx.window}"


# ---------------------------------------------------------------------------- energy
def _load_now(ctx: Ctx):
    ss = ctx.substations[ctx.substations["load_mw"].notna()] if len(ctx.substations) else ctx.substations
    v = float(ss["load_mw"].sum()) if len(ss) else None
    s, total = ctx.load_series()
    return v, _delta_vs_start(v, s.bucket, total), s.bucket, total, _ts(ss), \
        plural(len(ss), "substation")


def _capacity_share(ctx: Ctx):
    # also the load KPI's status: computed once per context
    return ctx.memo("capacity_share", lambda: _capacity_share_of(ctx))


def _capacity_share_of(ctx: Ctx):
    ss = ctx.substations[ctx.substations["load_mw"].notna()] if len(ctx.substations) else ctx.substations
    cap = ss["capacity_mw"].sum() if len(ss) else 0
    v = float(100 * ss["load_mw"].sum() / cap) if cap else None
    s, _ = ctx.load_series()
    c = ctx.series("capacity_mw")
    y = 100 * s.sum / c.at("sum", s.bucket) if len(s) else []
    return v, _delta_vs_start(v, s.bucket, np.asarray(y)), s.bucket, y, _ts(ss), \
        f"of {cap:,.0f} MW rated" if cap else ""


def _consumption_today(ctx: Ctx):
    v, d, xs, ys, as_of, note = _consumption_today_of(ctx)
    if ctx.window != "24h" and v is not None:  # a day's total, the same in every window: say so
        note = f"since midnight, not the {ctx.window} window" + (f" · {note}" if note else "")
    return v, d, xs, ys, as_of, note


def _consumption_today_of(ctx: Ctx):
    now = datetime.fromtimestamp(ctx.now, ctx.tz)
    midnight = int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    y_midnight = int((now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)).timestamp())
    elapsed = int(ctx.now) - midnight
    yday, ytotal = ctx.load_series(start=y_midnight, res=300)  # the wider range first: one read
    today, total = ctx.load_series(start=midnight, res=300)
    ytotal = ytotal[yday.bucket < y_midnight + elapsed]
    if today.empty:
        return None, None, [], [], None, ""
    cum = np.cumsum(total * 300 / 3600)
    v = float(cum[-1])
    p = float((ytotal * 300 / 3600).sum()) if len(ytotal) else None
    ss = ctx.substations
    # a sum over a period with holes is not the period's consumption: say so, and compare only
    # whole periods (one bucket may be missing: the current one before its first reading)
    span = f"{elapsed / 3600:.1f}"
    if len(today) < elapsed // 300:  # of elapsed // 300 + 1 buckets so far
        return v, None, today.bucket, cum, _ts(ss), \
            f"partial: {min(300 * len(today), elapsed) / 3600:.1f} of {span} h measured"
    if len(ytotal) < -(-elapsed // 300) - 1:  # of ⌈elapsed / 300⌉ buckets
        return v, None, today.bucket, cum, _ts(ss), \
            f"yesterday incomplete ({min(300 * len(ytotal), elapsed) / 3600:.1f} of {span} h): no comparison"
    note = "" if not p else f"{100 * (v - p) / p:+.1f}% vs yesterday by this hour"
    return v, (v - p) if p else None, today.bucket, cum, _ts(ss), note


def _renewable_share(ctx: Ctx):
    ss = ctx.substations.dropna(subset=["load_mw"]) if len(ctx.substations) else ctx.substations
    load = ss["load_mw"].sum() if len(ss) else 0
    v = float(100 * ss["renewable_mw"].fillna(0).sum() / load) if load else None
    r = ctx.series("renewable_mw")
    lo = ctx.series("load_mw")
    y = 100 * r.sum / lo.at("sum", r.bucket) if len(r) else np.array([], dtype=float)
    return v, _delta_vs_start(v, r.bucket, y), r.bucket, y, _ts(ss), ""


# ---------------------------------------------------------------------------- satisfaction
def _svc_periods(ctx: Ctx):
    end = int(ctx.now) + 1
    return ctx.service_stats(end - SERVICE_WINDOW, end), ctx.service_stats(end - 2 * SERVICE_WINDOW, end - SERVICE_WINDOW)


def _svc_spark(ctx: Ctx, col: str):
    end = int(ctx.now) + 1
    d = ctx.service_window(end - SERVICE_WINDOW, end)[1]
    if col == "pct":
        return d["bucket"], (100 * d["satisfied"] / d["rated"].replace(0, np.nan)).to_numpy()
    return d["bucket"], d[col].to_numpy()


def _satisfaction(ctx: Ctx):
    cur, prev = _svc_periods(ctx)
    v, p = cur["satisfaction"], prev["satisfaction"]
    x, y = _svc_spark(ctx, "satisfaction")
    return v, _change(v, p), x, y, ctx.service_as_of, \
        plural(cur['rated'], "rated closure")


def _pct_satisfied(ctx: Ctx):
    cur, prev = _svc_periods(ctx)
    v = 100 * cur["satisfied"] / cur["rated"] if cur["rated"] else None
    p = 100 * prev["satisfied"] / prev["rated"] if prev["rated"] else None
    x, y = _svc_spark(ctx, "pct")
    return v, _change(v, p), x, y, ctx.service_as_of, "rated 4 or 5"


def _svc_points(ctx: Ctx, n: int = 7):
    end = int(ctx.now)
    return [end - ctx.span + i * ctx.span // (n - 1) for i in range(n)]


def _open_requests(ctx: Ctx):
    if ctx.service_as_of is None:
        return None, None, [], [], None, ""
    xs = _svc_points(ctx)
    ys = [ctx.open_at(t)["open"] for t in xs]
    v = float(ys[-1])
    return v, v - ys[0], xs, ys, ctx.service_as_of, \
        f"{ctx.open_at(xs[-1])['overdue']:,} overdue · open until closed, any age"


def _overdue(ctx: Ctx):
    if ctx.service_as_of is None:
        return None, None, [], [], None, ""
    xs = _svc_points(ctx)
    ys = [ctx.open_at(t)["overdue"] for t in xs]
    v = float(ys[-1])
    o = ctx.open_at(xs[-1])["open"]
    return v, v - ys[0], xs, ys, ctx.service_as_of, \
        f"{100 * v / o:.0f}% of open requests (any age) past SLA" if o else ""


def _overdue_share(ctx: Ctx, value):
    o = ctx.open_at(_svc_points(ctx)[-1])["open"]
    return None if value is None else (100 * value / o if o else 0.0)


def _yesterday_midnight(ctx: Ctx) -> int:
    now = datetime.fromtimestamp(ctx.now, ctx.tz)
    return int((now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)).timestamp())


def _svc_reach(ctx: Ctx) -> int:
    return int(ctx.now) + 1 - 2 * SERVICE_WINDOW  # this 30 days and the previous 30


def _any_age(_ctx: Ctx) -> int:
    return 0  # requests still open, opened at any time


def _median_close(ctx: Ctx):
    cur, prev = _svc_periods(ctx)
    v, p = cur["median_hours"], prev["median_hours"]
    x, y = _svc_spark(ctx, "hours")
    return v, _change(v, p), x, y, ctx.service_as_of, \
        f"{cur['n']:,} closed in 30 d, median ±1 % (trend: daily mean)"


KPIS: list[Kpi] = [
    Kpi("traffic.tti", "traffic", "Travel-time idx", "×", _tti, warn=1.3, bad=1.6, decimals=2),
    Kpi("traffic.mean_speed", "traffic", "Mean speed", "km/h", _mean_speed, warn=50, bad=35, higher_is_worse=False),
    Kpi("traffic.congested", "traffic", "Congested", "%", _congested, warn=10, bad=25, decimals=1),
    Kpi("traffic.incidents", "traffic", "Incidents", "", _incidents, warn=2, bad=5,
        reach=lambda c: c.start - 3600),
    Kpi("energy.load", "energy", "Load now", "MW", _load_now,
        status_from=lambda c, v: None if v is None else _capacity_share(c)[0], warn=75, bad=90),
    Kpi("energy.capacity_share", "energy", "Of capacity", "%", _capacity_share, warn=75, bad=90, decimals=1),
    Kpi("energy.consumption_today", "energy", "Used today", "MWh", _consumption_today,
        delta_label="vs yesterday by this hour", reach=_yesterday_midnight),
    Kpi("energy.renewable_share", "energy", "Renewables", "%", _renewable_share, warn=5, bad=2,
        higher_is_worse=False, decimals=1),
    Kpi("service.satisfaction", "satisfaction", "Satisfaction", "/ 5", _satisfaction, warn=4.0, bad=3.5,
        higher_is_worse=False, decimals=2, delta_label="vs previous 30 d", reach=_svc_reach),
    Kpi("service.pct_satisfied", "satisfaction", "Satisfied", "%", _pct_satisfied, warn=75, bad=60,
        higher_is_worse=False, decimals=1, delta_label="vs previous 30 d", reach=_svc_reach),
    Kpi("service.open", "satisfaction", "Open", "", _open_requests, reach=_any_age),
    Kpi("service.overdue", "satisfaction", "Overdue", "", _overdue, warn=10, bad=25, status_from=_overdue_share,
        reach=_any_age),
    Kpi("service.median_close", "satisfaction", "Time to close", "h", _median_close, warn=24, bad=48,
        decimals=1, delta_label="vs previous 30 d", reach=_svc_reach),
]
KPI_BY_ID = {k.id: k for k in KPIS}
#: One line per KPI saying what it measures: the cards' hover text and accessible description.
DEFINITIONS = {
    "traffic.tti": "Travel-time index: free-flow speed over current speed, averaged over road segments (1 = free flow)",
    "traffic.mean_speed": "Mean current speed over the road segments with a reading",
    "traffic.congested": "Share of road segments slower than half their free-flow speed",
    "traffic.incidents": "Road segments with an active incident now",
    "energy.load": "Total load on all substations now; status from the share of their rated capacity",
    "energy.capacity_share": "Total substation load as a share of their rated capacity",
    "energy.consumption_today": "Energy used since midnight (city time), whatever the window",
    "energy.renewable_share": "Renewable supply as a share of the total load now",
    "service.satisfaction": "Mean citizen rating (1–5) of service requests closed in the last 30 days",
    "service.pct_satisfied": "Share of rated closures in the last 30 days rated 4 or 5",
    "service.open": "Service requests open now, whatever their age",
    "service.overdue": "Open service requests past their due time (SLA); status from their share of all open",
    "service.median_close": "Median hours from opening to closing, for requests closed in the last 30 days",
}
assert set(DEFINITIONS) == set(KPI_BY_ID), "every KPI has one definition"
assert len(KPI_BY_ID) == len(KPIS), "KPI ids must be unique"


def compute_all(conn: Connection, now: float, window: str = "24h", district: str | None = None,
                aqi_standard: str = "cn", domain: str | None = None,
                thresholds: dict[str, tuple[float, float]] | None = None) -> list[KpiValue]:
    """Compute every KPI (of ``domain``) for the window and district (``thresholds``: per-KPI overrides)."""
    ctx = Ctx(conn, now, window, district, aqi_standard, thresholds)
    with rm.shared_reads():  # the KPIs of a domain share their reads of `latest` and of the assets token
        out = [k.evaluate(ctx) for k in KPIS if domain is None or k.domain == domain]
    fill = rm.history_fill(conn)
    if fill:  # older days still being written: the numbers that read them will change; say so
        word = "history incomplete" if fill["failed"] else "history loading"
        for v in out:
            if KPI_BY_ID[v.id].reaches(ctx) < fill["to"]:
                v.loading = f"{word} ({fill['percent']} %)"
    return out
