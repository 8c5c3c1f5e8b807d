"""The importers take every domain's assets and readings through the front door: a file of car parks
and bus stops, their readings in long form, and a reading of a metric the asset's kind cannot report."""
from __future__ import annotations

from _import_kit import beijing_store, imp
from sqlalchemy import text

from dashboard.importers.assets import import_assets
from dashboard.importers.readings import import_readings
from dashboard.metrics import ASSET_KINDS, METRICS


def test_car_parks_and_bus_stops_import_with_their_readings(tmp_path):
    eng = beijing_store(tmp_path)
    kinds = {k: d for k, d in ASSET_KINDS.items()}
    assert {"car_park", "transit_stop"} <= set(kinds), "the parking and transit domains declare these kinds"
    assets = tmp_path / "assets.csv"
    assets.write_text("id,kind,name,lon,lat,spaces\n"
                      "cp-new-1,car_park,Wangfujing garage,116.411,39.915,420\n"
                      "stop-new-1,transit_stop,Dongdan stop,116.418,39.913,\n", encoding="utf-8")
    rep = imp(eng, import_assets, assets)
    assert rep.counts["inserted"] == 2, (rep.counts, rep.problems)
    free = next(m for m in METRICS.values() if m.kind == "car_park")
    stop = next(m for m in METRICS.values() if m.kind == "transit_stop")
    readings = tmp_path / "readings.csv"
    readings.write_text("asset_id,metric,ts,value\n"
                        f"cp-new-1,{free.id},2026-12-06T08:00:00+08:00,57\n"
                        f"stop-new-1,{stop.id},2026-12-06T08:00:00+08:00,120\n"
                        f"cp-new-1,{stop.id},2026-12-06T08:00:00+08:00,3\n", encoding="utf-8")
    rep = imp(eng, import_readings, readings)
    assert rep.problems == [(4, f"metric '{stop.id}' does not apply to a car_park asset")]
    with eng.connect() as conn:
        got = dict(conn.execute(text("SELECT a.id, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk")).all())
    assert got == {"cp-new-1": 57.0, "stop-new-1": 120.0}
