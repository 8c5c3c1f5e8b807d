"""FIWARE NGSI-LD and NGSI v2 entities: AirQualityObserved and TrafficFlowObserved.

Key-values or normalized, one entity, a list, or a notification (``{"data": [...]}``). Numbers are
taken as reals whatever the schema says (the AirQualityObserved example has ``tsp: 73.3`` where its
schema says integer). Each entity's station or road segment becomes an asset when it is new (its
district by point in polygon); its measurements become readings through the validated path.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from shapely.geometry import shape
from sqlalchemy import Connection, select

from dashboard.importers import ImportProblem, ImportReport, store_rejections
from dashboard.importers.assets import write_assets
from dashboard.importers.readings import parse_times, write_readings
from dashboard.importers.requests import load_json, plain
from dashboard.importers.units import converter
from dashboard.store.schema import assets

#: NGSI type -> (asset kind, attribute -> metric, attributes naming the asset).
TYPES = {
    "AirQualityObserved": ("aq_station", {"pm25": "pm25", "pm2_5": "pm25", "pm10": "pm10", "so2": "so2",
                                          "no2": "no2", "co": "co", "o3": "o3", "temperature": "temp_c"},
                           ("refDevice", "refPointOfInterest")),
    "TrafficFlowObserved": ("road_segment", {"averageVehicleSpeed": "speed_kmh", "intensity": "flow_vph"},
                            ("refRoadSegment", "refDevice")),
}
#: Units of the FIWARE models when an attribute carries no unitCode.
DEFAULT_UNITS = {"pm25": "µg/m³", "pm10": "µg/m³", "so2": "µg/m³", "no2": "µg/m³", "co": "µg/m³",
                 "o3": "µg/m³", "temp_c": "°C", "speed_kmh": "km/h", "flow_vph": "veh/h"}


def entities_of(source: str, data) -> list[dict]:
    """Return the entities of a file or notification body."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise ImportProblem(f"{source}: expected an NGSI entity, a list of entities or a notification")
    return data


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


def parse_entities(source: str, entities: list[dict], timezone: str | None, report: ImportReport,
                   ts_format: str | None = None):
    """Return (asset rows, reading rows, rejected rows) of the entities; unknown types raise.

    ``ts_format``: strftime format of times that are not ISO 8601 (e.g. an exporter's own).
    """
    asset_rows, readings, bad = [], [], []
    for i, e in enumerate(entities, start=1):
        etype, eid = e.get("type"), e.get("id")
        if etype not in TYPES:
            raise ImportProblem(f"{source}: entity {i} ({eid!r}): unknown NGSI type {etype!r} "
                                f"(supported: {', '.join(TYPES)})")
        if not eid:
            raise ImportProblem(f"{source}: entity {i}: no id")
    for i, e in enumerate(entities, start=1):
        etype, eid = e.get("type"), e.get("id")
        kind, attr_map, refs = TYPES[etype]
        ref = next((e[r] for r in refs if r in e), None)
        aid = _short(ref) if ref is not None else _short(eid)
        loc = plain(e.get("location"))
        when = plain(e.get("dateObservedTo") or e.get("dateObserved"))
        for attr in attr_map:  # NGSI-LD may carry the time on each property
            if when is None and isinstance(e.get(attr), dict) and "observedAt" in e[attr]:
                when = e[attr]["observedAt"]
        if when is None:
            bad.append((i, e, "no dateObserved"))
            continue
        try:
            ts, dst = parse_times(source, pd.Series([str(when)]), np.array([i]), timezone, ts_format)
        except ImportProblem as exc:
            why = str(exc).split(f": line {i}: ", 1)[-1]
            raise ImportProblem(f"{source}: entity {i} ({eid!r}): dateObserved: {why}") from None
        if dst:
            bad.append((i, e, dst[0][1]))
            continue
        if isinstance(loc, dict) and loc.get("type"):
            try:
                geom = shape(loc)
            except Exception:  # noqa: BLE001
                raise ImportProblem(f"{source}: entity {i} ({eid!r}): unreadable location") from None
            asset_rows.append({"id": aid, "kind": kind, "name": str(plain(e.get("name", aid))), "geometry": geom,
                               "attributes": {"source": "ngsi", "entity": str(eid)}, "line": i})
        span = None
        if etype == "TrafficFlowObserved" and e.get("dateObservedFrom") and e.get("dateObservedTo"):
            t2, _ = parse_times(source, pd.Series([str(plain(e["dateObservedFrom"])), str(plain(e["dateObservedTo"]))]),
                                np.array([i, i]), timezone, ts_format)
            span = float(t2[1] - t2[0]) if np.isfinite(t2).all() and t2[1] > t2[0] else None
        for attr, metric in attr_map.items():
            if attr not in e:
                continue
            raw = plain(e[attr])
            try:
                value = float(raw)
            except (TypeError, ValueError):
                bad.append((i, e, f"{attr} {raw!r} is not a number"))
                continue
            unit = _unit(e[attr]) or DEFAULT_UNITS[metric]
            value = float(converter(metric, unit, f"{source}: entity {i} ({eid!r}) {attr}")(value))
            if metric == "flow_vph" and span:
                value = value * 3600.0 / span
            readings.append({"asset": aid, "metric": metric, "ts": ts[0], "value": value, "line": i})
        report.count("entities")
    return asset_rows, pd.DataFrame(readings, columns=["asset", "metric", "ts", "value", "line"]), bad


def import_ngsi(conn: Connection, data, source: str, timezone: str | None = None,
                ts_format: str | None = None) -> ImportReport:
    """Import NGSI entities (a parsed body) in the open transaction ``conn``."""
    report = ImportReport("ngsi", source)
    ents = entities_of(source, data)
    asset_rows, rows, bad = parse_entities(source, ents, timezone, report, ts_format)
    known = {r.id for r in conn.execute(select(assets.c.id))}
    new = {}
    for a in asset_rows:
        if a["id"] not in known and a["id"] not in new:
            new[a["id"]] = a
    if new:
        import geopandas as gpd

        frame = gpd.GeoDataFrame([{**a, "district_hint": None} for a in new.values()], geometry="geometry", crs=4326)
        sub = ImportReport("assets", source)
        write_assets(conn, frame, [], sub, source)
        report.count("assets added", sub.counts.get("inserted", 0))
        report.warnings += sub.warnings
    store_rejections(conn, source, bad, report)
    write_readings(conn, rows, [], report, source)
    return report


def import_ngsi_file(conn: Connection, path, timezone: str | None = None, ts_format: str | None = None) -> ImportReport:
    """Import the NGSI entities of a JSON / JSON-LD file."""
    return import_ngsi(conn, load_json(path), str(path), timezone, ts_format)


def dumps(report: ImportReport) -> str:
    """Return the report as JSON text."""
    return json.dumps(report.as_json(), ensure_ascii=False)
