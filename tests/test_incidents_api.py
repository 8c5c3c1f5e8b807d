"""``/api/incidents`` through the app and its access gate: opening from alerts, actions, the detail with
timeline and checklist, filters, paging, district scope, who may act (401, 403 viewer / wrong step
role / no CSRF token), 400 for bad input and a close without a summary, 404, 409; and the CLI."""
from __future__ import annotations

import time

import pytest
from conftest import build_small_city
from test_alerts_api import login, post
from typer.testing import CliRunner

from dashboard import accounts
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import parse_rules
from dashboard.settings import get_settings
from dashboard.store.schema import create_schema, make_engine

DISTRICTS = ("north", "south", "east")
T0 = time.time() - 3600
CITY_TOML = """
name = "Small"
timezone = "UTC"
[alerting]
teams = ["traffic-ops"]
[teams]
traffic-ops = ["bob"]
[[incident_type]]
id = "jam"
label = "Traffic jam"
[[incident_type.step]]
text = "Confirm on cameras"
fields = [{ name = "cameras", kind = "number" }]
[[incident_type.step]]
text = "Send a patrol"
role = "traffic-ops"
"""


def feed(now):
    kpis = {("traffic.tti", "north"): KpiObs(2.0), ("traffic.tti", "south"): KpiObs(2.5),
            ("traffic.tti", "east"): KpiObs(None, "absent", "no roads"), ("parking.full", None): KpiObs(30.0)}
    return Observations(now=now, districts=DISTRICTS, kpis=kpis)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small city with users and three alerts: TTI in north and south, car parks city-wide."""
    folder = tmp_path_factory.mktemp("incidents-api")
    (folder / "city").mkdir()
    (folder / "city" / "city.toml").write_text(CITY_TOML)
    url = f"sqlite:///{folder / 'store.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    build_small_city(engine)
    users = {name: accounts.add_user(engine, name, role, districts=d)[1] for name, role, d in [
        ("vic", "viewer", None), ("ann", "operator", None), ("sam", "operator", ["north"]), ("bob", "operator", None)]}
    rules = parse_rules([
        {"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district", "severity": "critical"},
        {"id": "full", "when": "parking.full >= 25", "severity": "info"}], districts=set(DISTRICTS))
    Evaluator(engine, rules, None, feed, 60).tick(T0)
    yield {"url": url, "engine": engine, "users": users, "city": folder / "city"}
    engine.dispose()


@pytest.fixture(scope="module")
def server(store):
    from dashboard.app import create_app

    s = get_settings(database_url=store["url"], anonymous="off", alert_tick_seconds=0, city=str(store["city"]),
                     login_rate_limit="1000 per minute")
    return create_app(s).server


def alert_ids(c):
    return {(a["rule"], a["district"]): a["id"] for a in c.get("/api/alerts").get_json()["alerts"]}


def test_open_act_and_read_an_incident(server, store):
    ann, bob = login(server, store, "ann"), login(server, store, "bob")
    ids = alert_ids(ann)
    r = post(ann, "/api/incidents", {"type": "jam", "alerts": [ids[("tti", "north")]], "note": "cameras show a crash"})
    assert r.status_code == 201, r.get_json()
    inc = r.get_json()["incident"]
    iid = inc["id"]
    assert (inc["district"], inc["domain"], inc["severity"], inc["opened_by"], inc["status"]) == \
        ("north", "traffic", "critical", "ann", "open")
    assert r.get_json()["current_step"]["text"] == "Confirm on cameras"
    assert post(ann, f"/api/incidents/{iid}/owner", {"to": "bob"}).get_json()["incident"]["owner"] == "bob"
    r = post(ann, f"/api/incidents/{iid}/step", {"step": 1, "fields": {"cameras": "three"}})
    assert r.status_code == 400 and "cameras: a number" in r.get_json()["error"]
    assert post(ann, f"/api/incidents/{iid}/step", {"step": 1, "fields": {"cameras": 3}}).status_code == 200
    r = post(ann, f"/api/incidents/{iid}/step", {"step": 2})
    assert r.status_code == 403 and "team traffic-ops" in r.get_json()["error"]  # the wrong role: the reason
    r = post(bob, f"/api/incidents/{iid}/step", {"step": 2, "note": "unit 7"})
    assert r.status_code == 200 and r.get_json()["event"]["actor"] == "bob"
    r = post(ann, f"/api/incidents/{iid}/step", {"step": 2})
    assert r.status_code == 409 and "done by bob" in r.get_json()["error"]
    assert post(ann, f"/api/incidents/{iid}/add-alerts", {"alerts": [ids[("tti", "south")]]}).status_code == 200
    assert post(bob, f"/api/incidents/{iid}/handover", {"note": "patrol on site"}).status_code == 200
    r = post(bob, f"/api/incidents/{iid}/close", {})
    assert r.status_code == 400 and "needs a summary" in r.get_json()["error"]
    r = post(bob, f"/api/incidents/{iid}/close", {"summary": "crash cleared"})
    assert r.get_json()["incident"]["status"] == "closed"
    assert post(bob, f"/api/incidents/{iid}/note", {"note": "review on Monday"}).status_code == 200
    assert post(bob, f"/api/incidents/{iid}/owner", {"to": "ann"}).status_code == 409
    d = ann.get(f"/api/incidents/{iid}").get_json()
    assert (d["incident"]["summary"], d["incident"]["handover"], d["current_step"]) == \
        ("crash cleared", "patrol on site", None)
    assert [(s["done"]["by"], s["done"]["fields"]) for s in d["checklist"]] == [("ann", {"cameras": 3}), ("bob", {})]
    assert sorted(a["district"] for a in d["alerts"]) == ["north", "south"]
    assert [(x["source"], x["action"]) for x in d["timeline"]][:3] == [("alert", "open"), ("alert", "open"),
                                                                       ("incident", "open")]
    assert [x["action"] for x in d["timeline"] if x["source"] == "incident"] == [
        "open", "alerts", "owner", "step", "step", "alerts", "handover", "close", "note"]
    assert post(ann, f"/api/incidents/{iid}/reopen", {}).get_json()["incident"]["status"] == "open"
    types = ann.get("/api/incident-types").get_json()["types"]
    assert [t["id"] for t in types] == ["general", "jam"] and types[1]["steps"][1]["role"] == "traffic-ops"


def test_filters_paging_and_scope(server, store):
    ann = login(server, store, "ann")
    ids = alert_ids(ann)
    for body in ({"type": "general", "district": "south", "title": "Burst main"},
                 {"type": "general", "alerts": [ids[("full", None)]]},
                 {"type": "jam", "district": "north", "domain": "traffic"}):
        assert post(ann, "/api/incidents", body).status_code == 201
    closed = post(ann, "/api/incidents", {"type": "general", "district": "east"}).get_json()["incident"]["id"]
    post(ann, f"/api/incidents/{closed}/close", {"summary": "nothing there"})
    vic = login(server, store, "vic")

    def got(query=""):
        r = vic.get("/api/incidents" + query)
        assert r.status_code == 200, r.get_json()
        return [(i["type"], i["district"]) for i in r.get_json()["incidents"]]

    everything = got()
    assert ("general", "south") in everything and ("general", None) in everything
    assert got("?status=closed") == [("general", "east")]
    assert set(got("?type=jam")) == {("jam", "north")}
    assert got("?district=south") == [("general", "south")]
    assert got("?domain=parking") == [("general", None)]
    assert got(f"?since={time.time() + 60}") == []
    seen, cursor = [], None
    while True:
        page = vic.get("/api/incidents?limit=2" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [i["id"] for i in page["incidents"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(everything) and seen == sorted(seen, reverse=True)
    for query, words in [("status=gone", "status"), ("type=flood", "type"), ("district=nowhere", "unknown district"),
                         ("limit=0", "limit"), ("since=yesterday", "since"), ("colour=red", "unknown parameter"),
                         ("domain=weather", "domain")]:
        r = vic.get("/api/incidents?" + query)
        assert r.status_code == 400 and words in r.get_json()["error"], (query, r.get_json())
    sam = login(server, store, "sam")  # north only
    r = sam.get("/api/incidents")
    assert {i["district"] for i in r.get_json()["incidents"]} == {"north"}
    assert sam.get("/api/incidents?district=south").status_code == 403
    south = next(i["id"] for i in vic.get("/api/incidents?district=south").get_json()["incidents"])
    for resp in (sam.get(f"/api/incidents/{south}"), post(sam, f"/api/incidents/{south}/note", {"note": "x"})):
        assert resp.status_code == 404 and "south" not in resp.get_data(as_text=True).lower()
    r = post(sam, "/api/incidents", {"type": "general"})
    assert r.status_code == 403 and "name the district" in r.get_json()["error"]
    assert post(sam, "/api/incidents", {"type": "general", "district": "south"}).status_code == 403
    r = post(sam, "/api/incidents", {"type": "general", "alerts": [ids[("full", None)]]})
    assert r.status_code in (404, 409)  # city-wide alert: not sam's to see
    north = [i for i in sam.get("/api/incidents").get_json()["incidents"] if i["type"] == "jam"]
    d = sam.get(north[-1]["href"]).get_json()  # the first jam groups north and south alerts: sam sees north's
    assert {a["district"] for a in d["alerts"]} <= {"north"}
    assert all(x.get("place") in (None, "north") for x in d["timeline"])


def test_who_may_act(server, store):
    anon = server.test_client()
    assert anon.get("/api/incidents").status_code == 401
    assert anon.post("/api/incidents", json={"type": "general"}).status_code == 401
    vic = login(server, store, "vic")
    assert post(vic, "/api/incidents", {"type": "general", "district": "north"}).status_code == 403
    assert post(vic, "/api/incidents/1/note", {"note": "x"}).status_code == 403
    ann = login(server, store, "ann")
    r = post(ann, "/api/incidents", {"type": "general", "district": "north"}, csrf=False)
    assert r.status_code == 403 and "CSRF" in r.get_json()["error"]
    for body, status, words in [({"type": "flood"}, 400, "type: one of"), ({"type": "general", "alerts": [999999]}, 404,
                                                                            "no alert 999999"),
                                ({"type": "general", "district": "north", "severity": "loud"}, 400, "severity"),
                                ({"type": "general", "district": "north", "owner": "nobody"}, 400, "owner"),
                                ({"type": "general", "why": 1}, 400, "unknown field")]:
        r = post(ann, "/api/incidents", body)
        assert r.status_code == status and words in r.get_json()["error"], (body, r.get_json())
    assert post(ann, "/api/incidents/999999/note", {"note": "x"}).status_code == 404
    assert ann.get("/api/incidents/999999").status_code == 404


def test_the_command_line(server, store, monkeypatch):
    from dashboard.cli import app as cli

    monkeypatch.setenv("PANORAMA_DATABASE_URL", store["url"])
    monkeypatch.setenv("PANORAMA_CITY", str(store["city"]))
    run = CliRunner().invoke
    r = run(cli, ["incident", "open", "--type", "jam", "--district", "north", "--title", "Lorry on ring road",
                  "--as", "ann"])
    assert r.exit_code == 0, r.output
    iid = r.output.split()[1]
    assert "Lorry on ring road" in run(cli, ["incident", "list", "--status", "open"]).output
    r = run(cli, ["incident", "show", iid])
    assert r.exit_code == 0 and "Confirm on cameras" in r.output and "[ ]" in r.output, r.output
    r = run(cli, ["incident", "close", iid, "--as", "ann"])
    assert r.exit_code == 2 and "closing an incident needs a summary" in r.output, r.output
    assert run(cli, ["incident", "close", iid, "--as", "vic", "--summary", "x"]).exit_code == 2
    r = run(cli, ["incident", "close", iid, "--as", "ann", "--summary", "towed away"])
    assert r.exit_code == 0 and "closed" in r.output, r.output
    assert "towed away" in run(cli, ["incident", "show", iid]).output
    assert run(cli, ["incident", "show", "999999"]).exit_code == 2
