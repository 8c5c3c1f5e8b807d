"""The service-request rollups: closures per district and day, and their time-to-close histogram.

``service_rollup``, ``service_close_spans`` and ``service_close_hist`` (see schema.py) hold, per district (``"*"`` = the
whole city, ``""`` = no district) and UTC day of closure, what the satisfaction KPIs aggregate:
closed, rated, the sum of scores, satisfied (4 or 5), late (closed after due), the sum of times to
close, and the count per bin of time to close (:func:`close_bin`: whole seconds under a minute,
then bins 2 % wide, so a bin's :func:`bin_seconds` is within 1 % of every time in it) and per
span of 32 such bins. The request ingest
(:func:`dashboard.store.services.ingest_service_requests`) keeps them current in the same
transaction: every stored request that is closed counts +1, the stored version an update replaces
counts -1. Anything that writes ``service_requests`` another way must call :func:`rebuild`.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from dashboard.metrics import CITY
from dashboard.store.schema import service_close_hist, service_close_spans, service_requests, service_rollup

#: Bucket width (a UTC day), in seconds.
DAY = 86_400
#: Time to close: bins 0..LINEAR-1 are that many seconds; above, bin LINEAR + k holds
#: [LINEAR * RATIO**k, LINEAR * RATIO**(k+1)) seconds. A span is SPAN_BINS consecutive bins.
LINEAR = 64
RATIO = 1.02
SPAN_BINS = 32
_LOG_RATIO = float(np.log(RATIO))
#: the district key of requests without a district
NO_DISTRICT = ""

_TOTALS = ("closed", "rated", "sat_sum", "satisfied", "late", "close_s")


def close_bin(seconds) -> np.ndarray:
    """Return the time-to-close bin of each duration (integer seconds, >= 0)."""
    d = np.maximum(np.asarray(seconds, dtype=np.int64), 0)
    out = d.copy()
    big = d >= LINEAR
    if big.any():
        out[big] = LINEAR + np.floor(np.log(d[big] / LINEAR) / _LOG_RATIO).astype(np.int64)
    return out


def bin_seconds(k: int) -> float:
    """Return the value a time-to-close bin stands for: its seconds below LINEAR, else the
    geometric middle of its range (within sqrt(RATIO) - 1 < 1 % of any duration in the bin)."""
    k = int(k)
    if k < LINEAR:
        return float(k)
    return LINEAR * RATIO ** (k - LINEAR + 0.5)


def _param(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def apply(conn: Connection, requests: Iterable[dict], sign: int = 1) -> None:
    """Add (``sign`` 1) or remove (-1) stored requests to/from the rollups.

    ``requests`` are mappings with district_id, opened_at, due_at, closed_at, satisfaction as
    stored; requests that are not closed (closed_at None) do not count.
    """
    rows = [r for r in requests if r.get("closed_at") is not None]
    if not rows:
        return
    apply_frame(conn, pd.DataFrame({
        "district_id": [r.get("district_id") or NO_DISTRICT for r in rows],
        "opened_at": np.array([r["opened_at"] for r in rows], dtype=np.int64),
        "due_at": np.array([r["due_at"] for r in rows], dtype=np.int64),
        "closed_at": np.array([r["closed_at"] for r in rows], dtype=np.int64),
        "satisfaction": np.array([np.nan if r.get("satisfaction") is None else float(r["satisfaction"])
                                  for r in rows], dtype=float),
        "sign": np.full(len(rows), sign, dtype=np.int64),
    }))


def apply_frame(conn: Connection, f: pd.DataFrame) -> None:
    """Add closed requests to the rollups: columns district_id ('' for none), opened_at, due_at,
    closed_at, satisfaction (NaN if unrated) and sign (+1 add, -1 remove)."""
    if f.empty:
        return
    sign = f["sign"].to_numpy(dtype=np.int64)
    sat = f["satisfaction"].to_numpy(dtype=float)
    rated = np.isfinite(sat)
    dur = f["closed_at"].to_numpy(dtype=np.int64) - f["opened_at"].to_numpy(dtype=np.int64)
    d = pd.DataFrame({
        "district_id": f["district_id"].to_numpy(dtype=object),
        "bucket": f["closed_at"].to_numpy(dtype=np.int64) // DAY * DAY,
        "bin": close_bin(dur),
        "closed": sign,
        "rated": sign * rated,
        "sat_sum": sign * np.where(rated, sat, 0).astype(np.int64),
        "satisfied": sign * (rated & (sat >= 4)),
        "late": sign * (f["closed_at"].to_numpy(dtype=np.int64) > f["due_at"].to_numpy(dtype=np.int64)),
        "close_s": sign * dur,
    })
    city = d.copy()
    city["district_id"] = CITY
    d = pd.concat([d, city], ignore_index=True)
    tot = d.groupby(["district_id", "bucket"], sort=True)[list(_TOTALS)].sum().reset_index()
    tot = tot[(tot[list(_TOTALS)] != 0).any(axis=1)]
    hist = d.groupby(["district_id", "bucket", "bin"], sort=True)["closed"].sum().reset_index()
    hist = hist[hist["closed"] != 0]
    hist["span"] = hist["bin"] // SPAN_BINS
    spans = hist.groupby(["district_id", "bucket", "span"], sort=True)["closed"].sum().reset_index()
    spans = spans[spans["closed"] != 0]
    p = _param(conn)
    if len(tot):
        cols = ("district_id", "bucket", *_TOTALS)
        conn.exec_driver_sql(
            f"INSERT INTO service_rollup ({', '.join(cols)}) VALUES ({', '.join([p] * len(cols))}) "
            "ON CONFLICT (district_id, bucket) DO UPDATE SET "
            + ", ".join(f"{c} = service_rollup.{c} + excluded.{c}" for c in _TOTALS),
            list(zip(tot["district_id"].tolist(), *(tot[c].astype(np.int64).tolist() for c in cols[1:]))))
    if len(hist):
        conn.exec_driver_sql(
            f"INSERT INTO service_close_hist (district_id, span, bucket, bin, n) VALUES ({p}, {p}, {p}, {p}, {p}) "
            "ON CONFLICT (district_id, span, bucket, bin) DO UPDATE SET n = service_close_hist.n + excluded.n",
            list(zip(hist["district_id"].tolist(), hist["span"].astype(np.int64).tolist(),
                     hist["bucket"].astype(np.int64).tolist(), hist["bin"].astype(np.int64).tolist(),
                     hist["closed"].astype(np.int64).tolist())))
    if len(spans):
        conn.exec_driver_sql(
            f"INSERT INTO service_close_spans (district_id, bucket, span, n) VALUES ({p}, {p}, {p}, {p}) "
            "ON CONFLICT (district_id, bucket, span) DO UPDATE SET n = service_close_spans.n + excluded.n",
            list(zip(spans["district_id"].tolist(), spans["bucket"].astype(np.int64).tolist(),
                     spans["span"].astype(np.int64).tolist(), spans["closed"].astype(np.int64).tolist())))


def rebuild(conn: Connection, chunk: int = 200_000) -> int:
    """Recompute both rollups from ``service_requests`` (after writing requests another way, or to
    fill them in an existing store); return the number of closed requests counted."""
    conn.execute(service_rollup.delete())
    conn.execute(service_close_hist.delete())
    conn.execute(service_close_spans.delete())
    sr = service_requests
    q = (select(sr.c.district_id, sr.c.opened_at, sr.c.due_at, sr.c.closed_at, sr.c.satisfaction)
         .where(sr.c.closed_at.is_not(None)).order_by(sr.c.id))
    total = 0
    # the same arithmetic as the ingest, in chunks: the result is the sum of the chunks' rows
    acc: list[pd.DataFrame] = []
    for part in conn.execute(q).partitions(chunk):
        f = pd.DataFrame([tuple(r) for r in part],
                         columns=["district_id", "opened_at", "due_at", "closed_at", "satisfaction"])
        f["district_id"] = f["district_id"].fillna(NO_DISTRICT)
        f["satisfaction"] = pd.to_numeric(f["satisfaction"], errors="coerce").astype(float)
        f["sign"] = 1
        acc.append(f)
        total += len(f)
        if sum(len(a) for a in acc) >= chunk:
            apply_frame(conn, pd.concat(acc, ignore_index=True))
            acc = []
    if acc:
        apply_frame(conn, pd.concat(acc, ignore_index=True))
    return total
