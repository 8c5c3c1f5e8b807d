"""The ingest's writes of readings and ``latest``, per engine, and PostgreSQL's binary COPY.

SQLite takes the rows through the driver's ``executemany``; PostgreSQL through binary COPY built
with numpy, into the table or into a session's staging table upserted from. The rollups use the
same COPY (:mod:`dashboard.store.ingest_rollups`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from dashboard.metrics import METRICS
from dashboard.store.ingest_checks import NS, SCODE, SERIES, Batch


def _dialect(conn: Connection) -> str:
    return conn.dialect.name


def param(conn: Connection) -> str:
    return "?" if _dialect(conn) == "sqlite" else "%s"


# ----------------------------------------------------------------------- PostgreSQL binary COPY
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
_PG_TRAILER = np.array([-1], dtype=">i2").tobytes()
_PG_NUM = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}


def pg_copy(conn: Connection, table: str, columns: list[str], types: list[str], arrays: list,
            meanwhile=None) -> None:
    """COPY rows into ``table`` in PostgreSQL's binary format, built with numpy (no per-row Python).

    ``types`` are int4, int8, float8 or text; a text column is given as (codes, list of str).
    ``meanwhile()`` is called while the server stores the rows (the data goes out from a writer
    thread): client work that overlaps the server's.
    """
    n = len(arrays[0][0]) if types[0] == "text" else len(arrays[0])
    if n == 0:
        if meanwhile is not None:
            meanwhile()
        return
    text_cols = [k for k, t in enumerate(types) if t == "text"]
    enc = {k: [s.encode("utf-8") for s in arrays[k][1]] for k in text_cols}
    lens = {k: np.array([len(b) for b in enc[k]], dtype=np.int64)[arrays[k][0]] for k in text_cols}
    # rows whose text fields have the same byte lengths share one fixed-width record layout
    if text_cols:
        combo = np.zeros(n, dtype=np.int64)
        for k in text_cols:
            combo = combo * 1024 + lens[k]
        groups = [np.flatnonzero(combo == c) for c in np.unique(combo)] if len(np.unique(combo)) > 1 \
            else [np.arange(n)]
    else:
        groups = [np.arange(n)]
    chunks = [_PG_HEADER]
    for rows in groups:
        fields = [("nf", ">i2")]
        for k, t in enumerate(types):
            width = int(lens[k][rows[0]]) if t == "text" else None
            fields += [(f"l{k}", ">i4"), (f"v{k}", f"S{max(width, 1)}" if t == "text" else _PG_NUM[t])]
        if any(t == "text" and int(lens[k][rows[0]]) == 0 for k, t in enumerate(types)):
            # an empty string: drop the 1-byte placeholder field
            fields = [f for f in fields if not (f[0].startswith("v") and types[int(f[0][1:])] == "text"
                                                 and int(lens[int(f[0][1:])][rows[0]]) == 0)]
        rec = np.empty(len(rows), dtype=np.dtype(fields))
        rec["nf"] = len(types)
        for k, t in enumerate(types):
            if t == "text":
                width = int(lens[k][rows[0]])
                rec[f"l{k}"] = width
                if width:
                    rec[f"v{k}"] = np.array(enc[k])[arrays[k][0][rows]]
            else:
                rec[f"l{k}"] = 4 if t == "int4" else 8
                rec[f"v{k}"] = np.asarray(arrays[k])[rows]
        chunks.append(rec.tobytes())
    chunks.append(_PG_TRAILER)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        writer = None
        if meanwhile is not None:
            from psycopg.copy import QueuedLibpqWriter

            writer = QueuedLibpqWriter(cur)
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)", writer=writer) as cp:
            cp.write(b"".join(chunks))
            if meanwhile is not None:
                meanwhile()


_PG_TEMP = {
    "_ingest_latest": "asset_pk integer, metric varchar(32) COLLATE \"C\", ts bigint, value double precision",
    "_ingest_rollup_asset": "res integer, asset_pk integer, metric varchar(32) COLLATE \"C\", bucket bigint, n integer, "
                            "sum double precision, min double precision, max double precision",
    "_ingest_rollup_district": "res integer, district_id varchar(64) COLLATE \"C\", metric varchar(32) COLLATE \"C\", bucket bigint, "
                               "n integer, sum double precision, min double precision, max double precision",
}


def pg_stage(conn: Connection, table: str, columns: list[str], types: list[str], arrays: list) -> None:
    """Empty (or create) the session's staging table ``table`` and COPY the rows into it."""
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({_PG_TEMP[table]}) ON COMMIT DELETE ROWS")
    conn.exec_driver_sql(f"TRUNCATE {table}")
    pg_copy(conn, table, columns, types, arrays)


