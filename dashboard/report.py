"""Period reports: one self-contained HTML file (static SVG charts, no script), optionally printed to PDF.

The KPI layer computes windows that end "now" (1h/24h/7d); a report covers any past period. So the
summary table compares, for each KPI, the **mean of its hourly trend** (read model rollups) over the
period with the same over the previous period of equal length, and says so; a category (the main
pollutant) shows its most frequent value, a running total ("Used today") the period's total. The
report states its exact period (start, end, time zone), flags days not yet over and periods whose
mix of weekdays and weekend days differs, says in a paragraph what moved most and where, and maps
the districts' period means. "Latest" is the KPI's live value, shown only when the period reaches
the newest data.
"""
from __future__ import annotations

import html
import math
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from dashboard.export import CLOSED_NETWORK_FLAGS, SOFTWARE_GL_FLAGS, browser_path
from dashboard.kpis import KPI_BY_ID, KPIS, compute_all
from dashboard.metrics import CITY
from layers import DOMAINS
from dashboard.settings import PROJECT_ROOT
from dashboard.store import readmodel as rm
from dashboard.theme import STATUS, STATUS_COLOURS, THEMES

SPAN = rm.WINDOWS["7d"]
THEME = "light"  # reports are read on paper and in documents
MANIFEST = PROJECT_ROOT / "data" / "MANIFEST.md"


@dataclass
class KpiPeriod:
    """One KPI over a period and the previous one."""

    id: str
    domain: str
    label: str
    unit: str
    decimals: int
    xs: list  # epoch seconds, this period
    ys: list
    prev_xs: list
    prev_ys: list
    latest: str | None = None  # live value, when the period reaches now
    as_of: int | None = None

    @staticmethod
    def _mean(ys) -> float | None:
        a = np.array([np.nan if y is None else y for y in ys], dtype=float)
        return float(np.nanmean(a)) if np.isfinite(a).any() else None

    @property
    def mean(self) -> float | None:
        """Return the period mean of the trend."""
        return self._mean(self.ys)

    @property
    def prev_mean(self) -> float | None:
        """Return the previous period's mean of the trend."""
        return self._mean(self.prev_ys)


#: The dates a period may span: nothing is stored before 1970; the last day must have a next day.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date.max - timedelta(days=1)


def period_bounds(start: date, end: date, tz) -> tuple[int, int, int]:
    """Return (previous start, start, end) epoch seconds of ``start``..``end`` inclusive, in ``tz``.

    Dates before 1970 or on the calendar's last day are taken as 1970-01-01 and the day before it
    (no data can be there); the previous period does not start before 1970 either.
    """
    if end < start:
        raise ValueError("--to is before --from")
    start, end = min(max(start, FIRST_DAY), LAST_DAY), min(max(end, FIRST_DAY), LAST_DAY)
    t0 = datetime.combine(start, datetime.min.time(), tz).timestamp()
    t1 = datetime.combine(end + timedelta(days=1), datetime.min.time(), tz).timestamp()
    return max(int(2 * t0 - t1), min(int(t0), 0)), int(t0), int(t1)


def data_range(conn) -> tuple[int, int] | None:
    """Return (oldest, newest) time of the stored data (hourly rollups and service requests), or None."""
    from sqlalchemy import func, select

    from dashboard.store.schema import latest, rollup_district, service_requests

    rd, sr = rollup_district, service_requests
    lo = [conn.execute(select(func.min(rd.c.bucket)).where(rd.c.res == 3600, rd.c.district_id == CITY)).scalar(),
          conn.execute(select(func.min(sr.c.opened_at))).scalar()]
    hi = [conn.execute(select(func.max(latest.c.ts))).scalar(), rm.service_newest_ts(conn),
          conn.execute(select(func.max(rd.c.bucket)).where(rd.c.res == 3600, rd.c.district_id == CITY)).scalar()]
    lo, hi = [int(v) for v in lo if v is not None], [int(v) for v in hi if v is not None]
    return (min(lo), max(hi)) if lo and hi else None


