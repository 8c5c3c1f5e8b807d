"""District boundaries from GeoJSON, TopoJSON, GeoPackage or Shapefile, in any CRS."""
from __future__ import annotations

import codecs
import json
import warnings
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from shapely.geometry import mapping
from sqlalchemy import Connection, insert, select

from dashboard.importers import ImportProblem, ImportReport, pick_column
from dashboard.store.schema import districts, meta

ID_FIELDS = ("id", "district_id", "code", "adcode", "fid", "ID", "CODE")
NAME_FIELDS = ("name", "name_en", "district", "nom", "NAME", "label")
#: Equal-area CRS used for district areas.
AREA_CRS = 6933
#: Largest vector file the importers read (a city's districts or assets, not a continent's).
MAX_VECTOR_BYTES = 1 << 30


def vector_layers(path: Path) -> list[tuple[str, str | None]]:
    """Return the layers of a vector file: (name, geometry type or None for a table without geometry)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [(str(n), None if t is None else str(t)) for n, t in pyogrio.list_layers(path)]
    except Exception as exc:  # noqa: BLE001 - GDAL errors come in many classes
        raise ImportProblem(f"{path}: cannot read as a vector file "
                            f"(truncated or not GeoJSON/TopoJSON/GeoPackage/Shapefile?): {exc}") from exc


def _listed(layers: list[tuple[str, str | None]]) -> str:
    """Return layers as text: ``districts (MultiPolygon), census (no geometry)``."""
    return ", ".join(f"{n} ({t or 'no geometry'})" for n, t in layers)


def _pick_layer(path: Path, layer: str | None) -> str | None:
    """Return the layer to read: ``layer`` if the file has it, else the only layer with geometries."""
    layers = vector_layers(path)
    names = [n for n, _ in layers]
    listed = _listed(layers)
    if layer is not None:
        if layer not in names:
            raise ImportProblem(f"{path}: no layer {layer!r}; the layers are {listed}")
        return layer
    spatial = [n for n, t in layers if t is not None]
    if len(spatial) > 1:
        raise ImportProblem(f"{path}: {len(spatial)} layers with geometries: {listed}; pick one with --layer")
    return spatial[0] if spatial else None


def read_vector(path: Path, layer: str | None = None, encoding: str | None = None,
                report: ImportReport | None = None) -> gpd.GeoDataFrame:
    """Read any vector file GDAL knows (GeoJSON, TopoJSON, GeoPackage, Shapefile, …).

    A file with several layers needs ``layer``; ``encoding`` is that of the text (default: what the file
    declares, UTF-8 for GeoJSON). A Shapefile that declares no encoding (no ``.cpg``) and has non-ASCII
    text gets a warning in ``report``: GDAL then reads it as ISO-8859-1.
    """
    path = Path(path)
    if not path.exists():
        raise ImportProblem(f"{path}: no such file")
    if path.is_file() and path.stat().st_size > MAX_VECTOR_BYTES:
        raise ImportProblem(f"{path}: {path.stat().st_size / 2**20:,.1f} MiB, more than the "
                            f"{MAX_VECTOR_BYTES / 2**20:,.1f} MiB a vector file may have; split it")
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ImportProblem(f"{path}: unknown encoding {encoding!r} (e.g. utf-8, gbk, cp1252, latin-1)") from None
    layer = _pick_layer(path, layer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = gpd.read_file(path, layer=layer, engine="pyogrio", **({"encoding": encoding} if encoding else {}))
    except UnicodeDecodeError as exc:
        raise ImportProblem(f"{path}: text is not valid {encoding or 'UTF-8'} (byte {exc.start}: {exc.reason}); "
                            "pass --encoding (e.g. gbk, cp1252, latin-1)") from exc
    except Exception as exc:  # noqa: BLE001 - GDAL errors come in many classes
        raise ImportProblem(f"{path}: cannot read as a vector file "
                            f"(truncated or not GeoJSON/TopoJSON/GeoPackage/Shapefile?): {exc}") from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        raise ImportProblem(f"{path}: layer {layer!r} is a table without geometries; the layers are "
                            + _listed(vector_layers(path)))
    if (report is not None and not encoding and path.suffix.lower() == ".shp"
            and not path.with_suffix(".cpg").exists() and not path.with_suffix(".CPG").exists()):
        text = frame.select_dtypes(exclude=["number", "bool", "datetime"]).drop(columns="geometry", errors="ignore")
        if any(isinstance(v, str) and not v.isascii() for col in text for v in text[col]):
            report.warnings.append(f"{path}: no .cpg file names the text encoding, read as ISO-8859-1; "
                                   "if names look garbled pass --encoding (e.g. gbk, cp1252)")
    return frame


def to_wgs84(path, frame: gpd.GeoDataFrame, crs: str | None, report: ImportReport) -> gpd.GeoDataFrame:
    """Reproject ``frame`` to EPSG:4326; refuse coordinates that cannot be longitude/latitude."""
    if frame.crs is None:
        if crs:
            frame = frame.set_crs(crs)
        else:
            minx, miny, maxx, maxy = frame.total_bounds
            if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
                raise ImportProblem(f"{path}: no CRS declared and coordinates ({minx:.0f}, {miny:.0f}) … "
                                    f"({maxx:.0f}, {maxy:.0f}) are not longitude/latitude; pass --crs")
            report.warnings.append(f"{path}: no CRS declared; coordinates look like lon/lat, assumed EPSG:4326")
            frame = frame.set_crs(4326)
    elif crs and frame.crs != gpd.GeoSeries(crs=crs).crs:
        raise ImportProblem(f"{path}: the file declares {frame.crs.to_string()} but --crs says {crs}")
    report.crs = frame.crs.to_string()
    if frame.crs.to_epsg() != 4326:
        try:
            frame = frame.to_crs(4326)
        except Exception as exc:  # noqa: BLE001
            raise ImportProblem(f"{path}: cannot reproject from {report.crs} to EPSG:4326: {exc}") from exc
    b = frame.total_bounds
    eps = 1e-6
    if len(frame) and not (-180 - eps <= b[0] <= b[2] <= 180 + eps and -90 - eps <= b[1] <= b[3] <= 90 + eps):
        raise ImportProblem(f"{path}: coordinates ({b[0]:.6g}, {b[1]:.6g}) … ({b[2]:.6g}, {b[3]:.6g}) are not "
                            f"longitude/latitude in {report.crs}: the declared CRS is wrong (projected "
                            "coordinates labelled as EPSG:4326?); fix the file or pass --crs")
    return frame


def _polygonal(geom):
    """Return the polygonal part of a repaired geometry (or None)."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return None
    return shapely.union_all(parts)


