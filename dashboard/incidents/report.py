"""The after-action report of one incident (``panorama report --incident ID``): one self-contained HTML file.

It reads like the period report (:mod:`dashboard.report`, same look, static SVG, no script) but its
period is the event's: from :data:`PAD` before the first alert to :data:`PAD` after the incident
closed (or now, while open). It holds what a review needs: the incident (type, place, owner,
summary, handover note), the checklist as done (who, when, the fields recorded), the timeline
(the alerts' events and the incident's merged by time), the KPIs of the incident's domain in its
district over that span, and the map of the city with the incident's district outlined, filled by
the domain's first metric over the event.
"""
from __future__ import annotations

import time
from datetime import datetime

from dashboard import report as pr
from dashboard.incidents import store
from dashboard.incidents.config import Incidents
from dashboard.kpis import KPI_BY_ID, KPIS, compute_all
from dashboard.store import readmodel as rm
from dashboard.theme import THEMES
from layers import DOMAINS

#: How much before the first alert and after the close the KPIs and the map cover.
PAD = 3 * 3600
_e, _fmt = pr._e, pr._fmt


def build_incident_report(engine, incident_id: int, cfg: Incidents, aqi_standard: str = "cn",
                          thresholds: dict | None = None, now: float | None = None) -> str:
    """Return the HTML of incident ``incident_id``'s after-action report; ValueError if there is none
    (or it is outside the current principal's districts)."""
    from zoneinfo import ZoneInfo

    from dashboard.access import scope

    thresholds = thresholds or {}
    now = time.time() if now is None else now
    with engine.connect() as conn:
        row = store.get(conn, incident_id)
        if row is None or scope() is not None and row["district_id"] not in scope():
            raise ValueError(f"no incident {incident_id}")
        meta = rm.city_meta(conn)
        tz = ZoneInfo(meta.get("timezone", "UTC"))
        districts = rm.districts_frame(conn)
        names = dict(zip(districts["id"], districts["name"]))
        first, closed = store.window(conn, incident_id)
        t0 = int(first - PAD) // 3600 * 3600
        t1 = -(-int((closed or now) + PAD) // 3600) * 3600
        steps = store.checklist(conn, row, cfg)
        timeline = store.timeline(conn, incident_id)
        district, domain = row["district_id"], row["domain"]
        kpis = [k for k in KPIS if (domain is None or k.domain == domain)
                and k.id not in set(pr.CATEGORY_KPIS) | set(pr.TOTAL_KPIS)]
        series = {}
        for k in compute_all(conn, t1, "7d", district, aqi_standard):
            if k.id in {x.id for x in kpis}:
                series[k.id] = [(x, y) for x, y in zip(k.spark_x, k.spark_y) if t0 <= x < t1]
        dom = next((d for d in DOMAINS if d.id == domain), None)
        metric = dom.metrics[0] if dom is not None and dom.metrics else None
        means = pr._district_means(conn, metric.id, t0, t1, list(names)) if metric else {}
    period = pr.Period(datetime.fromtimestamp(t0, tz).date(), datetime.fromtimestamp(t1 - 1, tz).date(), tz,
                       t0 - (t1 - t0), t0, t1, t1)
    charts = []
    for k in kpis:
        pts = series.get(k.id, [])
        p = pr.KpiPeriod(k.id, k.domain, k.label, k.unit, k.decimals, [x for x, _ in pts], [y for _, y in pts], [], [])
        svg = pr._svg_trend(p, period, thresholds.get(k.id, (KPI_BY_ID[k.id].warn, KPI_BY_ID[k.id].bad)))
        charts.append(f"<figure class='chart' id='trend-{_e(k.id.replace('.', '-'))}'><figcaption>"
                      f"{_e(pr._label(k.label, k.unit))}</figcaption>{svg}</figure>")
    if scope() is not None:
        districts = districts[districts["id"].isin(scope())]
    if means:
        mapped = {"metric": metric.id, "label": metric.label, "unit": metric.unit, "decimals": 1, "cur": means, "pct": {}}
        map_html = pr._svg_map(districts, mapped, district)
    else:
        map_html = "<p class='muted'>No district data over the event.</p>"
    place = names.get(district, district) if district else "whole city"
    kind = cfg.type(row["type"])
    title = f"{meta.get('city', 'City')} — incident {row['id']}: {row['title']}"

    def when(ts):
        return "—" if ts is None else _fmt(ts, tz)

    facts = [("Type", kind.label if kind else row["type"]), ("Place", f"{place} / {domain or 'every domain'}"),
             ("Severity", row["severity"]), ("Status", row["status"]), ("Owner", row["owner"] or "—"),
             ("Opened", f"{when(row['opened_at'])} by {row['opened_by']}" + (f" (rule {row['rule']})" if row["rule"] else "")),
             ("Closed", f"{when(row['closed_at'])} by {row['closed_by']}" if row["closed_at"] else "not yet"),
             ("Alerts", str(row["alerts"]))]
    fact_rows = "".join(f"<tr><th>{_e(a)}</th><td>{_e(b)}</td></tr>" for a, b in facts)
    check_rows = "".join(
        f"<tr class='step' data-done='{'yes' if s['done'] else 'no'}'><td>{s['n']}</td><td>{_e(s['text'])}</td>"
        f"<td>{_e(s['role'])}</td><td>{_e(s['done']['by']) if s['done'] else 'not done'}</td>"
        f"<td class='nowrap'>{when(s['done']['at']) if s['done'] else ''}</td>"
        f"<td>{_fields(s['done']['fields']) if s['done'] else ''}{_e(s['done']['note'] or '') if s['done'] else ''}</td></tr>"
        for s in steps) or "<tr><td colspan='6' class='muted'>This type has no checklist.</td></tr>"
    tl_rows = "".join(
        f"<tr class='event' data-source='{x['source']}'><td class='nowrap'>{when(x['at'])}</td>"
        f"<td>{_e(x['actor'])}</td><td>{_e(_what(x, names))}</td><td>{_e(x['note'] or '')}</td></tr>" for x in timeline)
    t = THEMES[pr.THEME]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font: 13px 'DejaVu Sans', Arial, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px;
        background: {t['bg']}; color: {t['text']}; }}
