"""Boundaries import: GeoJSON, TopoJSON, GeoPackage, Shapefile, any CRS; repairs; malformed files."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from _import_kit import BEIJING_DISTRICTS, counts, election_geojson, imp, snapshot, sqlite_store, write_topojson
from shapely.geometry import shape
from sqlalchemy import select

from dashboard.importers import ImportProblem
from dashboard.importers.boundaries import import_boundaries
from dashboard.store.schema import districts

NATURALEARTH = Path(gpd.__file__).parent.parent / "pyogrio" / "tests" / "fixtures" / "naturalearth_lowres" / \
    "naturalearth_lowres.shp"


def stored(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(districts))}


def test_import001_geojson_montreal_counts_and_values(engine, tmp_path):
    src = election_geojson(tmp_path)
    raw = json.loads(src.read_text())
    rep = imp(engine, import_boundaries, src, id_field="id", name_field="district")
    assert rep.counts["inserted"] == len(raw["features"]) == 58
    got = stored(engine)
    f = next(f for f in raw["features"] if f["id"] == "11")
    assert got["11"]["name"] == f["properties"]["district"] == "11-Sault-au-Récollet"
    # multipolygons stay multipolygons, area preserved
    multi = [f for f in raw["features"] if f["geometry"]["type"] == "MultiPolygon"]
    assert len(multi) == 8
    for f in multi:
        g = shape(json.loads(got[str(f["id"])]["geometry"]))
        assert g.geom_type == "MultiPolygon"
        assert g.area == pytest.approx(shape(f["geometry"]).area, rel=1e-4)


def test_import002_beijing_geojson_real_districts(tmp_path):
    src = BEIJING_DISTRICTS
    eng = sqlite_store(tmp_path)
    rep = imp(eng, import_boundaries, src, id_field="adcode", name_field="name")
    raw = json.loads(src.read_text())
    assert rep.counts["inserted"] == len(raw["features"]) == 16
    got = stored(eng)
    p = raw["features"][0]["properties"]
    assert got[str(p["adcode"])]["name"] == p["name"] == "Dongcheng"
    assert got[str(p["adcode"])]["area_km2"] == pytest.approx(p["area_km2"], rel=0.05)


@pytest.mark.parametrize("driver,suffix,epsg", [("GPKG", ".gpkg", 32188), ("ESRI Shapefile", ".shp", 2950)])
def test_import003_projected_vector_files_reprojected(tmp_path, driver, suffix, epsg):
    src = election_geojson(tmp_path)
    orig = gpd.read_file(src)
    path = tmp_path / f"districts{suffix}"
    orig.to_crs(epsg).to_file(path, driver=driver)
    eng = sqlite_store(tmp_path)
    rep = imp(eng, import_boundaries, path, id_field="id", name_field="district")
    assert str(epsg) in rep.crs and rep.counts["inserted"] == 58
    got = stored(eng)
    for _, r in orig.iloc[:5].iterrows():
        g = shape(json.loads(got[str(r["id"])]["geometry"]))
        assert g.symmetric_difference(r.geometry).area < 1e-4 * r.geometry.area
        assert g.geom_type in ("Polygon", "MultiPolygon")  # shapefiles do not tell them apart


def test_import004_topojson(tmp_path):
    orig = gpd.read_file(election_geojson(tmp_path))
    path = write_topojson(orig, tmp_path / "districts.topojson", "id")
    eng = sqlite_store(tmp_path)
    rep = imp(eng, import_boundaries, path, id_field="id", name_field="district")
    assert rep.counts["inserted"] == 58
    got = stored(eng)
    r = orig[orig["id"] == "11"].iloc[0]
    assert shape(json.loads(got["11"]["geometry"])).area == pytest.approx(r.geometry.area, rel=1e-4)


def test_import005_holes_kept_and_duplicate_ids_refused(tmp_path):
    src = NATURALEARTH
    eng = sqlite_store(tmp_path)
    with pytest.raises(ImportProblem, match=r"duplicate district id '-99' at features \d+"):
        imp(eng, import_boundaries, src, id_field="iso_a3")
    assert counts(eng)["districts"] == 0
    rep = imp(eng, import_boundaries, src, id_field="name", name_field="name", population_field="pop_est")
    assert rep.counts["inserted"] == 177
    zaf = shape(json.loads(stored(eng)["South Africa"]["geometry"]))
    assert len(zaf.interiors) == 1  # Lesotho
    assert stored(eng)["South Africa"]["population"] > 1e7


def test_import006_invalid_geometry_repaired_with_warning(tmp_path):
    raw = json.loads(election_geojson(tmp_path).read_text())
    f = next(f for f in raw["features"] if f["geometry"]["type"] == "Polygon")
    ring = f["geometry"]["coordinates"][0]
    ring[1], ring[len(ring) // 2] = ring[len(ring) // 2], ring[1]  # a self-intersection
    assert not shape(f["geometry"]).is_valid
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(raw))
    eng = sqlite_store(tmp_path)
    rep = imp(eng, import_boundaries, path)
    assert rep.counts["repaired"] == 1
    assert any(f"id {f['id']!r}" in w and "repaired" in w for w in rep.warnings)
    g = shape(json.loads(stored(eng)[str(f["id"])]["geometry"]))
    assert g.is_valid and g.area > 0


def test_import007_malformed_leave_store_unchanged(engine, tmp_path):
    src = election_geojson(tmp_path)
    imp(engine, import_boundaries, src, id_field="id", name_field="district")
    before = snapshot(engine)
    raw = json.loads(src.read_text())
    # truncated file
    trunc = tmp_path / "truncated.geojson"
    trunc.write_text(src.read_text()[: len(src.read_text()) // 2])
    # wrong CRS: projected metres labelled EPSG:4326
    wrong = tmp_path / "wrong_crs.gpkg"
    gpd.read_file(src).to_crs(32188).set_crs(4326, allow_override=True).to_file(wrong)
    # broken geometry that cannot be repaired (a zero-area polygon)
    broken = json.loads(json.dumps(raw))
    c = broken["features"][3]["geometry"]
    c["type"], c["coordinates"] = "Polygon", [[[-73.6, 45.5], [-73.5, 45.5], [-73.6, 45.5], [-73.6, 45.5]]]
    (tmp_path / "broken.geojson").write_text(json.dumps(broken))
    # duplicate ids
    dup = json.loads(json.dumps(raw))
    dup["features"][5]["properties"]["district"] = dup["features"][4]["properties"]["district"]
    (tmp_path / "dup.geojson").write_text(json.dumps(dup))
    cases = [
        (trunc, {}, r"truncated\.geojson: cannot read"),
        (wrong, {}, r"wrong_crs\.gpkg: coordinates .* not longitude/latitude"),
        (tmp_path / "broken.geojson", {}, r"broken\.geojson: feature 3 .*broken geometry"),
        (tmp_path / "dup.geojson", {"id_field": "district"}, r"dup\.geojson: duplicate district id .* features 4, 5"),
        (src, {"id_field": "code"}, r"no column 'code'.*columns are id, district"),
    ]
    for path, kw, msg in cases:
        with pytest.raises(ImportProblem, match=msg):
            imp(engine, import_boundaries, path, **kw)
        assert snapshot(engine) == before, path


def test_import008_rerun_and_dry_run_change_nothing(tmp_path):
    src = election_geojson(tmp_path)
    eng = sqlite_store(tmp_path)
    empty = snapshot(eng)
    rep = imp(eng, import_boundaries, src, dry_run=True)
    assert rep.dry_run and rep.counts["inserted"] == 58 and rep.crs == "EPSG:4326"
    assert snapshot(eng) == empty
    imp(eng, import_boundaries, src)
    once = snapshot(eng)
    rep = imp(eng, import_boundaries, src)
    assert rep.counts == {"features": 58, "unchanged": 58}
    assert snapshot(eng) == once
    assert shapely.is_valid(shape(json.loads(stored(eng)["11"]["geometry"])))
