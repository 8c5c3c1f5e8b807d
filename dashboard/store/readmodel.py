"""The read model: pure queries over `latest`, the rollups and the event tables.

Each function takes an open connection and parameters and returns a pandas frame (or a
number). None of them reads the raw ``readings`` table: screens never scan history.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from itertools import chain

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from dashboard.metrics import CITY
from dashboard.store.schema import (
    ASSETS_REV_KEY,
    HISTORY_FILL_KEY,
    assets,
    districts,
    latest,
    meta,
    rollup_asset,
    service_categories,
    service_requests,
)
from dashboard.store.service_rollup import DAY as SVC_DAY
from dashboard.store.service_rollup import NO_DISTRICT
from dashboard.store.service_rollup import SPAN_BINS as SVC_SPAN_BINS
from dashboard.store.service_rollup import bin_seconds, close_bin

#: The time windows a screen may ask for, in seconds, and the rollup used to draw them.
WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
WINDOW_RES = {"1h": 300, "24h": 300, "7d": 3600}


def _frame(rows, columns) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def districts_frame(conn: Connection) -> pd.DataFrame:
    """Return every district: id, name, name_local, population, area_km2, label_lon, label_lat, geometry (dict)."""
    rows = conn.execute(select(districts).order_by(districts.c.name)).all()
    df = _frame(rows, [c.name for c in districts.columns])
    df["geometry"] = [json.loads(g) for g in df["geometry"]]
    return df


def assets_frame(conn: Connection, kind: str, district: str | None = None) -> pd.DataFrame:
    """Return the assets of ``kind`` (id, name, district_id, lon, lat, geometry dict, attributes dict)."""
    q = select(assets.c.pk, assets.c.id, assets.c.name, assets.c.district_id, assets.c.lon, assets.c.lat,
               assets.c.geometry, assets.c.attributes).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    df = _frame(conn.execute(q.order_by(assets.c.pk)).all(),
                ["pk", "id", "name", "district_id", "lon", "lat", "geometry", "attributes"])
    df["geometry"] = [json.loads(g) if g else None for g in df["geometry"]]
    return df


def city_meta(conn: Connection) -> dict[str, str]:
    """Return the key/value facts stored about the city (name, timezone); not the store's own bookkeeping."""
    return {r.key: r.value for r in conn.execute(
        select(meta).where(meta.c.key.not_in([ASSETS_REV_KEY, HISTORY_FILL_KEY]))).all()}


def history_fill(conn: Connection) -> dict | None:
    """Return the progress of a background history fill still under way (or failed), else None.

    ``{"from", "to", "done", "failed", "percent"}``: the days [from, to) are being written oldest
    first and are complete up to ``done``.
    """
    raw = conn.execute(select(meta.c.value).where(meta.c.key == HISTORY_FILL_KEY)).scalar()
    try:
        p = json.loads(raw) if raw else None
        lo, hi, done = int(p["from"]), int(p["to"]), int(p["done"])
    except (TypeError, ValueError, KeyError):
        return None
    if done >= hi:
        return None
    pct = int(100 * max(0, done - lo) / (hi - lo)) if hi > lo else 0
    return {"from": lo, "to": hi, "done": done, "failed": bool(p.get("failed")), "percent": min(pct, 99)}


def record_history_fill(conn: Connection, start: int, end: int, done: int, failed: bool = False) -> None:
    """Record a background history fill's progress (see :func:`history_fill`)."""
    value = json.dumps({"from": int(start), "to": int(end), "done": int(done), "failed": bool(failed)})
    conn.execute(meta.delete().where(meta.c.key == HISTORY_FILL_KEY))
    conn.execute(meta.insert().values(key=HISTORY_FILL_KEY, value=value))


def latest_values(conn: Connection, kind: str, metrics: list[str] | None = None,
                  district: str | None = None) -> pd.DataFrame:
    """Return the newest value of each metric of each asset of ``kind``, in long form.

    Columns: asset_id, name, district_id, metric, ts, value.
    """
    return _frame(conn.execute(_latest_query(kind, metrics, district)).all(),
                  ["asset_id", "name", "district_id", "metric", "ts", "value"])


