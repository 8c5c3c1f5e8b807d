"""Assets import: CSV lon/lat and vector files, point in polygon / line midpoint, outside assets reported."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from _import_kit import BEIJING_DISTRICTS, FIWARE, FIXTURES, REPO, beijing_store, imp, snapshot
from shapely.geometry import shape
from sqlalchemy import text

from dashboard.importers import ImportProblem
from dashboard.importers.assets import import_assets, read_assets


@pytest.fixture
def store(tmp_path):
    return beijing_store(tmp_path)


def asset(engine, aid):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM assets WHERE id = :i"), {"i": aid}).mappings().first()


def test_import201_kdd_stations_csv(store):
    src = FIXTURES / "beijing" / "stations_35_kdd2018.csv"
    rep = imp(store, import_assets, src, kind="aq_station", id_field="station_id")
    df = pd.read_csv(src)
    assert rep.counts["read"] == len(df) == 35 and rep.counts["inserted"] == 35
    a = asset(store, "dongsi_aq")
    assert (a["lon"], a["lat"]) == (116.417, 39.929)
    assert a["district_id"] == "dongcheng"  # Dongsi is in Dongcheng
    assert json.loads(a["attributes"])["category"] == "Urban Stations" if isinstance(a["attributes"], str) \
        else a["attributes"]["category"] == "Urban Stations"
    once = snapshot(store)
    rep = imp(store, import_assets, src, kind="aq_station", id_field="station_id")
    assert rep.counts["unchanged"] == 35 and snapshot(store) == once


def test_import202_lines_by_midpoint_and_outside_reported(store, tmp_path):
    dist = json.loads(BEIJING_DISTRICTS.read_text())
    by_name = {f["properties"]["id"]: shape(f["geometry"]) for f in dist["features"]}
    a = by_name["dongcheng"].representative_point()
    b = by_name["xicheng"].representative_point()
    # a line from Xicheng deep into Dongcheng: its midpoint decides
    far = (a.x + (a.x - b.x) * 0.9, a.y + (a.y - b.y) * 0.9)
    madrid = json.loads((FIWARE / "dataModel.Environment" / "AirQualityObserved" / "examples" / "example.json")
                        .read_text())["location"]["coordinates"]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "l1", "name": "Line", "free_flow_kmh": 50},
         "geometry": {"type": "LineString", "coordinates": [[b.x, b.y], list(far)]}},
        {"type": "Feature", "properties": {"id": "madrid", "name": "Madrid", "free_flow_kmh": 50},
         "geometry": {"type": "LineString", "coordinates": [madrid, [madrid[0] + 0.01, madrid[1]]]}}]}
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps(fc))
    rep = imp(store, import_assets, path, kind="road_segment")
    mid = shape(fc["features"][0]["geometry"]).interpolate(0.5, normalized=True)
    want = next(k for k, g in by_name.items() if g.contains(mid))
    assert want == "dongcheng" and asset(store, "l1")["district_id"] == want
    assert rep.counts["outside"] == 1 and "madrid" in rep.warnings[0]
    assert asset(store, "madrid")["district_id"] is None


def test_import203_malformed_assets(engine, tmp_path):
    from _import_kit import REPO
    from dashboard.city import install_city, load_city

    install_city(engine, load_city(REPO / "data" / "beijing"))
    before = snapshot(engine)
    cases = {
        "dup.csv": ("id,kind,lon,lat\na,aq_station,116.4,39.9\na,aq_station,116.5,39.9\n",
                    r"dup\.csv: duplicate asset id 'a' at lines 2, 3"),
        "kind.csv": ("id,kind,lon,lat\na,bus_stop,116.4,39.9\n", r"kind\.csv: line 2: unknown asset kind 'bus_stop'"),
        "nolon.csv": ("id,kind,lat\na,aq_station,39.9\n", r"nolon\.csv: missing the longitude"),
        "trunc.csv": ("id,kind,lon,lat\na,aq_station,116.4,39.9\nb,aq_sta", r"trunc\.csv: line 3: 2 of 4 fields"),
    }
    for name, (body, msg) in cases.items():
        (tmp_path / name).write_text(body)
        with pytest.raises(ImportProblem, match=msg):
            imp(engine, import_assets, tmp_path / name)
        assert snapshot(engine) == before, name


def _sections(road: str = "r2", direction: str = "clockwise", shared: bool = True) -> dict:
    """The shipped Beijing road links of one road and direction, exported as a line cut into sections.

    Every section carries the road's id (``r2-clockwise``; with ``shared=False`` its own link id), as a
    GIS export of one road often does, and properties of every JSON type: a transit-style ``line``
    property, a nested object, a list, a boolean, an integer missing in one section, Chinese text.
    """
    roads = json.loads((REPO / "data" / "beijing" / "roads.geojson").read_text(encoding="utf-8"))
    feats = [f for f in roads["features"] if f["properties"]["road"] == road
             and f["properties"]["direction"] == direction]
    out = []
    for k, f in enumerate(feats):
        p = dict(f["properties"])
        p.update(id=f"{road}-{direction}" if shared else p["id"], line="Ring 2", oneway=True, name_zh="二环路",
                 tags={"highway": "motorway", "ref": road.upper()}, nodes=[p["from_node"], p["to_node"]])
        if k == 1:
            p["lanes"] = None
        out.append({"type": "Feature", "properties": p, "geometry": f["geometry"]})
    return {"type": "FeatureCollection", "features": out}


def test_import204_line_sections_sharing_an_id_numbered_by_id_template(store, tmp_path):
    fc = _sections()
    n = len(fc["features"])
    path = tmp_path / "ring2.geojson"
    path.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    before = snapshot(store)
    with pytest.raises(ImportProblem, match=r"duplicate asset id 'r2-clockwise' at features 0, 1, .*"
                                            r"--id-template \"\{id\}-\{n\}\""):
        imp(store, import_assets, path, kind="road_segment")
    assert snapshot(store) == before
    rep = imp(store, import_assets, path, kind="road_segment", id_template="{id}-{n}")
    assert rep.counts["inserted"] == n > 10
    for k, f in enumerate(fc["features"], start=1):  # numbered in file order; the shared id is an attribute
        a = asset(store, f"r2-clockwise-{k}")
        assert a is not None and json.loads(a["geometry"])["coordinates"] == f["geometry"]["coordinates"]
        attrs = json.loads(a["attributes"]) if isinstance(a["attributes"], str) else a["attributes"]
        assert attrs["id"] == "r2-clockwise" and attrs["from_node"] == f["properties"]["from_node"]
    once = snapshot(store)
    assert imp(store, import_assets, path, kind="road_segment", id_template="{id}-{n}").counts["unchanged"] == n
    assert snapshot(store) == once
    # the brief's form: a name and the running number
    rep = imp(store, import_assets, path, kind="road_segment", id_template="{name}-{n}", dry_run=True)
    assert rep.counts["inserted"] == n and snapshot(store) == once
    frame, _, _ = read_assets(path, kind="road_segment", id_template="{name}-{n:02d}")
    assert frame["id"].tolist()[:2] == ["2nd Ring Road-01", "2nd Ring Road-02"]


def test_import205_geojson_properties_kept_as_written(store, tmp_path):
    fc = _sections(shared=False)
    path = tmp_path / "ring2.geojson"
    path.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    assert imp(store, import_assets, path, kind="road_segment").counts["updated"] == len(fc["features"])
    for f in fc["features"]:
        a = asset(store, f["properties"]["id"])
        attrs = json.loads(a["attributes"]) if isinstance(a["attributes"], str) else a["attributes"]
        want = {key: v for key, v in f["properties"].items() if key not in ("id", "name") and v is not None}
        assert attrs == want  # 'line' kept, 3 not 3.0, objects and lists as JSON, not their Python repr
        assert type(attrs["length_m"]) is int and attrs["tags"]["ref"] == "R2" and attrs["oneway"] is True


def test_import206_id_template_mistakes_refused(store, tmp_path):
    fc = _sections()
    fc["features"][3]["properties"]["name"] = ""
    path = tmp_path / "ring2.geojson"
    path.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    before = snapshot(store)
    cases = [("{ref}-{n}", r"--id-template '\{ref\}-\{n\}': no property 'ref'; use \{n\} .* or one of .*from_node"),
             ("{id}", r"duplicate asset id 'r2-clockwise' at features 0, 1.*add \{n\}"),
             ("{name}-{n}", r"ring2\.geojson: feature 3: 'name' is empty, and --id-template needs it"),
             ("{id-{n}", r"--id-template '\{id-\{n\}'"),
             ("{id}-{n:d}" + "x" * 150, r"feature 0: asset id 'r2-clockwise-1xxxxxx'… is longer than 128 characters"),
             ("{id}" * 60, r"--id-template has 240 characters \(at most 200\)")]
    for template, msg in cases:
        with pytest.raises(ImportProblem, match=msg):
            imp(store, import_assets, path, kind="road_segment", id_template=template)
        assert snapshot(store) == before, template


def test_import207_geopackage_layers_listed_and_picked(store, tmp_path):
    import geopandas as gpd

    path = tmp_path / "city.gpkg"
    roads = gpd.read_file(REPO / "data" / "beijing" / "roads.geojson")
    roads.iloc[:20].to_file(path, layer="roads", driver="GPKG")
    st = pd.read_csv(REPO / "data" / "beijing" / "stations.csv")
    gpd.GeoDataFrame(st, geometry=gpd.points_from_xy(st.lon, st.lat), crs=4326).to_file(path, layer="stations")
    before = snapshot(store)
    with pytest.raises(ImportProblem, match=r"city\.gpkg: 2 layers with geometries: roads \(LineString\), "
                                            r"stations \(Point\); pick one with --layer"):
        imp(store, import_assets, path, kind="aq_station")
    with pytest.raises(ImportProblem, match=r"city\.gpkg: no layer 'station'; the layers are roads .*, stations"):
        imp(store, import_assets, path, kind="aq_station", layer="station")
    assert snapshot(store) == before
    rep = imp(store, import_assets, path, kind="aq_station", layer="stations")
    assert rep.counts["inserted"] == 12 and asset(store, "dongsi")["district_id"] == "dongcheng"
    attrs = asset(store, "dongsi")["attributes"]
    assert (json.loads(attrs) if isinstance(attrs, str) else attrs) == {"category": "urban", "lon": 116.417,
                                                                        "lat": 39.929}
