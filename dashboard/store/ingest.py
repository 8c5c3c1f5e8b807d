"""The one validated write path for readings: check, store, keep `latest` and rollups current.

Every source (simulator, replay, CSV, MQTT, NGSI-LD) ends here. A row is either stored,
recognised as already stored (same asset, metric, time and value: idempotent), or kept in
the ``rejected`` table with the reason and the raw input. Nothing is dropped silently.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select, text

from dashboard.metrics import CITY, DERIVED, DERIVED_ATTRS, METRICS, ROLLUP_RESOLUTIONS
from layers import DOMAINS as _DOMAINS
from dashboard.store.schema import assets, rejected

#: Readings further in the future than this (seconds) are rejected.
MAX_FUTURE_S = 300
#: Most characters of raw input kept with a rejection (the rest is cut, with a marker saying so).
MAX_RAW_CHARS = 4096
#: Most characters of a rejection reason (it may quote the input).
MAX_REASON_CHARS = 500

_ISO_OFFSET = r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


@dataclass
class IngestResult:
    """What happened to a batch of readings."""

    accepted: int = 0
    duplicates: int = 0  # already stored with the same value: nothing to do
    rejected: int = 0
    reasons: list[tuple[int | None, str]] = field(default_factory=list)  # first few (line, reason)

    def __iadd__(self, other: "IngestResult") -> "IngestResult":
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.reasons.extend(other.reasons[: max(0, 20 - len(self.reasons))])
        return self

    def summary(self) -> str:
        """Return a one-line summary."""
        return f"{self.accepted} accepted, {self.duplicates} already stored, {self.rejected} rejected"


class AssetIndex:
    """In-memory map of asset ids to their key, kind, district and derived-series attributes."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.reload()

    def reload(self) -> None:
        """Read every asset from the store."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(assets.c.pk, assets.c.id, assets.c.kind, assets.c.district_id, assets.c.attributes)
            ).all()
        self.frame = pd.DataFrame(
            {
                "pk": np.array([r.pk for r in rows], dtype=np.int64),
                "kind": [r.kind for r in rows],
                "district": [r.district_id or "" for r in rows],
                **{
                    a: np.array([float((r.attributes or {}).get(a, d)) for r in rows], dtype=float)
                    for a, d in DERIVED_ATTRS.items()
                },
            },
            index=pd.Index([r.id for r in rows], name="id"),
        )
        self.by_pk = self.frame.reset_index().set_index("pk")
        self.loaded_at = time.time()


def clip_text(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """Return ``text`` storable in any store, at most about ``limit`` characters.

    Longer text is cut with a marker giving its full length; NUL (PostgreSQL text cannot hold it)
    and lone surrogates (not encodable as UTF-8) are escaped.
    """
    if len(text) > limit:
        text = f"{text[:limit]}… [cut: {len(text):,} characters in all]"
    if text.isascii():
        return text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def source_text(source: str) -> str:
    """Return a rejection's source as stored (at most 500 characters, the column's width)."""
    return clip_text(source, 400)[:500]


def _scalar_cells(col: pd.Series) -> np.ndarray:
    """Return True where a cell is text, a number or empty (not a boolean, list, mapping or other object)."""
    n = len(col)
    if pd.api.types.is_bool_dtype(col.dtype):
        return np.zeros(n, dtype=bool)
    if not (col.dtype == object or isinstance(col.dtype, pd.StringDtype)):
        return np.ones(n, dtype=bool)
    if pd.api.types.infer_dtype(col, skipna=True) in ("string", "integer", "floating", "mixed-integer-float",
                                                      "empty", "decimal", "datetime", "datetime64", "date"):
        return np.ones(n, dtype=bool)
    return np.array([v is None or (isinstance(v, (str, int, float, np.integer, np.floating, datetime.date,
                                                  np.datetime64)) and not isinstance(v, (bool, np.bool_)))
                     for v in col], dtype=bool)


def _dialect(conn: Connection) -> str:
    return conn.dialect.name


def _param(conn: Connection) -> str:
    return "?" if _dialect(conn) == "sqlite" else "%s"


def _exec_many(conn: Connection, sql: str, rows: list[tuple]) -> None:
    if rows:
        conn.exec_driver_sql(sql.replace("?", _param(conn)), rows)


def _least(conn: Connection, a: str, b: str) -> str:
    return f"min({a}, {b})" if _dialect(conn) == "sqlite" else f"LEAST({a}, {b})"


def _greatest(conn: Connection, a: str, b: str) -> str:
    return f"max({a}, {b})" if _dialect(conn) == "sqlite" else f"GREATEST({a}, {b})"


def _parse_ts(ts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return (epoch seconds as float with NaN where bad, reason-code array)."""
    n = len(ts)
    reason = np.zeros(n, dtype=np.int8)  # 0 ok, 1 unparseable, 2 no offset
    if pd.api.types.is_numeric_dtype(ts.dtype):
        out = ts.to_numpy(dtype=float, na_value=np.nan)
        reason[~np.isfinite(out)] = 1
        return out, reason
    if pd.api.types.is_datetime64_any_dtype(ts.dtype):
        if getattr(ts.dt, "tz", None) is None:
            reason[:] = 2
            return np.full(n, np.nan), reason
        out = ts.dt.tz_convert("UTC").astype("datetime64[s, UTC]").astype("int64").to_numpy(dtype=float)
        out[ts.isna().to_numpy()] = np.nan
        reason[np.isnan(out)] = 1
        return out, reason
    s = ts.astype(str).str.strip()
    numeric = pd.to_numeric(s, errors="coerce")
    has_offset = s.str.contains(_ISO_OFFSET, regex=True, na=False).to_numpy()
    parsed = pd.to_datetime(s.where(has_offset), utc=True, errors="coerce", format="ISO8601")
    out = (parsed.astype("datetime64[s, UTC]").astype("int64")).to_numpy(dtype=float)
    out[parsed.isna().to_numpy()] = np.nan
    num = numeric.to_numpy(dtype=float, na_value=np.nan)
    use_num = np.isfinite(num) & ~has_offset
    out[use_num] = num[use_num]
    bad = np.isnan(out)
    reason[bad & ~has_offset & ~np.isfinite(num)] = 2
    reason[bad & has_offset] = 1
    # a string that is neither number nor date-with-offset: say whether it looked like a date
    looks_dateish = s.str.match(r"^\d{4}-\d{2}-\d{2}", na=False).to_numpy()
    reason[bad & ~has_offset & ~looks_dateish] = 1
    return out, reason


