"""Service requests: the FIWARE Open311 GeoReport v2 examples (key-values, NGSI-LD normalized) and CSV."""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from _import_kit import FIWARE, imp, snapshot
from sqlalchemy import text

from dashboard.importers import ImportProblem
from dashboard.importers.requests import import_requests

EX = FIWARE / "dataModel.IssueTracking" / "service_requests" / "examples"


def ts(s: str) -> int:
    return int(datetime.fromisoformat(s).timestamp())


def row(engine, rid):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM service_requests WHERE id = :i"), {"i": rid}).mappings().first()


@pytest.mark.parametrize("name", ["example.json", "example-normalized.jsonld"])
def test_import301_open311_examples(small_city, name):
    engine = small_city["engine"]
    src = EX / name
    kv = json.loads((EX / "example.json").read_text())
    rep = imp(engine, import_requests, src)
    assert rep.counts["read"] == 1 and rep.counts["accepted"] == 1 and rep.counts["categories added"] == 1
    r = row(engine, kv["service_request_id"])
    assert r["category_id"] == kv["service_code"] == "234"
    assert r["status"] == kv["status"] == "closed"
    assert r["opened_at"] == ts(kv["requested_datetime"])
    assert r["closed_at"] == ts(kv["updated_datetime"])  # Open311 has no closed time: updated_datetime of a closed one
    assert r["due_at"] == ts(kv["expected_datetime"])
    assert (r["lon"], r["lat"]) == pytest.approx(tuple(kv["location"]["coordinates"]))
    assert r["district_id"] is None  # in Spain, outside the small city
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, sla_hours FROM service_categories WHERE id='234'")).one() == ("Aceras", 24.0)
    once = snapshot(engine)
    rep = imp(engine, import_requests, src)
    assert rep.counts["duplicates"] == 1 and snapshot(engine) == once


def test_import302_csv_export_with_timezone(small_city, tmp_path):
    engine = small_city["engine"]
    kv = json.loads((EX / "example.json").read_text())
    path = tmp_path / "requests.csv"
    path.write_text("case_id,category,created,closed,lon,lat,satisfaction\n"
                    f"{kv['service_request_id']},pothole,2010-04-14 06:37:38,2010-04-14 09:00:00,116.05,40.15,4\n"
                    "X2,noise,2010-04-14 07:00:00,,116.05,39.95,\n"
                    "X3,noise,2010-04-14 08:00:00,2010-04-14 07:00:00,116.05,39.95,\n")
    rep = imp(engine, import_requests, path, id_field="case_id", timezone="Etc/GMT+8")
    assert rep.counts["accepted"] == 2 and rep.counts["rejected"] == 1
    assert rep.problems[0][0] == 4 and "before opened_at" in rep.problems[0][1]
    r = row(engine, kv["service_request_id"])
    assert r["opened_at"] == ts(kv["requested_datetime"]) and r["district_id"] == "north"
    assert row(engine, "X2")["district_id"] == "south" and row(engine, "X2")["status"] == "open"


def test_import303_malformed_requests(small_city, tmp_path):
    engine = small_city["engine"]
    before = snapshot(engine)
    src = (EX / "example.json").read_text()
    (tmp_path / "trunc.json").write_text(src[: len(src) // 2])
    (tmp_path / "dates.csv").write_text("id,category,created\na,pothole,2010-04-14T06:37:38Z\nb,noise,yesterday\n")
    (tmp_path / "cols.csv").write_text("id,created\na,2010-04-14T06:37:38Z\n")
    for name, msg in [("trunc.json", r"trunc\.json: line \d+, column \d+: not valid JSON"),
                      ("dates.csv", r"dates\.csv: line 3: cannot read the date 'yesterday'"),
                      ("cols.csv", r"cols\.csv: missing the category column")]:
        with pytest.raises(ImportProblem, match=msg):
            imp(engine, import_requests, tmp_path / name)
        assert snapshot(engine) == before