def read_boundaries(path, id_field: str | None = None, name_field: str | None = None,
                    population_field: str | None = None, layer: str | None = None, crs: str | None = None,
                    dissolve: bool = False, encoding: str | None = None,
                    report: ImportReport | None = None) -> tuple[gpd.GeoDataFrame, ImportReport]:
    """Read and check district boundaries; return rows ready for the ``districts`` table.

    Parameters
    ----------
    path : a GeoJSON, TopoJSON, GeoPackage or Shapefile
    id_field, name_field, population_field : property names (default: guessed, see ``ID_FIELDS``)
    layer : the layer of a multi-layer file (GeoPackage); required when it has several
    crs : the CRS of a file that declares none
    dissolve : merge the features that share an id into one district (their union); otherwise
        a shared id is refused
    encoding : the text encoding of a file that does not declare it (a Shapefile without ``.cpg``)

    Returns
    -------
    (GeoDataFrame with id, name, population, geometry in EPSG:4326, report)
    """
    report = report or ImportReport("boundaries", str(path))
    frame = read_vector(Path(path), layer, encoding, report)
    report.fields = [c for c in frame.columns if c != "geometry"]
    report.count("features", len(frame))
    if frame.empty:
        raise ImportProblem(f"{path}: no features")
    idc = pick_column(path, frame.columns, id_field, ID_FIELDS, "district id (--id-field)")
    namec = pick_column(path, frame.columns, name_field, NAME_FIELDS, "name (--name-field)", required=False)
    popc = pick_column(path, frame.columns, population_field, ("population", "pop"), "population",
                       required=False)
    frame = to_wgs84(path, frame, crs, report)
    ids = frame[idc].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else
                         str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    longest = districts.c.id.type.length
    for i, v in enumerate(ids):
        if v == "":
            raise ImportProblem(f"{path}: feature {i}: empty {idc!r}")
        if len(v) > longest:
            raise ImportProblem(f"{path}: feature {i}: district id {v[:20]!r}… has {len(v)} characters, "
                                f"more than {longest}; pick a shorter field with --id-field")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup) and not dissolve:
        first = dup.iloc[0]
        at = [i for i, v in enumerate(ids) if v == first]
        raise ImportProblem(f"{path}: duplicate district id {first!r} at features {', '.join(map(str, at))} "
                            f"({dup.nunique()} duplicated id(s)); pick a unique field with --id-field, "
                            "or pass --dissolve to merge the features of each id into one district")
    geoms = []
    for i, (did, g) in enumerate(zip(ids, frame.geometry)):
        if g is None or g.is_empty:
            raise ImportProblem(f"{path}: feature {i} (id {did!r}): no geometry")
        if g.geom_type not in ("Polygon", "MultiPolygon"):
            raise ImportProblem(f"{path}: feature {i} (id {did!r}): a {g.geom_type}, districts must be polygons")
        if not g.is_valid:
            why = shapely.is_valid_reason(g)
            fixed = _polygonal(shapely.make_valid(g))
            if fixed is None:
                raise ImportProblem(f"{path}: feature {i} (id {did!r}): broken geometry ({why}) "
                                    "that cannot be repaired")
            report.warnings.append(f"{path}: feature {i} (id {did!r}): invalid geometry ({why}) repaired")
            report.count("repaired")
            g = fixed
        geoms.append(g)
    out = gpd.GeoDataFrame({"id": ids.to_numpy()}, geometry=geoms, crs=4326)
    out["name"] = frame[namec].astype(str).str.strip().to_numpy() if namec else out["id"]
    if popc:
        out["population"] = pd.to_numeric(frame[popc], errors="coerce").to_numpy()
    else:
        out["population"] = None
    if len(dup):
        out = _dissolve(path, out, report)
    out["area_km2"] = out.geometry.to_crs(AREA_CRS).area.to_numpy() / 1e6
    return out, report


