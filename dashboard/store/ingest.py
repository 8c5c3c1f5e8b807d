"""The one validated write path for readings: check, store, keep `latest` and rollups current.

Every source (simulator, replay, CSV, MQTT, NGSI-LD) ends here. A row is either stored,
recognised as already stored (same asset, metric, time and value: idempotent), or kept in
the ``rejected`` table with the reason and the raw input. Nothing is dropped silently.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, select

from dashboard.metrics import CITY, DERIVED, DERIVED_ATTRS, METRICS, ROLLUP_RESOLUTIONS
from dashboard.store.schema import assets, rejected

#: Readings further in the future than this (seconds) are rejected.
MAX_FUTURE_S = 300

_ISO_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"


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


class Ingestor:
    """Validate readings and write them, with `latest` and the rollups, in one transaction."""

    def __init__(self, engine: Engine, index: AssetIndex | None = None):
        self.engine = engine
        self.index = index or AssetIndex(engine)

    # ---------------------------------------------------------------- validation
    def validate(self, frame: pd.DataFrame, now: float | None = None):
        """Split ``frame`` (asset, metric, ts, value[, line]) into good rows and rejections.

        Returns
        -------
        good : DataFrame with asset_pk, metric, ts (int64), value (float), district
        bad : DataFrame with line, raw, reason
        """
        now = time.time() if now is None else now
        missing = {"asset", "metric", "ts", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"readings need columns asset, metric, ts, value; missing {sorted(missing)}")
        n = len(frame)
        reason = np.full(n, None, dtype=object)

        def flag(mask: np.ndarray, text) -> None:
            m = mask & (reason == None)  # noqa: E711 - elementwise on object array
            if m.any():
                if callable(text):
                    idx = np.flatnonzero(m)
                    reason[idx] = [text(i) for i in idx]
                else:
                    reason[m] = text

        asset = frame["asset"].astype(str).str.strip().to_numpy()
        metric = frame["metric"].astype(str).str.strip().to_numpy()
        idx = self.index
        known = pd.Index(idx.frame.index)
        pos = known.get_indexer(asset)
        if (pos < 0).any() and time.time() - idx.loaded_at > 1:
            idx.reload()
            known = pd.Index(idx.frame.index)
            pos = known.get_indexer(asset)
        flag(pos < 0, lambda i: f"unknown asset {asset[i]!r}")
        metric_known = np.isin(metric, list(METRICS))
        flag(~metric_known, lambda i: f"unknown metric {metric[i]!r}")
        kinds = np.where(pos >= 0, idx.frame["kind"].to_numpy()[np.maximum(pos, 0)], "")
        want_kind = np.array([METRICS[m].kind if m in METRICS else "" for m in metric], dtype=object)
        flag((pos >= 0) & metric_known & (kinds != want_kind),
             lambda i: f"metric {metric[i]!r} does not apply to a {kinds[i]} asset")

        raw_value = frame["value"]
        if pd.api.types.is_numeric_dtype(raw_value.dtype):
            value = raw_value.to_numpy(dtype=float, na_value=np.nan)
        else:
            value = pd.to_numeric(raw_value.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
        flag(~np.isfinite(value), lambda i: f"value {frame['value'].iloc[i]!r} is not a finite number")
        lo = np.array([METRICS[m].lo if m in METRICS else -np.inf for m in metric])
        hi = np.array([METRICS[m].hi if m in METRICS else np.inf for m in metric])
        flag(np.isfinite(value) & ((value < lo) | (value > hi)),
             lambda i: f"value {value[i]:g} {METRICS[metric[i]].unit} outside the physical range "
                       f"[{lo[i]:g}, {hi[i]:g}] of {metric[i]}".replace("  ", " "))

        ts, ts_reason = _parse_ts(frame["ts"])
        flag(ts_reason == 2, lambda i: f"timestamp {frame['ts'].iloc[i]!r} has no UTC offset")
        flag(ts_reason == 1, lambda i: f"timestamp {frame['ts'].iloc[i]!r} is not ISO 8601")
        flag(np.isfinite(ts) & (ts > now + MAX_FUTURE_S),
             lambda i: f"timestamp {frame['ts'].iloc[i]} is in the future")
        flag(np.isfinite(ts) & (ts < 0), lambda i: f"timestamp {frame['ts'].iloc[i]} is before 1970")

        ok = reason == None  # noqa: E711
        good = pd.DataFrame({
            "asset_pk": idx.frame["pk"].to_numpy()[np.maximum(pos, 0)][ok],
            "metric": metric[ok],
            "ts": ts[ok].astype(np.int64) if ok.any() else np.array([], dtype=np.int64),
            "value": value[ok],
            "_row": np.flatnonzero(ok),
        })
        # duplicates inside the batch: the first wins, a later identical one is a no-op
        dup = good.duplicated(["asset_pk", "metric", "ts"], keep="first").to_numpy()
        if dup.any():
            first = good[~dup].set_index(["asset_pk", "metric", "ts"])["value"]
            later = good[dup]
            same = first.reindex(pd.MultiIndex.from_frame(later[["asset_pk", "metric", "ts"]])).to_numpy() \
                == later["value"].to_numpy()
            rows = later["_row"].to_numpy()
            reason[rows[~same]] = "conflicts with another reading of the same asset, metric and time in this input"
            reason[rows[same]] = ""  # identical repeat: counted as duplicate, not rejected
            good = good[~dup]
        return good, reason

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
        good, reason = self.validate(frame, now)
        if conn is None:
            with self.engine.begin() as c:
                return self._write(c, frame, good, reason, source)
        return self._write(conn, frame, good, reason, source)

    def _write(self, conn, frame, good, reason, source) -> IngestResult:
        result = IngestResult()
        if not good.empty:
            good, conflicts = self._drop_stored(conn, good)
            for row, text in conflicts:
                reason[row] = text
            self._insert_readings(conn, good)
            self._update_latest(conn, good)
            self._update_rollups(conn, good)
            result.accepted = len(good)
        is_dup = reason == ""
        result.duplicates = int(is_dup.sum())
        bad = np.flatnonzero(np.array([r is not None and r != "" for r in reason], dtype=bool))
        result.rejected = len(bad)
        if len(bad):
            lines = frame["line"].to_numpy() if "line" in frame.columns else None
            received = int(time.time())
            cols = [c for c in frame.columns if c != "line"]
            sub = frame.iloc[bad][cols]
            raws = [json.dumps(r, default=str, ensure_ascii=False) for r in sub.to_dict("records")]
            recs = []
            for k, i in enumerate(bad):
                line = int(lines[i]) if lines is not None and pd.notna(lines[i]) else None
                recs.append({"received_at": received, "source": source[:500], "line": line,
                             "raw": raws[k], "reason": reason[i]})
                if len(result.reasons) < 20:
                    result.reasons.append((line, reason[i]))
            conn.execute(rejected.insert(), recs)
        return result

    def _drop_stored(self, conn, good: pd.DataFrame):
        """Remove rows already stored; return (new rows, [(row, conflict reason)])."""
        keys = good[["asset_pk", "metric"]].drop_duplicates()
        # readings newer than the latest stored one for their series are new for sure
        lat = self._latest_ts(conn, keys)
        merged = good.merge(lat, on=["asset_pk", "metric"], how="left")
        maybe_old = merged["latest_ts"].notna().to_numpy() & (merged["ts"].to_numpy() <= merged["latest_ts"].to_numpy())
        if not maybe_old.any():
            return good, []
        old = merged[maybe_old]
        stored = []
        for (a, m), g in old.groupby(["asset_pk", "metric"], sort=False):
            rows = conn.exec_driver_sql(
                "SELECT ts, value FROM readings WHERE asset_pk = ? AND metric = ? AND ts >= ? AND ts <= ?"
                .replace("?", _param(conn)),
                (int(a), str(m), int(g["ts"].min()), int(g["ts"].max())),
            ).all()
            if rows:
                stored.append(pd.DataFrame({"asset_pk": a, "metric": m, "ts": [r[0] for r in rows],
                                            "stored": [r[1] for r in rows]}))
        if not stored:
            return good, []
        st = pd.concat(stored)
        chk = good.reset_index(drop=True).merge(st, on=["asset_pk", "metric", "ts"], how="left")
        hit = chk["stored"].notna().to_numpy()
        conflicts = []
        for _, r in chk[hit].iterrows():
            if r["stored"] == r["value"]:
                conflicts.append((int(r["_row"]), ""))
            else:
                conflicts.append((int(r["_row"]), f"conflicts with the stored reading at that time "
                                                  f"(stored {r['stored']:g}, got {r['value']:g})"))
        return chk[~hit].drop(columns="stored"), conflicts

    def _latest_ts(self, conn, keys: pd.DataFrame) -> pd.DataFrame:
        pks = sorted(set(int(x) for x in keys["asset_pk"]))
        out = []
        for i in range(0, len(pks), 900):
            chunk = pks[i:i + 900]
            marks = ",".join([_param(conn)] * len(chunk))
            out += conn.exec_driver_sql(
                f"SELECT asset_pk, metric, ts FROM latest WHERE asset_pk IN ({marks})", tuple(chunk)
            ).all()
        return pd.DataFrame(out, columns=["asset_pk", "metric", "latest_ts"]).astype(
            {"asset_pk": np.int64, "latest_ts": float})

    def _insert_readings(self, conn, good: pd.DataFrame) -> None:
        if good.empty:
            return
        cols = good[["asset_pk", "metric", "ts", "value"]]
        if _dialect(conn) == "postgresql":
            raw = conn.connection.driver_connection
            buf = io.StringIO()
            cols.to_csv(buf, header=False, index=False, float_format="%.17g")
            with raw.cursor() as cur:
                with cur.copy("COPY readings (asset_pk, metric, ts, value) FROM STDIN WITH (FORMAT csv)") as cp:
                    cp.write(buf.getvalue())
            return
        _exec_many(conn, "INSERT INTO readings (asset_pk, metric, ts, value) VALUES (?, ?, ?, ?)",
                   list(cols.itertuples(index=False, name=None)))

    def _update_latest(self, conn, good: pd.DataFrame) -> None:
        last = good.sort_values("ts").drop_duplicates(["asset_pk", "metric"], keep="last")
        last = last.sort_values(["asset_pk", "metric"])
        _exec_many(
            conn,
            "INSERT INTO latest (asset_pk, metric, ts, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (asset_pk, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value "
            "WHERE excluded.ts > latest.ts",
            [(int(a), m, int(t), float(v)) for a, m, t, v in
             last[["asset_pk", "metric", "ts", "value"]].itertuples(index=False, name=None)],
        )

    def _update_rollups(self, conn, good: pd.DataFrame) -> None:
        idx = self.index.by_pk
        district = idx["district"].reindex(good["asset_pk"].to_numpy()).to_numpy()
        parts = [good.assign(district=district)[["asset_pk", "district", "metric", "ts", "value"]]]
        for name, (src, fn) in DERIVED.items():
            sel = good[good["metric"] == src]
            if sel.empty:
                continue
            attrs = {a: idx[a].reindex(sel["asset_pk"].to_numpy()).to_numpy() for a in DERIVED_ATTRS}
            vals = fn(sel["value"].to_numpy(), attrs)
            keep = np.isfinite(vals)
            parts.append(pd.DataFrame({
                "asset_pk": sel["asset_pk"].to_numpy()[keep], "district": district[good["metric"].to_numpy() == src][keep],
                "metric": name, "ts": sel["ts"].to_numpy()[keep], "value": vals[keep]}))
        allv = pd.concat(parts, ignore_index=True)
        base = allv[allv["metric"].isin(list(METRICS))]
        up_a = (
            "INSERT INTO rollup_asset (res, asset_pk, metric, bucket, n, sum, min, max) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (res, asset_pk, metric, bucket) DO UPDATE SET n = rollup_asset.n + excluded.n, "
            "sum = rollup_asset.sum + excluded.sum, "
            f"min = {_least(conn, 'rollup_asset.min', 'excluded.min')}, "
            f"max = {_greatest(conn, 'rollup_asset.max', 'excluded.max')}"
        )
        up_d = up_a.replace("rollup_asset", "rollup_district").replace("asset_pk", "district_id")
        for res in ROLLUP_RESOLUTIONS:
            b = base.assign(bucket=base["ts"].to_numpy() // res * res)
            g = b.groupby(["asset_pk", "metric", "bucket"], sort=True)["value"].agg(["count", "sum", "min", "max"])
            _exec_many(conn, up_a, [(res, int(a), m, int(k), int(n), float(s), float(lo), float(hi))
                                    for (a, m, k), (n, s, lo, hi) in zip(g.index, g.to_numpy())])
            d = allv.assign(bucket=allv["ts"].to_numpy() // res * res)
            gd = pd.concat([d, d.assign(district=CITY)]).groupby(
                ["district", "metric", "bucket"], sort=True)["value"].agg(["count", "sum", "min", "max"])
            gd = gd[gd.index.get_level_values(0) != ""]
            _exec_many(conn, up_d, [(res, dd, m, int(k), int(n), float(s), float(lo), float(hi))
                                    for (dd, m, k), (n, s, lo, hi) in zip(gd.index, gd.to_numpy())])


def read_readings_csv(path, chunksize: int | None = None):
    """Read a long-format readings CSV (asset_id, metric, ts, value) as text, keeping line numbers."""
    reader = pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunksize or 200_000,
                         encoding="utf-8-sig", skipinitialspace=True)
    line = 2
    for chunk in reader:
        chunk = chunk.rename(columns={"asset_id": "asset"})
        missing = {"asset", "metric", "ts", "value"} - set(chunk.columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                             f"(need asset_id, metric, ts, value; found {', '.join(chunk.columns)})")
        chunk["line"] = np.arange(line, line + len(chunk))
        line += len(chunk)
        yield chunk


def ingest_csv(engine: Engine, path, source: str | None = None, now: float | None = None) -> IngestResult:
    """Ingest a long-format CSV file in one transaction: all of it or, on a read error, none."""
    ing = Ingestor(engine)
    result = IngestResult()
    with engine.begin() as conn:
        for chunk in read_readings_csv(path):
            result += ing.ingest(chunk, source=source or str(path), now=now, conn=conn)
    return result


def ingest_rows(engine: Engine, rows: Iterable[dict], source: str = "api", now: float | None = None) -> IngestResult:
    """Ingest an iterable of reading dicts through a fresh :class:`Ingestor`."""
    return Ingestor(engine).ingest(rows, source=source, now=now)