#: Every metric and derived series by a small integer code (internal: fast grouping on integers).
_SERIES = list(METRICS) + [d for d in DERIVED if d not in METRICS]
_SCODE = {m: i for i, m in enumerate(_SERIES)}
_NS = len(_SERIES)
#: After readings are stored: (series codes, hook(conn, asset pks, ts)) of every domain's ``ingest_hooks``,
#: run in the same transaction (air quality's hourly AQI of the station-hours a batch changed).
_HOOKS = [(np.array([_SCODE[m] for m in ms if m in _SCODE], dtype=np.int64), fn)
          for d in _DOMAINS for ms, fn in d.ingest_hooks]
_KIND_OF = np.array([METRICS[m].kind for m in METRICS], dtype=object)
_LO = np.array([METRICS[m].lo for m in METRICS], dtype=float)
_HI = np.array([METRICS[m].hi for m in METRICS], dtype=float)


def _clean_text(col: pd.Series) -> np.ndarray:
    """Return ``col.astype(str).str.strip().to_numpy()``, computed once per distinct value."""
    if not (col.dtype == object or isinstance(col.dtype, pd.StringDtype)):
        return col.astype(str).str.strip().to_numpy()
    codes, uniq = pd.factorize(col, use_na_sentinel=False)
    clean = pd.Series(np.asarray(uniq, dtype=object), dtype=col.dtype).astype(str).str.strip().to_numpy()
    return clean[codes] if len(clean) else np.array([], dtype=object)


def _group_stats(key: np.ndarray, value: np.ndarray):
    """Return (keys, count, sum, min, max) of ``value`` grouped by the integer ``key``, keys sorted.

    pandas' grouped sum (compensated, in row order) so sums match a DataFrame groupby exactly.
    """
    g = pd.Series(value).groupby(key, sort=True)
    agg = g.agg(["count", "sum", "min", "max"])
    return (agg.index.to_numpy(dtype=np.int64), agg["count"].to_numpy(dtype=np.int64),
            agg["sum"].to_numpy(dtype=float), agg["min"].to_numpy(dtype=float), agg["max"].to_numpy(dtype=float))


# ----------------------------------------------------------------------- PostgreSQL binary COPY
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], dtype=">i4").tobytes()
_PG_TRAILER = np.array([-1], dtype=">i2").tobytes()
_PG_NUM = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}


