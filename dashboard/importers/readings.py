"""Readings from CSV in long form (asset, metric, ts, value) or wide form (one column per asset or metric).

Empty cells and NA are real gaps: nothing is stored for them (and nothing is rejected). A value that
is not a number, out of range, for an unknown asset or metric is rejected with its line. A file whose
dates cannot be read, whose timestamps lack an offset with no ``timezone`` given, or that mixes units
for one metric is refused whole.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from dashboard.importers import ConnAssetIndex, ImportProblem, ImportReport, RejectionLedger, pick_column, \
    read_table, store_rejections
from dashboard.importers.units import canonical, converter
from dashboard.metrics import METRICS
from dashboard.store.ingest import Ingestor

GAPS = {"", "na", "n/a", "nan", "null", "none", "-", "--"}
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$")


def _epoch(t: pd.Series) -> np.ndarray:
    """Return tz-aware datetimes as epoch seconds (NaN where NaT), whatever their resolution.

    Computed in the datetimes' own unit, so a year such as 0001 or 9999 (beyond nanoseconds) gives
    its epoch seconds (which the store then rejects as before 1970 or in the future).
    """
    naive = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    secs = naive.astype("datetime64[s]").astype(np.int64).astype(float)
    secs[np.isnat(naive)] = np.nan
    return secs


def parse_times(path, text: pd.Series, lines: np.ndarray, timezone: str | None = None,
                fmt: str | None = None, dst: str = "reject") -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Parse timestamps to epoch seconds (float, NaN where a local time does not exist or is ambiguous).

    Epoch numbers, ISO 8601 with an offset, or local times with ``timezone`` (``fmt``: a strftime
    format). Returns (epochs, [(line, reason)] for DST gaps/overlaps). Unreadable dates raise.
    ``dst="earlier"`` takes the first of an ambiguous local time and shifts a missing one forward
    (the reasons are then warnings, not rejections).
    """
    s = text.astype(str).str.strip()
    out = np.full(len(s), np.nan)
    dst_rows: list[tuple[int, str]] = []
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    is_num = np.isfinite(num) & ~s.str.contains(r"[-:/T ]", regex=True).to_numpy()
    out[is_num] = num[is_num]
    rest = ~is_num
    if not rest.any():
        return out, dst_rows
    uniq, inv = np.unique(s[rest].to_numpy(dtype=str), return_inverse=True)
    has_off = np.array([bool(_OFFSET.search(u)) and fmt is None for u in uniq])
    val = np.full(len(uniq), np.nan)
    if has_off.any():
        p = pd.to_datetime(pd.Series(uniq[has_off]), utc=True, errors="coerce", format="ISO8601")
        val[has_off] = _epoch(p)
        if p.isna().any():
            bad, ln = _first_in_file(s, lines, uniq[has_off][p.isna().to_numpy()])
            raise ImportProblem(f"{path}: line {ln}: cannot read the date {str(bad)!r}")
    naive = ~has_off
    if naive.any():
        kw = {"format": fmt} if fmt else {"format": "ISO8601"}
        p = pd.to_datetime(pd.Series(uniq[naive]), errors="coerce", **kw)
        if p.isna().any():
            bad, ln = _first_in_file(s, lines, uniq[naive][p.isna().to_numpy()])
            raise ImportProblem(f"{path}: line {ln}: cannot read the date {str(bad)!r}"
                                + (f" with format {fmt!r}" if fmt else " (ISO 8601 expected; or pass --ts-format)"))
        if timezone is None:
            bad, ln = _first_in_file(s, lines, uniq[naive])
            raise ImportProblem(f"{path}: line {ln}: the time {str(bad)!r} has no UTC offset; "
                                "pass --timezone (e.g. --timezone America/Montreal)")
        try:
            loc = p.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            if dst == "earlier" and loc.isna().any():
                amb = np.ones(len(p), dtype=bool)
                loc2 = p.dt.tz_localize(timezone, ambiguous=amb, nonexistent="shift_forward")
        except Exception as exc:  # noqa: BLE001 - unknown zone name
            raise ImportProblem(f"{path}: timezone {timezone!r}: {exc}") from exc
        bad_local = uniq[naive][loc.isna().to_numpy()]
        if dst == "earlier" and len(bad_local):
            loc = loc2
        val[naive] = _epoch(loc)
        for u in bad_local:
            dst_rows.append((_line_of(s, lines, u), f"local time {str(u)!r} does not exist or is ambiguous in "
                                                    f"{timezone} (daylight-saving change)"))
    out[rest] = val[inv]
    return out, dst_rows


