"""The ingest's rollups: per asset and per district (and the city), every resolution, kept current.

A batch's readings, and the derived series computed from them, are summed into buckets with
numpy (:func:`rollup_payloads`) while the server stores the readings, then added to the stored
buckets (:func:`write_rollups`); then the domains' ingest hooks run (:func:`run_hooks`). All in
the batch's transaction.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from dashboard.metrics import DERIVED, DERIVED_ATTRS, ROLLUP_RESOLUTIONS
from dashboard.store.ingest_checks import NS, SCODE, SERIES, Batch
from dashboard.store.ingest_writers import pg_copy, pg_stage
from layers import DOMAINS as _DOMAINS

#: After readings are stored: (series codes, hook(conn, asset pks, ts)) of every domain's ``ingest_hooks``,
#: run in the same transaction (air quality's hourly AQI of the station-hours a batch changed).
_HOOKS = [(np.array([SCODE[m] for m in ms if m in SCODE], dtype=np.int64), fn)
          for d in _DOMAINS for ms, fn in d.ingest_hooks]


def _least(conn: Connection, a: str, b: str) -> str:
    return f"min({a}, {b})" if conn.dialect.name == "sqlite" else f"LEAST({a}, {b})"


def _greatest(conn: Connection, a: str, b: str) -> str:
    return f"max({a}, {b})" if conn.dialect.name == "sqlite" else f"GREATEST({a}, {b})"


def _group_stats(key: np.ndarray, value: np.ndarray):
    """Return (keys, count, sum, min, max) of ``value`` grouped by the integer ``key``, keys sorted.

    pandas' grouped sum (compensated, in row order) so sums match a DataFrame groupby exactly.
    """
    g = pd.Series(value).groupby(key, sort=True)
    agg = g.agg(["count", "sum", "min", "max"])
    return (agg.index.to_numpy(dtype=np.int64), agg["count"].to_numpy(dtype=np.int64),
            agg["sum"].to_numpy(dtype=float), agg["min"].to_numpy(dtype=float), agg["max"].to_numpy(dtype=float))


def rollup_payloads(good: Batch) -> list[tuple]:
    """Return, per rollup resolution, the per-asset and the per-district rows of this batch (numpy only)."""
    ac = good.codes
    where = ac.pk_pos.get_indexer(good.pk)
    dist = ac.dcode[where]
    # every reading, then each derived series, in that order (the order sums are taken in)
    p_d, p_s, p_t, p_v = [dist], [good.scode], [good.ts], [good.value]
    for name, (src, fn) in DERIVED.items():
        sel = good.scode == SCODE[src]
        if not sel.any():
            continue
        w = where[sel]
        attrs = {a: ac.attrs[a][w] for a in DERIVED_ATTRS}
        vals = np.asarray(fn(good.value[sel], attrs), dtype=float)
        keep = np.isfinite(vals)
        p_d.append(dist[sel][keep])
        p_s.append(np.full(int(keep.sum()), SCODE[name], dtype=np.int64))
        p_t.append(good.ts[sel][keep])
        p_v.append(vals[keep])
    d_all, s_all, t_all, v_all = (np.concatenate(p) for p in (p_d, p_s, p_t, p_v))
    # the city copy follows all district rows
    d2 = np.concatenate([d_all, np.full(len(d_all), ac.city_code, dtype=np.int64)])
    s2, t2, v2 = np.concatenate([s_all, s_all]), np.concatenate([t_all, t_all]), np.concatenate([v_all, v_all])
    tmin = int(good.ts.min())
    out = []
    for res in ROLLUP_RESOLUTIONS:
        b0 = tmin // res
        nb = int(good.ts.max()) // res - b0 + 1
        # per asset: readings only
        bi = good.ts // res - b0
        key = (good.pk * NS + good.scode) * nb + bi
        k, cnt, sm, mn, mx = _group_stats(key, good.value)
        ser, bk = np.divmod(k, nb)
        apk, asc = np.divmod(ser, NS)
        per_asset = (apk, asc, (bk + b0) * res, cnt, sm, mn, mx)
        # per district and the city: readings and derived series
        bi2 = t2 // res - b0
        key2 = (d2 * NS + s2) * nb + bi2
        k, cnt, sm, mn, mx = _group_stats(key2, v2)
        ser, bk = np.divmod(k, nb)
        dc, sc = np.divmod(ser, NS)
        keep = dc != ac.blank_code
        cnt, sm, mn, mx, dc, sc, bk = (x[keep] for x in (cnt, sm, mn, mx, dc, sc, bk))
        out.append((res, per_asset, (dc, sc, (bk + b0) * res, cnt, sm, mn, mx)))
    return out


def write_rollups(conn: Connection, good: Batch, payloads: list[tuple]) -> None:
    """Add the batch's rollup rows (:func:`rollup_payloads`) to the stored buckets."""
    ac = good.codes
    up_a = (
        "INSERT INTO rollup_asset (res, asset_pk, metric, bucket, n, sum, min, max) {src} "
        "ON CONFLICT (res, asset_pk, metric, bucket) DO UPDATE SET n = rollup_asset.n + excluded.n, "
        "sum = rollup_asset.sum + excluded.sum, "
        f"min = {_least(conn, 'rollup_asset.min', 'excluded.min')}, "
        f"max = {_greatest(conn, 'rollup_asset.max', 'excluded.max')}"
    )
    up_d = up_a.replace("rollup_asset", "rollup_district").replace("asset_pk", "district_id")
    # every resolution's rows in one set of columns, the resolution first
    a_cols = [np.concatenate([np.full(len(pa[0]), res, dtype=np.int64) for res, pa, _ in payloads])]
    a_cols += [np.concatenate([pa[k] for _, pa, _ in payloads]) for k in range(7)]
    d_cols = [np.concatenate([np.full(len(dp[0]), res, dtype=np.int64) for res, _, dp in payloads])]
    d_cols += [np.concatenate([dp[k] for _, _, dp in payloads]) for k in range(7)]
    if conn.dialect.name == "postgresql":
        _pg_rollup_asset(conn, good, up_a, *a_cols)
        res, dc, sc, bucket, cnt, sm, mn, mx = d_cols
        pg_stage(conn, "_ingest_rollup_district",
                 ["res", "district_id", "metric", "bucket", "n", "sum", "min", "max"],
                 ["int4", "text", "text", "int8", "int4", "float8", "float8", "float8"],
                 [res, (dc, ac.dnames), (sc, SERIES), bucket, cnt, sm, mn, mx])
        conn.exec_driver_sql(up_d.format(src="SELECT * FROM _ingest_rollup_district"))
        return
    raw = conn.connection.driver_connection
    names = np.array(SERIES, dtype=object)
    dnames = np.array(ac.dnames, dtype=object)
    for sql, cols, keys in ((up_a, a_cols, None), (up_d, d_cols, dnames)):
        res, key, sc, bucket, cnt, sm, mn, mx = cols
        raw.executemany(sql.format(src="VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        list(zip(res.tolist(), (key if keys is None else keys[key]).tolist(),
                                 names[sc].tolist(), bucket.tolist(), cnt.tolist(), sm.tolist(),
                                 mn.tolist(), mx.tolist())))