def drop_stored(conn: Connection, good: Batch):
    """Remove rows already stored; return (new rows, [(row, conflict reason)]).

    Sets ``good.latest``: what ``latest`` held for these series before the batch."""
    # readings newer than the latest stored one for their series are new for sure
    lk, lts = latest_ts(conn, np.unique(good.pk))
    good.latest = (lk, lts)
    key = good.series_key()
    if len(lk):
        at = np.searchsorted(lk, key)
        at_c = np.minimum(at, len(lk) - 1)
        found = lk[at_c] == key
        maybe_old = found & (good.ts <= lts[at_c])
    else:
        maybe_old = np.zeros(len(good), dtype=bool)
    if not maybe_old.any():
        return good, []
    # some rows are not newer than what is stored: look them up, series by series
    old = good.take(maybe_old)
    okey = old.series_key()
    st_key, st_ts, st_val = [], [], []
    for k in pd.unique(okey):
        sel = okey == k
        a, m = int(k // NS), SERIES[int(k % NS)]
        rows = conn.exec_driver_sql(
            "SELECT ts, value FROM readings WHERE asset_pk = ? AND metric = ? AND ts >= ? AND ts <= ?"
            .replace("?", param(conn)),
            (a, m, int(old.ts[sel].min()), int(old.ts[sel].max())),
        ).all()
        for r in rows:
            st_key.append(k)
            st_ts.append(int(r[0]))
            st_val.append(float(r[1]))
    if not st_key:
        return good, []
    stored = pd.Series(st_val, index=pd.MultiIndex.from_arrays([np.array(st_key, dtype=np.int64),
                                                                  np.array(st_ts, dtype=np.int64)]))
    look = stored.reindex(pd.MultiIndex.from_arrays([key, good.ts])).to_numpy(dtype=float)
    hit = ~np.isnan(look)
    conflicts = []
    for i in np.flatnonzero(hit):
        s, v = look[i], good.value[i]
        if s == v:
            conflicts.append((int(good.row[i]), ""))
        else:
            conflicts.append((int(good.row[i]), f"conflicts with the stored reading at that time "
                                                f"(stored {s:g}, got {v:g})"))
    return good.take(~hit), conflicts


def latest_ts(conn: Connection, pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (sorted series keys, latest ts) of the stored ``latest`` rows of these assets."""
    pks = [int(x) for x in pks]
    if _dialect(conn) == "postgresql":  # one statement, the keys as one array parameter
        out = conn.exec_driver_sql("SELECT asset_pk, metric, ts FROM latest WHERE asset_pk = ANY(%s)",
                                   (pks,)).all()
    else:  # SQLite: at most 900 parameters a statement
        out = []
        for i in range(0, len(pks), 900):
            chunk = pks[i:i + 900]
            marks = ",".join([param(conn)] * len(chunk))
            out += conn.exec_driver_sql(
                f"SELECT asset_pk, metric, ts FROM latest WHERE asset_pk IN ({marks})", tuple(chunk)
            ).all()
    if not out:
        return np.array([], dtype=np.int64), np.array([], dtype=float)
    keys = np.array([a * NS + SCODE.get(m, NS) if m in METRICS else -1 for a, m, _ in out], dtype=np.int64)
    ts = np.array([t for _, _, t in out], dtype=float)
    o = np.argsort(keys, kind="stable")
    return keys[o], ts[o]


def insert_readings(conn: Connection, good: Batch, meanwhile=None) -> None:
    """Insert the batch's readings (PostgreSQL: binary COPY; ``meanwhile()`` runs while it is stored)."""
    o = good.sorted_order()  # primary-key order: each B-tree page is touched once
    if _dialect(conn) == "postgresql":
        pg_copy(conn, "readings", ["asset_pk", "metric", "ts", "value"], ["int4", "text", "int8", "float8"],
                [good.pk[o], (good.scode[o], SERIES), good.ts[o], good.value[o]], meanwhile=meanwhile)
        return
    if meanwhile is not None:
        meanwhile()
    names = np.array(SERIES, dtype=object)
    rows = list(zip(good.pk[o].tolist(), names[good.scode[o]].tolist(), good.ts[o].tolist(),
                    good.value[o].tolist()))
    conn.connection.driver_connection.executemany(
        "INSERT INTO readings (asset_pk, metric, ts, value) VALUES (?, ?, ?, ?)", rows)


def update_latest(conn: Connection, good: Batch) -> None:
    """Upsert each series' newest reading of the batch into ``latest`` (a newer stored one stays)."""
    o = good.sorted_order()
    k = good.series_key()[o]
    last = o[np.append(k[1:] != k[:-1], True)]  # newest row of each series
    pk, sc, ts, val = good.pk[last], good.scode[last], good.ts[last], good.value[last]
    set_ = "SET ts = excluded.ts, value = excluded.value WHERE excluded.ts > latest.ts"
    if _dialect(conn) == "postgresql":
        pg_stage(conn, "_ingest_latest", ["asset_pk", "metric", "ts", "value"],
                 ["int4", "text", "int8", "float8"], [pk, (sc, SERIES), ts, val])
        conn.exec_driver_sql("INSERT INTO latest (asset_pk, metric, ts, value) "
                             "SELECT asset_pk, metric, ts, value FROM _ingest_latest "
                             f"ON CONFLICT (asset_pk, metric) DO UPDATE {set_}")
        return
    names = np.array(SERIES, dtype=object)
    conn.connection.driver_connection.executemany(
        "INSERT INTO latest (asset_pk, metric, ts, value) VALUES (?, ?, ?, ?) "
        f"ON CONFLICT (asset_pk, metric) DO UPDATE {set_}",
        list(zip(pk.tolist(), names[sc].tolist(), ts.tolist(), val.tolist())))