def clip_to_data(t0: int, t1: int, span: tuple[int, int] | None) -> tuple[int, int]:
    """Return [t0, t1) narrowed to the stored data ``span`` and a week either side (empty: t0 == t1).

    The week keeps every trend point a window over stored data can have (a backlog goes on after
    the last event), so a period within reach of the data reads exactly what it read before.
    """
    if span is None:
        return t0, t0
    a, b = max(t0, span[0] // 3600 * 3600 - SPAN), min(t1, (span[1] // 3600 + 1) * 3600 + SPAN)
    return (a, b) if a < b else (t0, t0)


def _series(conn, t0: int, t1: int, district, std, progress=None) -> dict:
    """Return each KPI's trend points in [t0, t1), from 7-day windows ending at t1, t1-7d, …"""
    out: dict[str, dict] = {}
    end = t1
    weeks, done = -(-(t1 - t0) // SPAN), 0
    while end > t0:
        for k in compute_all(conn, end, "7d", district, std):
            pts = out.setdefault(k.id, {})
            for x, y in zip(k.spark_x, k.spark_y):
                if t0 <= x < t1 and (x not in pts or pts[x] is None):
                    pts[x] = y
        end -= SPAN
        done += 1
        if progress is not None and weeks > 1:
            progress(done, weeks)
    return {kid: (sorted(p), [p[x] for x in sorted(p)]) for kid, p in out.items()}


PAPERS = {"a4": "A4", "letter": "letter"}
#: Countries whose paper is US Letter (ISO 3166 alpha-2); everywhere else A4.
LETTER_COUNTRIES = frozenset({"US", "CA", "MX", "PH", "CL", "CO", "VE", "GT", "CR", "PA", "DO", "PR", "SV", "NI",
                              "HN", "BZ"})
#: categories (the most frequent value, no mean and no chart): KPI id -> fn(conn, lo, hi, district, std)
#: giving (the period's value, hours it led, hours with data) — a KPI's ``report=("category", fn)``
CATEGORY_KPIS = {k.id: k.report[1] for d in DOMAINS for k in d.kpis if k.report and k.report[0] == "category"}
#: running totals of the current day, meaningless over a period: (trend they total, label, unit) —
#: a KPI's ``report=("total", trend KPI id, label, unit)``
TOTAL_KPIS = {k.id: tuple(k.report[1:]) for d in DOMAINS for k in d.kpis if k.report and k.report[0] == "total"}
#: district rollups compared for "what changed" and the map: metric -> (label, unit, decimals, higher is
#: worse) — each domain's ``movers``
MOVERS = {m[0]: tuple(m[1:]) for d in DOMAINS for m in d.movers}
LINE_STATUS = STATUS_COLOURS["light"]  # threshold lines: the status hues darkened to read on white
LIGHT_STATUS = {k: c for k, (c, _) in STATUS.items()}  # chips: the screens' own fills, dark text on them


def default_paper(config: dict | None) -> str:
    """Return "a4" or "letter": the city.toml's ``paper``, else by its locale's country, else A4."""
    config = config or {}
    if str(config.get("paper", "")).lower() in PAPERS:
        return str(config["paper"]).lower()
    for key in ("locale", "lang"):
        v = config.get(key)
        if isinstance(v, str):
            parts = v.split(".")[0].replace("_", "-").split("-")
            if len(parts) > 1 and parts[-1].upper() in LETTER_COUNTRIES:
                return "letter"
    return "a4"


@dataclass
class Period:
    """The report's period in city time: [t0, t1), the previous one [p0, t0), and how much is over."""

    start: date
    end: date  # inclusive
    tz: object
    p0: int
    t0: int
    t1: int
    newest: int | None  # the newest reading of any domain

    def local(self, ts: float) -> datetime:
        """Return ``ts`` in city time."""
        return datetime.fromtimestamp(ts, timezone.utc).astimezone(self.tz)

    def days(self, lo: date, hi: date) -> list[date]:
        """Return the days ``lo``..``hi`` inclusive."""
        return [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]

    @property
    def partial_days(self) -> list[tuple[date, float]]:
        """Return the period's days that the data does not cover to their end, with the share covered."""
        out = []
        upto = self.newest or 0
        for d in self.days(self.start, self.end):
            a = datetime.combine(d, datetime.min.time(), self.tz).timestamp()
            b = datetime.combine(d + timedelta(days=1), datetime.min.time(), self.tz).timestamp()
            if upto < b:
                out.append((d, max(0.0, min(1.0, (upto - a) / (b - a)))))
        return out

    def day_mix(self, lo: date, hi: date) -> tuple[int, int]:
        """Return (weekdays, weekend days) in ``lo``..``hi``."""
        ds = self.days(lo, hi)
        weekend = sum(d.weekday() >= 5 for d in ds)
        return len(ds) - weekend, weekend

    @property
    def previous_days(self) -> tuple[date, date]:
        n = (self.end - self.start).days + 1
        return self.start - timedelta(days=n), self.start - timedelta(days=1)


def _status(kid: str, v: float | None, thresholds: dict) -> str:
    from dashboard.kpis import KPI_BY_ID

    k = KPI_BY_ID[kid]
    warn, bad = thresholds.get(kid, (k.warn, k.bad))
    if v is None or not math.isfinite(v) or warn is None or k.status_from is not None:
        return "unknown"
    sign = 1 if k.higher_is_worse else -1
    return "bad" if sign * v >= sign * bad else "warn" if sign * v >= sign * warn else "good"


def _total(xs, ys) -> float | None:
    """Return the integral of an hourly-or-so trend (value × hours between points)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    if not pts:
        return None
    step = float(np.median(np.diff(xs))) if len(xs) > 1 else 3600.0
    return sum(y for _, y in pts) * step / 3600


def _district_means(conn, metric: str, lo: int, hi: int, ids) -> dict:
    out = {}
    for d in ids:
        r = rm.district_rollup(conn, metric, lo, hi, 3600, d)
        n = r.n.sum()
        if n:
            out[d] = float(r.sum.sum() / n)
    return out


def _movers(conn, period: Period, names: dict, district: str | None) -> tuple[list[dict], dict | None]:
    """Return each metric's largest district move (sorted by size) and the map's metric with every district."""
    ids = [district] if district else list(names)
    moves, best = [], None
    for metric, (label, unit, dec, worse) in MOVERS.items():
        cur = _district_means(conn, metric, period.t0, period.t1, ids)
        prev = _district_means(conn, metric, period.p0, period.t0, ids)
        pct = {d: 100 * (cur[d] - prev[d]) / abs(prev[d]) for d in cur if prev.get(d)}
        if not cur:
            continue
        if pct:
            top = max(pct, key=lambda d: abs(pct[d]))
            moves.append({"metric": metric, "label": label, "unit": unit, "decimals": dec, "worse": worse,
                          "district": names.get(top, top), "pct": pct[top], "cur": cur[top], "prev": prev[top]})
        spread = float(np.median([abs(v) for v in pct.values()])) if pct else -1.0  # the map: what moved most
        if best is None or spread > best["spread"]:
            best = {"metric": metric, "label": label, "unit": unit, "decimals": dec, "spread": spread,
                    "cur": cur, "pct": pct}
    moves.sort(key=lambda m: -abs(m["pct"]))
    return moves, best


def build_report(engine, start: date, end: date, district: str | None = None, aqi_standard: str = "cn",
                 progress=None, paper: str = "a4", thresholds: dict | None = None, notes: list | None = None,
                 detail=None) -> str:
    """Return the report's HTML for ``start``..``end`` (inclusive dates, city time) and ``district``.

    ``paper``: "a4" or "letter", the printed page size; ``thresholds``: the city's KPI thresholds.
    The KPI trends are read only where data is stored: a period reaching beyond the stored data is
    clipped to it (said in the report, and appended to ``notes``). ``detail(label)`` is told the
    progress within a step (the weeks read).
    """
    from zoneinfo import ZoneInfo

    if paper not in PAPERS:
        raise ValueError(f"--paper must be {' or '.join(PAPERS)}")
    thresholds = thresholds or {}
    start, end = min(max(start, FIRST_DAY), LAST_DAY), min(max(end, FIRST_DAY), LAST_DAY)
    step = progress or (lambda label: None)
    with engine.connect() as conn:
        meta = rm.city_meta(conn)
        tz = ZoneInfo(meta.get("timezone", "UTC"))
        districts = rm.districts_frame(conn)
        names = dict(zip(districts["id"], districts["name"]))
        if district and district not in names:
            raise ValueError(f"unknown district {district[:60]!r}")
        p0, t0, t1 = period_bounds(start, end, tz)
        stored = data_range(conn)
        (c0, c1), (q0, q1) = clip_to_data(t0, t1, stored), clip_to_data(p0, t0, stored)
        clipped = None
        cut = (t1 - t0) - (c1 - c0) + (t0 - p0) - (q1 - q0)
        if cut > SPAN or c0 == c1:  # more than a week cut off, or nothing left of the period: say so
            clipped = ("no data is stored: the KPI trends are empty" if stored is None else
                       f"data is stored from {_fmt(stored[0], tz)} to {_fmt(stored[1], tz)}: the periods are read "
                       "only there")
            if notes is not None:
                notes.append(clipped)
        weekly = (lambda what: (lambda i, n: detail(f"{what} (week {i} of {n})"))) if detail else (lambda what: None)
        step("period KPIs")
        cur = _series(conn, c0, c1, district, aqi_standard, weekly("period KPIs"))
        step("previous period KPIs")
        prev = _series(conn, q0, q1, district, aqi_standard, weekly("previous period KPIs"))
        from dashboard.live import newest as newest_of

        newest = {d.id: newest_of(conn, d) for d in DOMAINS}
        step("latest values")
        live_now = max([v for v in newest.values() if v] or [0])
        latest = {k.id: k for k in compute_all(conn, time.time(), "24h", district, aqi_standard)} \
            if live_now and t0 <= live_now < t1 + 3600 else {}
        period = Period(start, end, tz, p0, t0, t1, max([v for v in newest.values() if v] or [0]) or None)
        step("categories")
        dominant = {kid: (fn(conn, c0, c1, district, aqi_standard), fn(conn, q0, q1, district, aqi_standard))
                    for kid, fn in CATEGORY_KPIS.items()}
        step("what changed")
        moves, mapped = _movers(conn, period, names, district)
    periods = []
    for k in KPIS:
        xs, ys = cur.get(k.id, ([], []))
        pxs, pys = prev.get(k.id, ([], []))
        lk = latest.get(k.id)
        periods.append(KpiPeriod(k.id, k.domain, k.label, k.unit, k.decimals, xs, ys, pxs, pys,
                                 latest=lk.formatted() if lk else None, as_of=lk.as_of if lk else None))
    by_id = {p.id: p for p in periods}
    step("charts")
    where = names.get(district, "whole city") if district else "whole city"

    def fmt_t(ts):
        return "no data" if not ts else _fmt(ts, tz)

    rows, changes = [], []
    for d in DOMAINS:
        group = [p for p in periods if p.domain == d.id]
        if group:
            rows.append(f"<tr class='domain-row'><th colspan='7'>{_e(d.label)}</th></tr>")
        for p in group:
            rows.append(_summary_row(p, by_id, dominant, thresholds, changes, fmt_t))
    sections = []
    for d in DOMAINS:
        charts = "".join(
            f"<figure class='chart' id='trend-{_e(p.id.replace('.', '-'))}'><figcaption>{_e(_label(p.label, p.unit))}"
            f"</figcaption>{_svg_trend(p, period, thresholds.get(p.id, (KPI_BY_ID[p.id].warn, KPI_BY_ID[p.id].bad)))}"
            f"</figure>" for p in periods if p.domain == d.id and p.id not in set(CATEGORY_KPIS) | set(TOTAL_KPIS))
        if charts:
            sections.append(f"<section class='domain'><h2>{_e(d.label)}</h2>"
                            f"<div class='charts'>{charts}</div></section>")
    step("map")
    from dashboard.access import scope

    if scope() is not None:  # a scoped reader's map holds their districts only (``panorama report --as``)
        districts = districts[districts["id"].isin(scope())]
    map_svg = _svg_map(districts, mapped, district) if mapped else "<p class='muted'>No district data in the period.</p>"
    map_caption = (f"{_e(mapped['label'])} ({_e(mapped['unit'])}): each district's mean over the period, and its "
                   f"change on the previous period. Darker is higher.") if mapped else ""
    map_table = _district_table(mapped, names) if mapped else ""
    step("assemble")
    labels = {d.id: d.label for d in DOMAINS}
    asof = "".join(f"<li>{_e(labels[d])}: newest data {_e(fmt_t(ts))}</li>" for d, ts in newest.items())
    manifest = MANIFEST.read_text(encoding="utf-8") if MANIFEST.is_file() else "data/MANIFEST.md is missing."
    t = THEMES[THEME]
    span = f"{start.isoformat()}" if start == end else f"{start.isoformat()} to {end.isoformat()}"
    title = f"{meta.get('city', 'City')} — report {span} ({where})"
    pstart, pend = period.local(t0), period.local(t1)
    offset = pstart.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}"
    ndays = (end - start).days + 1
    notes_html = _notes(period, ndays, fmt_t)
    page_size = PAPERS[paper]
    status_css = "".join(f".st-{k} {{ background: {c}; }}" for k, c in LIGHT_STATUS.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
@page {{ size: {page_size}; margin: 12mm 11mm; }}
body {{ font: 13px 'DejaVu Sans', Arial, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px;
        background: {t['bg']}; color: {t['text']}; }}
h1 {{ font-size: 21px; margin: 0 0 6px; }} h2 {{ font-size: 16px; margin: 22px 0 8px; }}
.muted {{ color: {t['muted']}; }}
.period {{ background: {t['panel']}; border-left: 4px solid {t['accent']}; padding: 8px 12px; margin: 8px 0; }}
.period b {{ white-space: nowrap; }}
.warning {{ background: #fff4c2; border-left: 4px solid {LINE_STATUS['warn']}; padding: 6px 12px; margin: 6px 0; }}
table {{ border-collapse: collapse; width: 100%; background: {t['panel']}; }}
th, td {{ border-bottom: 1px solid {t['grid']}; padding: 3px 6px; text-align: left; vertical-align: top; }}
thead {{ display: table-header-group; }} tr {{ break-inside: avoid; page-break-inside: avoid; }}
tr.domain-row th {{ background: {t['panel_2']}; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.nowrap, .nowrap, #kpi-summary td:first-child {{ white-space: nowrap; }}
table.compact {{ width: auto; min-width: 50%; font-size: 12px; margin-top: 6px; }}
.chip {{ display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; color: #111820; white-space: nowrap; }}
{status_css}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; }}
figure.chart {{ margin: 0; background: {t['panel']}; padding: 6px; break-inside: avoid; min-width: 0; overflow: hidden; }}
figure.chart svg, .map svg {{ display: block; width: 100%; height: auto; }}
figcaption {{ font-weight: 700; }}
.map {{ background: {t['panel']}; padding: 6px; break-inside: avoid; max-width: 900px; }}
pre {{ white-space: pre-wrap; background: {t['panel']}; padding: 12px; font-size: 11px; }}
@media print {{ body {{ margin: 0; max-width: none; padding: 0; background: #fff; }}
  section, .chart, .map {{ break-inside: avoid; }} .charts {{ grid-template-columns: 1fr 1fr; }}
  #sources {{ break-before: page; }} }}
</style>
</head><body>
<h1>{_e(title)}</h1>
<div class="period" id="period" data-start="{_e(pstart.isoformat())}" data-end="{_e(pend.isoformat())}"
 data-tz="{_e(str(tz))}" data-partial="{'yes' if period.partial_days else 'no'}">
Period: <b>{_e(pstart.strftime('%a %Y-%m-%d %H:%M'))}</b> to <b>{_e(pend.strftime('%a %Y-%m-%d %H:%M'))}</b>
(end exclusive: {ndays} day{'s' if ndays != 1 else ''}), time zone <b>{_e(str(tz))} ({offset})</b>.
Compared with the previous {ndays} day{'s' if ndays != 1 else ''}: {_e(period.local(p0).strftime('%a %Y-%m-%d %H:%M'))}
to {_e(pstart.strftime('%a %Y-%m-%d %H:%M'))}.<br>
<span class="muted">Generated {_e(fmt_t(time.time()))} ({_e(str(tz))}). AQI standard: {_e(aqi_standard.upper())}.</span>
</div>
{f"<p class='muted' id='clipped'>Clipped: {_e(clipped)}.</p>" if clipped else ""}
{notes_html}
<h2>What changed</h2>
<p id="what-changed">{_what_changed(changes, moves)}</p>
<h2>Summary</h2>
<p class="muted">Period and previous-period values are the <b>means of each KPI's hourly trend</b> (from the
read model's rollups), not the KPI's instantaneous value; the main pollutant is the one that led most hours;
energy used is the period's total. Status compares the period mean with the KPI's thresholds.
"Latest" is the live KPI value (24 h window), shown only when the period reaches the newest data.</p>
<table id="kpi-summary"><thead><tr><th>KPI</th><th>Period</th><th>Previous</th>
<th>Change</th><th>Status</th><th>Latest</th><th>As of</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
<section><h2>Map of the period</h2><div class="map" id="period-map">{map_svg}
<p class="muted">{map_caption}</p>{map_table}</div></section>
{''.join(sections)}
<section><h2>Data as of</h2><ul>{asof}</ul></section>
<section id="sources"><h2>Sources</h2><pre>{_e(manifest)}</pre></section>
</body></html>
"""


def _label(label: str, unit: str) -> str:
    return f"{label} ({unit})" if unit else label


def _with_unit(text: str, unit: str) -> str:
    return text if text == "—" or not unit else f"{text}\u00a0{unit}"


def _summary_row(p: KpiPeriod, by_id: dict, dominant, thresholds: dict, changes: list, fmt_t) -> str:
    """Return the summary table's row of one KPI (and note its change for "what changed")."""
    attrs = f"class='kpi-row' data-kpi='{_e(p.id)}'"
    latest = f"<td class='num'>{_e(p.latest or '—')}</td><td class='nowrap'>{_e(fmt_t(p.as_of))}</td>"
    if p.id in CATEGORY_KPIS:
        (c, cn, ch), (q, qn, qh) = dominant[p.id]

        def cell(v, n, h) -> str:
            return "—" if v is None else f"{_e(v)} <span class='muted'>({n} of {h} h)</span>"

        same = "—" if c is None or q is None else ("same" if c == q else f"was {_e(q)}")
        return (f"<tr {attrs}><td>{_e(p.label)}</td><td class='num' data-value='{_e(c or '')}'>{cell(c, cn, ch)}</td>"
                f"<td class='num'>{cell(q, qn, qh)}</td><td class='nowrap'>{same}</td><td></td>{latest}</tr>")
    if p.id in TOTAL_KPIS:
        src, label, unit = TOTAL_KPIS[p.id]
        s = by_id[src]
        m, pm = _total(s.xs, s.ys), _total(s.prev_xs, s.prev_ys)
        dec = 0
    else:
        label, unit, dec = p.label, p.unit, p.decimals
        m, pm = p.mean, p.prev_mean
    ch = None if m is None or pm is None else m - pm
    pct = None if ch is None or not pm else 100 * ch / abs(pm)
    if pct is not None:
        changes.append((abs(pct), label, unit, dec, m, pm, pct))
    st = "unknown" if p.id in TOTAL_KPIS else _status(p.id, m, thresholds)
    chip = "" if st == "unknown" else f"<span class='chip st-{st}'>{STATUS[st][1]}</span>"
    change = "—" if ch is None else _with_unit(_signed(ch, dec), unit) + (
        "" if pct is None else f" <span class='muted'>({_signed(pct, 0)}\u00a0%)</span>")
    return (f"<tr {attrs} data-status='{st}'><td>{_e(label)}</td><td class='num'>{_with_unit(_num(m, dec), _e(unit))}</td>"
            f"<td class='num'>{_with_unit(_num(pm, dec), _e(unit))}</td><td class='num'>{change}</td>"
            f"<td>{chip}</td>{latest}</tr>")


def _notes(period: Period, ndays: int, fmt_t) -> str:
    """Return the warnings about the period: days not over yet, a different mix of weekdays and weekends."""
    out = []
    partial = period.partial_days
    if partial:
        desc = ", ".join(f"{d.strftime('%a %Y-%m-%d')} ({round(100 * share)} % covered)" for d, share in partial)
        out.append(f"<p class='warning' id='partial-warning'><b>Partial period:</b> the data reaches "
                   f"{_e(fmt_t(period.newest))}, so {_e(desc)} {'is' if len(partial) == 1 else 'are'} not complete; "
                   f"means cover only the hours with data, totals only those hours.</p>")
    cur = period.day_mix(period.start, period.end)
    prev = period.day_mix(*period.previous_days)
    if cur != prev:
        def mix(wd, we):
            return f"{wd} weekday{'s' if wd != 1 else ''} and {we} weekend day{'s' if we != 1 else ''}"
        out.append(f"<p class='warning' id='day-mix-warning'><b>Unlike days compared:</b> this period has "
                   f"{mix(*cur)}, the previous one {mix(*prev)}. Most city data (traffic, energy, service requests, …) differ "
                   f"between weekdays and weekends, so part of each change is the day mix, not a trend.</p>")
    return "".join(out)


def _what_changed(changes: list, moves: list) -> str:
    """Return the "what changed" paragraph: the largest KPI moves and the districts that moved most."""
    parts = []
    for _, label, unit, dec, m, pm, pct in sorted(changes, key=lambda c: -c[0])[:3]:
        verb = "rose" if pct > 0 else "fell" if pct < 0 else "held"
        parts.append(f"<b>{_e(label)}</b> {verb} {abs(pct):.0f}\u00a0% "
                     f"(<span class='nowrap'>{_with_unit(_num(pm, dec), _e(unit))} → {_with_unit(_num(m, dec), _e(unit))}</span>)")
    text = ("Largest changes on the previous period: " + "; ".join(parts) + ".") if parts else \
        "No KPI has data in both periods to compare."
    places = []
    for mv in moves[:3]:
        verb = "rose" if mv["pct"] > 0 else "fell"
        places.append(f"{_e(mv['label'])} {verb} {abs(mv['pct']):.0f}\u00a0% in <b>{_e(mv['district'])}</b> "
                      f"(<span class='nowrap'>{_with_unit(_num(mv['prev'], mv['decimals']), _e(mv['unit']))} → "
                      f"{_with_unit(_num(mv['cur'], mv['decimals']), _e(mv['unit']))}</span>)")
    if places:
        text += " By district, the largest moves: " + "; ".join(places) + "."
    return text


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1) * 0.1
        lo -= (abs(lo) or 1) * 0.1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    stepv = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / stepv) * stepv
    return [first + i * stepv for i in range(math.ceil((hi - first) / stepv) + 1)]


