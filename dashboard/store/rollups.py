"""Series over time from the rollups: a district's (or the city's), per asset, and stations' hourly AQI.

Trends never read ``readings``: the ingest keeps per-asset and per-district buckets of every
resolution of :data:`dashboard.metrics.ROLLUP_RESOLUTIONS` (and ``aqi_hourly``) current.
"""
from __future__ import annotations

from itertools import chain

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from dashboard.metrics import CITY
from dashboard.store.drivers import fetch, kind_filter
from dashboard.store.latest import asset_directory
from dashboard.store.schema import assets, rollup_asset

#: The time windows a screen may ask for, in seconds, and the rollup used to draw them.
WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
WINDOW_RES = {"1h": 300, "24h": 300, "7d": 3600}


def district_series(conn: Connection, metric: str, start: int, end: int, res: int,
                    district: str | None = None) -> pd.DataFrame:
    """Return the rollup of ``metric`` over a district (or the city) for buckets in [start, end).

    Columns: bucket, n, sum, min, max, mean.
    """
    r = district_rollup(conn, metric, start, end, res, district)
    return pd.DataFrame({"bucket": r.bucket, "n": r.n, "sum": r.sum, "min": r.min, "max": r.max, "mean": r.mean})


class Rollup:
    """A district (or city) rollup series as numpy arrays, sorted by bucket: bucket, n, sum, min, max, mean.

    What the KPIs compute from; a light stand-in for :func:`district_series`'s frame (no pandas
    per read). ``r["sum"]`` is ``r.sum``.
    """

    __slots__ = ("bucket", "n", "sum", "min", "max", "mean")

    def __init__(self, bucket: np.ndarray, n: np.ndarray, sm: np.ndarray, mn: np.ndarray, mx: np.ndarray):
        self.bucket, self.n, self.sum, self.min, self.max = bucket, n, sm, mn, mx
        with np.errstate(divide="ignore", invalid="ignore"):
            self.mean = sm / n

    def __len__(self) -> int:
        return len(self.bucket)

    def __getitem__(self, column: str) -> np.ndarray:
        return getattr(self, column)

    @property
    def empty(self) -> bool:
        return not len(self.bucket)

    def where(self, mask: np.ndarray) -> "Rollup":
        """Return the buckets where ``mask`` holds."""
        return Rollup(self.bucket[mask], self.n[mask], self.sum[mask], self.min[mask], self.max[mask])

    def since(self, lo: int) -> "Rollup":
        """Return the buckets from ``lo`` on."""
        return self.where(self.bucket >= lo)

    def before(self, hi: int) -> "Rollup":
        """Return the buckets before ``hi``."""
        return self.where(self.bucket < hi)

    def at(self, column: str, buckets: np.ndarray) -> np.ndarray:
        """Return ``column`` at ``buckets`` (NaN where this series has no such bucket)."""
        buckets = np.asarray(buckets, dtype=np.int64)
        if not len(self.bucket):
            return np.full(len(buckets), np.nan)
        i = np.minimum(np.searchsorted(self.bucket, buckets), len(self.bucket) - 1)
        return np.where(self.bucket[i] == buckets, getattr(self, column)[i].astype(float), np.nan)


def district_rollup(conn: Connection, metric: str, start: int, end: int, res: int,
                    district: str | None = None) -> Rollup:
    """Return :func:`district_series` as a :class:`Rollup` (numpy arrays)."""
    rows = fetch(conn, "SELECT bucket, n, sum, min, max FROM rollup_district WHERE res = ? AND district_id = ? "
                       "AND metric = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
                 (int(res), district or CITY, metric, int(start), int(end)))
    if not rows:
        e = np.array([], dtype=np.int64)
        return Rollup(e, e.copy(), np.array([], dtype=float), np.array([], dtype=float), np.array([], dtype=float))
    arr = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=5 * len(rows)).reshape(-1, 5)
    return Rollup(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2].copy(), arr[:, 3].copy(),
                  arr[:, 4].copy())


def asset_series(conn: Connection, kind: str, metrics: list[str], start: int, end: int, res: int,
                 district: str | None = None) -> pd.DataFrame:
    """Return per-asset rollups of ``metrics`` for buckets in [start, end).

    Columns: asset_id, district_id, metric, bucket, n, sum, min, max, mean.
    """
    d = asset_directory(conn, kind)
    if d is not None:  # the asset list in memory: one read of the rollups, as the driver's tuples
        return _asset_series_dir(conn, d, kind, metrics, start, end, res, district)
    t = rollup_asset
    # the assets first (a few hundred rows), then their rollups without a per-row join
    aq = select(assets.c.pk, assets.c.id, assets.c.district_id).where(assets.c.kind == kind)
    if district:
        aq = aq.where(assets.c.district_id == district)
    arows = conn.execute(aq).all()
    cols = ["asset_id", "district_id", "metric", "bucket", "n", "sum", "min", "max"]
    if not arows:
        df = pd.DataFrame(columns=cols)
        df["mean"] = df["sum"] / df["n"]
        return df
    pks = [r[0] for r in arows]
    q = (select(t.c.asset_pk, t.c.metric, t.c.bucket, t.c.n, t.c.sum, t.c.min, t.c.max)
         .where(t.c.res == res, t.c.metric.in_(metrics), t.c.bucket >= start, t.c.bucket < end,
                t.c.asset_pk.in_(select(assets.c.pk).where(assets.c.kind == kind,
                                                          *([assets.c.district_id == district] if district else [])))))
    rows = conn.execute(q).all()
    if not rows:
        df = pd.DataFrame(columns=cols)
        df["mean"] = df["sum"] / df["n"]
        return df
    pk, met, bucket, n, sm, mn, mx = zip(*rows)
    where = pd.Index(pks).get_indexer(np.array(pk, dtype=np.int64))
    ids = np.array([r[1] for r in arows], dtype=object)[where]
    dists = np.array([r[2] for r in arows], dtype=object)[where]
    df = pd.DataFrame({"asset_id": list(ids), "district_id": list(dists), "metric": list(met), "bucket": list(bucket),
                       "n": list(n), "sum": list(sm), "min": list(mn), "max": list(mx)})
    df["mean"] = df["sum"] / df["n"]
    return df