def _first_in_file(s: pd.Series, lines: np.ndarray, values: np.ndarray) -> tuple[str, int]:
    """Return the one of ``values`` that comes first in the file, and its line."""
    at = np.flatnonzero(np.isin(s.to_numpy(dtype=str), values.astype(str)))
    i = at[np.argmin(lines[at])]
    return str(s.iloc[i]), int(lines[i])


def _line_of(s: pd.Series, lines: np.ndarray, value: str) -> int:
    return int(lines[np.flatnonzero(s.to_numpy(dtype=str) == value)[0]])


def _numbers(text: pd.Series, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (values, is_gap) of cells; a non-number is NaN but not a gap (it gets rejected)."""
    t = text.astype(str).str.strip()
    gap = t.str.lower().isin(GAPS).to_numpy()
    if decimal != ".":
        t = t.str.replace(".", "", regex=False).str.replace(decimal, ".", regex=False)
    return pd.to_numeric(t, errors="coerce").to_numpy(dtype=float), gap


def read_readings(path, layout: str = "long", metric: str | None = None, asset: str | None = None,
                  asset_column: str | None = None, asset_prefix: str = "", ts_column: str | None = None,
                  time_columns: list[str] | None = None, timezone: str | None = None, ts_format: str | None = None,
                  decimal: str = ".", delimiter: str = ",", encoding: str = "utf-8",
                  units: dict[str, str] | None = None, rename: dict[str, str] | None = None,
                  report: ImportReport | None = None):
    """Read a readings CSV into long rows (asset, metric, ts, value, raw, line).

    Parameters
    ----------
    layout : ``long`` (asset, metric, ts, value[, unit]), ``wide-metric`` (one column per metric; the
        asset from ``asset`` or ``asset_column``) or ``wide-asset`` (one column per asset; ``metric``)
    time_columns : e.g. ``["year", "month", "day", "hour"]`` instead of one ``ts`` column
    units : metric -> unit of the values in the file (converted to the stored unit)
    rename : column -> metric (wide-metric) or asset (wide-asset), e.g. ``{"PM2.5": "pm25"}``

    Returns
    -------
    (DataFrame asset, metric, ts, value, line; [(line, raw, reason)] rejected here; report)
    """
    path = Path(path)
    report = report or ImportReport("readings", str(path))
    too_long: list = []  # rows with more fields than the header: rejected one by one
    frame = read_table(path, delimiter, encoding, bad_rows=too_long)
    report.fields = [c for c in frame.columns if c != "line"]
    units, rename = dict(units or {}), dict(rename or {})
    for m in units:
        if m not in METRICS:
            raise ImportProblem(f"--unit {m}=…: unknown metric {m!r} (known: {', '.join(METRICS)})")
    lines = frame["line"].to_numpy()
    if time_columns:
        for c in time_columns:
            pick_column(path, frame.columns, c, (), f"time part {c!r}")
        p = [frame[c].str.strip().str.zfill(2) for c in time_columns] + ["00"] * (5 - len(time_columns))
        ts_text = p[0] + "-" + p[1] + "-" + p[2] + " " + p[3] + ":" + p[4]
        used = set(time_columns)
    else:
        tsc = pick_column(path, frame.columns, ts_column, ("ts", "time", "timestamp", "datetime", "date"),
                          "time (--ts-column)")
        ts_text = frame[tsc]
        used = {tsc}
    ts, dst = parse_times(path, ts_text, lines, timezone, ts_format)
    rejected_here = too_long + [(ln, {"ts": t}, r) for ln, r in dst for t in [ts_text[lines == ln].iloc[0]]]
    parts = []
    if layout == "long":
        ac = pick_column(path, frame.columns, asset_column, ("asset", "asset_id", "station", "sensor"), "asset")
        mc = pick_column(path, frame.columns, None, ("metric", "parameter", "pollutant"), "metric")
        vc = pick_column(path, frame.columns, None, ("value", "reading"), "value")
        uc = pick_column(path, frame.columns, None, ("unit", "units"), "unit", required=False)
        vals, gap = _numbers(frame[vc], decimal)
        met = frame[mc].str.strip().map(lambda m: rename.get(m, m))
        parts.append(pd.DataFrame({"asset": asset_prefix + frame[ac].str.strip(), "metric": met, "ts": ts,
                                   "value": vals, "raw": frame[vc], "gap": gap, "line": lines,
                                   "unit": frame[uc] if uc else ""}))
    elif layout in ("wide-metric", "wide-asset"):
        if layout == "wide-metric":
            ac = None if asset else pick_column(path, frame.columns, asset_column, ("asset", "asset_id", "station"),
                                                "asset (--asset or --asset-column)")
            used |= {ac} if ac else set()
        elif not metric:
            raise ImportProblem(f"{path}: a wide-asset file needs --metric (one of {', '.join(METRICS)})")
        ignored = []
        for col in frame.columns:
            if col in used or col == "line":
                continue
            name = rename.get(col, col)
            if layout == "wide-metric" and name not in METRICS:
                ignored.append(col)
                continue
            vals, gap = _numbers(frame[col], decimal)
            parts.append(pd.DataFrame({
                "asset": asset_prefix + (frame[ac].str.strip() if ac else asset) if layout == "wide-metric"
                else asset_prefix + name,
                "metric": name if layout == "wide-metric" else metric, "ts": ts, "value": vals,
                "raw": frame[col], "gap": gap, "line": lines, "unit": ""}))
        if ignored:
            report.warnings.append(f"{path}: column(s) not a known metric, ignored: {', '.join(ignored)} "
                                   "(map one with --rename COLUMN=metric)")
        if not parts:
            raise ImportProblem(f"{path}: no column is a known metric ({', '.join(METRICS)}); use --rename")
    else:
        raise ImportProblem(f"unknown layout {layout!r}: long, wide-metric or wide-asset")
    rows = pd.concat(parts, ignore_index=True)
    report.count("cells", len(rows))
    report.count("gaps", int(rows["gap"].sum()))
    rows = rows[~rows["gap"].to_numpy()]
    rows = _convert_units(path, rows, units)
    rows = rows[np.isfinite(rows["ts"].to_numpy())]
    value = rows["value"].where(np.isfinite(rows["value"]), rows["raw"])
    out = pd.DataFrame({"asset": rows["asset"].to_numpy(), "metric": rows["metric"].to_numpy(),
                        "ts": rows["ts"].to_numpy(), "value": value.to_numpy(), "line": rows["line"].to_numpy()})
    return out, rejected_here, report


def _convert_units(path, rows: pd.DataFrame, units: dict[str, str]) -> pd.DataFrame:
    """Convert values to each metric's stored unit; refuse a metric given in several units."""
    rows = rows.copy()
    unit = rows["unit"].astype(str).str.strip()
    has_unit_col = (unit != "").any()
    for m in pd.unique(rows["metric"]):
        if m not in METRICS:
            continue
        sel = (rows["metric"] == m).to_numpy()
        given = set()
        if has_unit_col:
            seen = {}
            for u, ln in zip(unit[sel], rows["line"][sel]):
                try:
                    cu = canonical(u)
                except KeyError:
                    raise ImportProblem(f"{path}: line {ln}: unknown unit {u!r} for {m}") from None
                seen.setdefault(cu, ln)
            if len(seen) > 1:
                (u1, l1), (u2, l2) = list(seen.items())[:2]
                raise ImportProblem(f"{path}: mixed units for {m}: {u1 or 'none'} (line {l1}) and "
                                    f"{u2 or 'none'} (line {l2}); one unit per metric and file")
            given = set(seen) - {""}
        if m in units:
            if given and canonical(units[m]) not in given:
                raise ImportProblem(f"{path}: --unit {m}={units[m]} but the unit column says {given.pop()}")
            given = {units[m]}
        if given:
            f = converter(m, given.pop(), str(path))
            rows.loc[sel, "value"] = f(rows.loc[sel, "value"].to_numpy(dtype=float))
    return rows


def write_readings(conn: Connection, rows: pd.DataFrame, rejected_here: list, report: ImportReport,
                   source: str) -> ImportReport:
    """Store readings through the validated path, in the open transaction ``conn``."""
    ing = Ingestor(None, index=ConnAssetIndex(conn))
    ing.ledger = RejectionLedger(conn, source)
    result = ing.ingest(rows, source=source, conn=conn)
    report.count("accepted", result.accepted)
    report.count("duplicates", result.duplicates)
    report.count("rejected", result.rejected)
    for line, reason in result.reasons:
        report.problem(line, reason)
    store_rejections(conn, source, rejected_here, report)
    resolved = ing.ledger.resolve()  # earlier rejections of rows stored now (e.g. their asset came since)
    if resolved:
        report.count("earlier rejections resolved", resolved)
    return report


def import_readings(conn: Connection, path, **options) -> ImportReport:
    """Read, check and store readings in the open transaction ``conn``."""
    rows, rej, report = read_readings(path, **options)
    return write_readings(conn, rows, rej, report, str(path))
