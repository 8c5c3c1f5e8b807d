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
#: GeoJSON files up to this size keep their properties exactly as written (parsed once more as JSON).
MAX_JSON_PROPERTIES_BYTES = 256 << 20
#: Longest --id-template.
MAX_TEMPLATE = 200
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


def _plain(v):
    """Return a typed cell of a vector file (GeoPackage, Shapefile) as a JSON value (None for a gap)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if v is None or v is pd.NaT or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return None
    if isinstance(v, np.generic):
        return _plain(v.item())
    if hasattr(v, "isoformat"):  # datetime, date, time, pandas Timestamp
        return v.isoformat()
    return v


def _properties(path: Path, frame: gpd.GeoDataFrame) -> list[dict]:
    """Return each feature's properties as the file has them (gaps left out).

    A GeoJSON file's own JSON properties keep their types (integers, booleans, nested objects and
    lists); other formats give their typed columns.
    """
    if path.suffix.lower() in (".geojson", ".json") and path.stat().st_size <= MAX_JSON_PROPERTIES_BYTES:
        try:
            raw = json.loads(path.read_bytes(), parse_constant=lambda _c: None)
            feats = raw.get("features") if isinstance(raw, dict) and raw.get("type") == "FeatureCollection" \
                else None
        except ValueError:  # not JSON GDAL reads the same way (e.g. a GeoJSON sequence): use its columns
            feats = None
        if isinstance(feats, list) and len(feats) == len(frame) and all(isinstance(f, dict) for f in feats):
            out = []
            for f in feats:
                p = f.get("properties") if isinstance(f.get("properties"), dict) else {}
                if f.get("id") is not None and "id" not in p:  # the feature's own id, a column for GDAL too
                    p = {"id": f["id"], **p}
                out.append({str(k): v for k, v in p.items() if _plain(v) is not None})
            return out
    cols = [c for c in frame.columns if c != "geometry"]
    return [{c: v for c, v in zip(cols, map(_plain, vals)) if v is not None}
            for vals in zip(*(frame[c].tolist() for c in cols))] if cols else [{} for _ in range(len(frame))]


def _id_text(v) -> str:
    """Return an id cell as text: integral floats without '.0', None and NaN as ''."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()


def templated_ids(path, ids: pd.Series, props: list[dict], template: str, lines: list, where: str) -> pd.Series:
    """Return ids from ``template``: ``{field}`` is a property of the feature (row), ``{n}`` numbers the
    features that share an id, 1, 2, 3… in file order (the sections of one line).
    """
    import string

    if len(template) > MAX_TEMPLATE:
        raise ImportProblem(f"{path}: --id-template has {len(template)} characters (at most {MAX_TEMPLATE})")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ImportProblem(f"{path}: --id-template {template!r}: {exc}") from exc
    known = set().union(*props) if props else set()
    for f in fields:
        if f == "" or (f != "n" and f not in known):
            raise ImportProblem(f"{path}: --id-template {template!r}: no property {f!r}; use {{n}} (the "
                                f"running number per shared id) or one of {', '.join(sorted(map(str, known)))}")
    n = ids.groupby(ids, sort=False).cumcount().to_numpy() + 1
    out = []
    for line, p, k in zip(lines, props, n):
        values = {f: _id_text(p.get(f)) for f in fields if f != "n"}
        empty = [f for f, v in values.items() if v == ""]
        if empty:
            raise ImportProblem(f"{path}: {where} {line}: {empty[0]!r} is empty, and --id-template needs it")
        try:
            out.append(template.format(**values, n=k).strip())
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ImportProblem(f"{path}: --id-template {template!r}: {exc}") from exc
    return pd.Series(out, index=ids.index)


def read_assets(path, kind: str | None = None, id_field: str | None = None, name_field: str | None = None,
                lon_field: str | None = None, lat_field: str | None = None, kind_field: str | None = None,
                delimiter: str = ",", encoding: str = "utf-8", layer: str | None = None,
                crs: str | None = None, id_template: str | None = None, report: ImportReport | None = None):
    """Read assets; return (GeoDataFrame id, kind, name, attributes, line, geometry; bad rows; report).

    Bad rows are (line, raw, reason) for rows without a usable location. ``id_template`` makes ids
    from properties, e.g. ``"{id}-{n}"`` for a line cut into sections that share the id ``id``
    (``{n}`` numbers the features of one id, 1, 2, 3… in file order); the shared id stays in the
    attributes. A vector file keeps its properties (GeoJSON: exactly as written) in ``attributes``.
    """
    path = Path(path)
    report = report or ImportReport("assets", str(path))
    bad: list[tuple[int, dict, str]] = []
    vector = path.suffix.lower() in VECTOR_SUFFIXES
    where = "feature" if vector else "line"
    if vector:
        enc = None if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        frame = read_vector(path, layer, enc, report)
        props = _properties(path, frame)
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
        cols = [c for c in frame.columns if c not in ("geometry", "line")]
        props = [{c: v for c in cols if (v := _value(r[c])) not in (None, "")} for _, r in frame.iterrows()]
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
        at = frame.loc[kinds == unknown[0], "line"].iloc[0]
        raise ImportProblem(f"{path}: {where} {at}: unknown asset kind {unknown[0]!r} "
                            f"(known: {', '.join(ASSET_KINDS)})")
    ids = frame[idc].map(_id_text)
    if id_template:
        ids = templated_ids(path, ids, props, id_template, frame["line"].tolist(), where)
    if (ids == "").any():
        raise ImportProblem(f"{path}: {where} {frame.loc[ids == '', 'line'].iloc[0]}: empty asset id")
    longest = assets.c.id.type.length
    if (ids.str.len() > longest).any():
        at = ids.str.len() > longest
        raise ImportProblem(f"{path}: {where} {frame.loc[at, 'line'].iloc[0]}: asset id {ids[at].iloc[0][:20]!r}… "
                            f"is longer than {longest} characters")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        lines = frame.loc[ids == dup.iloc[0], "line"].tolist()
        hint = "; the template gives one id to several features: add {n}" if id_template else \
            (f"; a line cut into sections? number them with --id-template \"{{{idc}}}-{{n}}\"" if vector else "")
        shown = ", ".join(map(str, lines[:10])) + (f" … ({len(lines)} in all)" if len(lines) > 10 else "")
        raise ImportProblem(f"{path}: duplicate asset id {dup.iloc[0]!r} at {where}s {shown}{hint}")
    skip = {namec, kindc, "district", "district_id"} | ({idc} if not id_template else set())
    out = gpd.GeoDataFrame({
        "id": ids.to_numpy(), "kind": kinds.to_numpy(),
        "name": frame[namec].astype(str).to_numpy() if namec else ids.to_numpy(),
        "district_hint": frame["district"].to_numpy() if "district" in frame.columns else None,
        "attributes": [{k: v for k, v in p.items() if k not in skip} for p in props],
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
