"""Current values: ``latest`` per asset (long and wide), and the in-memory directory of assets.

Screens read only ``latest`` for what is on the map now; an asset's id, name, district and
attributes come from an :class:`AssetDirectory` kept per process while ``assets`` is unchanged.
"""
from __future__ import annotations

import json
from itertools import chain

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from dashboard.store.drivers import attr_sql, fetch, kind_filter
from dashboard.store.schema import ASSETS_REV_KEY, assets, latest


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


def assets_rev(conn: Connection) -> str | None:
    """Return the store's ``assets_rev`` token, read once per connection checkout: a snapshot reads
    through one connection, so its reads of every kind's directory check the token once."""
    memo = getattr(conn, "_panorama_assets_rev", None)
    if memo is None:
        rows = fetch(conn, "SELECT value FROM meta WHERE key = ?", (ASSETS_REV_KEY,))
        memo = (rows[0][0] if rows else None,)
        try:
            conn._panorama_assets_rev = memo
        except AttributeError:  # a connection that takes no attributes: read it every time
            pass
    return memo[0]


def asset_directory(conn: Connection, kind: str) -> AssetDirectory | None:
    """Return the :class:`AssetDirectory` of ``kind``, re-read only when ``assets`` changed.

    None for a store without the ``assets_rev`` row (made before migration 0003): callers join.
    """
    rev = assets_rev(conn)
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


def _latest_rows(conn: Connection, ms: list[str]) -> list[tuple]:
    """Return (asset_pk, ts, value[, index of the metric in ``ms``]) of every latest value of the metrics ``ms``."""
    if len(ms) == 1:  # the metric's index is 0: three columns (the fetch is most of the time)
        rows = fetch(conn, "SELECT asset_pk, ts, value FROM latest WHERE metric = ?", (ms[0],))
    else:
        code = "CASE metric " + " ".join(f"WHEN ? THEN {j}" for j in range(len(ms))) + " END"
        rows = fetch(conn, f"SELECT asset_pk, ts, value, {code} FROM latest "
                           f"WHERE metric IN ({', '.join('?' * len(ms))})", (*ms, *ms))
    return rows


def latest_wide(conn: Connection, kind: str, metrics: list[str], district: str | None = None,
                max_age: int | None = None, attrs: tuple[str, ...] = ()) -> pd.DataFrame:
    """Return the newest value of each metric of each asset of ``kind``: one row per asset, one column
    per metric, plus ``ts`` (newest of the row); ``metrics`` empty or None: every metric they have.

    Rows are sorted by asset id; metric columns that have values come first (sorted), then ``ts``,
    then requested metrics without any value (all NaN), then the numeric asset attributes
    ``attrs`` (NaN where absent or not a number). With ``max_age``, values older than
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
        rows = fetch(conn, "SELECT DISTINCT asset_pk, metric FROM latest")
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
        where, params = kind_filter(kind, district)
        metrics = [r[0] for r in fetch(conn, "SELECT DISTINCT l.metric FROM latest l JOIN assets a "
                                             f"ON a.pk = l.asset_pk WHERE {where}", params)]
        if not metrics:
            return pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", *attrs])
    ms = sorted(set(metrics))
    where, params = kind_filter(kind, district)
    where += f" AND l.metric IN ({', '.join('?' * len(ms))})"
    # one join read as the driver's tuples, the metric as its index in ``ms`` (no string per row)
    code = "CASE l.metric " + " ".join(f"WHEN ? THEN {j}" for j in range(len(ms))) + " END"
    extra = "".join(f", {attr_sql(conn, k)}" for k in attrs)
    rows = fetch(conn, f"SELECT a.id, a.name, a.district_id, {code}, l.ts, l.value{extra} FROM latest l "
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


def newest_ts(conn: Connection, kind: str, district: str | None = None) -> int | None:
    """Return the time of the newest reading of any asset of ``kind`` (in ``district``), or None."""
    q = select(func.max(latest.c.ts)).join(assets, assets.c.pk == latest.c.asset_pk).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    return conn.execute(q).scalar()
