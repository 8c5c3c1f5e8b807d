"""FIWARE NGSI-LD and NGSI v2 entities of the types the domains declare (``Domain.ngsi``).

Key-values or normalized, one entity, a list, or a notification (``{"data": [...]}``). Numbers are
taken as reals whatever the schema says (the AirQualityObserved example has ``tsp: 73.3`` where its
schema says integer). Each entity's station or road segment becomes an asset when it is new (its
district by point in polygon); its measurements become readings through the validated path.
Entities are checked one by one: a bad one (unknown type, impossible time or location, outside
every district unless allowed) is rejected with its reason and the others are stored.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from sqlalchemy import Connection, select

from dashboard.importers import ImportProblem, ImportReport, check_depth, store_rejections
from dashboard.importers.assets import write_assets
from dashboard.importers.readings import parse_times, write_readings
from dashboard.importers.requests import load_json, plain
from dashboard.importers.units import converter
from dashboard.store.schema import assets
from layers import DOMAINS

log = logging.getLogger("panorama.ngsi")

#: NGSI type -> (asset kind, attribute -> metric, attributes naming the asset[, attribute holding the
#: start of the observed period, metrics that are counts over that period (stored per hour)]):
#: every domain's ``ngsi`` hints.
TYPES = {t: spec for d in DOMAINS for t, spec in d.ngsi}
#: Most points of an entity's location.
MAX_LOCATION_POINTS = 10_000
#: Units of the FIWARE models when an attribute carries no unitCode.
DEFAULT_UNITS = {"pm25": "µg/m³", "pm10": "µg/m³", "so2": "µg/m³", "no2": "µg/m³", "co": "µg/m³",
                 "o3": "µg/m³", "temp_c": "°C", "speed_kmh": "km/h", "flow_vph": "veh/h"}


def entities_of(source: str, data) -> list:
    """Return the entities of a file or notification body (each checked later, one by one)."""
    check_depth(data, source)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ImportProblem(f"{source}: expected an NGSI entity, a list of entities or a notification")
    return data


class _Bad(Exception):
    """An entity that cannot be imported: the reason (the entity is rejected alone)."""


def _shown(v, n: int = 80) -> str:
    """Return ``repr(v)`` cut to about ``n`` characters (reasons quote input of any size)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 2, n, n, n
    r = short.repr(v)
    return r if len(r) <= 2 * n else r[:2 * n] + "…"


def _unit(attr) -> str | None:
    if not isinstance(attr, dict):
        return None
    if "unitCode" in attr:
        return str(attr["unitCode"])
    md = attr.get("metadata") or {}
    if isinstance(md.get("unitCode"), dict):
        return str(md["unitCode"].get("value"))
    return None


def _short(ref) -> str:
    """Return the last part of an NGSI id or reference (``urn:ngsi-ld:Device:abc`` -> ``abc``)."""
    s = str(plain(ref))
    return s.split(":")[-1] if s.startswith("urn:ngsi-ld:") else s