def _pg_rollup_asset(conn: Connection, good: Batch, up_a, res, apk, asc, bucket, cnt, sm, mn, mx) -> None:
    """Write per-asset rollups on PostgreSQL: COPY the buckets that cannot be stored yet, upsert the rest.

    Rollups only hold buckets up to the one of their series' ``latest`` reading, so a bucket after
    it is new. Should that not hold (rows edited by hand, a concurrent writer), the COPY fails on
    the primary key, is rolled back to a savepoint, and every row is upserted instead.
    """
    cols = ["res", "asset_pk", "metric", "bucket", "n", "sum", "min", "max"]
    types = ["int4", "int4", "text", "int8", "int4", "float8", "float8", "float8"]
    lk, lts = good.latest if good.latest is not None else (np.array([], dtype=np.int64), np.array([]))
    ser = apk * NS + asc
    if len(lk):
        at = np.minimum(np.searchsorted(lk, ser), len(lk) - 1)
        found = lk[at] == ser
        last_bucket = np.where(found, np.floor(np.where(found, lts[at], 0) / res) * res, -np.inf)
    else:
        last_bucket = np.full(len(ser), -np.inf)
    new = bucket > last_bucket

    def rows(m):
        return [res[m], apk[m], (asc[m], SERIES), bucket[m], cnt[m], sm[m], mn[m], mx[m]]

    def upsert(m):
        pg_stage(conn, "_ingest_rollup_asset", cols, types, rows(m))
        conn.exec_driver_sql(up_a.format(src="SELECT * FROM _ingest_rollup_asset"))

    if (~new).any():
        upsert(~new)
    if new.any():
        import psycopg

        sp = conn.begin_nested()
        try:
            pg_copy(conn, "rollup_asset", cols, types, rows(new))
        except psycopg.errors.UniqueViolation:
            sp.rollback()
            upsert(new)
        else:
            sp.commit()


def run_hooks(conn: Connection, good: Batch) -> None:
    """Run the domains' ingest hooks on the readings of their metrics in this batch."""
    for codes, fn in _HOOKS:
        sel = np.isin(good.scode, codes)
        if sel.any():
            fn(conn, good.pk[sel], good.ts[sel])