def _latest_query(kind: str, metrics: list[str] | None, district: str | None):
    q = (select(assets.c.id, assets.c.name, assets.c.district_id, latest.c.metric, latest.c.ts, latest.c.value)
         .join(assets, assets.c.pk == latest.c.asset_pk).where(assets.c.kind == kind))
    if metrics:
        q = q.where(latest.c.metric.in_(metrics))
    if district:
        q = q.where(assets.c.district_id == district)
    return q


def _fetch(conn: Connection, sql, params: tuple = ()) -> list[tuple]:
    """Run driver-level SQL (``?`` placeholders) or a Core statement and return the driver's plain tuples.

    Skips SQLAlchemy's per-row result processing (only for columns the driver returns as the
    wanted Python type: numbers and text), and on PostgreSQL asks for binary results (half the
    client time of text): for the hot screen reads of thousands of rows. The statement still goes
    through the connection (its transaction and its events).
    """
    run = conn.exec_driver_sql if isinstance(sql, str) else (lambda q, _p: conn.execute(q))
    if conn.dialect.name == "sqlite":
        res = run(sql, params)
    else:
        if isinstance(sql, str):
            sql = sql.replace("?", "%s")
        dc = conn.connection.driver_connection
        factory = getattr(dc, "cursor_factory", None)
        binary = _binary_cursor(factory)
        if binary is not None:
            dc.cursor_factory = binary
        try:
            res = run(sql, params)
        finally:
            if binary is not None:
                dc.cursor_factory = factory
    try:
        return res.cursor.fetchall()
    finally:
        res.close()


_BINARY: dict = {}


def _binary_cursor(factory):
    """Return a subclass of the psycopg cursor class ``factory`` that fetches binary results."""
    if factory is None:
        return None
    if factory not in _BINARY:
        try:
            from psycopg import Cursor
            from psycopg.pq import Format
        except ImportError:  # another PostgreSQL driver: its own cursor
            _BINARY[factory] = None
        else:
            if not (isinstance(factory, type) and issubclass(factory, Cursor)):
                _BINARY[factory] = None
            else:
                class _Binary(factory):
                    def __init__(self, *a, **kw):
                        super().__init__(*a, **kw)
                        self.format = Format.BINARY

                _BINARY[factory] = _Binary
    return _BINARY[factory]


def _kind_filter(kind: str, district: str | None) -> tuple[str, tuple]:
    return ("a.kind = ?" + (" AND a.district_id = ?" if district else ""),
            (kind, district) if district else (kind,))


def _attr_sql(conn: Connection, key: str) -> str:
    """Return SQL for a numeric attribute of asset ``a`` (as ``assets.c.attributes[key].as_float()``)."""
    if not key.replace("_", "").isalnum():
        raise ValueError(f"bad attribute name {key!r}")
    if conn.dialect.name == "sqlite":
        return f"CAST(JSON_EXTRACT(a.attributes, '$.\"{key}\"') AS FLOAT)"
    return f"CAST(a.attributes ->> '{key}' AS FLOAT)"


class AssetDirectory:
    """The assets of one kind, sorted by id: pk, id, name, district and numeric attributes as arrays.

    Kept per process and store while the store's ``assets_rev`` token (renewed by triggers on any
    change to ``assets``) stays the same; see :func:`asset_directory`.
    """

    def __init__(self, rows: list[tuple]):
        self.n = len(rows)
        pk, ids, names, dist, attrs = zip(*rows) if rows else ((), (), (), (), ())
        self.pk = np.array(pk, dtype=np.int64)
        self.ids = np.array(ids, dtype=object)
        self.names = np.array(names, dtype=object)
        self.district = np.array(dist, dtype=object)
        # the frames' text columns, converted once (as pandas would convert them on every frame)
        self.ids_str = pd.array(self.ids, dtype="str")
        self.names_col = pd.Series(self.names).array
        self.district_col = pd.Series(self.district).array
        self._attrs = [a if isinstance(a, dict) else (json.loads(a) if a else {}) for a in attrs]
        self._attr_cache: dict[str, np.ndarray] = {}
        order = np.argsort(self.pk, kind="stable")
        self._pk_sorted, self._pk_order = self.pk[order], order

    def positions(self, pks: np.ndarray) -> np.ndarray:
        """Return each pk's row in the directory, -1 for a pk not in it."""
        if not self.n:
            return np.full(len(pks), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self._pk_sorted, pks), self.n - 1)
        return np.where(self._pk_sorted[i] == pks, self._pk_order[i], -1)

    def attribute(self, key: str) -> np.ndarray:
        """Return a numeric attribute per asset (NaN where absent or not a number)."""
        if key not in self._attr_cache:
            out = np.full(self.n, np.nan)
            for i, a in enumerate(self._attrs):
                v = a.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[i] = float(v)
                elif isinstance(v, str):
                    try:
                        out[i] = float(v)
                    except ValueError:
                        pass
            self._attr_cache[key] = out
        return self._attr_cache[key]


