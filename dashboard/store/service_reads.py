"""Service-request reads: closures' satisfaction and time to close, open backlog, per district.

Whole UTC days come from the rollups (:mod:`dashboard.store.service_rollup`), the edges of a
window from ``service_requests`` itself, so any window costs a few rows, not a scan.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from dashboard.metrics import CITY
from dashboard.store.drivers import fetch, rows_frame
from dashboard.store.schema import service_categories, service_requests
from dashboard.store.service_rollup import DAY as SVC_DAY
from dashboard.store.service_rollup import NO_DISTRICT
from dashboard.store.service_rollup import SPAN_BINS as SVC_SPAN_BINS
from dashboard.store.service_rollup import bin_seconds, close_bin


def _sr_district(q, district):
    return q.where(service_requests.c.district_id == district) if district else q


def _svc_split(start: int, end: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """Split [start, end) into whole UTC days (read from the rollups) and the edges (read raw).

    Returns ((first day, end of last day) or None, [raw ranges]). The edges are under a day each,
    so they cost a short range of the closed_at index.
    """
    a = -(-start // SVC_DAY) * SVC_DAY
    b = end // SVC_DAY * SVC_DAY
    if a >= b:
        return None, [(start, end)] if start < end else []
    return (a, b), [(s, e) for s, e in ((start, a), (b, end)) if s < e]


def _svc_ranges(conn: Connection, start: int, end: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """:func:`_svc_split`, and when no request is closed at or after ``end`` the day ``end`` falls in
    comes whole from the rollups: its bucket then holds exactly the closures in [day, end).

    A live window ends now, late in a UTC day its end edge is most of a day of requests; read from
    the rollup it is one row.
    """
    days, edges = _svc_split(start, end)
    if not edges:
        return days, edges
    day = edges[-1][0]
    if edges[-1][1] != end or day % SVC_DAY or (days is None and day != start):
        return days, edges  # no end edge that starts a UTC day
    newest = fetch(conn, "SELECT max(closed_at) FROM service_requests")[0][0]
    if newest is not None and newest >= end:
        return days, edges
    return (days[0] if days else day, day + SVC_DAY), edges[:-1]


def _median_hours(total: int, span_rows: list[tuple[int, int]], bins_of) -> float | None:
    """Return the median time to close in hours from the time-to-close histogram: the mean of the
    values of the bins holding the two middle ranks (one rank when ``total`` is odd), each within
    1 % of the time it stands for (:func:`dashboard.store.service_rollup.bin_seconds`).

    ``span_rows``: sorted (span, count); ``bins_of(spans)``: {bin: count} of those spans (only the
    one or two spans of the middle ranks are asked for).
    """
    if total <= 0:
        return None
    ranks = sorted({(total - 1) // 2, total // 2})
    where: dict[int, tuple[int, int]] = {}  # rank -> (its span, count before that span)
    acc = 0
    for sk, sc in span_rows:
        for r in ranks:
            if r not in where and acc + sc > r:
                where[r] = (sk, acc)
        acc += sc
        if len(where) == len(ranks):
            break
    if len(where) < len(ranks):
        return None
    bins = bins_of(sorted({sk for sk, _ in where.values()}))
    vals = []
    for r in ranks:
        sk, acc = where[r]
        for k, c in sorted((k, c) for k, c in bins.items() if k // SVC_SPAN_BINS == sk and c > 0):
            if acc + c > r:
                vals.append(bin_seconds(k))
                break
            acc += c
    return (vals[0] + vals[-1]) / 2 / 3600.0 if len(vals) == len(ranks) else None


def _service_daily_raw(conn: Connection, start: int, end: int, district: str | None, res: int) -> list[tuple]:
    sr = service_requests
    bucket = (sr.c.closed_at // res) * res
    q = _sr_district(select(bucket, func.avg(sr.c.satisfaction), func.count(),
                            func.sum((sr.c.satisfaction >= 4).cast(sr.c.satisfaction.type)),
                            func.count(sr.c.satisfaction), func.avg(sr.c.closed_at - sr.c.opened_at))
                     .where(sr.c.closed_at >= start, sr.c.closed_at < end).group_by(bucket).order_by(bucket),
                     district)
    return [tuple(r) for r in conn.execute(q).all()]


def _edge_requests(conn: Connection, edges: list[tuple[int, int]], district: str | None) -> np.ndarray:
    """Return closed_at, opened_at, due_at, satisfaction (NaN if none) of the requests closed in the
    ``edges`` ranges, as an (n, 4) float array (times are exact integers in a float64)."""
    if not edges:
        return np.empty((0, 4))
    dist = " AND district_id = ?" if district else ""
    part = f"SELECT closed_at, opened_at, due_at, satisfaction FROM service_requests " \
           f"WHERE closed_at >= ? AND closed_at < ?{dist}"
    params: tuple = ()
    for s, e in edges:
        params += (s, e, *((district,) if district else ()))
    rows = fetch(conn, " UNION ALL ".join([part] * len(edges)), params)
    return np.array(rows, dtype=float).reshape(-1, 4)


def service_window(conn: Connection, start: int, end: int, district: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Return the statistics and the daily series of the requests closed in [start, end).

    Statistics: n, satisfaction (mean of those rated), rated, satisfied (rated 4 or 5), late,
    median_hours (time to close, within 1 %: from a histogram of bins 2 % wide). Daily series, per
    UTC day of closure: bucket, satisfaction (mean), closed, satisfied, rated, hours (mean to close).

    Whole days come from ``service_rollup`` and the time-to-close histogram tables, the edges of
    the window from the requests themselves, read once for both (same sums as one pass over the table).
    """
    days, edges = _svc_ranges(conn, int(start), int(end))
    e = _edge_requests(conn, edges, district)
    return _closed_stats(conn, days, e, district), _daily(conn, days, e, district, edges)


