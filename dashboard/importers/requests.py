"""Service requests from Open311 GeoReport v2 JSON (or its FIWARE NGSI form), from CSV exports and
from flat JSON exports (a Socrata ``/resource/….json`` array of objects, read like a CSV)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, insert, select

from dashboard.importers import ImportProblem, ImportReport, pick_column, read_table
from dashboard.importers.readings import parse_times
from dashboard.store.schema import service_categories
from dashboard.store.services import ingest_service_requests, parse_status_map, status_class

#: Hours a new category gets as its SLA when the file does not say (Open311 expected_datetime does).
DEFAULT_SLA_HOURS = 72.0
#: Largest JSON file read (it is read whole), and most distinct fields of a flat JSON export.
MAX_JSON_BYTES = 1 << 30
MAX_FIELDS = 1000
#: Keys that make a JSON record an Open311 GeoReport v2 request (otherwise: a flat export).
OPEN311_KEYS = ("service_code", "requested_datetime")
#: The options that name a column; given one, a JSON file is read as a flat table.
FIELD_OPTIONS = ("id_field", "category_field", "opened_field", "closed_field", "status_field", "lon_field",
                 "lat_field", "district_field")


def load_json(path) -> object:
    """Load a JSON file; a truncated or broken one raises with its line and column."""
    path = Path(path)
    if not path.exists():
        raise ImportProblem(f"{path}: no such file")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ImportProblem(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_JSON_BYTES:,} a JSON "
                            "file may have (split it, or export CSV)")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ImportProblem(f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}; "
                            "a truncated file?)") from exc
    except UnicodeDecodeError as exc:
        raise ImportProblem(f"{path}: not UTF-8 (byte {exc.start})") from exc


def plain(v):
    """Return the value of an NGSI attribute (v2 normalized, LD normalized or key-values)."""
    if isinstance(v, dict):
        if v.get("type") == "Relationship" and "object" in v:
            return v["object"]
        if "value" in v and ("type" in v or "metadata" in v or "unitCode" in v or "observedAt" in v):
            return plain(v["value"])
        if "@value" in v:
            return v["@value"]
    return v


def _iso(v) -> str:
    """Return an Open311 datetime as text; ``…-08:00Z`` (an offset and a Z) loses the Z."""
    s = "" if v is None else str(plain(v)).strip()
    return re.sub(r"([+-]\d{2}:?\d{2})Z$", r"\1", s)


def _records(path, data) -> list:
    """Return the records of a JSON file: a list, an Open311 ``service_requests``/``data`` list, or one object."""
    if isinstance(data, dict):
        data = data.get("service_requests", data.get("data", [data]))
    if not isinstance(data, list):
        raise ImportProblem(f"{path}: expected a list of service requests (a JSON array of objects)")
    for i, e in enumerate(data, start=1):
        if not isinstance(e, dict):
            raise ImportProblem(f"{path}: record {i}: not an object")
    return data


def _fields(path, records: list) -> list[str]:
    """Return the keys of the records, in the order first seen."""
    seen: dict[str, None] = {}
    for e in records:
        for k in e:
            if k not in seen:
                seen[str(k)] = None
                if len(seen) > MAX_FIELDS:
                    raise ImportProblem(f"{path}: more than {MAX_FIELDS} distinct fields; not a table of requests")
    return list(seen)


def is_open311(records: list) -> bool:
    """Return whether the records are Open311 GeoReport v2 requests (not a flat export)."""
    return any(k in e for e in records for k in OPEN311_KEYS)


def _cell(v) -> str:
    v = plain(v)
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def json_table(path, records: list) -> pd.DataFrame:
    """Return flat JSON records (a Socrata export) as a text table like :func:`read_table`'s; line = record."""
    cols = _fields(path, records)
    frame = pd.DataFrame({c: [_cell(e.get(c)) for e in records] for c in cols}, dtype=object)
    frame["line"] = np.arange(1, len(records) + 1)
    return frame


def open311_rows(path, data, status_map=None) -> tuple[pd.DataFrame, dict[str, tuple[str, float | None]]]:
    """Map Open311 GeoReport v2 requests to store rows; return (rows, category id -> (name, SLA hours))."""
    data = _records(path, data)
    rows, cats = [], {}
    for i, e in enumerate(data, start=1):
        if not isinstance(e, dict):
            raise ImportProblem(f"{path}: record {i}: not an object")
        e = {k: plain(v) for k, v in e.items()}
        loc = e.get("location") if isinstance(e.get("location"), dict) else None
        lon, lat = e.get("long"), e.get("lat")
        if loc and loc.get("type") == "Point":
            lon, lat = loc["coordinates"][:2]
        rid = e.get("service_request_id") or (str(e.get("id", "")).rsplit(":", 1)[-1] if e.get("id") else "")
        cat = str(e.get("service_code") or "").strip()
        status = str(e.get("status") or "").strip()
        opened, due = _iso(e.get("requested_datetime")), _iso(e.get("expected_datetime"))
        closed = _iso(e.get("updated_datetime")) if status_class(status, status_map) == "closed" else ""
        rows.append({"id": str(rid), "category": cat, "lon": lon, "lat": lat, "opened_at": opened,
                     "closed_at": closed, "due_at": due, "status": status,
                     "description": e.get("description"), "line": i})
        if cat and cat not in cats:
            sla = None
            if opened and due:
                t, _ = parse_times(path, pd.Series([opened, due]), np.array([i, i]))
                sla = round((t[1] - t[0]) / 3600.0, 2) if np.isfinite(t).all() and t[1] > t[0] else None
            cats[cat] = (str(e.get("service_name") or cat), sla)
    return pd.DataFrame(rows), cats