_DIRECTORIES: dict[tuple[str, str], tuple[str, AssetDirectory]] = {}
_MAX_DIRECTORIES = 64


def asset_directory(conn: Connection, kind: str) -> AssetDirectory | None:
    """Return the :class:`AssetDirectory` of ``kind``, re-read only when ``assets`` changed.

    None for a store without the ``assets_rev`` row (made before migration 0003): callers join.
    """
    rows = _shared(conn, ("assets_rev",), lambda: _fetch(conn, "SELECT value FROM meta WHERE key = ?",
                                                         (ASSETS_REV_KEY,)))
    rev = rows[0][0] if rows else None
    if not rev:
        return None
    key = (conn.engine.url.render_as_string(hide_password=False), kind)
    have = _DIRECTORIES.get(key)
    if have is not None and have[0] == rev:
        return have[1]
    q = (select(assets.c.pk, assets.c.id, assets.c.name, assets.c.district_id, assets.c.attributes)
         .where(assets.c.kind == kind).order_by(assets.c.id))
    d = AssetDirectory([tuple(r) for r in conn.execute(q).all()])
    if len(_DIRECTORIES) >= _MAX_DIRECTORIES and key not in _DIRECTORIES:
        _DIRECTORIES.pop(next(iter(_DIRECTORIES)))
    _DIRECTORIES[key] = (rev, d)
    return d


_SHARED = threading.local()


@contextmanager
def shared_reads():
    """Within this block, in this thread, the same read of ``latest`` is fetched once.

    A screen's refresh reads the latest values of a kind for its map layer and again for its KPIs
    (and for each district): inside one block they share one fetch. Nested blocks join the outer one.
    """
    if getattr(_SHARED, "memo", None) is not None:
        yield
        return
    _SHARED.memo = {}
    try:
        yield
    finally:
        _SHARED.memo = None


def _shared(conn: Connection, what: tuple, read):
    """Return ``read()``, once per :func:`shared_reads` block for ``what`` on this store (always, outside one)."""
    memo = getattr(_SHARED, "memo", None)
    if memo is None:
        return read()
    key = (conn.engine.url.render_as_string(hide_password=False), *what)
    if key not in memo:
        memo[key] = read()
    return memo[key]


def _latest_rows(conn: Connection, ms: list[str]) -> list[tuple]:
    """Return (asset_pk, ts, value[, index of the metric in ``ms``]) of every latest value of the metrics ``ms``."""
    return _shared(conn, ("latest", tuple(ms)), lambda: _read_latest_rows(conn, ms))


def _read_latest_rows(conn: Connection, ms: list[str]) -> list[tuple]:
    if len(ms) == 1:  # the metric's index is 0: three columns (the fetch is most of the time)
        rows = _fetch(conn, "SELECT asset_pk, ts, value FROM latest WHERE metric = ?", (ms[0],))
    else:
        code = "CASE metric " + " ".join(f"WHEN ? THEN {j}" for j in range(len(ms))) + " END"
        rows = _fetch(conn, f"SELECT asset_pk, ts, value, {code} FROM latest "
                            f"WHERE metric IN ({', '.join('?' * len(ms))})", (*ms, *ms))
    return rows