def _pg_copy(conn: Connection, table: str, columns: list[str], types: list[str], arrays: list,
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


def _pg_stage(conn: Connection, table: str, columns: list[str], types: list[str], arrays: list) -> None:
    """Empty (or create) the session's staging table ``table`` and COPY the rows into it."""
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({_PG_TEMP[table]}) ON COMMIT DELETE ROWS")
    conn.exec_driver_sql(f"TRUNCATE {table}")
    _pg_copy(conn, table, columns, types, arrays)


class _Batch:
    """Integer-coded view of the accepted rows of one ingest call (internal)."""

    __slots__ = ("pk", "scode", "ts", "value", "row", "order", "latest", "codes")

    def __init__(self, pk, scode, ts, value, row, codes: "_Codes"):
        self.pk, self.scode, self.ts, self.value, self.row = pk, scode, ts, value, row
        self.codes = codes  # the asset snapshot the batch was validated against: its rollups use it too
        self.order = None
        self.latest = None  # (sorted series keys, their latest ts) as stored before this batch

    def __len__(self) -> int:
        return len(self.pk)

    def take(self, mask: np.ndarray) -> "_Batch":
        b = _Batch(self.pk[mask], self.scode[mask], self.ts[mask], self.value[mask], self.row[mask], self.codes)
        b.latest = self.latest
        return b

    def series_key(self) -> np.ndarray:
        return self.pk * _NS + self.scode

    def sorted_order(self) -> np.ndarray:
        """Row order by (asset, metric, ts): the primary-key order of ``readings``."""
        if self.order is None:
            self.order = np.lexsort((self.ts, self.series_key()))
        return self.order

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"asset_pk": self.pk, "metric": np.array(_SERIES, dtype=object)[self.scode],
                             "ts": self.ts, "value": self.value, "_row": self.row})


class _Codes:
    """Per-asset arrays aligned with one asset frame: kind, district code, derived-series attributes."""

    def __init__(self, f: pd.DataFrame):
        self.frame = f
        dcodes, dnames = pd.factorize(f["district"].to_numpy(dtype=object))
        dnames = list(dnames)
        if CITY not in dnames:
            dnames.append(CITY)
        self.pk = f["pk"].to_numpy(dtype=np.int64)
        self.pk_pos = pd.Index(self.pk)
        self.id_pos = pd.Index(f.index)
        self.dcode = dcodes.astype(np.int64)
        self.dnames = dnames
        self.city_code = dnames.index(CITY)
        self.blank_code = dnames.index("") if "" in dnames else -1
        self.kinds = f["kind"].to_numpy(dtype=object)
        self.attrs = {a: f[a].to_numpy(dtype=float) for a in DERIVED_ATTRS}


