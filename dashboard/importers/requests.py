"""Service requests from Open311 GeoReport v2 JSON (or its FIWARE NGSI form) and from CSV exports."""
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
from dashboard.store.services import ingest_service_requests

#: Hours a new category gets as its SLA when the file does not say (Open311 expected_datetime does).
DEFAULT_SLA_HOURS = 72.0


def load_json(path) -> object:
    """Load a JSON file; a truncated or broken one raises with its line and column."""
    path = Path(path)
    if not path.exists():
        raise ImportProblem(f"{path}: no such file")
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


def open311_rows(path, data) -> tuple[pd.DataFrame, dict[str, tuple[str, float | None]]]:
    """Map Open311 GeoReport v2 requests to store rows; return (rows, category id -> (name, SLA hours))."""
    if isinstance(data, dict):
        data = data.get("service_requests", data.get("data", [data]))
    if not isinstance(data, list):
        raise ImportProblem(f"{path}: expected a list of Open311 service requests")
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
        status = str(e.get("status") or "").strip().lower()
        opened, due = _iso(e.get("requested_datetime")), _iso(e.get("expected_datetime"))
        closed = _iso(e.get("updated_datetime")) if status == "closed" else ""
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


def csv_rows(path, id_field=None, category_field=None, opened_field=None, closed_field=None,
             status_field=None, lon_field=None, lat_field=None, district_field=None, timezone=None,
             ts_format=None, delimiter=",", encoding="utf-8", report=None) -> pd.DataFrame:
    """Map a CSV export (created/closed times, category, location) to store rows."""
    frame = read_table(path, delimiter, encoding)
    if report is not None:
        report.fields = [c for c in frame.columns if c != "line"]
    c = frame.columns
    cols = {
        "id": pick_column(path, c, id_field, ("id", "service_request_id", "request_id", "case_id"), "request id"),
        "category": pick_column(path, c, category_field, ("category", "service_code", "type", "service_name"),
                                "category"),
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


def import_requests(conn: Connection, path, add_categories: bool = True, **options) -> ImportReport:
    """Read Open311 JSON or CSV service requests and upsert them in the open transaction ``conn``."""
    path = Path(path)
    report = ImportReport("requests", str(path))
    if path.suffix.lower() in (".json", ".jsonld"):
        rows, cats = open311_rows(path, load_json(path))
        report.fields = sorted({"service_request_id", "service_code", "requested_datetime", "status"})
    else:
        rows = csv_rows(path, report=report, **options)
        cats = {c: (c, None) for c in pd.unique(rows["category"].astype(str).str.strip()) if c}
    report.count("read", len(rows))
    if add_categories:
        _categories(conn, cats, report)
    result = ingest_service_requests(conn, rows, source=str(path))
    report.count("accepted", result.accepted)
    report.count("duplicates", result.duplicates)
    report.count("rejected", result.rejected)
    for line, reason in result.reasons:
        report.problem(line, reason)
    return report