def latest_wide(conn: Connection, kind: str, metrics: list[str], district: str | None = None,
                max_age: int | None = None, attrs: tuple[str, ...] = ()) -> pd.DataFrame:
    """Return :func:`latest_values` pivoted: one row per asset, one column per metric, plus ``ts`` (newest).

    Rows are sorted by asset id; metric columns that have values come first (sorted), then ``ts``,
    then requested metrics without any value (all NaN), then the numeric asset attributes
    ``attrs`` (NaN where absent; as :func:`asset_attribute`). With ``max_age``, values older than
    ``max_age`` seconds before the newest value read are left out (as if never reported).

    Reads only ``latest`` (the asset directory is kept in memory, see :func:`asset_directory`);
    on a store without the assets revision it joins ``assets``.
    """
    d = asset_directory(conn, kind)
    if d is None:
        return _latest_wide_join(conn, kind, metrics, district, max_age, attrs)
    if not d.n:
        return pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", *(metrics or ()), *attrs])

    def mine(pks) -> tuple[np.ndarray, np.ndarray]:  # directory rows of pks, and which are of this selection
        pos = d.positions(np.asarray(pks, dtype=np.int64))
        ok = pos >= 0
        if district:
            ok &= d.district[np.where(ok, pos, 0)] == district
        return pos, ok

    if not metrics:  # every metric of these assets
        rows = _fetch(conn, "SELECT DISTINCT asset_pk, metric FROM latest")
        _, ok = mine([r[0] for r in rows])
        metrics = sorted({rows[i][1] for i in np.flatnonzero(ok)})
        if not metrics:
            return pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", *attrs])
    def empty() -> pd.DataFrame:
        return pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", *metrics, *attrs])

    ms = sorted(set(metrics))
    rows = _latest_rows(conn, ms)
    if not rows:
        return empty()
    # pks, codes and epoch seconds are exact in a double; fromiter skips np.array's shape discovery
    width = len(rows[0])
    arr = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=width * len(rows)).reshape(-1, width)
    pos, keep = mine(arr[:, 0].astype(np.int64))
    pos, ts, val = pos[keep], arr[keep, 1].astype(np.int64), arr[keep, 2]
    mc = arr[keep, 3].astype(np.int64) if width == 4 else np.zeros(len(pos), dtype=np.int64)
    if max_age is not None and len(ts):
        fresh = ts >= ts.max() - max_age
        pos, mc, ts, val = pos[fresh], mc[fresh], ts[fresh], val[fresh]
    if not len(pos):
        return empty()
    uniq, codes = np.unique(pos, return_inverse=True)  # directory rows are in id order
    n = len(uniq)
    vals = np.full((n, len(ms)), np.nan)
    vals[codes, mc] = val
    newest_ts = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(newest_ts, codes, ts)
    present = np.unique(mc).tolist()
    return _wide_frame({"asset_id": d.ids_str[uniq], "name": d.names_col[uniq], "district_id": d.district_col[uniq]},
                       ms, present, vals, newest_ts, metrics, {k: d.attribute(k)[uniq] for k in attrs})


def _wide_frame(ids: dict, ms: list[str], present: list[int], vals: np.ndarray, newest_ts: np.ndarray,
                metrics: list[str], attr_cols: dict) -> pd.DataFrame:
    """Assemble :func:`latest_wide`'s frame: ids, metrics with values, ts, metrics without, attributes."""
    out = dict(ids)
    for j in present:
        out[ms[j]] = vals[:, j]
    out["ts"] = newest_ts
    for m in metrics:
        if m not in out:
            out[m] = np.full(len(newest_ts), np.nan)
    out.update(attr_cols)
    return pd.DataFrame(out)


