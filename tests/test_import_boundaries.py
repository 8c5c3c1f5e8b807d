"""Boundaries import: GeoJSON, TopoJSON, GeoPackage, Shapefile, any CRS; repairs; malformed files."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely
from _import_kit import BEIJING_DISTRICTS, REPO, counts, election_geojson, imp, snapshot, sqlite_store, write_topojson
from shapely.geometry import shape
from sqlalchemy import select

from dashboard.importers import ImportProblem
from dashboard.importers.boundaries import import_boundaries
from dashboard.store.schema import districts, make_engine

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


def _split_districts() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The real Beijing districts, and the same cut into pieces that share their district's id.

    Multipolygons are exploded into their polygons and every district is also cut in two along the
    meridian through its centre, so each id comes as 2–4 features, each repeating the district's
    attributes (population included), as a GIS export of split or multi-part districts does.
    """
    from shapely.geometry import box

    orig = gpd.read_file(BEIJING_DISTRICTS)
    parts = []
    for _, r in orig.iterrows():
        x = r.geometry.centroid.x
        minx, miny, maxx, maxy = r.geometry.bounds
        for half in (box(minx - 1, miny - 1, x, maxy + 1), box(x, miny - 1, maxx + 1, maxy + 1)):
            piece = r.geometry.intersection(half)
            for poly in getattr(piece, "geoms", [piece]):
                if poly.geom_type == "Polygon" and poly.area > 0:
                    parts.append({**r.drop("geometry").to_dict(), "geometry": poly})
    return orig, gpd.GeoDataFrame(parts, geometry="geometry", crs=4326)


def test_import009_dissolve_merges_features_sharing_an_id(tmp_path):
    orig, split = _split_districts()
    assert len(split) > 2 * len(orig)
    path = tmp_path / "split.geojson"
    split.to_file(path, driver="GeoJSON")
    eng = sqlite_store(tmp_path)
    with pytest.raises(ImportProblem, match=r"duplicate district id 'dongcheng' at features 0, 1.*--dissolve"):
        imp(eng, import_boundaries, path)
    assert counts(eng)["districts"] == 0
    rep = imp(eng, import_boundaries, path, dissolve=True)
    assert rep.counts["inserted"] == len(orig) == 16 and rep.counts["dissolved"] == len(split) - 16
    assert any("dissolved into 16 districts" in w for w in rep.warnings)
    got = stored(eng)
    for _, r in orig.iterrows():
        g = shape(json.loads(got[r["id"]]["geometry"]))
        assert g.is_valid and g.symmetric_difference(r.geometry).area < 1e-6 * r.geometry.area, r["id"]
        assert got[r["id"]]["population"] == r["population"]  # repeated on every part: not summed
        assert got[r["id"]]["name"] == r["name"]
        assert got[r["id"]]["area_km2"] == pytest.approx(r["area_km2"], rel=0.01)
    once = snapshot(eng)
    assert imp(eng, import_boundaries, path, dissolve=True).counts["unchanged"] == 16 and snapshot(eng) == once


def test_import010_dissolve_sums_populations_of_smaller_units(tmp_path):
    orig, split = _split_districts()
    split["population"] = split.groupby("id").cumcount() + 1000  # each piece its own (made-up) population
    path = tmp_path / "units.geojson"
    split.to_file(path, driver="GeoJSON")
    eng = sqlite_store(tmp_path)
    rep = imp(eng, import_boundaries, path, dissolve=True)
    got = stored(eng)
    for did, part in split.groupby("id"):
        assert got[did]["population"] == part["population"].sum()
    assert any("different populations, summed" in w for w in rep.warnings)


def test_import011_geopackage_with_several_layers(tmp_path):
    orig, split = _split_districts()
    path = tmp_path / "beijing.gpkg"
    orig.to_file(path, layer="districts", driver="GPKG")
    split.to_file(path, layer="district_parts", driver="GPKG")
    gpd.GeoDataFrame({"name": ["Beijing"]}, geometry=[orig.union_all()], crs=4326).to_file(path, layer="city")
    pyogrio.write_dataframe(pd.DataFrame(orig.drop(columns="geometry")), path, layer="census")  # a plain table
    eng = sqlite_store(tmp_path)
    with pytest.raises(ImportProblem, match=r"beijing\.gpkg: 3 layers with geometries: districts \(MultiPolygon\), "
                                            r"district_parts \(Polygon\), city \(\w*Polygon\), census \(no geometry\); "
                                            r"pick one with --layer"):
        imp(eng, import_boundaries, path)
    with pytest.raises(ImportProblem, match=r"beijing\.gpkg: no layer 'District'; the layers are districts .*, "
                                            r"district_parts .*, city "):
        imp(eng, import_boundaries, path, layer="District")
    with pytest.raises(ImportProblem, match=r"beijing\.gpkg: layer 'census' is a table without geometries; "
                                            r"the layers are .*census \(no geometry\)"):
        imp(eng, import_boundaries, path, layer="census")
    assert counts(eng)["districts"] == 0
    rep = imp(eng, import_boundaries, path, layer="district_parts", dissolve=True)
    assert rep.counts["inserted"] == 16 and rep.counts["features"] == len(split)
    rep = imp(eng, import_boundaries, path, layer="districts")
    assert rep.counts["features"] == 16 and set(stored(eng)) == set(orig["id"])


