"""The validated write path for service requests (Open311-like): check, then upsert by id.

A request is stored, recognised as already stored with the same content (a duplicate: nothing
changes), updated (the same id re-sent with new content, e.g. its closure), or kept in the
``rejected`` table with its raw input and the reason, exactly like readings.
"""
from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, select

from dashboard.store import service_rollup
from dashboard.store.ingest_checks import (MAX_FUTURE_S, MAX_REASON_CHARS, IngestResult, clip_text, parse_ts,
                                           source_text)
from dashboard.store.schema import districts, rejected, service_categories, service_requests

#: Input column names accepted for the store's columns.
ALIASES = {"category_id": "category", "district_id": "district", "service_request_id": "id",
           "service_code": "category"}
#: Stored columns compared to tell a duplicate from an update.
FIELDS = ("category_id", "district_id", "lon", "lat", "description", "opened_at", "due_at",
          "closed_at", "status", "satisfaction")
STATUSES = ("open", "closed")
#: Statuses that mean closed by default (compared case- and space-insensitively, also as the first
#: word: "Closed - Duplicate", "Completed - Dup"). Any other status ("in progress", "assigned",
#: "acknowledged", "pending", "on hold", ...) counts as open; ``status_map`` overrides both.
CLOSED_STATUSES = frozenset({"closed", "resolved", "completed", "complete", "done", "fixed", "finished",
                             "cancelled", "canceled", "withdrawn", "declined", "rejected", "archived"})
#: Bounds of a status map (entries, characters of a status).
MAX_STATUS_MAP, MAX_STATUS_LEN = 200, 100


def status_key(s) -> str:
    """Return a status as compared: lower case, ``_`` and runs of spaces as one space."""
    return re.sub(r"[\s_]+", " ", str(s)).strip().lower()


def parse_status_map(text: str | None) -> dict[str, str]:
    """Parse ``"In Progress=open,Duplicate=closed"``; raise ValueError with a one-line reason."""
    out: dict[str, str] = {}
    if text is None or not str(text).strip():
        return out
    items = [i for i in str(text).split(",") if i.strip()]
    if len(items) > MAX_STATUS_MAP:
        raise ValueError(f"--status-map: {len(items)} entries, at most {MAX_STATUS_MAP}")
    for item in items:
        k, eq, v = item.partition("=")
        key, val = status_key(k), v.strip().lower()
        if not eq or not key or val not in STATUSES:
            raise ValueError(f"--status-map: {item.strip()!r} is not STATUS=open or STATUS=closed "
                             "(e.g. \"In Progress=open,Duplicate=closed\")")
        if len(key) > MAX_STATUS_LEN:
            raise ValueError(f"--status-map: status {key[:20]!r}... is longer than {MAX_STATUS_LEN} characters")
        out[key] = val
    return out


def status_class(s, status_map: dict[str, str] | None = None) -> str:
    """Return "open" or "closed" for a status as exported ('' stays '': decided by closed_at)."""
    key = status_key(s)
    if not key:
        return ""
    if status_map and key in status_map:
        return status_map[key]
    if key in CLOSED_STATUSES or re.split(r"[^a-z]+", key)[0] in CLOSED_STATUSES:
        return "closed"
    return "open"


def ingest_service_requests(engine_or_conn: Engine | Connection, frame, source: str = "api",
                            now: float | None = None, status_map: dict[str, str] | None = None) -> IngestResult:
    """Validate service requests and upsert them by id; rejected rows go to ``rejected``.

    Parameters
    ----------
    engine_or_conn : an engine (a transaction is opened and committed here) or an open connection
    frame : DataFrame or iterable of mappings with id, category, district (or lon/lat), opened_at
        and optionally closed_at, status, satisfaction, due_at, description, lon, lat, line
    source : where the requests came from, kept with every rejection
    now : the current time (epoch seconds) for the future-timestamp check
    status_map : status (as :func:`status_key` gives it) -> "open" or "closed", over the defaults
        of :func:`status_class` (a status not known to be closed is open)

    Returns
    -------
    IngestResult : accepted (inserted or updated), duplicates (unchanged), rejected
    """
    data = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    if data.empty:
        return IngestResult()
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            return _ingest(conn, data, source, now, status_map)
    return _ingest(engine_or_conn, data, source, now, status_map)


def _text(frame: pd.DataFrame, col: str) -> np.ndarray:
    """Return a column as stripped strings ('' where missing), or all '' when absent."""
    if col not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    s = frame[col]
    empty = s.isna().to_numpy()
    txt = s.astype(object).map(lambda v: "" if v is None else str(v).strip()).to_numpy(dtype=object)
    txt[empty] = ""
    return txt


def _num(txt: np.ndarray) -> np.ndarray:
    return pd.to_numeric(pd.Series(txt, dtype=object).replace("", np.nan), errors="coerce").to_numpy(dtype=float)