def _tick_text(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2f}".rstrip("0").rstrip(".")


def _svg_trend(p: KpiPeriod, period: Period, warn_bad: tuple) -> str:
    """Return a static SVG line chart of ``p`` over the period, the previous period dotted under it."""
    t = THEMES[THEME]
    w, h, ml, mr, mt, mb = 440, 190, 44, 8, 24, 36
    span = period.t1 - period.t0
    cur = [(x, y) for x, y in zip(p.xs, p.ys) if y is not None and math.isfinite(y)]
    prev = [(x + (period.t0 - period.p0), y) for x, y in zip(p.prev_xs, p.prev_ys) if y is not None and math.isfinite(y)]
    vals = [y for _, y in cur + prev]
    warn, bad = warn_bad
    if not vals:
        return (f"<svg viewBox='0 0 {w} 60' role='img'><text x='{w / 2}' y='34' text-anchor='middle' "
                f"fill='{t['muted']}' font-size='13'>no data in either period</text></svg>")
    ticks = _nice_ticks(min(vals), max(vals))
    y0, y1 = ticks[0], ticks[-1]
    if y1 == y0:
        y1 = y0 + 1

    def sx(x):
        return ml + (x - period.t0) / span * (w - ml - mr)

    def sy(y):
        return mt + (1 - (y - y0) / (y1 - y0)) * (h - mt - mb)

    out = [(f"<svg viewBox='0 0 {w} {h}' role='img' aria-label='{_e(p.label)} over the period' "
            f"font-family='DejaVu Sans, Arial, sans-serif' font-size='12'>")]
    for v in ticks:
        out.append(f"<line x1='{ml}' x2='{w - mr}' y1='{sy(v):.1f}' y2='{sy(v):.1f}' stroke='{t['grid']}'/>"
                   f"<text x='{ml - 4}' y='{sy(v) + 4:.1f}' text-anchor='end' fill='{t['muted']}'>{_tick_text(v)}</text>")
    days = period.days(period.start, period.end + timedelta(days=1))
    day_px = (w - ml - mr) / max(len(days) - 1, 1)
    fmt = "%a %m-%d" if day_px >= 80 else "%a %d" if day_px >= 50 else "%d"
    every = max(1, math.ceil({"%a %m-%d": 80, "%a %d": 50, "%d": 22}[fmt] / day_px))
    for i, d in enumerate(days):
        x = sx(datetime.combine(d, datetime.min.time(), period.tz).timestamp())
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{mt}' y2='{h - mb}' stroke='{t['grid']}'/>")
        if i % every == 0 and i < len(days) - 1:
            out.append(f"<text x='{x + 3:.1f}' y='{h - mb + 14}' fill='{t['muted']}'>{d.strftime(fmt)}</text>")
    if len(days) <= 3:
        for d in days[:-1]:
            for hh in (6, 12, 18):
                x = sx(datetime.combine(d, datetime.min.time(), period.tz).timestamp() + hh * 3600)
                out.append(f"<text x='{x:.1f}' y='{h - mb + 26}' text-anchor='middle' fill='{t['muted']}'>{hh:02d}h</text>")
    for v, key in ((warn, "warn"), (bad, "bad")):
        if v is not None and y0 <= v <= y1:
            out.append(f"<line x1='{ml}' x2='{w - mr}' y1='{sy(v):.1f}' y2='{sy(v):.1f}' stroke='{LINE_STATUS[key]}' "
                       f"stroke-width='1.5' stroke-dasharray='6 3'/>")
    if period.newest and period.newest < period.t1:
        x = sx(max(period.newest, period.t0))
        out.append(f"<rect x='{x:.1f}' y='{mt}' width='{w - mr - x:.1f}' height='{h - mt - mb}' fill='{t['panel_2']}' "
                   f"opacity='0.8'/>")
        if w - mr - x >= 80:
            out.append(f"<text x='{(x + w - mr) / 2:.1f}' y='{mt + 14}' text-anchor='middle' "
                       f"fill='{t['muted']}'>no data yet</text>")

    def path(pts, colour, width, dash=""):
        segs, last = [], None
        gap = 3 * (float(np.median(np.diff([x for x, _ in pts]))) if len(pts) > 1 else 3600)
        for x, y in pts:
            cmd = "L" if last is not None and x - last <= gap else "M"
            segs.append(f"{cmd}{sx(x):.1f},{sy(y):.1f}")
            last = x
        return (f"<path d='{' '.join(segs)}' fill='none' stroke='{colour}' stroke-width='{width}' "
                f"stroke-linejoin='round'{dash}/>") if segs else ""

    out.append(path(prev, t["muted"], 1.3, " stroke-dasharray='3 2'"))
    out.append(path(cur, t["accent"], 2.2))
    out.append(f"<line x1='{ml}' x2='{ml + 18}' y1='10' y2='10' stroke='{t['accent']}' stroke-width='2.2'/>"
               f"<text x='{ml + 22}' y='14' fill='{t['text']}'>this period</text>"
               f"<line x1='{ml + 100}' x2='{ml + 118}' y1='10' y2='10' stroke='{t['muted']}' stroke-dasharray='3 2'/>"
               f"<text x='{ml + 122}' y='14' fill='{t['text']}'>previous</text>")
    if warn is not None:
        out.append(f"<line x1='{ml + 200}' x2='{ml + 218}' y1='10' y2='10' stroke='{LINE_STATUS['bad']}' "
                   f"stroke-dasharray='6 3'/><text x='{ml + 222}' y='14' fill='{t['text']}'>watch / alert</text>")
    out.append("</svg>")
    return "".join(out)


