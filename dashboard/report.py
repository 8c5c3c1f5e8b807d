"""Period reports: one self-contained HTML file (plotly.js inlined once), optionally printed to PDF.

The KPI layer computes windows that end "now" (1h/24h/7d); a report covers any past period. So the
summary table compares, for each KPI, the **mean of its hourly trend** (read model rollups) over the
period with the same over the previous period of equal length, and says so. The "latest" column is
the KPI's live value, shown only when the period reaches the newest data. The map shows the latest state.
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
from dashboard.kpis import KPIS, compute_all
from dashboard.metrics import CITY, DOMAINS
from dashboard.settings import PROJECT_ROOT
from dashboard.store import readmodel as rm
from dashboard.theme import STATUS, THEMES

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


def build_report(engine, start: date, end: date, district: str | None = None, aqi_standard: str = "cn",
                 progress=None, notes: list | None = None, detail=None) -> str:
    """Return the report's HTML for ``start``..``end`` (inclusive dates, city time) and ``district``.

    The KPI trends are read only where data is stored: a period reaching beyond the stored data is
    clipped to it (said in the report, and appended to ``notes``). ``detail(label)`` is told the
    progress within a step (the weeks read).
    """
    import plotly.io as pio
    import plotly.offline

    from dashboard.export import standalone_live
    from dashboard.settings import get_settings

    step = progress or (lambda label: None)
    with engine.connect() as conn:
        meta = rm.city_meta(conn)
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(meta.get("timezone", "UTC"))
        districts = rm.districts_frame(conn)
        names = dict(zip(districts["id"], districts["name"]))
        if district and district not in names:
            raise ValueError(f"unknown district {district[:60]!r}")
        p0, t0, t1 = period_bounds(start, end, tz)
        span = data_range(conn)
        (c0, c1), (q0, q1) = clip_to_data(t0, t1, span), clip_to_data(p0, t0, span)
        clipped = None
        cut = (t1 - t0) - (c1 - c0) + (t0 - p0) - (q1 - q0)
        if cut > SPAN or c0 == c1:  # more than a week cut off, or nothing left of the period: say so
            clipped = ("no data is stored: the KPI trends are empty" if span is None else
                       f"data is stored from {_fmt(span[0], tz)} to {_fmt(span[1], tz)}: the periods are read "
                       "only there")
            if notes is not None:
                notes.append(clipped)
        weekly = (lambda what: (lambda i, n: detail(f"{what} (week {i} of {n})"))) if detail else (lambda what: None)
        step("period KPIs")
        cur = _series(conn, c0, c1, district, aqi_standard, weekly("period KPIs"))
        step("previous period KPIs")
        prev = _series(conn, q0, q1, district, aqi_standard, weekly("previous period KPIs"))
        newest = {dom: rm.newest_ts(conn, kind) for dom, kind in
                  (("traffic", "road_segment"), ("air_quality", "aq_station"), ("energy", "substation"))}
        newest["satisfaction"] = rm.service_newest_ts(conn)
        step("latest values")
        live_now = max([v for v in newest.values() if v] or [0])
        latest = {k.id: k for k in compute_all(conn, time.time(), "24h", district, aqi_standard)} \
            if live_now and t0 <= live_now < t1 + 3600 else {}
    periods = []
    for k in KPIS:
        xs, ys = cur.get(k.id, ([], []))
        pxs, pys = prev.get(k.id, ([], []))
        lk = latest.get(k.id)
        periods.append(KpiPeriod(k.id, k.domain, k.label, k.unit, k.decimals, xs, ys, pxs, pys,
                                 latest=lk.formatted() if lk else None, as_of=lk.as_of if lk else None))
    figs = []
    for dom in DOMAINS:
        step(f"{DOMAINS[dom]['label']} charts")
        figs.append((dom, [(p, _trend(p, t0 - p0, tz)) for p in periods if p.domain == dom]))
    step("map")
    settings = get_settings(database_url=str(engine.url.render_as_string(hide_password=False)),
                            aqi_standard=aqi_standard)
    map_fig = _map(standalone_live(settings), district)
    step("assemble")
    where = names.get(district, "whole city") if district else "whole city"

    def fig_html(fig, div_id):
        return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                           config={"displaylogo": False, "displayModeBar": False, "responsive": True})

    def fmt_t(ts):
        return "no data" if not ts else _fmt(ts, tz)

    rows = []
    for p in periods:
        m, pm = p.mean, p.prev_mean
        ch = None if m is None or pm is None else m - pm
        pct = None if ch is None or not pm else 100 * ch / abs(pm)
        rows.append(
            f"<tr class='kpi-row' data-kpi='{_e(p.id)}'><td>{_e(DOMAINS[p.domain]['label'])}</td>"
            f"<td>{_e(p.label)}</td><td class='num'>{_num(m, p.decimals)}</td><td class='num'>{_num(pm, p.decimals)}</td>"
            f"<td class='num'>{_signed(ch, p.decimals)}</td><td class='num'>{_signed(pct, 1)}{' %' if pct is not None else ''}</td>"
            f"<td>{_e(p.unit)}</td><td class='num'>{_e(p.latest or '—')}</td><td>{_e(fmt_t(p.as_of))}</td></tr>")
    sections = []
    for dom, items in figs:
        charts = "".join(f"<figure class='chart'><figcaption>{_e(p.label)} ({_e(p.unit)})</figcaption>"
                         f"{fig_html(f, 'trend-' + p.id.replace('.', '-'))}</figure>" for p, f in items)
        sections.append(f"<section class='domain'><h2>{_e(DOMAINS[dom]['label'])}</h2><div class='charts'>{charts}</div></section>")
    asof = "".join(f"<li>{_e(DOMAINS[d]['label'])}: newest data {_e(fmt_t(ts))}</li>" for d, ts in newest.items())
    manifest = MANIFEST.read_text(encoding="utf-8") if MANIFEST.is_file() else "data/MANIFEST.md is missing."
    t = THEMES[THEME]
    title = f"{meta.get('city', 'City')} — report {start.isoformat()} to {end.isoformat()} ({where})"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px 'DejaVu Sans', Arial, sans-serif; margin: 24px; background: {t['bg']}; color: {t['text']}; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 24px 0 8px; }}
.muted {{ color: {t['muted']}; }}
table {{ border-collapse: collapse; width: 100%; background: {t['panel']}; }}
th, td {{ border-bottom: 1px solid {t['grid']}; padding: 4px 8px; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }}
figure.chart {{ margin: 0; background: {t['panel']}; padding: 6px; break-inside: avoid; }}
figcaption {{ font-weight: 700; }}
#map {{ height: 560px; background: {t['panel']}; break-inside: avoid; }}
pre {{ white-space: pre-wrap; background: {t['panel']}; padding: 12px; font-size: 12px; }}
@media print {{ body {{ margin: 8mm; }} section {{ break-inside: avoid-page; }} }}
</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head><body>
<h1>{_e(title)}</h1>
<p class="muted">Period {_e(fmt_t(t0))} – {_e(fmt_t(t1))} (city time, end exclusive); previous period
{_e(fmt_t(p0))} – {_e(fmt_t(t0))}. Generated {_e(fmt_t(time.time()))}. AQI standard: {_e(aqi_standard.upper())}.</p>
{f"<p class='muted' id='clipped'>Clipped: {_e(clipped)}.</p>" if clipped else ""}
<h2>Summary</h2>
<p class="muted">Period and previous-period values are the <b>means of each KPI's hourly trend</b> (from the
read model's rollups), not the KPI's instantaneous value. "Latest" is the live KPI value (24 h window) and is
shown only when the period reaches the newest data.</p>
<table id="kpi-summary"><thead><tr><th>Domain</th><th>KPI</th><th>Period mean</th><th>Previous period</th>
<th>Change</th><th>Change %</th><th>Unit</th><th>Latest</th><th>As of</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
{''.join(sections)}
<section><h2>Map (latest state)</h2>{fig_html(map_fig, 'map')}</section>
<section><h2>Data as of</h2><ul>{asof}</ul></section>
<section><h2>Sources</h2><pre id="sources">{_e(manifest)}</pre></section>
</body></html>
"""