def _times(txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse non-empty timestamps; return (epoch float with NaN, reason code: 0 ok/empty, 1 bad, 2 no offset)."""
    out = np.full(len(txt), np.nan)
    code = np.zeros(len(txt), dtype=np.int8)
    has = txt != ""
    if has.any():
        v, r = parse_ts(pd.Series(txt[has], dtype=object).astype(str))
        out[has], code[has] = v, r
    return out, code


def _district_of_points(conn: Connection, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Return the id of the district containing each point, '' outside all of them."""
    import shapely
    from shapely.geometry import shape

    out = np.full(len(lon), "", dtype=object)
    for did, geom in conn.execute(select(districts.c.id, districts.c.geometry)).all():
        poly = shape(json.loads(geom))
        inside = shapely.contains_xy(poly, lon, lat) & (out == "")
        out[inside] = did
    return out


def _ingest(conn: Connection, frame: pd.DataFrame, source: str, now: float | None,
            status_map: dict[str, str] | None = None) -> IngestResult:
    now = time.time() if now is None else now
    frame = frame.rename(columns={k: v for k, v in ALIASES.items()
                                  if k in frame.columns and v not in frame.columns})
    n = len(frame)
    reason = np.full(n, None, dtype=object)

    def flag(mask, text) -> None:
        m = np.asarray(mask, dtype=bool) & (reason == None)  # noqa: E711 - elementwise
        for i in np.flatnonzero(m):
            reason[i] = text(i) if callable(text) else text

    cats = {r.id: float(r.sla_hours) for r in conn.execute(
        select(service_categories.c.id, service_categories.c.sla_hours))}
    known_districts = {r.id for r in conn.execute(select(districts.c.id))}

    rid = _text(frame, "id")
    flag(rid == "", "missing request id")
    cat = _text(frame, "category")
    flag(cat == "", "missing category")
    flag(~np.isin(cat, list(cats)), lambda i: f"unknown service category {cat[i]!r}")

    lon_t, lat_t = _text(frame, "lon"), _text(frame, "lat")
    lon, lat = _num(lon_t), _num(lat_t)
    flag(((lon_t != "") & ~np.isfinite(lon)) | ((lat_t != "") & ~np.isfinite(lat)),
         lambda i: f"location ({lon_t[i]!r}, {lat_t[i]!r}) is not a pair of numbers")
    has_loc = np.isfinite(lon) & np.isfinite(lat)
    flag(np.isfinite(lon) != np.isfinite(lat), "location needs both lon and lat")
    flag(has_loc & ((np.abs(lon) > 180) | (np.abs(lat) > 90)),
         lambda i: f"location ({lon[i]:g}, {lat[i]:g}) is outside lon [-180, 180], lat [-90, 90]")

    dist = _text(frame, "district")
    flag((dist != "") & ~np.isin(dist, list(known_districts)), lambda i: f"unknown district {dist[i]!r}")
    flag((dist == "") & ~has_loc, "no district and no location")
    locate = (dist == "") & has_loc & (reason == None)  # noqa: E711
    if locate.any():
        dist[locate] = _district_of_points(conn, lon[locate], lat[locate])  # '' = outside: kept as null

    opened_t = _text(frame, "opened_at")
    opened, oc = _times(opened_t)
    flag(opened_t == "", "missing opened_at")
    flag(oc == 2, lambda i: f"opened_at {opened_t[i]!r} has no UTC offset")
    flag(oc == 1, lambda i: f"opened_at {opened_t[i]!r} is not an epoch time or ISO 8601 with offset")
    flag(np.isfinite(opened) & (opened > now + MAX_FUTURE_S), lambda i: f"opened_at {opened_t[i]} is in the future")
    flag(np.isfinite(opened) & (opened < 0), lambda i: f"opened_at {opened_t[i]} is before 1970")

    closed_t = _text(frame, "closed_at")
    closed, cc = _times(closed_t)
    flag(cc == 2, lambda i: f"closed_at {closed_t[i]!r} has no UTC offset")
    flag(cc == 1, lambda i: f"closed_at {closed_t[i]!r} is not an epoch time or ISO 8601 with offset")
    flag(np.isfinite(closed) & np.isfinite(opened) & (closed < opened),
         lambda i: f"closed_at {closed_t[i]} is before opened_at {opened_t[i]}")
    flag(np.isfinite(closed) & (closed > now + MAX_FUTURE_S), lambda i: f"closed_at {closed_t[i]} is in the future")

    given = _text(frame, "status")
    status = np.array([status_class(s, status_map) for s in given], dtype=object)
    status = np.where(status == "", np.where(np.isfinite(closed), "closed", "open"), status).astype(object)
    flag(np.array([len(s) > MAX_STATUS_LEN for s in given], dtype=bool),
         lambda i: f"status {given[i][:20]!r}... is longer than {MAX_STATUS_LEN} characters")
    flag((status == "closed") & ~np.isfinite(closed), lambda i: f"status {given[i] or 'closed'!r} (closed) needs closed_at")
    flag((status == "open") & np.isfinite(closed),
         lambda i: f"status {given[i] or 'open'!r} counts as open but closed_at is given"
         + (" (map it with --status-map)" if given[i].lower() != "open" else ""))

    sat_t = _text(frame, "satisfaction")
    sat = _num(sat_t)
    bad_sat = (sat_t != "") & ~(np.isfinite(sat) & (sat == np.round(sat)) & (sat >= 1) & (sat <= 5))
    flag(bad_sat, lambda i: f"satisfaction {sat_t[i]!r} is not an integer from 1 to 5")
    flag(np.isfinite(sat) & (status == "open"), "satisfaction given on an open request")

    due_t = _text(frame, "due_at")
    due, dc = _times(due_t)
    flag(dc > 0, lambda i: f"due_at {due_t[i]!r} is not an epoch time or ISO 8601 with offset")
    sla = np.array([cats.get(c, np.nan) for c in cat], dtype=float)
    due = np.where(np.isfinite(due), due, opened + sla * 3600.0)

    desc = _text(frame, "description")
    ok = reason == None  # noqa: E711
    rows = []
    for i in np.flatnonzero(ok):
        rows.append({
            "id": rid[i], "category_id": cat[i], "district_id": dist[i] or None,
            "lon": round(float(lon[i]), 7) if has_loc[i] else None,
            "lat": round(float(lat[i]), 7) if has_loc[i] else None,
            "description": desc[i] or None, "opened_at": int(opened[i]), "due_at": int(round(due[i])),
            "closed_at": int(closed[i]) if np.isfinite(closed[i]) else None, "status": status[i],
            "satisfaction": int(sat[i]) if np.isfinite(sat[i]) else None, "_row": int(i),
        })
    result = IngestResult()
    # the same id twice in one input: the last wins; an identical earlier copy is a duplicate
    last: dict[str, dict] = {}
    for r in rows:
        prev = last.get(r["id"])
        if prev is not None:
            if _same(prev, r):
                result.duplicates += 1
            else:
                result.accepted += 1  # applied, then superseded by the later copy
        last[r["id"]] = r
    todo = list(last.values())
    stored = _stored(conn, [r["id"] for r in todo])
    inserts, updates = [], []
    for r in todo:
        s = stored.get(r["id"])
        if s is None:
            inserts.append(r)
        elif _same(s, r):
            result.duplicates += 1
        else:
            updates.append(r)
    if inserts:
        conn.execute(service_requests.insert(), [{k: r[k] for k in ("id", *FIELDS)} for r in inserts])
    if updates:
        stmt = service_requests.update().where(service_requests.c.id == bindparam("b_id")).values(
            {f: bindparam(f"b_{f}") for f in FIELDS})
        conn.execute(stmt, [{"b_id": r["id"], **{f"b_{f}": r[f] for f in FIELDS}} for r in updates])
    # the closure rollups, in the same transaction: the stored version of an update leaves them
    service_rollup.apply(conn, [stored[r["id"]] for r in updates], sign=-1)
    service_rollup.apply(conn, inserts + updates, sign=1)
    result.accepted += len(inserts) + len(updates)

    bad = np.flatnonzero(~ok)
    result.rejected = len(bad)
    if len(bad):
        lines = frame["line"].to_numpy() if "line" in frame.columns else None
        cols = [c for c in frame.columns if c != "line"]
        recs = frame.iloc[bad][cols].to_dict("records")
        received = int(time.time())
        out = []
        for k, i in enumerate(bad):
            line = int(lines[i]) if lines is not None and pd.notna(lines[i]) else None
            raw = {c: (None if isinstance(v, float) and math.isnan(v) else v) for c, v in recs[k].items()}
            out.append({"received_at": received, "source": source_text(source), "line": line,
                        "raw": clip_text(json.dumps(raw, default=str, ensure_ascii=False)),
                        "reason": clip_text(reason[i], MAX_REASON_CHARS)})
            if len(result.reasons) < 20:
                result.reasons.append((line, reason[i]))
        conn.execute(rejected.insert(), out)
    return result


def _norm(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float):
        return round(v, 7)
    return v


def _same(a: dict, b: dict) -> bool:
    return all(_norm(a.get(f)) == _norm(b.get(f)) for f in FIELDS)


def _stored(conn: Connection, ids: list[str]) -> dict[str, dict]:
    """Return the stored requests with these ids, by id."""
    out: dict[str, dict] = {}
    cols = [service_requests.c.id, *[service_requests.c[f] for f in FIELDS]]
    for k in range(0, len(ids), 500):
        chunk = ids[k:k + 500]
        for r in conn.execute(select(*cols).where(service_requests.c.id.in_(chunk))).mappings():
            out[r["id"]] = dict(r)
    return out
