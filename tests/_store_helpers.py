"""Reads and writes only the tests use: references the store's reads are checked against, and
views of its internals (the product's paths are in dashboard/store/).

The plain SQL reads here (``latest`` joined to ``assets``, aggregates straight from
``service_requests``) are the slow, obvious versions the screens' reads must equal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from dashboard.store import service_reads as sv
from dashboard.store.drivers import rows_frame
from dashboard.store.ingest import Ingestor, IngestResult
from dashboard.store.schema import assets, latest, service_requests
from dashboard.store.service_rollup import DAY as SVC_DAY
from dashboard.store.service_rollup import SPAN_BINS as SVC_SPAN_BINS
from dashboard.store.service_rollup import close_bin


# ------------------------------------------------------------------ readings and assets
def ingest_rows(engine: Engine, rows, source: str = "api", now: float | None = None) -> IngestResult:
    """Ingest an iterable of reading dicts through a fresh :class:`Ingestor`."""
    return Ingestor(engine).ingest(rows, source=source, now=now)


def validate(ing: Ingestor, frame: pd.DataFrame, now: float | None = None):
    """Split ``frame`` (asset, metric, ts, value[, line]) into good rows and rejections, writing nothing.

    Returns
    -------
    good : DataFrame with asset_pk, metric, ts (int64), value (float), _row (input position)
    reason : object array per input row: None (accepted), "" (duplicate) or the rejection reason
    """
    batch, reason = ing._validate(frame, now)
    return batch.frame(), reason


def latest_values(conn: Connection, kind: str, metrics: list[str] | None = None,
                  district: str | None = None) -> pd.DataFrame:
    """Return the newest value of each metric of each asset of ``kind``, in long form: one join.

    Columns: asset_id, name, district_id, metric, ts, value.
    """
    q = (select(assets.c.id, assets.c.name, assets.c.district_id, latest.c.metric, latest.c.ts, latest.c.value)
         .join(assets, assets.c.pk == latest.c.asset_pk).where(assets.c.kind == kind))
    if metrics:
        q = q.where(latest.c.metric.in_(metrics))
    if district:
        q = q.where(assets.c.district_id == district)
    return rows_frame(conn.execute(q).all(), ["asset_id", "name", "district_id", "metric", "ts", "value"])


def asset_attributes(conn: Connection, kind: str, district: str | None = None) -> pd.DataFrame:
    """Return the assets of ``kind`` without geometry: id, name, district_id, lon, lat, attributes (dict)."""
    q = select(assets.c.id, assets.c.name, assets.c.district_id, assets.c.lon, assets.c.lat,
               assets.c.attributes).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    return rows_frame(conn.execute(q.order_by(assets.c.pk)).all(),
                      ["id", "name", "district_id", "lon", "lat", "attributes"])


# ------------------------------------------------------------------ service requests
def service_closed_stats(conn: Connection, start: int, end: int, district: str | None = None) -> dict:
    """Return the statistics half of :func:`dashboard.store.service_reads.service_window`, alone."""
    days, edges = sv._svc_ranges(conn, int(start), int(end))
    return sv._closed_stats(conn, days, sv._edge_requests(conn, edges, district), district)


def service_daily(conn: Connection, start: int, end: int, district: str | None = None,
                  res: int = 86_400) -> pd.DataFrame:
    """Return the daily series of :func:`~dashboard.store.service_reads.service_window` alone; with
    another ``res``, the same columns per ``res`` bucket straight from the table."""
    if res != SVC_DAY:
        return _daily_frame(sv._service_daily_raw(conn, start, end, district, res))
    days, edges = sv._svc_ranges(conn, int(start), int(end))
    return sv._daily(conn, days, sv._edge_requests(conn, edges, district) if conn.dialect.name != "postgresql"
                     else np.empty((0, 4)), district, edges)


def service_open_at(conn: Connection, t: int, district: str | None = None) -> dict:
    """Return counts of requests open at time ``t``: {'open': n, 'overdue': m}."""
    return sv.service_open_at_many(conn, [int(t)], district)[int(t)]


def service_opened_count(conn: Connection, start: int, end: int, district: str | None = None) -> int:
    """Return how many requests were opened in [start, end)."""
    sr = service_requests
    q = sv._sr_district(select(func.count()).where(sr.c.opened_at >= start, sr.c.opened_at < end), district)
    return int(conn.execute(q).scalar() or 0)


def service_window_table(conn: Connection, start: int, end: int,
                         district: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Return :func:`~dashboard.store.service_reads.service_window` computed from ``service_requests``
    alone (no rollup): the reference the rollups are checked against."""
    return (_stats_from_hist(_closed_hist_raw(conn, start, end, district)),
            _daily_frame(sv._service_daily_raw(conn, start, end, district, SVC_DAY)))


def _closed_hist_raw(conn: Connection, start: int, end: int, district: str | None = None) -> list[tuple]:
    """Return the times to close of requests closed in [start, end), from the table itself:
    rows (seconds, count, sum of scores, rated, satisfied, late) by time to close."""
    sr = service_requests
    b = sr.c.closed_at - sr.c.opened_at
    hq = sv._sr_district(select(b, func.count(), func.sum(sr.c.satisfaction), func.count(sr.c.satisfaction),
                                func.sum((sr.c.satisfaction >= 4).cast(sr.c.satisfaction.type)),
                                func.sum((sr.c.closed_at > sr.c.due_at).cast(sr.c.satisfaction.type)))
                         .where(sr.c.closed_at >= start, sr.c.closed_at < end).group_by(b).order_by(b), district)
    return conn.execute(hq).all()


def _stats_from_hist(rows: list[tuple]) -> dict:
    """Return :func:`service_closed_stats` from rows (seconds to close, count, score sum, rated, satisfied, late)."""
    n = sum(r[1] for r in rows)
    sat_sum = sum(int(r[2]) for r in rows if r[2] is not None)
    rated = sum(r[3] for r in rows)
    satisfied = sum(int(r[4]) for r in rows if r[4] is not None) if any(r[4] is not None for r in rows) else None
    late = sum(int(r[5]) for r in rows if r[5] is not None) if any(r[5] is not None for r in rows) else None
    sat = sat_sum / rated if rated else None
    hist: dict[int, int] = {}
    for k, c in zip(close_bin([int(r[0]) for r in rows]).tolist(), (int(r[1]) for r in rows)):
        hist[k] = hist.get(k, 0) + c
    spans: dict[int, int] = {}
    for k, c in hist.items():
        spans[k // SVC_SPAN_BINS] = spans.get(k // SVC_SPAN_BINS, 0) + c
    median = sv._median_hours(int(n or 0), sorted(spans.items()), lambda _spans: hist)
    return {"n": int(n or 0), "satisfaction": float(sat) if sat is not None else None, "rated": int(rated or 0),
            "satisfied": int(satisfied or 0), "late": int(late or 0), "median_hours": median}


def _daily_frame(rows: list[tuple]) -> pd.DataFrame:
    df = rows_frame(rows, ["bucket", "satisfaction", "closed", "satisfied", "rated", "hours"])
    df["satisfied"] = df["satisfied"].fillna(0).astype(int)  # SUM over only unrated rows is NULL
    df["hours"] = df["hours"].astype(float) / 3600.0
    return df.astype({"satisfaction": float})