def _dissolve(path, frame: gpd.GeoDataFrame, report: ImportReport) -> gpd.GeoDataFrame:
    """Merge the features that share an id: the union of their polygons, the first name.

    The population of a district whose parts all carry the same number is that number (a district
    cut into pieces that each repeat its attributes); parts with different numbers are summed (smaller
    units dissolved into districts), and the report says so.
    """
    rows, merged, named, summed = [], [], [], []
    for did, part in frame.groupby("id", sort=False):
        if len(part) == 1:
            rows.append(part.iloc[0])
            continue
        g = _polygonal(shapely.union_all(list(part.geometry)))
        if g is not None and not g.is_valid:
            g = _polygonal(shapely.make_valid(g))
        if g is None:
            raise ImportProblem(f"{path}: the features of district {did!r} do not merge into a polygon")
        names = part["name"].unique()
        pops = part["population"].dropna().unique() if part["population"].notna().any() else []
        if len(names) > 1:
            named.append(f"{did} ({', '.join(map(str, names[:3]))})")
        if len(pops) > 1:
            summed.append(did)
        pop = None if len(pops) == 0 else (pops[0] if len(pops) == 1 else part["population"].sum())
        rows.append(pd.Series({"id": did, "name": names[0], "population": pop, "geometry": g}))
        merged.append(f"{did} ({len(part)})")
    report.count("dissolved", len(frame) - len(rows))
    report.warnings.append(f"{path}: {len(frame)} features dissolved into {len(rows)} districts (--dissolve); "
                           f"merged ids (features): {', '.join(merged[:10])}{' …' if len(merged) > 10 else ''}")
    if named:
        report.warnings.append(f"{path}: parts of one district have different names, the first kept: "
                               + "; ".join(named[:5]))
    if summed:
        report.warnings.append(f"{path}: parts of one district have different populations, summed: "
                               + ", ".join(summed[:10]))
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=4326).reset_index(drop=True)


def _row(r) -> dict:
    lab = r.geometry.representative_point()
    pop = r.population
    return dict(id=r.id, name=r.name, population=None if pop is None or pd.isna(pop) else int(pop),
                area_km2=round(float(r.area_km2), 3), label_lon=round(lab.x, 6), label_lat=round(lab.y, 6),
                geometry=json.dumps(mapping(shapely.set_precision(r.geometry, 1e-7)), separators=(",", ":")))


def write_boundaries(conn: Connection, frame: gpd.GeoDataFrame, report: ImportReport,
                     city: str | None = None, timezone: str | None = None) -> ImportReport:
    """Upsert the districts by id (inserted, updated or unchanged); keep districts not in the file."""
    cols = [districts.c[k] for k in ("id", "name", "population", "area_km2", "label_lon", "label_lat", "geometry")]
    stored = {r.id: dict(r._mapping) for r in conn.execute(select(*cols))}
    for r in frame.itertuples():
        row = _row(r)
        old = stored.get(row["id"])
        if old is None:
            conn.execute(insert(districts).values(**row))
            report.count("inserted")
        elif any(old[k] != row[k] for k in row):
            conn.execute(districts.update().where(districts.c.id == row["id"]).values(**row))
            report.count("updated")
        else:
            report.count("unchanged")
    others = set(stored) - set(frame["id"])
    if others:
        report.warnings.append(f"{len(others)} district(s) in the store are not in this file and were kept: "
                               + ", ".join(sorted(others)[:5]))
    for key, value in (("city", city), ("timezone", timezone)):
        if value and conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar() != value:
            conn.execute(meta.delete().where(meta.c.key == key))
            conn.execute(insert(meta).values(key=key, value=value))
    return report


def import_boundaries(conn: Connection, path, city: str | None = None, timezone: str | None = None,
                      **options) -> ImportReport:
    """Read, check and upsert district boundaries in the open transaction ``conn``."""
    frame, report = read_boundaries(path, **options)
    return write_boundaries(conn, frame, report, city, timezone)
