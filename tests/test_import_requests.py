"""Service requests: the FIWARE Open311 GeoReport v2 examples (key-values, NGSI-LD normalized) and CSV."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from _import_kit import FIWARE, imp, snapshot
from sqlalchemy import text

from dashboard.importers import ImportProblem
from dashboard.importers.requests import import_requests
from dashboard.store.services import parse_status_map, status_class

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


# ---------------------------------------------------------------- statuses as real cities export them
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("given, expected", [
    ("in progress", "open"), ("In Progress", "open"), ("  IN   PROGRESS ", "open"), ("in_progress", "open"),
    ("started", "open"), ("assigned", "open"), ("Acknowledged", "open"), ("pending", "open"),
    ("On Hold", "open"), ("Email Sent", "open"), ("open", "open"), ("Open - Dup", "open"),
    ("closed", "closed"), ("CLOSED", "closed"), ("Resolved", "closed"), ("completed", "closed"),
    ("Completed - Dup", "closed"), ("done", "closed"), ("Cancelled", "closed"), ("canceled", "closed"),
])
def test_import304_status_classes_by_default(given, expected):
    assert status_class(given) == expected


def test_import305_open311_statuses_beyond_open_and_closed(small_city):
    engine = small_city["engine"]
    rep = imp(engine, import_requests, FIXTURES / "open311_statuses.json")
    assert rep.counts["read"] == 6 and rep.counts["accepted"] == 6 and rep.counts["rejected"] == 0, rep.problems
    kv = json.loads((FIXTURES / "open311_statuses.json").read_text())
    for rec in kv:
        r = row(engine, rec["service_request_id"])
        closed = rec["status"].lower() in ("closed", "resolved")
        assert r["status"] == ("closed" if closed else "open"), rec["status"]
        assert r["closed_at"] == (ts(rec["updated_datetime"]) if closed else None)


CSV_STATUSES = ("id,category,created,closed,status,district\n"
                "s1,noise,2025-01-15T08:00:00Z,,In Progress,north\n"
                "s2,noise,2025-01-15T08:00:00Z,,started,north\n"
                "s3,noise,2025-01-15T08:00:00Z,,ASSIGNED,north\n"
                "s4,noise,2025-01-15T08:00:00Z,,acknowledged,south\n"
                "s5,noise,2025-01-15T08:00:00Z,,Pending,south\n"
                "s6,noise,2025-01-15T08:00:00Z,,on  hold,south\n"
                "s7,noise,2025-01-15T08:00:00Z,2025-01-15T09:00:00Z,Resolved,south\n"
                "s8,noise,2025-01-15T08:00:00Z,2025-01-15T09:00:00Z,Duplicate,south\n")


def test_import306_csv_statuses_and_status_map(small_city, tmp_path):
    engine = small_city["engine"]
    path = tmp_path / "statuses.csv"
    path.write_text(CSV_STATUSES)
    rep = imp(engine, import_requests, path)
    # 'Duplicate' is not a closed status by default: open, yet it has a closed time -> rejected, saying why
    assert rep.counts["accepted"] == 7 and rep.counts["rejected"] == 1
    assert rep.problems == [(9, "status 'Duplicate' counts as open but closed_at is given (map it with --status-map)")]
    assert [row(engine, f"s{i}")["status"] for i in range(1, 8)] == ["open"] * 6 + ["closed"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rejected WHERE reason LIKE '%Duplicate%'")).scalar() == 1
    rep = imp(engine, import_requests, path, status_map="Duplicate=closed, in progress = CLOSED")
    # s1 'In Progress' is now closed but has no closed time: rejected; s8 is accepted as closed
    assert rep.counts["accepted"] == 1 and rep.counts["rejected"] == 1 and rep.counts["duplicates"] == 6
    assert rep.problems == [(2, "status 'In Progress' (closed) needs closed_at")]
    assert row(engine, "s8")["status"] == "closed" and row(engine, "s8")["closed_at"] == ts("2025-01-15T09:00:00+00:00")


@pytest.mark.parametrize("bad", ["In Progress", "In Progress=maybe", "=open", "Duplicate:closed"])
def test_import307_bad_status_map_is_refused(small_city, tmp_path, bad):
    engine = small_city["engine"]
    path = tmp_path / "statuses.csv"
    path.write_text(CSV_STATUSES)
    before = snapshot(engine)
    with pytest.raises(ImportProblem, match=r"--status-map: .* is not STATUS=open or STATUS=closed"):
        imp(engine, import_requests, path, status_map=bad)
    assert snapshot(engine) == before
    with pytest.raises(ValueError, match="--status-map"):
        parse_status_map(bad)


# ---------------------------------------------------------------- a Socrata (NYC 311) JSON export
def test_import308_socrata_json_export(small_city):
    engine = small_city["engine"]
    src = FIXTURES / "nyc311_socrata.json"
    recs = json.loads(src.read_text())
    rep = imp(engine, import_requests, src, timezone="America/New_York")
    assert rep.counts["read"] == 8 and rep.counts["accepted"] == 8 and rep.counts["rejected"] == 0, rep.problems
    assert rep.fields[:3] == ["unique_key", "created_date", "closed_date"] and "complaint_type" in rep.fields
    assert "service_request_id" not in rep.fields  # the file's fields, not what the importer looks for
    first = row(engine, "59893101")
    assert first["category_id"] == "Noise - Residential" and first["status"] == "closed"
    assert first["opened_at"] == ts("2024-01-15T08:12:31-05:00") and first["closed_at"] == ts("2024-01-15T15:42:31-05:00")
    assert (first["lon"], first["lat"]) == pytest.approx((-73.9612947, 40.7128372))
    for rec in recs:  # In Progress, Assigned, Pending, Started, Email Sent: open
        assert row(engine, rec["unique_key"])["status"] == ("closed" if rec["status"] == "Closed" else "open")


def test_import309_json_export_takes_the_column_options(small_city, tmp_path):
    engine = small_city["engine"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([
        {"ticket": "T1", "kind": "noise", "reported": "2025-01-15 08:00", "x": 116.05, "y": 40.15, "state": "Closed",
         "fixed": "2025-01-15 10:00"},
        {"ticket": "T2", "kind": "pothole", "reported": "2025-01-15 09:00", "x": 116.05, "y": 39.95, "state": "Open"},
    ]))
    rep = imp(engine, import_requests, path, id_field="ticket", category_field="kind", opened_field="reported",
              closed_field="fixed", status_field="state", lon_field="x", lat_field="y", timezone="UTC")
    assert rep.counts["accepted"] == 2 and rep.counts["rejected"] == 0, rep.problems
    assert rep.fields == ["ticket", "kind", "reported", "x", "y", "state", "fixed"]
    t1, t2 = row(engine, "T1"), row(engine, "T2")
    assert (t1["status"], t1["closed_at"], t1["district_id"]) == ("closed", ts("2025-01-15T10:00:00+00:00"), "north")
    assert (t2["status"], t2["closed_at"], t2["district_id"]) == ("open", None, "south")
    with pytest.raises(ImportProblem, match=r"missing the request id column .*columns are ticket, kind"):
        imp(engine, import_requests, path, timezone="UTC")


@pytest.fixture
def city_cli(small_city, tmp_path, monkeypatch):
    """Run ``panorama city import ...`` against the small-city store."""
    from typer.testing import CliRunner

    from dashboard.cli import app

    eng = small_city["engine"]
    monkeypatch.chdir(tmp_path)
    env = {"PANORAMA_DATA_DIR": str(tmp_path / "var"),
           "PANORAMA_DATABASE_URL": eng.url.render_as_string(hide_password=False), "COLUMNS": "200"}
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["city", "import", *map(str, args)], env=env)
    return run


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_import310_cli_socrata_json_fields_and_exit_status(city_cli, small_city):
    src = FIXTURES / "nyc311_socrata.json"
    r = city_cli("requests", src, "--timezone", "America/New_York", "--no-add-categories")
    out = " ".join(r.output.split())
    assert r.exit_code == 1, out  # every row rejected (their categories are not in the store)
    assert "8 read, 0 accepted" in out and "8 rejected" in out and "every one of the 8 requests was rejected" in out
    assert "fields: unique_key, created_date, closed_date, agency," in out
    with small_city["engine"].connect() as conn:  # nothing lost: the rows are kept with their reasons
        assert conn.execute(text("SELECT count(*) FROM rejected WHERE reason LIKE 'unknown service category%'")
                            ).scalar() == 8
    r = city_cli("requests", src, "--timezone", "America/New_York")
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "8 accepted" in out, out


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_import311_cli_status_map(city_cli, small_city, tmp_path):
    path = tmp_path / "statuses.csv"
    path.write_text(CSV_STATUSES)
    r = city_cli("requests", path, "--status-map", "In Progress")
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--status-map: 'In Progress' is not STATUS=open or STATUS=closed" in lines[0], r.output
    r = city_cli("requests", path, "--status-map", "Duplicate=closed")
    assert r.exit_code == 0 and "8 accepted" in " ".join(r.output.split()), r.output
    assert row(small_city["engine"], "s8")["status"] == "closed"


def test_import312_json_edge_cases(small_city, tmp_path):
    engine = small_city["engine"]
    (tmp_path / "empty.json").write_text("[]")
    rep = imp(engine, import_requests, tmp_path / "empty.json")
    assert rep.counts["read"] == 0 and rep.counts["accepted"] == 0
    (tmp_path / "rows.json").write_text('{"meta": {}, "data": [["a", "noise"], ["b", "noise"]]}')
    with pytest.raises(ImportProblem, match=r"rows\.json: record 1: not an object"):
        imp(engine, import_requests, tmp_path / "rows.json")
    (tmp_path / "long.json").write_text(json.dumps([{"id": "L1", "category": "noise", "created": "2025-01-15T08:00:00Z",
                                                      "status": "x" * 500, "district": "north"}]))
    rep = imp(engine, import_requests, tmp_path / "long.json")
    assert rep.counts["rejected"] == 1 and "longer than 100 characters" in rep.problems[0][1]