def _trend(p: KpiPeriod, span: int, tz) -> dict:
    from dashboard.theme import figure_layout

    t = THEMES[THEME]

    def dt(xs, shift=0):
        return [datetime.fromtimestamp(x + shift, timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M") for x in xs]

    return {
        "data": [
            {"type": "scatter", "mode": "lines", "x": dt(p.prev_xs, span), "y": p.prev_ys, "name": "previous period",
             "line": {"color": t["muted"], "width": 1.5, "dash": "dot"}, "connectgaps": False},
            {"type": "scatter", "mode": "lines", "x": dt(p.xs), "y": p.ys, "name": "this period",
             "line": {"color": STATUS["good"][0] if THEME == "dark" else t["accent"], "width": 2.5},
             "connectgaps": False},
        ],
        "layout": figure_layout(
            THEME, height=230, margin=dict(l=50, r=10, t=10, b=30), showlegend=True,
            legend=dict(orientation="h", y=1.12, x=0, font=dict(size=11)),
            xaxis=dict(visible=True, gridcolor=t["grid"], color=t["muted"], type="date"),
            yaxis=dict(visible=True, gridcolor=t["grid"], color=t["muted"], fixedrange=True)),
    }


def _map(live, district: str | None) -> dict:
    from dashboard import views
    from layers import DEFAULT_LAYERS

    frames = live.layer_frames()
    params = live.params(time.time(), "24h", district, THEME)
    fig = views.map_figure(live, frames, params, list(DEFAULT_LAYERS))
    fig["layout"]["uirevision"] = None
    return fig


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