h1 {{ font-size: 21px; }} h2 {{ font-size: 16px; margin: 22px 0 8px; }} .muted {{ color: {t['muted']}; }}
table {{ border-collapse: collapse; width: 100%; background: {t['panel']}; }}
th, td {{ border-bottom: 1px solid {t['grid']}; padding: 3px 6px; text-align: left; vertical-align: top; }}
tr {{ break-inside: avoid; }} .nowrap {{ white-space: nowrap; }} table.facts {{ width: auto; }}
.text {{ background: {t['panel']}; border-left: 4px solid {t['accent']}; padding: 8px 12px; white-space: pre-wrap; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; }}
figure.chart {{ margin: 0; background: {t['panel']}; padding: 6px; break-inside: avoid; }}
figure.chart svg, .map svg {{ display: block; width: 100%; height: auto; }} figcaption {{ font-weight: 700; }}
.map {{ background: {t['panel']}; padding: 6px; max-width: 900px; break-inside: avoid; }}
</style></head><body>
<h1>{_e(title)}</h1>
<table class="facts" id="facts">{fact_rows}</table>
<h2>Summary</h2><div class="text" id="summary">{_e(row['summary'] or 'Not closed yet: no summary.')}</div>
<h2>Handover note</h2><div class="text" id="handover">{_e(row['handover'] or 'None.')}{
        f" <span class='muted'>({_e(row['handover_by'])}, {when(row['handover_at'])})</span>" if row['handover'] else ''}</div>
<h2>Checklist as done</h2>
<table id="checklist"><thead><tr><th>#</th><th>Step</th><th>Role</th><th>Done by</th><th>When</th><th>Recorded</th></tr>
</thead><tbody>{check_rows}</tbody></table>
<h2>Timeline</h2>
<table id="timeline"><thead><tr><th>When</th><th>Who</th><th>What</th><th>Note</th></tr></thead><tbody>{tl_rows}</tbody></table>
<h2>KPIs around the event</h2>
<p class="muted" id="kpi-span">{_e(place)}, {_e(_fmt(t0, tz))} to {_e(_fmt(t1, tz))} ({_e(str(tz))}): from
{PAD // 3600} h before the first alert to {PAD // 3600} h after the {'close' if closed else 'report'}; hourly trend.</p>
<div class="charts">{''.join(charts)}</div>
<h2>Map around the place</h2>
<div class="map" id="incident-map">{map_html}<p class="muted">{_e(place)} outlined{
        f"; districts filled by {_e(metric.label)} ({_e(metric.unit)}), mean over the same span" if means else ''}.</p></div>
<p class="muted">Generated {_e(_fmt(now, tz))} ({_e(str(tz))}).</p>
</body></html>
"""


def _fields(fields: dict) -> str:
    return "".join(f"<div><b>{_e(k)}</b>: {_e(v)}</div>" for k, v in (fields or {}).items())


def _what(x: dict, names: dict) -> str:
    """Return one timeline line's "what": the action and what it carried."""
    d = x["detail"] or {}
    if x["source"] == "alert":
        place = names.get(x["place"], x["place"]) or "city"
        extra = f" ({d['event']})" if x["action"] == "engine" and d.get("event") else ""
        return f"alert {x['alert_id']} {x['rule']} in {place}: {x['action']}{extra}"
    if x["action"] == "alerts":
        return f"alerts added: {', '.join(str(a) for a in d.get('alerts', []))}"
    if x["action"] == "owner":
        return f"owner: {d.get('to')}"
    if x["action"] == "step":
        return f"step {d.get('step')} done: {d.get('text')}"
    if x["action"] == "close":
        return "closed"
    if x["action"] == "open":
        return f"opened: {d.get('title')}"
    return x["action"]