def _latest_wide_join(conn: Connection, kind: str, metrics: list[str], district: str | None = None,
                      max_age: int | None = None, attrs: tuple[str, ...] = ()) -> pd.DataFrame:
    """:func:`latest_wide` on a store without the assets revision: one join of ``latest`` and ``assets``."""
    if not metrics:  # every metric of these assets
        where, params = _kind_filter(kind, district)
        metrics = [r[0] for r in _fetch(conn, "SELECT DISTINCT l.metric FROM latest l JOIN assets a "
                                              f"ON a.pk = l.asset_pk WHERE {where}", params)]
        if not metrics:
            return pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", *attrs])
    ms = sorted(set(metrics))
    where, params = _kind_filter(kind, district)
    where += f" AND l.metric IN ({', '.join('?' * len(ms))})"
    # one join read as the driver's tuples, the metric as its index in ``ms`` (no string per row)
    code = "CASE l.metric " + " ".join(f"WHEN ? THEN {j}" for j in range(len(ms))) + " END"
    extra = "".join(f", {_attr_sql(conn, k)}" for k in attrs)
    rows = _fetch(conn, f"SELECT a.id, a.name, a.district_id, {code}, l.ts, l.value{extra} FROM latest l "
                        f"JOIN assets a ON a.pk = l.asset_pk WHERE {where}", (*ms, *params, *ms))
    if not rows:
        return pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", *metrics, *attrs])
    if max_age is not None:
        newest = max(r[4] for r in rows)
        rows = [r for r in rows if r[4] >= newest - max_age]
    aid, name, dist, mc, ts, val, *avals = zip(*rows)
    ids = np.array(aid, dtype=object)
    if len(ms) == 1:  # one row per asset: just the order by id
        first = np.array(sorted(range(len(aid)), key=aid.__getitem__), dtype=np.int64)
        n = len(first)
        vals = np.array(val, dtype=float)[first].reshape(n, 1)
        newest_ts = np.array(ts, dtype=np.int64)[first]
        present = [0]
    else:
        codes, uniq = pd.factorize(ids, sort=True)
        n = len(uniq)
        vals = np.full((n, len(ms)), np.nan)
        vals[codes, np.array(mc, dtype=np.int64)] = np.array(val, dtype=float)
        first = np.full(n, -1, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes))[::-1]  # first row of each asset
        newest_ts = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(newest_ts, codes, np.array(ts, dtype=np.int64))
        present = sorted(set(mc))
    return _wide_frame({"asset_id": pd.array(ids[first], dtype="str"),
                        "name": pd.Series(np.array(name, dtype=object)[first]),
                        "district_id": pd.Series(np.array(dist, dtype=object)[first])},
                       ms, present, vals, newest_ts, metrics,
                       {k: np.array([np.nan if x is None else float(x) for x in v], dtype=float)[first]
                        for k, v in zip(attrs, avals)})


def asset_attribute(conn: Connection, kind: str, key: str, district: str | None = None) -> pd.Series:
    """Return one numeric attribute of the assets of ``kind`` (NaN where absent), indexed by asset id.

    Read in SQL from the JSON column, so the attributes are not parsed in Python.
    """
    q = select(assets.c.id, assets.c.attributes[key].as_float()).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    rows = _fetch(conn, q.order_by(assets.c.pk))
    if not rows:
        return pd.Series([], index=[], dtype=float)
    ids, vals = zip(*rows)
    return pd.Series(np.array([np.nan if v is None else float(v) for v in vals], dtype=float),
                     index=list(ids), dtype=float)


def asset_count_by_district(conn: Connection, kind: str) -> dict[str, int]:
    """Return how many assets of ``kind`` each district has (assets without a district left out)."""
    q = (select(assets.c.district_id, func.count()).where(assets.c.kind == kind, assets.c.district_id.is_not(None))
         .group_by(assets.c.district_id))
    return {r[0]: int(r[1]) for r in conn.execute(q).all()}


def asset_attributes(conn: Connection, kind: str, district: str | None = None) -> pd.DataFrame:
    """Return the assets of ``kind`` without geometry: id, name, district_id, lon, lat, attributes (dict)."""
    q = select(assets.c.id, assets.c.name, assets.c.district_id, assets.c.lon, assets.c.lat,
               assets.c.attributes).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    return _frame(conn.execute(q.order_by(assets.c.pk)).all(), ["id", "name", "district_id", "lon", "lat", "attributes"])


def district_populations(conn: Connection) -> pd.Series:
    """Return the population of each district, indexed by id."""
    rows = conn.execute(select(districts.c.id, districts.c.population)).all()
    return pd.Series({r.id: r.population for r in rows}, dtype=float)