def _district_table(mapped: dict, names: dict) -> str:
    """Return the map's numbers as a table: every district's period mean and change, largest change first."""
    dec, unit = mapped["decimals"], mapped["unit"]
    order = sorted(mapped["cur"], key=lambda d: -abs(mapped["pct"].get(d, 0.0)))
    rows = "".join(f"<tr><td>{_e(names.get(d, d))}</td><td class='num'>{_with_unit(_num(mapped['cur'][d], dec), _e(unit))}</td>"
                   f"<td class='num'>{'—' if d not in mapped['pct'] else _signed(mapped['pct'][d], 0) + chr(160) + '%'}</td></tr>"
                   for d in order)
    return (f"<table id='district-table' class='compact'><thead><tr><th>District</th><th>Period mean</th>"
            f"<th>Change</th></tr></thead><tbody>{rows}</tbody></table>")


def _merc(lat: float) -> float:
    lat = max(-85.0, min(85.0, lat))
    return math.degrees(math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)))


def _rings(geom: dict):
    if geom.get("type") == "Polygon":
        yield from geom["coordinates"]
    elif geom.get("type") == "MultiPolygon":
        for poly in geom["coordinates"]:
            yield from poly


def _svg_map(districts, mapped: dict, district: str | None) -> str:
    """Return an SVG map of the districts, each filled by its period mean of ``mapped``'s metric."""
    t = THEMES[THEME]
    w, h, pad = 900, 560, 10
    rows = [r for _, r in districts.iterrows()]
    pts = [(x, _merc(y)) for r in rows for ring in _rings(r["geometry"]) for x, y in ring]
    if not pts:
        return "<p class='muted'>No district shapes.</p>"
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    kx = (w - 2 * pad) / max(max(xs) - min(xs), 1e-9)
    ky = (h - 2 * pad - 40) / max(max(ys) - min(ys), 1e-9)
    k = min(kx, ky)
    ox = pad + ((w - 2 * pad) - k * (max(xs) - min(xs))) / 2
    oy = pad + ((h - 2 * pad - 40) - k * (max(ys) - min(ys))) / 2

    def px(x, y):
        return ox + k * (x - min(xs)), oy + k * (max(ys) - _merc(y))

    vals = list(mapped["cur"].values())
    lo, hi = min(vals), max(vals)
    light, dark = (0xe6, 0xf0, 0xf8), (0x08, 0x45, 0x94)

    def fill(v):
        f = 0.5 if hi == lo else (v - lo) / (hi - lo)
        return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(light, dark))

    out = [(f"<svg viewBox='0 0 {w} {h}' role='img' aria-label='map of {_e(mapped['label'])} by district' "
            f"font-family='DejaVu Sans, Arial, sans-serif'>")]
    labels = []
    for r in rows:
        v = mapped["cur"].get(r["id"])
        d = " ".join("M" + " L".join(f"{a:.1f},{b:.1f}" for a, b in (px(x, y) for x, y in ring)) + " Z"
                     for ring in _rings(r["geometry"]))
        colour = fill(v) if v is not None else t["panel_2"]
        sel = " stroke-width='2.5'" if district == r["id"] else " stroke-width='0.8'"
        out.append(f"<path d='{d}' fill='{colour}' fill-rule='evenodd' stroke='{t['district_line']}'{sel}>"
                   f"<title>{_e(r['name'])}</title></path>")
        box = [px(x, y) for ring in _rings(r["geometry"]) for x, y in ring]
        roomy = box and max(x for x, _ in box) - min(x for x, _ in box) >= 80 and \
            max(y for _, y in box) - min(y for _, y in box) >= 40  # small districts: in the table below
        if v is not None and roomy and r.get("label_lon") is not None:
            lx, ly = px(float(r["label_lon"]), float(r["label_lat"]))
            pct = mapped["pct"].get(r["id"])
            f = 0.5 if hi == lo else (v - lo) / (hi - lo)
            ink = "#ffffff" if f > 0.55 else "#111820"
            sub = _num(v, mapped["decimals"]) + ("" if pct is None else f" ({_signed(pct, -1)} %)")
            labels.append(f"<text x='{lx:.1f}' y='{ly:.1f}' text-anchor='middle' font-size='11' fill='{ink}'>"
                          f"<tspan font-weight='700'>{_e(r['name'])}</tspan><tspan x='{lx:.1f}' dy='13'>{_e(sub)}</tspan></text>")
    out.extend(labels)
    # legend: the colour ramp from the lowest to the highest district mean
    lx0, ly0 = pad, h - 24
    out.append(f"<defs><linearGradient id='ramp'><stop offset='0' stop-color='{fill(lo)}'/>"
               f"<stop offset='1' stop-color='{fill(hi)}'/></linearGradient></defs>"
               f"<rect x='{lx0}' y='{ly0}' width='200' height='10' fill='url(#ramp)' stroke='{t['grid']}'/>"
               f"<text x='{lx0}' y='{ly0 + 22}' font-size='11' fill='{t['muted']}'>{_e(_num(lo, mapped['decimals']))}</text>"
               f"<text x='{lx0 + 200}' y='{ly0 + 22}' font-size='11' text-anchor='end' fill='{t['muted']}'>"
               f"{_e(_num(hi, mapped['decimals']))} {_e(mapped['unit'])}</text>"
               f"<text x='{lx0 + 215}' y='{ly0 + 9}' font-size='12' fill='{t['text']}'>{_e(mapped['label'])}, "
               f"period mean (change on the previous period)</text></svg>")
    return "".join(out)


def _fmt(ts, tz) -> str:
    """Return epoch seconds as local 'YYYY-MM-DD HH:MM'."""
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _num(v, decimals: int) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:,.{decimals + 1}f}"


def _signed(v, decimals: int) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:+,.{decimals + 1}f}"


def print_pdf(html_path: Path, pdf_path: Path, timeout: float = 120) -> None:
    """Print an HTML file to PDF with headless Chromium on a closed network."""
    chrome = browser_path() or "chromium"
    with tempfile.TemporaryDirectory(prefix="panorama-pdf-") as profile:
        cmd = [chrome, "--headless=new", "--no-sandbox", *CLOSED_NETWORK_FLAGS, *SOFTWARE_GL_FLAGS,
               f"--user-data-dir={profile}", "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
               "--virtual-time-budget=15000", f"--print-to-pdf={pdf_path.resolve()}",
               html_path.resolve().as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        raise RuntimeError(f"chromium could not print the PDF (exit {r.returncode}): {r.stderr.strip()[-300:]}")
