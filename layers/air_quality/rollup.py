"""The hourly AQI of every air-quality station, derived at ingest (table ``aqi_hourly``).

The air-quality KPIs' trends need the AQI of each station and hour: the AQI of the hour's mean
concentrations of the six pollutants, i.e. of the hourly per-asset rollups. Computing it at read
time meant reading six rollups per station-hour and indexing them on every refresh; here it is
computed once, when a batch of readings changes those rollups, for the station-hours the batch
touched, from the stored rollups (so a late or out-of-order reading recomputes its hour), for
every standard of :data:`layers.air_quality.aqi.STANDARDS`. Registered as the domain's ingest hook;
:func:`rebuild` fills the table in a store that lacks it (migration 0002).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from layers.air_quality import aqi as aqimod

HOUR = 3600
POLLUTANTS = list(aqimod.POLLUTANTS)


def _param(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def update(conn: Connection, pk: np.ndarray, ts: np.ndarray) -> int:
    """Recompute the AQI of the station-hours of pollutant readings (asset ``pk`` at ``ts``) from
    the hourly rollups (already updated in this transaction); return the station-hours written."""
    if not len(pk):
        return 0
    key = np.unique(np.asarray(pk, dtype=np.int64) * (1 << 32) + np.asarray(ts, dtype=np.int64) // HOUR)
    pks, hours = np.divmod(key, 1 << 32)
    p = _param(conn)
    upks = np.unique(pks).tolist()
    rows = []
    for i in range(0, len(upks), 500):
        chunk = upks[i:i + 500]
        rows += conn.exec_driver_sql(
            f"SELECT asset_pk, metric, bucket, n, sum FROM rollup_asset WHERE res = {p} "
            f"AND asset_pk IN ({', '.join([p] * len(chunk))}) AND metric IN ({', '.join([p] * len(POLLUTANTS))}) "
            f"AND bucket >= {p} AND bucket <= {p}",
            (HOUR, *chunk, *POLLUTANTS, int(hours.min()) * HOUR, int(hours.max()) * HOUR)).all()
    if not rows:
        return 0
    f = pd.DataFrame(rows, columns=["asset_pk", "metric", "bucket", "n", "sum"])
    f = f[np.isin(f["asset_pk"].to_numpy(dtype=np.int64) * (1 << 32) + f["bucket"].to_numpy(dtype=np.int64) // HOUR,
                  key)]
    return _write(conn, f)


def _write(conn: Connection, f: pd.DataFrame) -> int:
    """Index the station-hours of rollup rows (asset_pk, metric, bucket, n, sum) and upsert them."""
    if f.empty:
        return 0
    f = f.assign(mean=f["sum"].astype(float) / f["n"].astype(float))
    # the same frame the KPIs built from the rollups: one row per station-hour, one column per pollutant
    w = f.set_index(["asset_pk", "bucket", "metric"])["mean"].unstack("metric")
    for c in POLLUTANTS:
        if c not in w.columns:
            w[c] = np.nan
    apk = w.index.get_level_values("asset_pk").to_numpy(dtype=np.int64).tolist()
    bucket = w.index.get_level_values("bucket").to_numpy(dtype=np.int64).tolist()
    out = []
    for std in aqimod.STANDARDS:
        a, _ = aqimod.aqi_frame(w[POLLUTANTS], std)
        vals = [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
        out += list(zip([std] * len(vals), bucket, apk, vals))
    p = _param(conn)
    conn.exec_driver_sql(
        f"INSERT INTO aqi_hourly (standard, bucket, asset_pk, aqi) VALUES ({p}, {p}, {p}, {p}) "
        "ON CONFLICT (standard, bucket, asset_pk) DO UPDATE SET aqi = excluded.aqi", out)
    return len(w)


def rebuild(conn: Connection, chunk_hours: int = 24 * 30) -> int:
    """Recompute ``aqi_hourly`` from the hourly rollups (to fill it in an existing store, or after
    writing rollups another way); return the station-hours written."""
    p = _param(conn)
    conn.exec_driver_sql("DELETE FROM aqi_hourly")
    lo, hi = conn.exec_driver_sql(
        f"SELECT min(bucket), max(bucket) FROM rollup_asset WHERE res = {p} "
        f"AND metric IN ({', '.join([p] * len(POLLUTANTS))})", (HOUR, *POLLUTANTS)).one()
    if lo is None:
        return 0
    total = 0
    step = chunk_hours * HOUR
    for a in range(int(lo), int(hi) + 1, step):
        rows = conn.exec_driver_sql(
            f"SELECT asset_pk, metric, bucket, n, sum FROM rollup_asset WHERE res = {p} "
            f"AND metric IN ({', '.join([p] * len(POLLUTANTS))}) AND bucket >= {p} AND bucket < {p}",
            (HOUR, *POLLUTANTS, a, a + step)).all()
        if rows:
            total += _write(conn, pd.DataFrame(rows, columns=["asset_pk", "metric", "bucket", "n", "sum"]))
    return total