class Ingestor:
    """Validate readings and write them, with `latest` and the rollups, in one transaction."""

    def __init__(self, engine: Engine, index: AssetIndex | None = None):
        self.engine = engine
        self.index = index or AssetIndex(engine)
        self._codes: _Codes | None = None
        self.ledger: RejectionLedger | None = None  # told which rows got stored (see RejectionLedger)

    def _asset_codes(self) -> "_Codes":
        """Return the per-asset arrays of the index's current asset frame.

        One immutable object per asset frame, swapped in with one assignment. A batch keeps the one
        it was validated against (``_Batch.codes``), so a validation in another thread
        (:meth:`ingest_many`) that reloads the index never changes a batch being written.
        """
        f = self.index.frame
        codes = self._codes
        if codes is None or codes.frame is not f:
            codes = _Codes(f)
            self._codes = codes
        return codes

    # ---------------------------------------------------------------- validation
    def _validate(self, frame: pd.DataFrame, now: float | None = None):
        """Split ``frame`` (asset, metric, ts, value[, line]) into good rows and rejections.

        Returns
        -------
        good : :class:`_Batch` of the rows to store
        reason : object array per input row: None (accepted), "" (duplicate) or the rejection reason
        """
        now = time.time() if now is None else now
        missing = {"asset", "metric", "ts", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"readings need columns asset, metric, ts, value; missing {sorted(missing)}")
        n = len(frame)
        reason = np.full(n, None, dtype=object)
        free = np.ones(n, dtype=bool)  # rows without a reason yet

        def flag(mask: np.ndarray, text) -> None:
            m = mask & free
            if m.any():
                idx_ = np.flatnonzero(m)
                if callable(text):
                    reason[idx_] = [clip_text(text(i), MAX_REASON_CHARS) for i in idx_]
                else:
                    reason[idx_] = text
                free[idx_] = False

        # cells that are not text or numbers (booleans, lists, mappings: any JSON) are rejected first
        cells = {c: _scalar_cells(frame[c]) for c in ("asset", "metric", "ts", "value")}
        for c, what in (("asset", "text"), ("metric", "text"), ("ts", "a time"), ("value", "a number")):
            flag(~cells[c], lambda i, c=c, what=what: f"{c} {frame[c].iloc[i]!r} is not {what}")
        asset = _clean_text(frame["asset"].where(cells["asset"], "") if not cells["asset"].all() else frame["asset"])
        metric = _clean_text(frame["metric"].where(cells["metric"], "") if not cells["metric"].all()
                             else frame["metric"])
        idx = self.index
        a_codes, a_uniq = pd.factorize(asset, use_na_sentinel=False)
        codes = self._asset_codes()
        pos = codes.id_pos.get_indexer(np.asarray(a_uniq, dtype=object))[a_codes] if n else \
            np.array([], dtype=np.int64)
        if (pos < 0).any() and time.time() - idx.loaded_at > 1:
            idx.reload()
            codes = self._asset_codes()
            pos = codes.id_pos.get_indexer(np.asarray(a_uniq, dtype=object))[a_codes]
        flag(pos < 0, lambda i: f"unknown asset {asset[i]!r}")
        m_codes, m_uniq = pd.factorize(metric, use_na_sentinel=False)
        m_map = np.array([_SCODE.get(m, -1) if m in METRICS else -1 for m in m_uniq], dtype=np.int64)
        scode = m_map[m_codes] if n else np.array([], dtype=np.int64)
        metric_known = scode >= 0
        flag(~metric_known, lambda i: f"unknown metric {metric[i]!r}")
        have = pos >= 0
        # a store without assets (districts only, or empty) has no kinds to look up: every row is unknown
        kinds = codes.kinds[np.maximum(pos, 0)] if n and len(codes.kinds) else np.full(n, None, dtype=object)
        # compare kinds per distinct (asset kind, metric) pair, not per row
        kind_ok = np.ones(n, dtype=bool)
        chk = have & metric_known
        if chk.any():
            want = _KIND_OF[np.maximum(scode, 0)]
            kind_ok[chk] = kinds[chk] == want[chk]
        flag(chk & ~kind_ok, lambda i: f"metric {metric[i]!r} does not apply to a {kinds[i]} asset")

        raw_value = frame["value"]
        if pd.api.types.is_bool_dtype(raw_value.dtype):  # flagged above
            value = np.full(n, np.nan)
        elif pd.api.types.is_numeric_dtype(raw_value.dtype):
            value = raw_value.to_numpy(dtype=float, na_value=np.nan)
        else:
            value = pd.to_numeric(raw_value.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(value)
        flag(~finite, lambda i: f"value {frame['value'].iloc[i]!r} is not a finite number")
        lo = np.where(metric_known, _LO[np.maximum(scode, 0)], -np.inf)
        hi = np.where(metric_known, _HI[np.maximum(scode, 0)], np.inf)
        flag(finite & ((value < lo) | (value > hi)),
             lambda i: f"value {value[i]:g} {METRICS[metric[i]].unit} outside the physical range "
                       f"[{lo[i]:g}, {hi[i]:g}] of {metric[i]}".replace("  ", " "))

        ts, ts_reason = _parse_ts(frame["ts"])
        flag(ts_reason == 2, lambda i: f"timestamp {frame['ts'].iloc[i]!r} has no UTC offset")
        flag(ts_reason == 1, lambda i: f"timestamp {frame['ts'].iloc[i]!r} is not ISO 8601")
        ts_fin = np.isfinite(ts)
        flag(ts_fin & (ts > now + MAX_FUTURE_S), lambda i: f"timestamp {frame['ts'].iloc[i]} is in the future")
        flag(ts_fin & (ts < 0), lambda i: f"timestamp {frame['ts'].iloc[i]} is before 1970")

        ok = free
        batch = _Batch(codes.pk[np.maximum(pos, 0)][ok] if n and len(codes.pk) else np.array([], dtype=np.int64),
                       scode[ok], ts[ok].astype(np.int64) if ok.any() else np.array([], dtype=np.int64),
                       value[ok], np.flatnonzero(ok), codes)
        # duplicates inside the batch: the first wins, a later identical one is a no-op
        if len(batch) > 1:
            order = batch.sorted_order()  # stable: equal keys keep input order, the first is first
            k, t = batch.series_key()[order], batch.ts[order]
            same_key = np.zeros(len(order), dtype=bool)
            same_key[1:] = (k[1:] == k[:-1]) & (t[1:] == t[:-1])
            if same_key.any():
                start = np.maximum.accumulate(np.where(same_key, 0, np.arange(len(order))))
                later = order[same_key]
                first = order[start[same_key]]
                same = batch.value[first] == batch.value[later]
                rows = batch.row[later]
                reason[rows[~same]] = "conflicts with another reading of the same asset, metric and time in this input"
                reason[rows[same]] = ""  # identical repeat: counted as duplicate, not rejected
                keep = np.ones(len(batch), dtype=bool)
                keep[later] = False
                batch = batch.take(keep)
        return batch, reason

    # ---------------------------------------------------------------- writing
    def ingest(self, data, source: str = "api", now: float | None = None,
               conn: Connection | None = None) -> IngestResult:
        """Validate and store readings; ``data`` is a DataFrame or an iterable of dicts.

        Parameters
        ----------
        data : DataFrame or iterable of mappings with asset, metric, ts, value (and optional line)
        source : where the readings came from, kept with every rejection
        now : the current time (epoch seconds) for the future-timestamp check
        conn : an open transaction to write in (default: a new one, committed here)
        """
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
        if frame.empty:
            return IngestResult()
        good, reason = self._validate(frame, now)
        if conn is None:
            with self.engine.begin() as c:
                return self._write(c, frame, good, reason, source)
        return self._write(conn, frame, good, reason, source)

    def ingest_many(self, frames: Iterable, source: str = "api", now: float | None = None,
                    conn: Connection | None = None, each=None) -> IngestResult:
        """Ingest a sequence of batches (DataFrames or lists of dicts) through :meth:`ingest`'s path.

        The next batch is produced (read, generated) and validated in a worker thread while the
        current one is written, so the client's work overlaps the database's. Each batch is one
        transaction of its own, or all go into ``conn`` when given. An error producing a batch is
        raised here, after the batches before it; ``each(result)`` is called after every batch.
        """
        from concurrent.futures import ThreadPoolExecutor

        it = iter(frames)

        def produce():
            data = next(it, None)
            if data is None:
                return None
            frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
            if frame.empty:
                return frame, None, None
            return (frame, *self._validate(frame, now))

        total = IngestResult()
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-validate") as pool:
            nxt = pool.submit(produce)
            while (item := nxt.result()) is not None:
                nxt = pool.submit(produce)
                frame, good, reason = item
                if good is None:
                    continue
                if conn is None:
                    with self.engine.begin() as c:
                        res = self._write(c, frame, good, reason, source)
                else:
                    res = self._write(conn, frame, good, reason, source)
                total += res
                if each is not None:
                    each(res)
        return total

    def _write(self, conn, frame, good: _Batch, reason, source) -> IngestResult:
        result = IngestResult()
        if len(good):
            good, conflicts = self._drop_stored(conn, good)
            for row, text in conflicts:
                reason[row] = text
            if len(good):
                payloads: list = []
                # the rollups' arrays are computed while the server stores the readings
                self._insert_readings(conn, good, meanwhile=lambda: payloads.append(self._rollup_payloads(good)))
                self._update_latest(conn, good)
                self._write_rollups(conn, good, payloads[0])
                self._after_ingest(conn, good)
            result.accepted = len(good)
        if self.ledger is not None:
            self.ledger.stored(frame, reason)
        is_dup = reason == ""
        result.duplicates = int(is_dup.sum())
        bad = np.flatnonzero(~(reason == None) & ~is_dup)  # noqa: E711 - elementwise on object array
        result.rejected = len(bad)
        if len(bad):
            lines = frame["line"].to_numpy() if "line" in frame.columns else None
            received = int(time.time())
            raws = raw_records(frame.iloc[bad])
            recs = []
            for k, i in enumerate(bad):
                line = int(lines[i]) if lines is not None and pd.notna(lines[i]) else None
                recs.append({"received_at": received, "source": source_text(source), "line": line,
                             "raw": raws[k], "reason": clip_text(reason[i], MAX_REASON_CHARS)})
                if len(result.reasons) < 20:
                    result.reasons.append((line, reason[i]))
            conn.execute(rejected.insert(), recs)
        return result

    def _after_ingest(self, conn, good: _Batch) -> None:
        """Run the domains' ingest hooks on the readings of their metrics in this batch."""
        for codes, fn in _HOOKS:
            sel = np.isin(good.scode, codes)
            if sel.any():
                fn(conn, good.pk[sel], good.ts[sel])

    def _drop_stored(self, conn, good: _Batch):
        """Remove rows already stored; return (new rows, [(row, conflict reason)])."""
        # readings newer than the latest stored one for their series are new for sure
        lk, lts = self._latest_ts(conn, np.unique(good.pk))
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
            a, m = int(k // _NS), _SERIES[int(k % _NS)]
            rows = conn.exec_driver_sql(
                "SELECT ts, value FROM readings WHERE asset_pk = ? AND metric = ? AND ts >= ? AND ts <= ?"
                .replace("?", _param(conn)),
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

    def _latest_ts(self, conn, pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (sorted series keys, latest ts) of the stored ``latest`` rows of these assets."""
        pks = [int(x) for x in pks]
        if _dialect(conn) == "postgresql":  # one statement, the keys as one array parameter
            out = conn.exec_driver_sql("SELECT asset_pk, metric, ts FROM latest WHERE asset_pk = ANY(%s)",
                                       (pks,)).all()
        else:  # SQLite: at most 900 parameters a statement
            out = []
            for i in range(0, len(pks), 900):
                chunk = pks[i:i + 900]
                marks = ",".join([_param(conn)] * len(chunk))
                out += conn.exec_driver_sql(
                    f"SELECT asset_pk, metric, ts FROM latest WHERE asset_pk IN ({marks})", tuple(chunk)
                ).all()
        if not out:
            return np.array([], dtype=np.int64), np.array([], dtype=float)
        keys = np.array([a * _NS + _SCODE.get(m, _NS) if m in METRICS else -1 for a, m, _ in out], dtype=np.int64)
        ts = np.array([t for _, _, t in out], dtype=float)
        o = np.argsort(keys, kind="stable")
        return keys[o], ts[o]

    def _insert_readings(self, conn, good: _Batch, meanwhile=None) -> None:
        o = good.sorted_order()  # primary-key order: each B-tree page is touched once
        if _dialect(conn) == "postgresql":
            _pg_copy(conn, "readings", ["asset_pk", "metric", "ts", "value"], ["int4", "text", "int8", "float8"],
                     [good.pk[o], (good.scode[o], _SERIES), good.ts[o], good.value[o]], meanwhile=meanwhile)
            return
        if meanwhile is not None:
            meanwhile()
        names = np.array(_SERIES, dtype=object)
        rows = list(zip(good.pk[o].tolist(), names[good.scode[o]].tolist(), good.ts[o].tolist(),
                        good.value[o].tolist()))
        conn.connection.driver_connection.executemany(
            "INSERT INTO readings (asset_pk, metric, ts, value) VALUES (?, ?, ?, ?)", rows)

    def _update_latest(self, conn, good: _Batch) -> None:
        o = good.sorted_order()
        k = good.series_key()[o]
        last = o[np.append(k[1:] != k[:-1], True)]  # newest row of each series
        pk, sc, ts, val = good.pk[last], good.scode[last], good.ts[last], good.value[last]
        set_ = "SET ts = excluded.ts, value = excluded.value WHERE excluded.ts > latest.ts"
        if _dialect(conn) == "postgresql":
            _pg_stage(conn, "_ingest_latest", ["asset_pk", "metric", "ts", "value"],
                      ["int4", "text", "int8", "float8"], [pk, (sc, _SERIES), ts, val])
            conn.exec_driver_sql("INSERT INTO latest (asset_pk, metric, ts, value) "
                                 "SELECT asset_pk, metric, ts, value FROM _ingest_latest "
                                 f"ON CONFLICT (asset_pk, metric) DO UPDATE {set_}")
            return
        names = np.array(_SERIES, dtype=object)
        conn.connection.driver_connection.executemany(
            "INSERT INTO latest (asset_pk, metric, ts, value) VALUES (?, ?, ?, ?) "
            f"ON CONFLICT (asset_pk, metric) DO UPDATE {set_}",
            list(zip(pk.tolist(), names[sc].tolist(), ts.tolist(), val.tolist())))

    def _pg_rollup_asset(self, conn, good: _Batch, up_a, res, apk, asc, bucket, cnt, sm, mn, mx) -> None:
        """Write per-asset rollups on PostgreSQL: COPY the buckets that cannot be stored yet, upsert the rest.

        Rollups only hold buckets up to the one of their series' ``latest`` reading, so a bucket after
        it is new. Should that not hold (rows edited by hand, a concurrent writer), the COPY fails on
        the primary key, is rolled back to a savepoint, and every row is upserted instead.
        """
        cols = ["res", "asset_pk", "metric", "bucket", "n", "sum", "min", "max"]
        types = ["int4", "int4", "text", "int8", "int4", "float8", "float8", "float8"]
        lk, lts = good.latest if good.latest is not None else (np.array([], dtype=np.int64), np.array([]))
        ser = apk * _NS + asc
        if len(lk):
            at = np.minimum(np.searchsorted(lk, ser), len(lk) - 1)
            found = lk[at] == ser
            last_bucket = np.where(found, np.floor(np.where(found, lts[at], 0) / res) * res, -np.inf)
        else:
            last_bucket = np.full(len(ser), -np.inf)
        new = bucket > last_bucket

        def rows(m):
            return [res[m], apk[m], (asc[m], _SERIES), bucket[m], cnt[m], sm[m], mn[m], mx[m]]

        def upsert(m):
            _pg_stage(conn, "_ingest_rollup_asset", cols, types, rows(m))
            conn.exec_driver_sql(up_a.format(src="SELECT * FROM _ingest_rollup_asset"))

        if (~new).any():
            upsert(~new)
        if new.any():
            import psycopg

            sp = conn.begin_nested()
            try:
                _pg_copy(conn, "rollup_asset", cols, types, rows(new))
            except psycopg.errors.UniqueViolation:
                sp.rollback()
                upsert(new)
            else:
                sp.commit()

    def _rollup_payloads(self, good: _Batch) -> list[tuple]:
        """Return, per rollup resolution, the per-asset and the per-district rows of this batch (numpy only)."""
        ac = good.codes
        where = ac.pk_pos.get_indexer(good.pk)
        dist = ac.dcode[where]
        # every reading, then each derived series, in that order (the order sums are taken in)
        p_d, p_s, p_t, p_v = [dist], [good.scode], [good.ts], [good.value]
        for name, (src, fn) in DERIVED.items():
            sel = good.scode == _SCODE[src]
            if not sel.any():
                continue
            w = where[sel]
            attrs = {a: ac.attrs[a][w] for a in DERIVED_ATTRS}
            vals = np.asarray(fn(good.value[sel], attrs), dtype=float)
            keep = np.isfinite(vals)
            p_d.append(dist[sel][keep])
            p_s.append(np.full(int(keep.sum()), _SCODE[name], dtype=np.int64))
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
            key = (good.pk * _NS + good.scode) * nb + bi
            k, cnt, sm, mn, mx = _group_stats(key, good.value)
            ser, bk = np.divmod(k, nb)
            apk, asc = np.divmod(ser, _NS)
            per_asset = (apk, asc, (bk + b0) * res, cnt, sm, mn, mx)
            # per district and the city: readings and derived series
            bi2 = t2 // res - b0
            key2 = (d2 * _NS + s2) * nb + bi2
            k, cnt, sm, mn, mx = _group_stats(key2, v2)
            ser, bk = np.divmod(k, nb)
            dc, sc = np.divmod(ser, _NS)
            keep = dc != ac.blank_code
            cnt, sm, mn, mx, dc, sc, bk = (x[keep] for x in (cnt, sm, mn, mx, dc, sc, bk))
            out.append((res, per_asset, (dc, sc, (bk + b0) * res, cnt, sm, mn, mx)))
        return out

    def _write_rollups(self, conn, good: _Batch, payloads: list[tuple]) -> None:
        """Add the batch's rollup rows (:meth:`_rollup_payloads`) to the stored buckets."""
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
        if _dialect(conn) == "postgresql":
            self._pg_rollup_asset(conn, good, up_a, *a_cols)
            res, dc, sc, bucket, cnt, sm, mn, mx = d_cols
            _pg_stage(conn, "_ingest_rollup_district",
                      ["res", "district_id", "metric", "bucket", "n", "sum", "min", "max"],
                      ["int4", "text", "text", "int8", "int4", "float8", "float8", "float8"],
                      [res, (dc, ac.dnames), (sc, _SERIES), bucket, cnt, sm, mn, mx])
            conn.exec_driver_sql(up_d.format(src="SELECT * FROM _ingest_rollup_district"))
            return
        raw = conn.connection.driver_connection
        names = np.array(_SERIES, dtype=object)
        dnames = np.array(ac.dnames, dtype=object)
        for sql, cols, keys in ((up_a, a_cols, None), (up_d, d_cols, dnames)):
            res, key, sc, bucket, cnt, sm, mn, mx = cols
            raw.executemany(sql.format(src="VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                            list(zip(res.tolist(), (key if keys is None else keys[key]).tolist(),
                                     names[sc].tolist(), bucket.tolist(), cnt.tolist(), sm.tolist(),
                                     mn.tolist(), mx.tolist())))


def raw_records(frame: pd.DataFrame) -> list[str]:
    """Return each row of ``frame`` (without ``line``) as the JSON text kept in ``rejected.raw``."""
    cols = [c for c in frame.columns if c != "line"]
    return [clip_text(json.dumps(r, default=str, ensure_ascii=False)) for r in frame[cols].to_dict("records")]


def forget_repeated_rejections(conn: Connection, before: int) -> int:
    """Delete rejections added after id ``before`` that an earlier run already recorded; return how many.

    Same source, line, reason and raw input: re-running an import leaves the rejected table as it was.
    """
    return conn.execute(text(
        "DELETE FROM rejected WHERE id > :m AND EXISTS (SELECT 1 FROM rejected r2 WHERE r2.id <= :m "
        "AND r2.source = rejected.source AND coalesce(r2.line, -1) = coalesce(rejected.line, -1) "
        "AND r2.reason = rejected.reason AND r2.raw = rejected.raw)"), {"m": before}).rowcount


def last_rejection_id(conn: Connection) -> int:
    """Return the newest id of the rejected table (0 when empty)."""
    return int(conn.execute(select(func.coalesce(func.max(rejected.c.id), 0))).scalar())


class RejectionLedger:
    """Clears a source's rejections once the same row is stored (e.g. its asset was imported since).

    Made before an import of ``source`` in the transaction ``conn``; told which input rows were
    stored or found already stored (:meth:`stored`, :meth:`stored_raws`); :meth:`resolve` then
    deletes the earlier rejections of ``source`` whose raw input is one of those rows and that this
    run did not reject again. Rows are compared by their raw input (:func:`raw_records`) and
    only when the source has earlier rejections, so a clean source costs one query.
    """

    def __init__(self, conn: Connection, source: str):
        self.conn, self.source = conn, source[:500]
        self.before = last_rejection_id(conn)
        self.old: dict[str, list[int]] = {}
        for rid, raw in conn.execute(select(rejected.c.id, rejected.c.raw).where(
                rejected.c.source == self.source, rejected.c.id <= self.before)):
            self.old.setdefault(raw, []).append(int(rid))
        self.seen: set[str] = set()

    def stored(self, frame: pd.DataFrame, reason: np.ndarray) -> None:
        """Note the rows of ``frame`` that were stored (reason None) or already stored (reason "")."""
        if self.old:
            ok = np.flatnonzero((reason == None) | (reason == ""))  # noqa: E711 - elementwise
            if len(ok):
                self.stored_raws(raw_records(frame.iloc[ok]))

    def stored_raws(self, raws) -> None:
        """Note stored rows by their raw input text."""
        if self.old:
            self.seen.update(r for r in raws if r in self.old)

    def resolve(self, conn: Connection | None = None) -> int:
        """Delete the earlier rejections now stored and not rejected again; return how many.

        ``conn``: the transaction to delete in (default: the one the ledger was made in).
        """
        if not self.seen:
            return 0
        conn = conn or self.conn
        again = {r for (r,) in conn.execute(select(rejected.c.raw).where(
            rejected.c.source == self.source, rejected.c.id > self.before))}
        ids = [i for raw in self.seen - again for i in self.old[raw]]
        for k in range(0, len(ids), 500):
            conn.execute(rejected.delete().where(rejected.c.id.in_(ids[k:k + 500])))
        return len(ids)


def read_readings_csv(path, chunksize: int | None = None, bad_rows: list | None = None):
    """Read a long-format readings CSV (asset_id, metric, ts, value) as text, keeping line numbers.

    Read record by record in bounded memory (a device, a directory or an over-long line is refused);
    ``line`` is where each record starts in the file, also after blank lines and quoted fields that
    span lines. A record with another number of fields than the header is appended to ``bad_rows``
    as (line, fields, reason), or refuses the file when ``bad_rows`` is None.
    """
    from dashboard.importers.textio import table_chunks

    def on_width(line: int, rec: list[str], width: int) -> None:
        reason = f"{len(rec)} fields, the header has {width}"
        if bad_rows is None:
            raise ValueError(f"{path}: line {line}: {reason}")
        bad_rows.append((line, rec, reason))

    it = table_chunks(path, on_width=on_width, rows=chunksize or 200_000)
    found = next(it)
    cols = ["asset" if c == "asset_id" else c for c in found]
    missing = {"asset", "metric", "ts", "value"} - set(cols)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                         f"(need asset_id, metric, ts, value; found {', '.join(found)})")
    for chunk in it:
        chunk.columns = [*cols, "line"]
        yield chunk


#: Rows of a file stored per transaction: between two, other writers get the store.
CHUNK_ROWS = 200_000
#: Pause after each chunk on SQLite: longer than the 100 ms a writer waiting for the lock sleeps between
#: two tries (SQLite's busy handler), so every waiting writer gets its turn before the next chunk.
WRITER_TURN_S = 0.12


def ingest_csv(engine: Engine, path, source: str | None = None, now: float | None = None,
               chunk_rows: int | None = None, each=None) -> IngestResult:
    """Ingest a long-format CSV file: read it whole first, then store it ``chunk_rows`` rows a transaction.

    A file that cannot be read (a missing column, bad UTF-8, a malformed line anywhere in it) stores
    nothing: a file of more than one chunk is read through once before its first chunk is written.
    Between two chunks other writers (``POST /ngsi-ld/notify``, the simulator, MQTT) get the store, so a
    large file no longer locks them out for its whole length. Should the store fail midway, the chunks
    committed stay; the same file run again stores the rest once (stored readings are recognised).
    ``each(result)`` is called after every chunk is committed. ``chunk_rows`` defaults to :data:`CHUNK_ROWS`.

    A row with the wrong number of fields is rejected on its own, like any other bad row. Running
    the same file again records no rejection twice, and clears earlier rejections of rows now stored.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    source = source or str(path)
    bad: list = []
    chunks = read_readings_csv(path, chunk_rows, bad_rows=bad)
    first = next(chunks, None)
    single = first is None or next(chunks, None) is None
    if single:
        batches: Iterable = [] if first is None else [first]  # one chunk: read once, one transaction
    else:
        del first
        for _ in chunks:  # raises on the first unreadable part, before anything is written
            pass
        bad.clear()  # the second read finds them again
        batches = read_readings_csv(path, chunk_rows, bad_rows=bad)
    turn = WRITER_TURN_S if engine.dialect.name == "sqlite" and not single else 0.0

    def after(result: IngestResult) -> None:
        if each is not None:
            each(result)
        if turn:
            time.sleep(turn)  # the lock is free: a writer waiting for it takes it now

    ing = Ingestor(engine)
    with engine.connect() as conn:
        ing.ledger = RejectionLedger(conn, source)
    result = ing.ingest_many(batches, source=source, now=now, each=after)
    with engine.begin() as conn:
        if bad:
            received = int(time.time())
            conn.execute(rejected.insert(), [
                {"received_at": received, "source": source[:500], "line": line,
                 "raw": json.dumps(rec, ensure_ascii=False), "reason": reason}
                for line, rec, reason in bad])
            result.rejected += len(bad)
            result.reasons = sorted(result.reasons + [(ln, r) for ln, _, r in bad[:20]],
                                    key=lambda x: (x[0] is None, x[0] or 0))[:20]
        ing.ledger.resolve(conn)
        forget_repeated_rejections(conn, ing.ledger.before)
    return result