def parse_entities(source: str, entities: list, timezone: str | None, report: ImportReport, first: int = 1,
                   ts_format: str | None = None):
    """Return (asset rows, reading rows, rejected rows) of the entities.

    An entity that cannot be read (unknown type, no id, unreadable or impossible time or location)
    is rejected alone with its reason; so is an attribute that is not a number. Any other error an
    entity's content causes rejects that entity too: one bad entity never costs the others.
    ``ts_format``: strftime format of times that are not ISO 8601 (e.g. an exporter's own).
    """
    asset_rows, readings, bad = [], [], []
    for i, e in enumerate(entities, start=first):  # i: the entity's position in its body (its "line")
        try:
            asset, rows, attr_bad = _parse_entity(source, i, e, timezone, ts_format)
        except _Bad as exc:
            bad.append((i, e, f"entity {i}{_ident(e)}: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - content we did not foresee: this entity only
            bad.append((i, e, f"entity {i}{_ident(e)}: cannot be read ({type(exc).__name__}: {_shown(str(exc), 200)})"))
            continue
        if asset is not None:
            asset_rows.append(asset)
        readings += rows
        bad += attr_bad
        report.count("entities")
    return asset_rows, pd.DataFrame(readings, columns=["asset", "metric", "ts", "value", "line"]), bad


def _ident(e) -> str:
    """Return `` ('<id>')`` of an entity for a reason, or nothing when it has no usable id."""
    eid = e.get("id") if isinstance(e, dict) else None
    return f" ({_shown(eid)})" if isinstance(eid, str) and eid else ""


def _why(exc: ImportProblem, source: str, i: int) -> str:
    """Return an importer's message without the source and line it starts with."""
    return str(exc).split(f": line {i}: ", 1)[-1].removeprefix(f"{source}: ")


def _entity_type(etype) -> str:
    """Return the supported type of an entity (NGSI-LD allows a list of types)."""
    names = etype if isinstance(etype, list) else [etype]
    found = [t for t in names if isinstance(t, str) and t in TYPES]
    if len(found) != 1:
        raise _Bad(f"unknown NGSI type {_shown(etype)} (supported: {', '.join(TYPES)})")
    return found[0]


def _time(source: str, i: int, name: str, when, timezone: str | None, ts_format: str | None = None) -> float:
    """Return the epoch seconds of an entity's time attribute ``name``; raise :class:`_Bad` if unusable."""
    from dashboard.store.ingest import MAX_FUTURE_S

    if isinstance(when, bool) or not isinstance(when, (str, int, float)):
        raise _Bad(f"{name} {_shown(when)} is not a time")
    try:
        ts, dst = parse_times(source, pd.Series([str(when)]), np.array([i]), timezone, ts_format)
    except ImportProblem as exc:
        raise _Bad(f"{name}: {_why(exc, source, i)}") from None
    except (ValueError, OverflowError, ArithmeticError):  # pandas: out of bounds and the like
        raise _Bad(f"{name} {_shown(when)} is not a time between 1970 and now") from None
    if dst:
        raise _Bad(dst[0][1])
    t = float(ts[0])
    if not np.isfinite(t) or t < 0 or t > time.time() + MAX_FUTURE_S:
        raise _Bad(f"{name} {_shown(when)} is not a time between 1970 and now")
    return t


def _location(loc):
    """Return the shapely geometry of a GeoJSON location; raise :class:`_Bad` if unusable."""
    try:
        geom = shape(loc)
        xy = shapely.get_coordinates(geom)
    except Exception:  # noqa: BLE001 - any malformed GeoJSON
        raise _Bad("unreadable location (GeoJSON expected)") from None
    if geom.is_empty or len(xy) == 0:
        raise _Bad("empty location")
    if len(xy) > MAX_LOCATION_POINTS:
        raise _Bad(f"location of {len(xy):,} points (at most {MAX_LOCATION_POINTS:,})")
    if not np.isfinite(xy).all() or (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        bad = xy[~(np.isfinite(xy).all(axis=1) & (np.abs(xy[:, 0]) <= 180) & (np.abs(xy[:, 1]) <= 90))][0]
        raise _Bad(f"location {bad[0]:g}, {bad[1]:g} is not a longitude in [-180, 180] and a latitude in [-90, 90]")
    return geom


def _parse_entity(source: str, i: int, e, timezone: str | None, ts_format: str | None = None):
    """Return (asset row or None, reading rows, rejected attributes) of entity ``i``; raise :class:`_Bad`."""
    if not isinstance(e, dict):
        raise _Bad("expected an NGSI entity (an object with id and type)")
    etype, eid = _entity_type(e.get("type")), e.get("id")
    if not isinstance(eid, str) or not eid.strip():
        raise _Bad("no id")
    kind, attr_map, refs, *period = TYPES[etype]
    counted = set(period[1]) if len(period) > 1 else set()  # counts over the observed period: made per hour
    ref = next((e[r] for r in refs if r in e), None)
    aid = _short(ref) if ref is not None else _short(eid)
    if not aid or len(aid) > 128 or not aid.isprintable():
        raise _Bad(f"asset id {_shown(aid)} is not 1 to 128 printable characters")
    loc = plain(e.get("location"))
    when = plain(e.get("dateObservedTo") or e.get("dateObserved"))
    for attr in attr_map:  # NGSI-LD may carry the time on each property
        if when is None and isinstance(e.get(attr), dict) and "observedAt" in e[attr]:
            when = e[attr]["observedAt"]
    if when is None:
        raise _Bad("no dateObserved")
    ts = _time(source, i, "dateObserved", when, timezone, ts_format)
    asset = None
    if isinstance(loc, dict) and loc.get("type"):
        name = plain(e.get("name", aid))
        asset = {"id": aid, "kind": kind, "name": (name if isinstance(name, str) else aid)[:200],
                 "geometry": _location(loc), "attributes": {"source": "ngsi", "entity": eid[:500]}, "line": i}
    elif loc is not None:
        raise _Bad("unreadable location (GeoJSON expected)")
    span = None
    since = period[0] if period else None  # an observation over a period (a flow count): its span
    if since and e.get(since) and e.get("dateObservedTo"):
        t0 = _time(source, i, since, plain(e[since]), timezone, ts_format)
        span = ts - t0 if ts > t0 else None
    rows, bad = [], []
    for attr, metric in attr_map.items():
        if attr not in e:
            continue
        raw = plain(e[attr])
        try:
            value = float(raw) if isinstance(raw, (int, float, str)) and not isinstance(raw, bool) else None
        except (ValueError, OverflowError):
            value = None
        if value is None:
            bad.append((i, e, f"{attr} {_shown(raw)} is not a number"))
            continue
        try:
            # no unitCode: the model's unit, else (a count such as free spaces) the metric's own
            value = float(converter(metric, _unit(e[attr]) or DEFAULT_UNITS.get(metric, ""), attr)(value))
        except ImportProblem as exc:
            bad.append((i, e, str(exc)))
            continue
        if metric in counted and span:
            value = value * 3600.0 / span
        rows.append({"asset": aid, "metric": metric, "ts": ts, "value": value, "line": i})
    return asset, rows, bad


def import_ngsi(conn: Connection, data, source: str, timezone: str | None = None,
                allow_outside: bool = False, first: int = 1, ts_format: str | None = None) -> ImportReport:
    """Import NGSI entities (a parsed body) in the open transaction ``conn``.

    Valid entities are stored, the others rejected one by one with their reason. An entity that
    would add an asset outside every district of the city is rejected unless ``allow_outside``
    (then the asset is kept without a district). A body that holds no entities at all raises
    :class:`ImportProblem`.
    """
    report = ImportReport("ngsi", source)
    ents = entities_of(source, data)
    asset_rows, rows, bad = parse_entities(source, ents, timezone, report, first, ts_format)
    known = {r.id for r in conn.execute(select(assets.c.id))}
    new = {}
    for a in asset_rows:
        if a["id"] not in known and a["id"] not in new:
            new[a["id"]] = a
    if new:
        import geopandas as gpd

        frame = gpd.GeoDataFrame([{**a, "district_hint": None} for a in new.values()], geometry="geometry", crs=4326)
        if not allow_outside:
            frame, rows, outside = _drop_outside(conn, source, frame, rows, ents, first)
            bad += outside
            report.count("entities", -len(outside))
        if len(frame):
            sub = ImportReport("assets", source)
            write_assets(conn, frame, [], sub, source)
            report.count("assets added", sub.counts.get("inserted", 0))
            report.warnings += sub.warnings
    store_rejections(conn, source, sorted(bad, key=lambda b: b[0]), report)
    write_readings(conn, rows, [], report, source)
    return report


def _drop_outside(conn: Connection, source: str, frame, rows: pd.DataFrame, ents: list, first: int = 1):
    """Return (new assets inside the city, their readings, rejections of the entities outside it)."""
    from dashboard.city import assign_districts
    from dashboard.importers.assets import stored_districts

    dist = stored_districts(conn)
    if dist.empty:
        raise ImportProblem(f"{source}: the store has no districts yet: import boundaries first")
    out = assign_districts(frame, dist).isna().to_numpy()
    if not out.any():
        return frame, rows, []
    where = {r.id: r.geometry.representative_point() for r in frame[out].itertuples()}
    lines = sorted(set(frame.loc[out, "line"]) | set(rows.loc[rows["asset"].isin(list(where)), "line"]))
    by_line = {int(ln): a for a, ln in zip(frame.loc[out, "id"], frame.loc[out, "line"])}
    by_line.update({int(r.line): r.asset for r in rows[rows["asset"].isin(list(where))].itertuples()})
    bad = []
    for ln in lines:
        p = where[by_line[int(ln)]]
        why = (f"entity {ln}{_ident(ents[int(ln) - first])}: location {p.x:.5f}, {p.y:.5f} is outside every district "
               "of the city (to keep it anyway: --allow-outside, or PANORAMA_NGSI_ALLOW_OUTSIDE=true for live input)")
        bad.append((int(ln), ents[int(ln) - first], why))
    return frame[~out], rows[~rows["line"].isin(lines)], bad


def import_each(engine, data, source: str, timezone: str | None = None,
                allow_outside: bool = False, prepare=None) -> ImportReport:
    """Import a body in one transaction; should the store refuse it (not an outage), entity by entity.

    A value the store refuses or an error no check foresaw would otherwise cost every entity of the
    body: each entity is then imported in a transaction of its own, and one that still fails is
    rejected alone with the reason. :class:`ImportProblem` and store outages (or a store busy with
    another writer) are raised. ``prepare(conn)``, if given, is applied to each transaction first.
    """
    from dashboard.importers import run_import
    from dashboard.store import STORE_OUTAGES

    held = (ImportProblem, *STORE_OUTAGES)
    prep = prepare or (lambda conn: conn)
    try:
        return run_import(engine, lambda conn: import_ngsi(prep(conn), data, source, timezone, allow_outside))
    except held:
        raise
    except Exception as exc:  # noqa: BLE001 - narrowed down below, entity by entity
        log.warning("%s: importing the body failed (%s); importing it entity by entity", source, exc)
    report = ImportReport("ngsi", source)
    for i, e in enumerate(entities_of(source, data), start=1):
        try:
            sub = run_import(engine, lambda conn, e=e, i=i: import_ngsi(prep(conn), [e], source, timezone, allow_outside, i))
        except held:
            raise
        except Exception as exc:  # noqa: BLE001 - this entity's content: it is rejected alone
            why = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
            reason = f"entity {i}{_ident(e)}: the store refused it ({type(exc).__name__}: {why[:200]})"
            sub = run_import(engine, lambda conn, e=e, i=i, r=reason: reject_body(conn, source, e, r, i))
        for k, n in sub.counts.items():
            report.count(k, n)
        report.warnings += sub.warnings
        for line, reason in sub.problems:
            report.problem(line, reason)
    return report


def reject_body(conn: Connection, source: str, raw, reason: str, line: int | None = None) -> ImportReport:
    """Keep input that cannot be imported (not JSON, not a notification, refused) as one rejection."""
    report = ImportReport("ngsi", source)
    store_rejections(conn, source, [(line, raw, reason)], report)
    return report


def import_ngsi_file(conn: Connection, path, timezone: str | None = None, ts_format: str | None = None,
                     allow_outside: bool = False) -> ImportReport:
    """Import the NGSI entities of a JSON / JSON-LD file."""
    return import_ngsi(conn, load_json(path), str(path), timezone, allow_outside, ts_format=ts_format)


def dumps(report: ImportReport) -> str:
    """Return the report as JSON text."""
    return json.dumps(report.as_json(), ensure_ascii=False)
