"""Assets (road segments, stations, meters) from CSV with lon/lat or from any vector file."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping, shape
from sqlalchemy import Connection, insert, select

from dashboard.city import assign_districts
from dashboard.importers import ImportProblem, ImportReport, pick_column, read_table, store_rejections
from dashboard.importers.boundaries import read_vector, to_wgs84
from dashboard.metrics import ASSET_KINDS
from dashboard.store.schema import assets, districts

VECTOR_SUFFIXES = {".geojson", ".json", ".topojson", ".gpkg", ".shp", ".zip", ".fgb"}
LON = ("lon", "lng", "longitude", "x", "long")
LAT = ("lat", "latitude", "y")


def stored_districts(conn: Connection) -> gpd.GeoDataFrame:
    """Return the stored districts as a GeoDataFrame (id, geometry) in EPSG:4326."""
    rows = conn.execute(select(districts.c.id, districts.c.geometry)).all()
    return gpd.GeoDataFrame({"id": [r.id for r in rows]},
                            geometry=[shape(json.loads(r.geometry)) for r in rows], crs=4326)


def _value(v):
    """Return a CSV cell as a number where it is one."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return v.item() if hasattr(v, "item") else v
    s = str(v).strip()
    try:
        f = float(s)
        return int(f) if f.is_integer() and "." not in s else f
    except ValueError:
        return s


def read_assets(path, kind: str | None = None, id_field: str | None = None, name_field: str | None = None,
                lon_field: str | None = None, lat_field: str | None = None, kind_field: str | None = None,
                delimiter: str = ",", encoding: str = "utf-8", layer: str | None = None,
                crs: str | None = None, report: ImportReport | None = None):
    """Read assets; return (GeoDataFrame id, kind, name, attributes, line, geometry; bad rows; report).

    Bad rows are (line, raw, reason) for rows without a usable location.
    """
    path = Path(path)
    report = report or ImportReport("assets", str(path))
    bad: list[tuple[int, dict, str]] = []
    if path.suffix.lower() in VECTOR_SUFFIXES:
        frame = read_vector(path, layer)
        frame["line"] = np.arange(len(frame))  # feature index
        report.fields = [c for c in frame.columns if c not in ("geometry", "line")]
        frame = to_wgs84(path, frame, crs, report)
        for i, g in zip(frame["line"], frame.geometry):
            if g is None or g.is_empty:
                raise ImportProblem(f"{path}: feature {i}: no geometry")
    else:
        frame = read_table(path, delimiter, encoding)
        report.fields = [c for c in frame.columns if c != "line"]
        lonc = pick_column(path, frame.columns, lon_field, LON, "longitude (--lon-field)")
        latc = pick_column(path, frame.columns, lat_field, LAT, "latitude (--lat-field)")
        lon = pd.to_numeric(frame[lonc].str.replace(",", ".", regex=False), errors="coerce").to_numpy()
        lat = pd.to_numeric(frame[latc].str.replace(",", ".", regex=False), errors="coerce").to_numpy()
        ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        for i in np.flatnonzero(~ok):
            r = frame.iloc[i]
            bad.append((int(r["line"]), r.drop("line").to_dict(),
                        f"location ({r[lonc]!r}, {r[latc]!r}) is not a longitude/latitude pair"))
        frame = frame[ok].drop(columns=[lonc, latc])
        frame = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon[ok], lat[ok]), crs=4326)
        report.crs = "EPSG:4326"
    report.count("read", len(frame) + len(bad))
    idc = pick_column(path, frame.columns, id_field, ("id", "asset_id", "station_id", "segment_id", "code"),
                      "asset id (--id-field)")
    namec = pick_column(path, frame.columns, name_field, ("name", "label", "nom"), "name", required=False)
    kindc = pick_column(path, frame.columns, kind_field, ("kind",), "kind", required=False) if not kind else None
    if not kind and not kindc:
        raise ImportProblem(f"{path}: no 'kind' column; pass --kind ({', '.join(ASSET_KINDS)})")
    kinds = pd.Series(kind, index=frame.index) if kind else frame[kindc].astype(str).str.strip()
    unknown = sorted(set(kinds) - set(ASSET_KINDS))
    if unknown:
        where = frame.loc[kinds == unknown[0], "line"].iloc[0]
        raise ImportProblem(f"{path}: {'feature' if path.suffix.lower() in VECTOR_SUFFIXES else 'line'} "
                            f"{where}: unknown asset kind {unknown[0]!r} (known: {', '.join(ASSET_KINDS)})")
    ids = frame[idc].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    if (ids == "").any():
        raise ImportProblem(f"{path}: line {frame.loc[ids == '', 'line'].iloc[0]}: empty asset id")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        lines = frame.loc[ids == dup.iloc[0], "line"].tolist()
        raise ImportProblem(f"{path}: duplicate asset id {dup.iloc[0]!r} at "
                            f"{'features' if path.suffix.lower() in VECTOR_SUFFIXES else 'lines'} "
                            f"{', '.join(map(str, lines))}")
    skip = {idc, namec, kindc, "geometry", "line", "district", "district_id"}
    attr_cols = [c for c in frame.columns if c not in skip]
    out = gpd.GeoDataFrame({
        "id": ids.to_numpy(), "kind": kinds.to_numpy(),
        "name": frame[namec].astype(str).to_numpy() if namec else ids.to_numpy(),
        "district_hint": frame["district"].to_numpy() if "district" in frame.columns else None,
        "attributes": [{c: _value(r[c]) for c in attr_cols if _value(r[c]) not in (None, "")}
                       for _, r in frame.iterrows()],
        "line": frame["line"].to_numpy()}, geometry=frame.geometry.to_numpy(), crs=4326)
    return out, bad, report


