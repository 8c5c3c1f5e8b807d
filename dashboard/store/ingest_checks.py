"""The ingest's checks: parse and validate readings, and keep the ledger of what was rejected.

A reading is checked against the asset index (known asset, metric of its kind), its metric's
physical range and the clock; what fails gets a reason, kept with the raw input in ``rejected``.
The accepted rows become a :class:`Batch`: integer codes per asset and series, what the writers
(:mod:`dashboard.store.ingest_writers`) and the rollups (:mod:`dashboard.store.ingest_rollups`) use.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select, text

from dashboard.metrics import CITY, DERIVED, DERIVED_ATTRS, METRICS
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


def parse_ts(ts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
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


#: Every metric and derived series by a small integer code (fast grouping on integers).
SERIES = list(METRICS) + [d for d in DERIVED if d not in METRICS]
SCODE = {m: i for i, m in enumerate(SERIES)}
NS = len(SERIES)
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


class Batch:
    """Integer-coded view of the accepted rows of one ingest call."""

    __slots__ = ("pk", "scode", "ts", "value", "row", "order", "latest", "codes")

    def __init__(self, pk, scode, ts, value, row, codes: "Codes"):
        self.pk, self.scode, self.ts, self.value, self.row = pk, scode, ts, value, row
        self.codes = codes  # the asset snapshot the batch was validated against: its rollups use it too
        self.order = None
        self.latest = None  # (sorted series keys, their latest ts) as stored before this batch

    def __len__(self) -> int:
        return len(self.pk)

    def take(self, mask: np.ndarray) -> "Batch":
        b = Batch(self.pk[mask], self.scode[mask], self.ts[mask], self.value[mask], self.row[mask], self.codes)
        b.latest = self.latest
        return b

    def series_key(self) -> np.ndarray:
        return self.pk * NS + self.scode

    def sorted_order(self) -> np.ndarray:
        """Row order by (asset, metric, ts): the primary-key order of ``readings``."""
        if self.order is None:
            self.order = np.lexsort((self.ts, self.series_key()))
        return self.order

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"asset_pk": self.pk, "metric": np.array(SERIES, dtype=object)[self.scode],
                             "ts": self.ts, "value": self.value, "_row": self.row})


class Codes:
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


# ---------------------------------------------------------------- validation
def check_readings(frame: pd.DataFrame, now: float | None, index: AssetIndex, asset_codes):
    """Split ``frame`` (asset, metric, ts, value[, line]) into good rows and rejections.

    ``index`` maps asset ids (reloaded when an id is unknown and it is over a second old);
    ``asset_codes()`` returns the :class:`Codes` of its current frame.

    Returns
    -------
    good : :class:`Batch` of the rows to store
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
    idx = index
    a_codes, a_uniq = pd.factorize(asset, use_na_sentinel=False)
    codes = asset_codes()
    pos = codes.id_pos.get_indexer(np.asarray(a_uniq, dtype=object))[a_codes] if n else \
        np.array([], dtype=np.int64)
    if (pos < 0).any() and time.time() - idx.loaded_at > 1:
        idx.reload()
        codes = asset_codes()
        pos = codes.id_pos.get_indexer(np.asarray(a_uniq, dtype=object))[a_codes]
    flag(pos < 0, lambda i: f"unknown asset {asset[i]!r}")
    m_codes, m_uniq = pd.factorize(metric, use_na_sentinel=False)
    m_map = np.array([SCODE.get(m, -1) if m in METRICS else -1 for m in m_uniq], dtype=np.int64)
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

    ts, ts_reason = parse_ts(frame["ts"])
    flag(ts_reason == 2, lambda i: f"timestamp {frame['ts'].iloc[i]!r} has no UTC offset")
    flag(ts_reason == 1, lambda i: f"timestamp {frame['ts'].iloc[i]!r} is not ISO 8601")
    ts_fin = np.isfinite(ts)
    flag(ts_fin & (ts > now + MAX_FUTURE_S), lambda i: f"timestamp {frame['ts'].iloc[i]} is in the future")
    flag(ts_fin & (ts < 0), lambda i: f"timestamp {frame['ts'].iloc[i]} is before 1970")

    ok = free
    batch = Batch(codes.pk[np.maximum(pos, 0)][ok] if n and len(codes.pk) else np.array([], dtype=np.int64),
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


def raw_records(frame: pd.DataFrame) -> list[str]:
    """Return each row of ``frame`` (without ``line``) as the JSON text kept in ``rejected.raw``."""
    cols = [c for c in frame.columns if c != "line"]
    return [clip_text(json.dumps(r, default=str, ensure_ascii=False)) for r in frame[cols].to_dict("records")]


def record_rejections(conn: Connection, frame: pd.DataFrame, reason: np.ndarray, source: str,
                      result: IngestResult) -> None:
    """Count the duplicates and rejections of ``reason`` (per row of ``frame``) into ``result`` and
    keep every rejected row, its raw input and its reason in ``rejected``."""
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
