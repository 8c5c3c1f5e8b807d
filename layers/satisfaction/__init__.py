"""Service satisfaction: citizens' service requests (Open311-like), their ratings and their backlog.

No asset kinds and no readings: the data are records of their own, stored and read by the store's
service functions (``dashboard.store.services``, ``service_rollup`` and the read model's ``service_*``).
"""
from __future__ import annotations

from layers._common import age_text
from layers._domain import Domain, Frames, WallText
from layers._kpi import Kpi, excess, item
from layers.satisfaction import kpis as k
from layers.satisfaction.feed import feed
from layers.satisfaction.layer import SatisfactionLayer

ID = "satisfaction"
#: A district with this many overdue requests, or one overdue by more than this many seconds, is an
#: alert (fewer, less late: a watch).
ALERT_OVERDUE, ALERT_PAST_S = 5, 86_400
#: How far past: a watch across 0–5 overdue requests, an alert from 5 to 100.
WATCH_SPAN, ALERT_FULL = 5.0, 95.0


class ServiceRecords:
    """The domain's records: service requests, upserted by id through the validated write path."""

    def ingest(self, conn, frame, source: str, now: float | None = None):
        """Store ``frame``'s requests in ``conn``'s transaction; return the IngestResult."""
        from dashboard.store.services import ingest_service_requests

        return ingest_service_requests(conn, frame, source=source, now=now)


def newest(conn, district: str | None = None) -> int | None:
    """Return the newest request event (opening or closure) of ``district`` (None: the city)."""
    from dashboard.store.readmodel import service_newest_ts

    return service_newest_ts(conn, district)


def attention(f: Frames) -> list[dict]:
    """Districts with open requests past their due time: an alert from 5 of them or one more than a
    day late, else a watch; ranked by how many (the oldest one's lateness breaks ties)."""
    now = f.q.now
    out = []
    late = f.get("overdue")  # open until it closes, however old (as the KPIs count)
    if late is None or not len(late):
        return out
    names = dict(zip(f.static["id"], f.static["name"])) if f.static is not None else {}
    for dist, n, oldest in late[["district_id", "n", "oldest_due"]].itertuples(index=False):
        if dist is None or n <= 0:
            continue
        past = float(now - oldest)  # seconds the oldest is past its SLA
        n = int(n)
        level = "bad" if n >= ALERT_OVERDUE or past > ALERT_PAST_S else "warn"
        score = excess(n, ALERT_OVERDUE, ALERT_FULL) if level == "bad" else excess(n, 0.0, WATCH_SPAN)
        out.append(item(level, ID, names.get(dist, dist), dist, score, n + min(past, 1e9) / 1e9,
                        f"{n} overdue request{'s' if n != 1 else ''} · oldest {age_text(past)} past SLA"))
    return out


DOMAIN = Domain(
    id=ID, label="Service satisfaction", period_s=900,
    latest=k.latest, history=k.history,
    kpis=(
        Kpi("service.satisfaction", ID, "Satisfaction", "/ 5", k.satisfaction,
            warn=k.SATISFACTION_THRESHOLDS[0], bad=k.SATISFACTION_THRESHOLDS[1], higher_is_worse=False,
            decimals=2, delta_label="vs previous 30 d", reach=k.reach,
            definition="Mean citizen rating (1–5) of service requests closed in the last 30 days"),
        Kpi("service.pct_satisfied", ID, "Satisfied", "%", k.pct_satisfied, warn=75, bad=60,
            higher_is_worse=False, decimals=1, delta_label="vs previous 30 d", reach=k.reach,
            definition="Share of rated closures in the last 30 days rated 4 or 5"),
        Kpi("service.open", ID, "Open", "", k.open_requests, reach=k.any_age,
            definition="Service requests open now, whatever their age"),
        Kpi("service.overdue", ID, "Overdue", "", k.overdue, warn=10, bad=25, status_from=k.overdue_share,
            reach=k.any_age,
            definition="Open service requests past their due time (SLA); status from their share of all open"),
        Kpi("service.median_close", ID, "Time to close", "h", k.median_close, warn=24, bad=48,
            decimals=1, delta_label="vs previous 30 d", reach=k.reach,
            definition="Median hours from opening to closing, for requests closed in the last 30 days"),
    ),
    layer=SatisfactionLayer(),
    wall=WallText(("service.satisfaction", "service.overdue"), "Service", "Service", "satisfaction by district"),
    attention=attention,
    feed=feed,
    newest=newest,
    records=ServiceRecords(),
)