def newest_ts(conn: Connection, kind: str, district: str | None = None) -> int | None:
    """Return the time of the newest reading of any asset of ``kind`` (in ``district``), or None."""
    q = select(func.max(latest.c.ts)).join(assets, assets.c.pk == latest.c.asset_pk).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    return conn.execute(q).scalar()


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
    rows = _fetch(conn, "SELECT bucket, n, sum, min, max FROM rollup_district WHERE res = ? AND district_id = ? "
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


def station_aqi_series(conn: Connection, start: int, end: int, standard: str = "cn",
                       district: str | None = None) -> pd.DataFrame:
    """Return the hourly AQI (table ``aqi_hourly``) of every air-quality station for buckets in [start, end).

    Columns: asset_id, district_id, bucket, aqi (NaN where no pollutant could be indexed); sorted
    by asset id, then bucket.
    """
    cols = ["asset_id", "district_id", "bucket", "aqi"]
    d = asset_directory(conn, "aq_station")
    if d is None:
        return _station_aqi_series_join(conn, start, end, standard, district)
    # every row of aqi_hourly is a station's; the directory gives id, district and order
    rows = _fetch(conn, "SELECT asset_pk, bucket, aqi FROM aqi_hourly WHERE standard = ? AND bucket >= ? AND bucket < ?",
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


def _station_aqi_series_join(conn: Connection, start: int, end: int, standard: str = "cn",
                             district: str | None = None) -> pd.DataFrame:
    """:func:`station_aqi_series` on a store without the assets revision."""
    where, params = _kind_filter("aq_station", district)
    arows = _fetch(conn, f"SELECT a.pk, a.id, a.district_id FROM assets a WHERE {where}", params)
    cols = ["asset_id", "district_id", "bucket", "aqi"]
    if not arows:
        return pd.DataFrame(columns=cols)
    rows = _fetch(conn, "SELECT h.asset_pk, h.bucket, h.aqi FROM aqi_hourly h WHERE h.standard = ? "
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


def asset_count(conn: Connection, kind: str, district: str | None = None) -> int:
    """Return how many assets of ``kind`` there are (in ``district``)."""
    d = asset_directory(conn, kind)
    if d is not None:
        return int(d.n if not district else (d.district == district).sum())
    q = select(func.count()).select_from(assets).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    return int(conn.execute(q).scalar() or 0)


# ------------------------------------------------------------------ service requests
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
    newest = _shared(conn, ("newest_closed",), lambda: _fetch(conn, "SELECT max(closed_at) FROM service_requests"))[0][0]
    if newest is not None and newest >= end:
        return days, edges
    return (days[0] if days else day, day + SVC_DAY), edges[:-1]


def _closed_hist_raw(conn: Connection, start: int, end: int, district: str | None = None) -> list[tuple]:
    """Return the times to close of requests closed in [start, end), from the table itself:
    rows (seconds, count, sum of scores, rated, satisfied, late) by time to close."""
    sr = service_requests
    b = sr.c.closed_at - sr.c.opened_at
    hq = _sr_district(select(b, func.count(), func.sum(sr.c.satisfaction), func.count(sr.c.satisfaction),
                             func.sum((sr.c.satisfaction >= 4).cast(sr.c.satisfaction.type)),
                             func.sum((sr.c.closed_at > sr.c.due_at).cast(sr.c.satisfaction.type)))
                      .where(sr.c.closed_at >= start, sr.c.closed_at < end).group_by(b).order_by(b), district)
    return conn.execute(hq).all()


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
    median = _median_hours(int(n or 0), sorted(spans.items()), lambda _spans: hist)
    return {"n": int(n or 0), "satisfaction": float(sat) if sat is not None else None, "rated": int(rated or 0),
            "satisfied": int(satisfied or 0), "late": int(late or 0), "median_hours": median}


def _service_daily_raw(conn: Connection, start: int, end: int, district: str | None, res: int) -> list[tuple]:
    sr = service_requests
    bucket = (sr.c.closed_at // res) * res
    q = _sr_district(select(bucket, func.avg(sr.c.satisfaction), func.count(),
                            func.sum((sr.c.satisfaction >= 4).cast(sr.c.satisfaction.type)),
                            func.count(sr.c.satisfaction), func.avg(sr.c.closed_at - sr.c.opened_at))
                     .where(sr.c.closed_at >= start, sr.c.closed_at < end).group_by(bucket).order_by(bucket),
                     district)
    return [tuple(r) for r in conn.execute(q).all()]


def _daily_frame(rows: list[tuple]) -> pd.DataFrame:
    df = _frame(rows, ["bucket", "satisfaction", "closed", "satisfied", "rated", "hours"])
    df["satisfied"] = df["satisfied"].fillna(0).astype(int)  # SUM over only unrated rows is NULL
    df["hours"] = df["hours"].astype(float) / 3600.0
    return df.astype({"satisfaction": float})


def service_window_table(conn: Connection, start: int, end: int, district: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Return :func:`service_window` computed from ``service_requests`` alone (no rollup): the
    reference the rollups are checked against."""
    return (_stats_from_hist(_closed_hist_raw(conn, start, end, district)),
            _daily_frame(_service_daily_raw(conn, start, end, district, SVC_DAY)))


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
    rows = _fetch(conn, " UNION ALL ".join([part] * len(edges)), params)
    return np.array(rows, dtype=float).reshape(-1, 4)


def service_window(conn: Connection, start: int, end: int, district: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Return (:func:`service_closed_stats`, :func:`service_daily`) of [start, end), reading the
    requests at the window's edges once for both."""
    days, edges = _svc_ranges(conn, int(start), int(end))
    e = _edge_requests(conn, edges, district)
    return _closed_stats(conn, days, e, district), _daily(conn, days, e, district, edges)


def service_closed_stats(conn: Connection, start: int, end: int, district: str | None = None) -> dict:
    """Return aggregates of the requests closed in [start, end).

    Keys: n, satisfaction (mean of those rated), rated, satisfied (rated 4 or 5), late,
    median_hours (time to close, within 1 %: from a histogram of bins 2 % wide).

    Whole days come from ``service_rollup`` and the time-to-close histogram tables, the edges of
    the window from the requests themselves (same sums as one pass over the table).
    """
    days, edges = _svc_ranges(conn, int(start), int(end))
    return _closed_stats(conn, days, _edge_requests(conn, edges, district), district)


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
        row = _fetch(conn, "SELECT sum(closed), sum(sat_sum), sum(rated), sum(satisfied), sum(late) "
                           "FROM service_rollup WHERE district_id = ? AND bucket >= ? AND bucket < ?",
                     (key, *days))[0]
        n += int(row[0] or 0)
        sat_sum += int(row[1] or 0)
        rated += int(row[2] or 0)
        satisfied += int(row[3] or 0)
        late += int(row[4] or 0)
        for k, c in _fetch(conn, "SELECT span, sum(n) FROM service_close_spans "
                                 "WHERE district_id = ? AND bucket >= ? AND bucket < ? GROUP BY span",
                           (key, *days)):
            spans[int(k)] = spans.get(int(k), 0) + int(c or 0)
    sat = sat_sum / rated if rated else None

    def bins_of(sks: list[int]) -> dict[int, int]:
        bins = {k: c for k, c in hist.items() if k // per in sks}  # the edges'
        if days:
            for k, c in _fetch(conn, "SELECT bin, sum(n) FROM service_close_hist WHERE district_id = ? "
                                     f"AND span IN ({', '.join('?' * len(sks))}) AND bucket >= ? AND bucket < ? "
                                     "GROUP BY bin", (key, *sks, *days)):
                bins[int(k)] = bins.get(int(k), 0) + int(c or 0)
        return bins

    # the middle ranks' spans, then the bins of those (one or two) spans only
    median = _median_hours(int(n), sorted((k, c) for k, c in spans.items() if c > 0), bins_of)
    return {"n": int(n), "satisfaction": float(sat) if sat is not None else None, "rated": int(rated),
            "satisfied": int(satisfied), "late": int(late), "median_hours": median}


def service_daily(conn: Connection, start: int, end: int, district: str | None = None,
                  res: int = 86_400) -> pd.DataFrame:
    """Return per ``res`` bucket of closure time: mean satisfaction, closed count, satisfied count,
    rated count and mean hours to close."""
    if res != SVC_DAY:
        return _daily_frame(_service_daily_raw(conn, start, end, district, res))
    days, edges = _svc_ranges(conn, int(start), int(end))
    return _daily(conn, days, _edge_requests(conn, edges, district) if conn.dialect.name != "postgresql"
                  else np.empty((0, 4)), district, edges)


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
        for b, mean, closed, satisfied, rated, secs in _fetch(
                conn, "SELECT bucket, CASE WHEN rated > 0 THEN CAST(sat_sum AS NUMERIC) / rated END, closed, "
                      "satisfied, rated, CAST(close_s AS NUMERIC) / closed FROM service_rollup "
                      "WHERE district_id = ? AND bucket >= ? AND bucket < ? AND closed > 0",
                (district or CITY, *days)):
            rows.append((int(b), mean, int(closed), int(satisfied), int(rated), secs))
    elif days:
        for b, closed, rated, sat_sum, satisfied, close_s in _fetch(
                conn, "SELECT bucket, closed, rated, sat_sum, satisfied, close_s FROM service_rollup "
                      "WHERE district_id = ? AND bucket >= ? AND bucket < ? AND closed > 0",
                (district or CITY, *days)):
            rows.append((int(b), sat_sum / rated if rated else None, int(closed), int(satisfied), int(rated),
                         close_s / closed))
    if not rows:  # what _daily_frame([]) returns, without its pandas calls
        return pd.DataFrame({"bucket": np.array([], dtype=object), "satisfaction": np.array([], dtype=float),
                             "closed": np.array([], dtype=object), "satisfied": np.array([], dtype=np.int64),
                             "rated": np.array([], dtype=object), "hours": np.array([], dtype=float)})
    rows.sort(key=lambda r: r[0])
    b, sat, closed, satisfied, rated, secs = zip(*rows)
    # the frame _daily_frame builds, with its dtypes, built directly (pandas calls cost here)
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
    rows = _fetch(conn, part.format(cols=", ".join(never), cond="closed_at IS NULL") + " UNION ALL "
                  + part.format(cols=", ".join(later), cond="closed_at > ?"),
                  (*never_p, *tail, *later_p, times[0], *tail))
    out = {}
    for k, t in enumerate(times):
        out[t] = {"open": sum(int(r[2 * k] or 0) for r in rows),
                  "overdue": sum(int(r[2 * k + 1] or 0) for r in rows)}
    return out


def service_open_at(conn: Connection, t: int, district: str | None = None) -> dict:
    """Return counts of requests open at time ``t``: {'open': n, 'overdue': m}.

    A request is open at ``t`` if opened at or before ``t`` and not closed by then, however long
    ago it was opened; overdue if also past its due time.
    """
    return _open_counts(conn, [int(t)], district)[int(t)]


def service_open_at_many(conn: Connection, times: list[int], district: str | None = None) -> dict[int, dict]:
    """Return :func:`service_open_at` for each time in ``times``, in one query."""
    times = sorted({int(t) for t in times})
    if not times:
        return {}
    return _open_counts(conn, times, district)


def service_opened_count(conn: Connection, start: int, end: int, district: str | None = None) -> int:
    """Return how many requests were opened in [start, end)."""
    sr = service_requests
    q = _sr_district(select(func.count()).where(sr.c.opened_at >= start, sr.c.opened_at < end), district)
    return int(conn.execute(q).scalar() or 0)


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
        for d, ssum, rated, closed in _fetch(
                conn, "SELECT district_id, sum(sat_sum), sum(rated), sum(closed) FROM service_rollup "
                      "WHERE district_id <> ? AND bucket >= ? AND bucket < ? GROUP BY district_id",
                (CITY, *days)):
            a = acc.setdefault(None if d == NO_DISTRICT else d, [0, 0, 0])
            a[0] += int(ssum or 0)
            a[1] += int(rated or 0)
            a[2] += int(closed or 0)
    rows = [(d, a[0] / a[1] if a[1] else None, a[1]) for d, a in acc.items() if a[2] > 0]
    return _frame(rows, ["district_id", "satisfaction", "n"]).astype({"satisfaction": float})


def service_open_list(conn: Connection, t: int, district: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Return the open requests at ``t`` that are most overdue first."""
    sr, sc = service_requests, service_categories
    q = _sr_district(
        select(sr.c.id, sc.c.name, sr.c.district_id, sr.c.opened_at, sr.c.due_at)
        .join(sc, sc.c.id == sr.c.category_id)
        .where(sr.c.opened_at <= t, (sr.c.closed_at.is_(None)) | (sr.c.closed_at > t))
        .order_by(sr.c.due_at).limit(limit), district)
    return _frame(conn.execute(q).all(), ["id", "category", "district_id", "opened_at", "due_at"])
