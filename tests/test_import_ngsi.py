"""FIWARE NGSI-LD / v2 entities from the AirQualityObserved examples, TrafficFlowObserved, and /ngsi-ld/notify."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from _import_kit import FIWARE, beijing_store, imp, snapshot
from sqlalchemy import text

from dashboard.importers import ImportProblem
from dashboard.importers.ngsi import import_ngsi, import_ngsi_file

AQ = FIWARE / "dataModel.Environment" / "AirQualityObserved" / "examples"  # see fixtures/README.md
SR = FIWARE / "dataModel.IssueTracking" / "service_requests" / "examples"
T = int(datetime(2016, 3, 15, 10, tzinfo=timezone.utc).timestamp())  # 11:00 in Madrid (UTC+1)


def values(engine, asset):
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT r.metric, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                                      "WHERE a.id = :a AND r.ts = :t"), {"a": asset, "t": T}).all())


@pytest.mark.parametrize("name,co_stored", [("example.json", True), ("example.jsonld", True),
                                            ("example-normalized.json", False), ("example-normalized.jsonld", False)])
def test_import401_air_quality_examples_all_flavours(tmp_path, name, co_stored):
    src = AQ / name
    raw = json.loads(src.read_text())
    eng = beijing_store(tmp_path)
    rep = imp(eng, import_ngsi_file, src, timezone="Europe/Madrid", allow_outside=True)  # Madrid, not Beijing
    assert rep.counts["entities"] == 1 and rep.counts["assets added"] == 1
    got = values(eng, "28079004-Pza.deEspanya")

    def plain(v):
        return v["value"] if isinstance(v, dict) else v

    assert got["so2"] == plain(raw["so2"]) == 11
    assert got.get("no2") == (69 if "no2" in raw else None)  # the v2 key-values example has no no2
    assert got["temp_c"] == plain(raw["temperature"]) == 12.2
    if co_stored:
        assert got["co"] == 500  # no unitCode: µg/m³, the model's default
    else:
        # unitCode GP = mg/m³: 500 mg/m³ = 500,000 µg/m³, beyond the physical range -> rejected, with the entity
        assert "co" not in got and rep.counts["rejected"] == 1
        assert rep.problems[0][0] == 1 and "500000" in rep.problems[0][1]
    once = snapshot(eng)
    rep = imp(eng, import_ngsi_file, src, timezone="Europe/Madrid", allow_outside=True)
    assert rep.counts["accepted"] == 0 and snapshot(eng) == once


def test_import402_real_numbers_where_schema_says_integer(tmp_path):
    src = AQ / "example-normalized.jsonld"
    assert json.loads(src.read_text())["tsp"]["value"] == 73.3
    eng = beijing_store(tmp_path)
    imp(eng, import_ngsi_file, src, timezone="Europe/Madrid", allow_outside=True)  # no schema type error


def traffic_entity(normalized: bool) -> dict:
    """A TrafficFlowObserved entity with the attributes of its FIWARE schema, on a Beijing street."""
    kv = {"id": "urn:ngsi-ld:TrafficFlowObserved:chang-an-1", "type": "TrafficFlowObserved",
          "dateObservedFrom": "2016-03-15T09:45:00Z", "dateObservedTo": "2016-03-15T10:00:00Z",
          "averageVehicleSpeed": 42.5, "intensity": 300, "occupancy": 0.4, "laneId": 1,
          "refRoadSegment": "urn:ngsi-ld:RoadSegment:chang-an-1",
          "location": {"type": "LineString", "coordinates": [[116.39, 39.907], [116.41, 39.907]]}}
    if not normalized:
        return kv
    out = {"id": kv["id"], "type": kv["type"]}
    for k, v in kv.items():
        if k in ("id", "type"):
            continue
        out[k] = ({"type": "Relationship", "object": v} if k.startswith("ref") else
                  {"type": "GeoProperty", "value": v} if k == "location" else {"type": "Property", "value": v})
    out["averageVehicleSpeed"]["unitCode"] = "KMH"
    return out


@pytest.mark.parametrize("normalized", [False, True])
def test_import403_traffic_flow(tmp_path, normalized):
    eng = beijing_store(tmp_path)
    rep = imp(eng, import_ngsi, {"subscriptionId": "s1", "data": [traffic_entity(normalized)]}, "notify")
    assert rep.counts["accepted"] == 2
    with eng.connect() as conn:
        a = conn.execute(text("SELECT kind, district_id FROM assets WHERE id='chang-an-1'")).one()
        got = dict(conn.execute(text("SELECT metric, value FROM readings r JOIN assets a ON a.pk=r.asset_pk "
                                     "WHERE a.id='chang-an-1'")).all())
    assert a.kind == "road_segment" and a.district_id is not None
    assert got == {"speed_kmh": 42.5, "flow_vph": 1200.0}  # 300 vehicles in 15 min


def test_import404_unknown_type_rejected_alone_and_truncated_file_leaves_store_unchanged(engine, tmp_path):
    """Issue 15.12: a file holding a valid entity and one of an unsupported type stores the valid one."""
    from _import_kit import REPO
    from dashboard.city import install_city, load_city

    install_city(engine, load_city(REPO / "data" / "beijing"))
    imp(engine, import_ngsi, [traffic_entity(False)], "first")
    before = snapshot(engine)
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([beijing_air(), json.loads((SR / "example.json").read_text())]))
    rep = imp(engine, import_ngsi_file, mixed)
    assert rep.counts["entities"] == 1 and rep.counts["accepted"] == 3 and rep.counts["rejected"] == 1  # co, so2, temp
    with engine.connect() as conn:
        rej = conn.execute(text("SELECT source, line, raw, reason FROM rejected")).one()
    assert rej.source == str(mixed) and rej.line == 2 and "638344" in rej.raw
    assert rej.reason.startswith("entity 2 ('service-request:638344'): unknown NGSI type 'service_requests'")
    after = snapshot(engine)
    trunc = tmp_path / "trunc.jsonld"
    trunc.write_text((AQ / "example-normalized.jsonld").read_text()[:700])
    with pytest.raises(ImportProblem, match=r"trunc\.jsonld: line \d+, column \d+: not valid JSON"):
        imp(engine, import_ngsi_file, trunc)
    assert snapshot(engine) == after != before


def beijing_air(**changes) -> dict:
    """The FIWARE AirQualityObserved key-values example moved to Beijing (Dongsi), now, with ``changes``."""
    e = json.loads((AQ / "example.json").read_text())
    e.update({"id": "urn:ngsi-ld:AirQualityObserved:bj-test-1", "refPointOfInterest": "bj-test-1",
              "location": {"type": "Point", "coordinates": [116.417, 39.929]},
              "dateObserved": datetime.now(timezone.utc).replace(microsecond=0).isoformat()})
    e.update(changes)
    return e


def test_import405_notify_endpoint(tmp_path):
    from dashboard.app import create_app
    from dashboard.settings import Settings

    eng = beijing_store(tmp_path)
    url = str(eng.url)
    body = {"subscriptionId": "urn:ngsi-ld:Subscription:1", "type": "Notification",
            "data": [json.loads((AQ / "example.jsonld").read_text())]}
    off = create_app(Settings(data_dir=tmp_path, database_url=url)).server.test_client()
    r = off.post("/ngsi-ld/notify", json=body)
    assert r.status_code == 503 and "disabled" in r.get_json()["error"]
    on = create_app(Settings(data_dir=tmp_path, database_url=url, ngsi_token="s3cret")).server.test_client()
    before = snapshot(eng)
    assert on.post("/ngsi-ld/notify", json=body).status_code == 401
    assert on.post("/ngsi-ld/notify", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert snapshot(eng) == before
    bad = {"data": [{"id": "x", "type": "Parking"}]}
    r = on.post("/ngsi-ld/notify", json=bad, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 400 and "unknown NGSI type 'Parking'" in r.get_json()["error"]
    r = on.post("/ngsi-ld/notify", data=json.dumps(body), content_type="application/ld+json",
                headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 400 and "outside every district" in r.get_json()["error"]  # Madrid, not Beijing
    anywhere = create_app(Settings(data_dir=tmp_path, database_url=url, ngsi_token="s3cret",
                                   ngsi_allow_outside=True)).server.test_client()
    r = anywhere.post("/ngsi-ld/notify", data=json.dumps(body), content_type="application/ld+json",
                      headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["counts"]["accepted"] == 4  # co, no2, so2 and temperature of the example


# ----------------------------------------------------------------------------- hostile notifications (issues 14.2, 14.12,
# 15.11, 15.12)


def notify_client(tmp_path, **settings):
    """A test client of an app with the notify endpoint on (token ``s3cret``) over a Beijing store."""
    from dashboard.app import create_app
    from dashboard.settings import Settings

    eng = beijing_store(tmp_path)
    app = create_app(Settings(data_dir=tmp_path, database_url=str(eng.url), ngsi_token="s3cret", **settings))
    return eng, app.server.test_client()


AUTH = {"Authorization": "Bearer s3cret"}


def rejections(eng) -> list:
    with eng.connect() as conn:
        return conn.execute(text("SELECT source, line, raw, reason FROM rejected ORDER BY id")).all()


def test_notify_stores_valid_entities_and_rejects_each_bad_one_with_its_reason(tmp_path):
    """Issues 14.2 and 15.12: dates out of range, a type list, an unsupported type beside a valid entity."""
    eng, client = notify_client(tmp_path)
    body = {"subscriptionId": "urn:ngsi-ld:Subscription:1", "type": "Notification", "data": [
        beijing_air(),
        beijing_air(id="urn:ngsi-ld:AirQualityObserved:far", dateObserved="9999-12-31T00:00:00Z"),
        beijing_air(id="urn:ngsi-ld:AirQualityObserved:old", dateObserved="0001-01-01T00:00:00Z"),
        beijing_air(id="urn:ngsi-ld:AirQualityObserved:ns", dateObserved="2262-04-12T00:00:00Z"),
        json.loads((SR / "example.json").read_text()),
        beijing_air(id="urn:ngsi-ld:AirQualityObserved:listed", type=["AirQualityObserved"],
                    refPointOfInterest="bj-test-2"),  # NGSI-LD allows a list of types
    ]}
    r = client.post("/ngsi-ld/notify", json=body, headers=AUTH)
    assert r.status_code == 200, r.get_data(as_text=True)
    out = r.get_json()
    assert out["counts"]["entities"] == 2 and out["counts"]["accepted"] == 6 and out["counts"]["rejected"] == 4
    assert [p["line"] for p in out["problems"]] == [2, 3, 4, 5]  # the answer says which
    for p in out["problems"][:3]:
        assert "is not a time between 1970 and now" in p["reason"]
    assert "unknown NGSI type 'service_requests'" in out["problems"][3]["reason"]
    assert values_now(eng, "bj-test-1") == values_now(eng, "bj-test-2") == {"co": 500, "so2": 11, "temp_c": 12.2}
    rej = rejections(eng)
    assert [(x.source, x.line) for x in rej] == [("ngsi-ld/notify", n) for n in (2, 3, 4, 5)]
    assert "9999-12-31" in rej[0].raw and "638344" in rej[3].raw  # each with its raw entity


def values_now(eng, asset) -> dict:
    with eng.connect() as conn:
        return dict(conn.execute(text("SELECT r.metric, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                                      "WHERE a.id = :a"), {"a": asset}).all())


def test_notify_deeply_nested_body_is_400_and_kept_cut(tmp_path):
    """Issue 14.2: a body nested 100,000 levels raised RecursionError (a 500)."""
    eng, client = notify_client(tmp_path)
    deep = "[" * 100_000 + "]" * 100_000
    r = client.post("/ngsi-ld/notify", data=deep, content_type="application/json", headers=AUTH)
    assert r.status_code == 400 and r.get_json()["error"] == "body is nested deeper than 32 levels"
    r = client.post("/ngsi-ld/notify", data="{not json", content_type="application/json", headers=AUTH)
    assert r.status_code == 400 and "body is not valid JSON" in r.get_json()["error"]
    rej = rejections(eng)
    assert rej[0].reason == "body is nested deeper than 32 levels"
    assert rej[0].raw.startswith("[[[[") and rej[0].raw.endswith("… [cut: 200,000 bytes in all]")
    assert len(rej[0].raw) < 4200 and rej[1].raw == "{not json"


def test_notify_body_limit_is_413_and_raw_input_is_cut(tmp_path):
    """Issue 14.12: a 50 MB body was accepted and stored whole in rejected.raw."""
    eng, client = notify_client(tmp_path)
    huge = json.dumps({"data": [{"id": "x", "type": "Parking", "pad": "x" * 1_100_000}]})
    r = client.post("/ngsi-ld/notify", data=huge, content_type="application/json", headers=AUTH)
    assert r.status_code == 413 and "PANORAMA_NGSI_MAX_BODY" in r.get_json()["error"]
    assert rejections(eng) == []
    eng2, small = notify_client(tmp_path / "b", ngsi_max_body=100_000)
    big = json.dumps({"data": [beijing_air(), {"id": "x", "type": "Parking", "pad": "x" * 90_000}]})
    r = small.post("/ngsi-ld/notify", data=big, content_type="application/json", headers=AUTH)
    assert r.status_code == 200 and r.get_json()["counts"]["rejected"] == 1
    raw = rejections(eng2)[0].raw
    assert len(raw) < 4200 and raw.startswith('{"id": "x", "type": "Parking"') and "… [cut: 90," in raw
    r = small.post("/ngsi-ld/notify", data=big + " " * 20_000, content_type="application/json",
                   headers=AUTH)
    assert r.status_code == 413


def test_notify_needs_the_bearer_scheme(tmp_path):
    """Issue 14.12: ``Authorization: <token>`` without ``Bearer`` was accepted."""
    eng, client = notify_client(tmp_path)
    body = {"data": [beijing_air()]}
    for header in ("s3cret", "Basic s3cret", "Bearer", "Bearer s3cret2", "s3cret Bearer"):
        assert client.post("/ngsi-ld/notify", json=body, headers={"Authorization": header}).status_code == 401, header
    assert values_now(eng, "bj-test-1") == {}
    assert client.post("/ngsi-ld/notify", json=body, headers={"Authorization": "bearer s3cret"}).status_code == 200


def test_notify_rejects_impossible_coordinates_and_boolean_measurements(tmp_path):
    """Issue 14.12: a location [1e400, 2] made an asset at longitude Inf; ``pm25: true`` was read as 1.0."""
    eng, client = notify_client(tmp_path)
    body = ('{"data": [' + json.dumps(beijing_air(pm25=True)) + ", "
            + json.dumps(beijing_air(id="urn:ngsi-ld:AirQualityObserved:inf", refPointOfInterest="bj-inf"))
            .replace("[116.417, 39.929]", "[1e400, 2]") + ", "
            + json.dumps(beijing_air(id="urn:ngsi-ld:AirQualityObserved:lat", refPointOfInterest="bj-lat",
                                     location={"type": "Point", "coordinates": [116.4, 95.0]})) + "]}")
    r = client.post("/ngsi-ld/notify", data=body, content_type="application/json", headers=AUTH)
    assert r.status_code == 200, r.get_json()
    reasons = [p["reason"] for p in r.get_json()["problems"]]
    assert reasons[0] == "pm25 True is not a number"
    assert reasons[1].startswith("entity 2 ('urn:ngsi-ld:AirQualityObserved:inf'): location inf, 2 is not a longitude")
    assert reasons[2].startswith("entity 3 ('urn:ngsi-ld:AirQualityObserved:lat'): location 116.4, 95 is not a")
    assert "pm25" not in values_now(eng, "bj-test-1") and values_now(eng, "bj-test-1")["so2"] == 11
    with eng.connect() as conn:
        ids = {a for (a,) in conn.execute(text("SELECT id FROM assets WHERE id LIKE 'bj-%'"))}
        bad_xy = conn.execute(text("SELECT count(*) FROM assets WHERE NOT (abs(lon) <= 180 AND abs(lat) <= 90)")).scalar()
    assert ids == {"bj-test-1"} and bad_xy == 0


def test_entities_outside_the_city_are_rejected_unless_allowed(tmp_path):
    """Issue 15.11: FIWARE examples in Spain became assets of Beijing's city-wide KPIs."""
    from typer.testing import CliRunner

    from dashboard.cli import app

    eng, client = notify_client(tmp_path)
    madrid = json.loads((AQ / "example.jsonld").read_text())
    r = client.post("/ngsi-ld/notify", json={"data": [madrid, beijing_air()]}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["counts"]["rejected"] == 1
    assert "location -3.71225, 40.42385 is outside every district of the city" in r.get_json()["problems"][0]["reason"]
    with eng.connect() as conn:
        ids = {a for (a,) in conn.execute(text("SELECT id FROM assets WHERE district_id IS NULL"))}
    assert ids == set() and values_now(eng, "bj-test-1")
    # the file importer: rejected by default, kept with --allow-outside
    env = {"PANORAMA_DATABASE_URL": str(eng.url), "PANORAMA_DATA_DIR": str(tmp_path)}
    run = CliRunner().invoke(app, ["city", "import", "ngsi", str(AQ / "example.jsonld")], env=env)
    assert run.exit_code == 0 and "1 rejected" in run.output, run.output
    assert values_now(eng, "28079004-Pza.deEspanya") == {}
    run = CliRunner().invoke(app, ["city", "import", "ngsi", "--allow-outside", str(AQ / "example.jsonld")], env=env)
    assert run.exit_code == 0 and "1 assets added" in run.output, run.output
    assert values_now(eng, "28079004-Pza.deEspanya")["so2"] == 11


def test_notify_an_entity_the_store_refuses_is_rejected_alone(tmp_path, monkeypatch):
    """Issue 14.2: never a 500 for content, also for an error no check foresaw (here: the store refuses
    the asset of one entity); the valid entity beside it is stored."""
    from sqlalchemy.exc import DataError

    from dashboard.importers import ngsi

    eng, client = notify_client(tmp_path)
    real = ngsi.write_assets

    def refusing(conn, frame, *args, **kw):
        if "boom" in set(frame["id"]):
            raise DataError("INSERT INTO assets …", {}, Exception("value refused by the server"))
        return real(conn, frame, *args, **kw)

    monkeypatch.setattr(ngsi, "write_assets", refusing)
    body = {"data": [beijing_air(), beijing_air(id="urn:ngsi-ld:AirQualityObserved:boom", refPointOfInterest="boom")]}
    r = client.post("/ngsi-ld/notify", json=body, headers=AUTH)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["counts"]["rejected"] == 1 and r.get_json()["counts"]["accepted"] == 3
    assert values_now(eng, "bj-test-1") == {"co": 500, "so2": 11, "temp_c": 12.2}
    rej = rejections(eng)
    refused = "entity 2 ('urn:ngsi-ld:AirQualityObserved:boom'): the store refused it (DataError: value refused by the server)"
    assert [(x.line, x.reason) for x in rej] == [(2, refused)]
    assert "boom" in rej[0].raw