def _asset_series_dir(conn: Connection, d, kind: str, metrics: list[str], start: int, end: int, res: int,
                      district: str | None) -> pd.DataFrame:
    """:func:`asset_series` with the asset directory (a store with the assets revision)."""
    cols = ["asset_id", "district_id", "metric", "bucket", "n", "sum", "min", "max"]
    ms = list(metrics)
    rows = fetch(conn, "SELECT asset_pk, metric, bucket, n, sum, min, max FROM rollup_asset WHERE res = ? "
                       f"AND metric IN ({', '.join('?' * len(ms))}) AND bucket >= ? AND bucket < ? "
                       "AND asset_pk IN (SELECT pk FROM assets WHERE kind = ?)",
                 (int(res), *ms, int(start), int(end), kind))
    if not rows or not d.n:
        df = pd.DataFrame(columns=cols)
        df["mean"] = df["sum"] / df["n"]
        return df
    pk, met, bucket, n, sm, mn, mx = zip(*rows)
    pos = d.positions(np.array(pk, dtype=np.int64))
    keep = pos >= 0
    if district:
        keep &= d.district[np.where(keep, pos, 0)] == district
    pos = pos[keep]
    sm = np.array(sm, dtype=float)[keep]
    n = np.array(n, dtype=np.int64)[keep]
    df = pd.DataFrame({"asset_id": d.ids[pos], "district_id": d.district[pos],
                       "metric": np.array(met, dtype=object)[keep], "bucket": np.array(bucket, dtype=np.int64)[keep],
                       "n": n, "sum": sm, "min": np.array(mn, dtype=float)[keep], "max": np.array(mx, dtype=float)[keep]})
    df["mean"] = sm / n
    return df


def station_aqi_series(conn: Connection, kind: str, start: int, end: int, standard: str = "cn",
                       district: str | None = None) -> pd.DataFrame:
    """Return the hourly AQI (table ``aqi_hourly``) of every station (assets of ``kind``) for buckets in [start, end).

    Columns: asset_id, district_id, bucket, aqi (NaN where no pollutant could be indexed); sorted
    by asset id, then bucket.
    """
    cols = ["asset_id", "district_id", "bucket", "aqi"]
    d = asset_directory(conn, kind)
    if d is None:
        return _station_aqi_series_join(conn, kind, start, end, standard, district)
    # every row of aqi_hourly is a station's; the directory gives id, district and order
    rows = fetch(conn, "SELECT asset_pk, bucket, aqi FROM aqi_hourly WHERE standard = ? AND bucket >= ? AND bucket < ?",
                 (standard, int(start), int(end)))
    if not rows or not d.n:
        return pd.DataFrame(columns=cols)
    pk, bucket, val = zip(*rows)
    pos = d.positions(np.array(pk, dtype=np.int64))
    keep = pos >= 0
    if district:
        keep &= d.district[np.where(keep, pos, 0)] == district
    if not keep.any():
        return pd.DataFrame(columns=cols)
    pos, bucket = pos[keep], np.array(bucket, dtype=np.int64)[keep]
    val = np.array(val, dtype=float)[keep]  # None (no pollutant indexed) becomes NaN
    order = np.lexsort((bucket, pos))  # directory rows are in id order
    pos = pos[order]
    return pd.DataFrame({"asset_id": d.ids[pos], "district_id": d.district[pos], "bucket": bucket[order],
                         "aqi": val[order]})


def _station_aqi_series_join(conn: Connection, kind: str, start: int, end: int, standard: str = "cn",
                             district: str | None = None) -> pd.DataFrame:
    """:func:`station_aqi_series` on a store without the assets revision."""
    where, params = kind_filter(kind, district)
    arows = fetch(conn, f"SELECT a.pk, a.id, a.district_id FROM assets a WHERE {where}", params)
    cols = ["asset_id", "district_id", "bucket", "aqi"]
    if not arows:
        return pd.DataFrame(columns=cols)
    rows = fetch(conn, "SELECT h.asset_pk, h.bucket, h.aqi FROM aqi_hourly h WHERE h.standard = ? "
                       "AND h.bucket >= ? AND h.bucket < ? "
                       f"AND h.asset_pk IN (SELECT a.pk FROM assets a WHERE {where})",
                 (standard, int(start), int(end), *params))
    if not rows:
        return pd.DataFrame(columns=cols)
    apk, aid, adist = zip(*arows)
    aid = np.array(aid, dtype=object)
    rank = np.empty(len(aid), dtype=np.int64)
    rank[np.argsort(aid, kind="stable")] = np.arange(len(aid))
    pk, bucket, val = zip(*rows)
    pos = pd.Index(np.array(apk, dtype=np.int64)).get_indexer(np.array(pk, dtype=np.int64))
    bucket = np.array(bucket, dtype=np.int64)
    order = np.lexsort((bucket, rank[pos]))
    pos = pos[order]
    return pd.DataFrame({"asset_id": aid[pos], "district_id": np.array(adist, dtype=object)[pos],
                         "bucket": bucket[order],
                         "aqi": np.array([np.nan if v is None else v for v in val], dtype=float)[order]})