def csv_rows(path, delimiter=",", encoding="utf-8", report=None, **fields) -> pd.DataFrame:
    """Map a CSV export (created/closed times, category, location) to store rows."""
    return table_rows(path, read_table(path, delimiter, encoding), report=report, **fields)


def table_rows(path, frame: pd.DataFrame, id_field=None, category_field=None, opened_field=None,
               closed_field=None, status_field=None, lon_field=None, lat_field=None, district_field=None,
               timezone=None, ts_format=None, report=None) -> pd.DataFrame:
    """Map a table of requests (a CSV or a flat JSON export, as text with a ``line`` column) to store rows."""
    if report is not None:
        report.fields = [c for c in frame.columns if c != "line"]
    c = frame.columns
    cols = {
        "id": pick_column(path, c, id_field, ("id", "service_request_id", "request_id", "case_id", "unique_key"),
                          "request id"),
        "category": pick_column(path, c, category_field, ("category", "service_code", "type", "service_name",
                                                          "complaint_type"), "category"),
        "opened_at": pick_column(path, c, opened_field, ("opened_at", "created", "created_at", "requested_datetime",
                                                         "created_date"), "created time"),
        "closed_at": pick_column(path, c, closed_field, ("closed_at", "closed", "closed_date", "resolved_at"),
                                 "closed time", required=False),
        "status": pick_column(path, c, status_field, ("status",), "status", required=False),
        "lon": pick_column(path, c, lon_field, ("lon", "lng", "longitude", "long", "x"), "longitude", required=False),
        "lat": pick_column(path, c, lat_field, ("lat", "latitude", "y"), "latitude", required=False),
        "district": pick_column(path, c, district_field, ("district", "district_id"), "district", required=False),
        "satisfaction": pick_column(path, c, None, ("satisfaction",), "satisfaction", required=False),
        "description": pick_column(path, c, None, ("description",), "description", required=False),
    }
    out = pd.DataFrame({k: frame[v] if v else "" for k, v in cols.items()})
    out["line"] = frame["line"].to_numpy()
    lines = out["line"].to_numpy()
    for col in ("opened_at", "closed_at"):
        txt = out[col].astype(str).str.strip()
        has = (txt != "").to_numpy()
        if has.any():
            t, dst = parse_times(path, txt[has], lines[has], timezone, ts_format, dst="earlier")
            if dst and report is not None:
                report.warnings.append(f"{path}: {len(dst)} {col} time(s) fall in a daylight-saving change, "
                                       f"taken as the earlier instant (first: line {dst[0][0]})")
            out.loc[has, col] = [str(int(v)) for v in t]
    return out


def _categories(conn: Connection, cats: dict, report: ImportReport) -> None:
    have = {r.id for r in conn.execute(select(service_categories.c.id))}
    new = [{"id": k, "name": n, "sla_hours": s or DEFAULT_SLA_HOURS} for k, (n, s) in cats.items() if k not in have]
    if new:
        conn.execute(insert(service_categories), new)
        report.count("categories added", len(new))


def import_requests(conn: Connection, path, add_categories: bool = True, status_map=None,
                    **options) -> ImportReport:
    """Read Open311 JSON, a flat JSON export or CSV service requests and upsert them in the open
    transaction ``conn``.

    ``status_map``: "In Progress=open,Duplicate=closed" (or its dict) over the default statuses of
    :func:`dashboard.store.services.status_class`. ``options``: the column options of
    :func:`table_rows` (and delimiter, encoding for CSV). A JSON file is Open311 unless its records
    have neither service_code nor requested_datetime, or a column option is given: then it is read
    as a flat table like a CSV.
    """
    path = Path(path)
    report = ImportReport("requests", str(path))
    if isinstance(status_map, str) or status_map is None:
        try:
            status_map = parse_status_map(status_map)
        except ValueError as exc:
            raise ImportProblem(str(exc)) from None
    if path.suffix.lower() in (".json", ".jsonld"):
        records = _records(path, load_json(path))
        report.fields = _fields(path, records)
        options = {k: v for k, v in options.items() if k not in ("delimiter", "encoding")}
        if not records or (is_open311(records) and not any(options.get(k) for k in FIELD_OPTIONS)):
            rows, cats = open311_rows(path, records, status_map)
        else:
            rows, cats = table_rows(path, json_table(path, records), report=report, **options), None
    else:
        rows, cats = csv_rows(path, report=report, **options), None
    if cats is None:
        cats = {c: (c, None) for c in pd.unique(rows["category"].astype(str).str.strip()) if c}
    report.count("read", len(rows))
    if add_categories:
        _categories(conn, cats, report)
    result = ingest_service_requests(conn, rows, source=str(path), status_map=status_map)
    report.count("accepted", result.accepted)
    report.count("duplicates", result.duplicates)
    report.count("rejected", result.rejected)
    for line, reason in result.reasons:
        report.problem(line, reason)
    return report