def write_assets(conn: Connection, frame: gpd.GeoDataFrame, bad: list, report: ImportReport,
                 source: str) -> ImportReport:
    """Assign districts (point in polygon, line midpoint), then upsert the assets by id."""
    dist = stored_districts(conn)
    if dist.empty:
        raise ImportProblem(f"{source}: the store has no districts yet: import boundaries first")
    district = assign_districts(frame, dist) if len(frame) else pd.Series([], dtype=object)
    known = set(dist["id"])
    if frame["district_hint"].notna().any():
        hint = frame["district_hint"].astype(str).str.strip()
        use = hint.isin(known).to_numpy()
        district = district.where(~use, hint)
    outside = [(int(ln), aid) for ln, aid, d in zip(frame["line"], frame["id"], district) if d is None]
    if outside:
        report.count("outside", len(outside))
        report.warnings.append(f"{len(outside)} asset(s) outside every district (stored without a district): "
                               + ", ".join(f"{a} (line/feature {ln})" for ln, a in outside[:10]))
    stored = {r.id: dict(r._mapping) for r in conn.execute(
        select(assets.c.id, assets.c.kind, assets.c.district_id, assets.c.name, assets.c.lon, assets.c.lat,
               assets.c.geometry, assets.c.attributes))}
    for r, d in zip(frame.itertuples(), district):
        g = r.geometry
        rep = g.interpolate(0.5, normalized=True) if g.geom_type.endswith("LineString") else \
            (g if g.geom_type == "Point" else g.representative_point())
        row = dict(id=r.id, kind=r.kind, district_id=d, name=r.name, lon=round(rep.x, 6), lat=round(rep.y, 6),
                   geometry=json.dumps(mapping(shapely.set_precision(g, 1e-7)), separators=(",", ":")),
                   attributes=r.attributes)
        old = stored.get(r.id)
        if old is None:
            conn.execute(insert(assets).values(**row))
            report.count("inserted")
        elif any(old[k] != row[k] for k in row):
            conn.execute(assets.update().where(assets.c.id == r.id).values(**row))
            report.count("updated")
        else:
            report.count("unchanged")
    store_rejections(conn, source, bad, report)
    return report


def import_assets(conn: Connection, path, **options) -> ImportReport:
    """Read, check and upsert assets in the open transaction ``conn``."""
    frame, bad, report = read_assets(path, **options)
    return write_assets(conn, frame, bad, report, str(path))
