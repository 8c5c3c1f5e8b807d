"""Assets import: CSV lon/lat and vector files, point in polygon / line midpoint, outside assets reported."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from _import_kit import BEIJING_DISTRICTS, FIWARE, FIXTURES, beijing_store, imp, snapshot
from shapely.geometry import shape
from sqlalchemy import text

from dashboard.importers import ImportProblem
from dashboard.importers.assets import import_assets


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