def _closed_stats(conn: Connection, days: tuple[int, int] | None, e: np.ndarray, district: str | None) -> dict:
    per = SVC_SPAN_BINS
    closed, opened, due, score = e[:, 0].astype(np.int64), e[:, 1].astype(np.int64), e[:, 2].astype(np.int64), e[:, 3]
    rated_m = np.isfinite(score)
    n, rated = len(e), int(rated_m.sum())
    sat_sum = int(score[rated_m].astype(np.int64).sum())
    satisfied = int((score[rated_m] >= 4).sum())
    late = int((closed > due).sum())
    k, c = np.unique(close_bin(closed - opened), return_counts=True)
    hist: dict[int, int] = dict(zip(k.tolist(), c.tolist()))  # the edges' time-to-close bins
    spans: dict[int, int] = {}  # spans of bins: the whole days' (from the rollup) and the edges'
    for k, c in hist.items():
        spans[k // per] = spans.get(k // per, 0) + c
    key = district or CITY
    if days:
        row = fetch(conn, "SELECT sum(closed), sum(sat_sum), sum(rated), sum(satisfied), sum(late) "
                          "FROM service_rollup WHERE district_id = ? AND bucket >= ? AND bucket < ?",
                    (key, *days))[0]
        n += int(row[0] or 0)
        sat_sum += int(row[1] or 0)
        rated += int(row[2] or 0)
        satisfied += int(row[3] or 0)
        late += int(row[4] or 0)
        for k, c in fetch(conn, "SELECT span, sum(n) FROM service_close_spans "
                                "WHERE district_id = ? AND bucket >= ? AND bucket < ? GROUP BY span",
                          (key, *days)):
            spans[int(k)] = spans.get(int(k), 0) + int(c or 0)
    sat = sat_sum / rated if rated else None

    def bins_of(sks: list[int]) -> dict[int, int]:
        bins = {k: c for k, c in hist.items() if k // per in sks}  # the edges'
        if days:
            for k, c in fetch(conn, "SELECT bin, sum(n) FROM service_close_hist WHERE district_id = ? "
                                    f"AND span IN ({', '.join('?' * len(sks))}) AND bucket >= ? AND bucket < ? "
                                    "GROUP BY bin", (key, *sks, *days)):
                bins[int(k)] = bins.get(int(k), 0) + int(c or 0)
        return bins

    # the middle ranks' spans, then the bins of those (one or two) spans only
    median = _median_hours(int(n), sorted((k, c) for k, c in spans.items() if c > 0), bins_of)
    return {"n": int(n), "satisfaction": float(sat) if sat is not None else None, "rated": int(rated),
            "satisfied": int(satisfied), "late": int(late), "median_hours": median}


def _daily(conn: Connection, days: tuple[int, int] | None, e: np.ndarray, district: str | None,
           edges: list[tuple[int, int]]) -> pd.DataFrame:
    rows = []
    pg = conn.dialect.name == "postgresql"
    if pg:
        # PostgreSQL's avg() is a numeric rounded to its own scale: the edges with the same SQL,
        # the whole days divided as numerics, so the means are the very floats of one avg()
        for s_, e_ in edges:
            rows += _service_daily_raw(conn, s_, e_, district, SVC_DAY)
    elif len(e):
        closed, opened, score = e[:, 0].astype(np.int64), e[:, 1].astype(np.int64), e[:, 3]
        bucket = closed // SVC_DAY * SVC_DAY
        for b in np.unique(bucket).tolist():
            m = bucket == b
            sc = score[m]
            r = np.isfinite(sc)
            rated, cnt = int(r.sum()), int(m.sum())
            rows.append((b, int(sc[r].astype(np.int64).sum()) / rated if rated else None, cnt,
                         int((sc[r] >= 4).sum()), rated, int((closed[m] - opened[m]).sum()) / cnt))
    if days and pg:
        for b, mean, closed, satisfied, rated, secs in fetch(
                conn, "SELECT bucket, CASE WHEN rated > 0 THEN CAST(sat_sum AS NUMERIC) / rated END, closed, "
                      "satisfied, rated, CAST(close_s AS NUMERIC) / closed FROM service_rollup "
                      "WHERE district_id = ? AND bucket >= ? AND bucket < ? AND closed > 0",
                (district or CITY, *days)):
            rows.append((int(b), mean, int(closed), int(satisfied), int(rated), secs))
    elif days:
        for b, closed, rated, sat_sum, satisfied, close_s in fetch(
                conn, "SELECT bucket, closed, rated, sat_sum, satisfied, close_s FROM service_rollup "
                      "WHERE district_id = ? AND bucket >= ? AND bucket < ? AND closed > 0",
                (district or CITY, *days)):
            rows.append((int(b), sat_sum / rated if rated else None, int(closed), int(satisfied), int(rated),
                         close_s / closed))
    if not rows:  # the dtypes of an empty frame of the plain SQL reads (the tests' reference)
        return pd.DataFrame({"bucket": np.array([], dtype=object), "satisfaction": np.array([], dtype=float),
                             "closed": np.array([], dtype=object), "satisfied": np.array([], dtype=np.int64),
                             "rated": np.array([], dtype=object), "hours": np.array([], dtype=float)})
    rows.sort(key=lambda r: r[0])
    b, sat, closed, satisfied, rated, secs = zip(*rows)
    # the plain SQL reads' frame, with its dtypes, built directly (pandas calls cost here)
    return pd.DataFrame({"bucket": np.array(b, dtype=np.int64),
                         "satisfaction": np.array([np.nan if v is None else float(v) for v in sat], dtype=float),
                         "closed": np.array(closed, dtype=np.int64),
                         "satisfied": np.array([0 if v is None else int(v) for v in satisfied], dtype=np.int64),
                         "rated": np.array(rated, dtype=np.int64),
                         "hours": np.array([float(v) for v in secs], dtype=float) / 3600.0})


def _open_counts(conn: Connection, times: list[int], district: str | None) -> dict[int, dict]:
    """Count the requests open (and overdue) at each of ``times`` (sorted), however long ago they
    were opened: a request is open from its opening until it closes.

    Counted in SQL over two index ranges of ``ix_sr_closure`` (it covers opened_at and due_at):
    the requests never closed (closed_at IS NULL: the open backlog) and those closed after
    times[0] (the closures of the sparkline's span); no row leaves the database.
    """
    dist = " AND district_id = ?" if district else ""
    never, never_p, later, later_p = [], [], [], []  # the counts of each part, and their parameters
    for t in times:
        never += ["sum(CASE WHEN opened_at <= ? THEN 1 ELSE 0 END)",
                  "sum(CASE WHEN opened_at <= ? AND due_at < ? THEN 1 ELSE 0 END)"]
        never_p += [t, t, t]
        later += ["sum(CASE WHEN opened_at <= ? AND closed_at > ? THEN 1 ELSE 0 END)",
                  "sum(CASE WHEN opened_at <= ? AND closed_at > ? AND due_at < ? THEN 1 ELSE 0 END)"]
        later_p += [t, t, t, t, t]
    # "+ 0": the opened_at bound is a filter, not an index range (SQLite, without statistics,
    # would otherwise pick the opened_at index and read every request ever opened)
    part = "SELECT {cols} FROM service_requests WHERE {cond} AND opened_at + 0 <= ?" + dist
    tail = (times[-1], *((district,) if district else ()))
    rows = fetch(conn, part.format(cols=", ".join(never), cond="closed_at IS NULL") + " UNION ALL "
                 + part.format(cols=", ".join(later), cond="closed_at > ?"),
                 (*never_p, *tail, *later_p, times[0], *tail))
    out = {}
    for k, t in enumerate(times):
        out[t] = {"open": sum(int(r[2 * k] or 0) for r in rows),
                  "overdue": sum(int(r[2 * k + 1] or 0) for r in rows)}
    return out


def service_open_at_many(conn: Connection, times: list[int], district: str | None = None) -> dict[int, dict]:
    """Return {t: {'open': n, 'overdue': m}} for each time in ``times``, in one query.

    A request is open at ``t`` if opened at or before ``t`` and not closed by then, however long
    ago it was opened; overdue if also past its due time.
    """
    times = sorted({int(t) for t in times})
    if not times:
        return {}
    return _open_counts(conn, times, district)


def service_newest_ts(conn: Connection, district: str | None = None) -> int | None:
    """Return the time of the newest service-request event (opening or closure)."""
    sr = service_requests
    a = conn.execute(_sr_district(select(func.max(sr.c.opened_at)), district)).scalar()
    b = conn.execute(_sr_district(select(func.max(sr.c.closed_at)), district)).scalar()
    vals = [v for v in (a, b) if v is not None]
    return max(vals) if vals else None


def service_by_district(conn: Connection, start: int, end: int) -> pd.DataFrame:
    """Return per district: mean satisfaction and count of requests closed in [start, end)."""
    sr = service_requests
    days, edges = _svc_ranges(conn, int(start), int(end))
    acc: dict = {}  # district -> [sum of scores, rated, closed]
    for s, e in edges:
        q = (select(sr.c.district_id, func.sum(sr.c.satisfaction), func.count(sr.c.satisfaction), func.count())
             .where(sr.c.closed_at >= s, sr.c.closed_at < e).group_by(sr.c.district_id))
        for d, ssum, rated, closed in conn.execute(q).all():
            a = acc.setdefault(d, [0, 0, 0])
            a[0] += int(ssum or 0)
            a[1] += int(rated or 0)
            a[2] += int(closed or 0)
    if days:
        for d, ssum, rated, closed in fetch(
                conn, "SELECT district_id, sum(sat_sum), sum(rated), sum(closed) FROM service_rollup "
                      "WHERE district_id <> ? AND bucket >= ? AND bucket < ? GROUP BY district_id",
                (CITY, *days)):
            a = acc.setdefault(None if d == NO_DISTRICT else d, [0, 0, 0])
            a[0] += int(ssum or 0)
            a[1] += int(rated or 0)
            a[2] += int(closed or 0)
    rows = [(d, a[0] / a[1] if a[1] else None, a[1]) for d, a in acc.items() if a[2] > 0]
    return rows_frame(rows, ["district_id", "satisfaction", "n"]).astype({"satisfaction": float})


def service_open_list(conn: Connection, t: int, district: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Return the open requests at ``t`` that are most overdue first."""
    sr, sc = service_requests, service_categories
    q = _sr_district(
        select(sr.c.id, sc.c.name, sr.c.district_id, sr.c.opened_at, sr.c.due_at)
        .join(sc, sc.c.id == sr.c.category_id)
        .where(sr.c.opened_at <= t, (sr.c.closed_at.is_(None)) | (sr.c.closed_at > t))
        .order_by(sr.c.due_at).limit(limit), district)
    return rows_frame(conn.execute(q).all(), ["id", "category", "district_id", "opened_at", "due_at"])


def service_overdue_by_district(conn: Connection, t: int) -> pd.DataFrame:
    """Return, per district, the requests open at ``t`` past their due time: district_id, n and the
    oldest due time (one grouped read, every one counted however many there are).

    Open at ``t`` is never closed, or closed after ``t``: two index ranges of the closure index
    (``closed_at`` NULL, ``closed_at`` > t), not one OR that scans every request.
    """
    part = "SELECT district_id, due_at FROM service_requests WHERE {} AND opened_at <= ? AND due_at < ?"
    rows = fetch(conn, "SELECT district_id, count(*), min(due_at) FROM ("
                       + part.format("closed_at IS NULL") + " UNION ALL " + part.format("closed_at > ?")
                       + ") o GROUP BY district_id", (int(t), int(t), int(t), int(t), int(t)))
    return rows_frame(rows, ["district_id", "n", "oldest_due"])