def test_import012_text_encodings(tmp_path):
    """A GBK GeoJSON (common in Chinese exports) and a Shapefile without .cpg: named, and read with --encoding."""
    orig = gpd.read_file(BEIJING_DISTRICTS)
    gbk = tmp_path / "gbk.geojson"
    gbk.write_bytes(BEIJING_DISTRICTS.read_text(encoding="utf-8").encode("gbk"))
    eng = sqlite_store(tmp_path)
    with pytest.raises(ImportProblem, match=r"gbk\.geojson: text is not valid UTF-8 .*pass --encoding"):
        imp(eng, import_boundaries, gbk, name_field="name_local")
    rep = imp(eng, import_boundaries, gbk, name_field="name_local", encoding="gbk", dry_run=True)
    assert rep.counts["inserted"] == 16 and counts(eng)["districts"] == 0
    shp = tmp_path / "districts.shp"
    orig.to_file(shp, encoding="gbk")
    shp.with_suffix(".cpg").unlink()  # the encoding declared nowhere: GDAL falls back to ISO-8859-1
    rep = imp(eng, import_boundaries, shp, name_field="name_local", dry_run=True)
    assert any("no .cpg" in w and "--encoding" in w for w in rep.warnings)
    imp(eng, import_boundaries, shp, name_field="name_local", encoding="gbk")
    assert stored(eng)["dongcheng"]["name"] == "东城区"
    with pytest.raises(ImportProblem, match=r"unknown encoding 'klingon'"):
        imp(eng, import_boundaries, shp, encoding="klingon")


def test_import013_cli_layer_dissolve_and_id_template(tmp_path):
    """The options reach the importers from ``panorama city import``; refusals exit 1 naming the layers."""
    from typer.testing import CliRunner

    from dashboard.cli import app

    orig, split = _split_districts()
    gpkg = tmp_path / "beijing.gpkg"
    orig.to_file(gpkg, layer="districts", driver="GPKG")
    split.to_file(gpkg, layer="district_parts", driver="GPKG")
    roads = json.loads((REPO / "data" / "beijing" / "roads.geojson").read_text(encoding="utf-8"))
    for f in roads["features"]:
        f["properties"]["id"] = f["properties"]["road"]  # each road one id, cut into its links
    (tmp_path / "roads.geojson").write_text(json.dumps(roads), encoding="utf-8")
    env = {"PANORAMA_CITY": str(REPO / "data" / "beijing"), "PANORAMA_DATA_DIR": str(tmp_path / "var"),
           "PANORAMA_DATABASE_URL": ""}
    run = lambda *a: CliRunner().invoke(app, ["city", "import", *map(str, a)], env=env)  # noqa: E731
    r = run("boundaries", gpkg)
    assert r.exit_code == 1 and "2 layers with geometries: districts" in r.output and "--layer" in r.output
    r = run("boundaries", gpkg, "--layer", "district_parts")
    assert r.exit_code == 1 and "--dissolve" in r.output
    r = run("boundaries", gpkg, "--layer", "district_parts", "--dissolve")
    assert r.exit_code == 0 and "16 inserted" in r.output, r.output
    r = run("assets", tmp_path / "roads.geojson", "--kind", "road_segment")
    assert r.exit_code == 1 and "duplicate asset id 'r2'" in r.output and '--id-template "{id}-{n}"' in r.output
    r = run("assets", tmp_path / "roads.geojson", "--kind", "road_segment", "--id-template", "{id}-{n}")
    assert r.exit_code == 0 and f"{len(roads['features'])} inserted" in r.output, r.output
    eng = make_engine(f"sqlite:///{tmp_path / 'var' / 'panorama.sqlite'}")
    c = counts(eng)
    assert c["districts"] == 16 and c["assets"] == len(roads["features"])


def test_import014_oversized_vector_file_refused(tmp_path, monkeypatch):
    from dashboard.importers import boundaries

    monkeypatch.setattr(boundaries, "MAX_VECTOR_BYTES", BEIJING_DISTRICTS.stat().st_size - 1)
    eng = sqlite_store(tmp_path)
    with pytest.raises(ImportProblem, match=r"districts\.geojson: 0\.2 MiB, more than the 0\.2 MiB a vector file "
                                            r"may have"):
        imp(eng, import_boundaries, BEIJING_DISTRICTS)
    assert counts(eng)["districts"] == 0
