"""``/api/alerts`` and ``/api/silences`` through the app and its access gate: filters, paging, district
scope, who may act (401 anonymous, 403 viewer or no CSRF token), 400 for bad input, 404, 409."""
from __future__ import annotations

import re
import time

import pytest
from conftest import build_small_city

from dashboard import accounts
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import parse_rules
from dashboard.settings import get_settings
from dashboard.store.schema import create_schema, make_engine

DISTRICTS = ("north", "south", "east")
T0 = time.time() - 3600


def feed(now):
    kpis = {("traffic.tti", "north"): KpiObs(2.0), ("traffic.tti", "south"): KpiObs(2.5),
            ("traffic.tti", "east"): KpiObs(None, "absent", "no roads"), ("parking.full", None): KpiObs(30.0),
            ("transit.on_time", None): KpiObs(50.0)}
    return Observations(now=now, districts=DISTRICTS, kpis=kpis)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small city with users and four alerts: TTI in north and south (critical), car parks and
    buses city-wide; the north one acknowledged."""
    url = f"sqlite:///{tmp_path_factory.mktemp('alerts-api') / 'store.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    build_small_city(engine)
    users = {name: accounts.add_user(engine, name, role, districts=d)[1] for name, role, d in [
        ("vic", "viewer", None), ("ann", "operator", None), ("sam", "operator", ["north"]), ("bob", "operator", None)]}
    rules = parse_rules([
        {"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district", "severity": "critical"},
        {"id": "full", "when": "parking.full >= 25", "severity": "info"},
        {"id": "late", "when": "transit.on_time < 65"}], districts=set(DISTRICTS))
    Evaluator(engine, rules, None, feed, 60).tick(T0)
    yield {"url": url, "engine": engine, "users": users}
    engine.dispose()


def app_for(store, anonymous="off"):
    from dashboard.app import create_app

    s = get_settings(database_url=store["url"], anonymous=anonymous, alert_tick_seconds=0,
                     login_rate_limit="1000 per minute")
    return create_app(s).server


@pytest.fixture(scope="module")
def server(store):
    return app_for(store)


def login(server, store, name):
    c = server.test_client()
    page = c.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = c.post("/login", data={"name": name, "password": store["users"][name], "csrf": csrf})
    assert r.status_code == 303, r.get_data(as_text=True)[:200]
    c.csrf = c.get_cookie("_csrf_token").value
    return c


def post(c, path, body=None, csrf=True):
    headers = {"X-CSRFToken": c.csrf} if csrf else {}
    return c.post(path, json=body, headers=headers)


def ids(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return sorted((a["rule"], a["district"]) for a in resp.get_json()["alerts"])


def alert_id(c, rule, district=None):
    return next(a["id"] for a in c.get(f"/api/alerts?rule={rule}").get_json()["alerts"] if a["district"] == district)


def test_filters(server, store):
    c = login(server, store, "vic")
    everything = [("full", None), ("late", None), ("tti", "north"), ("tti", "south")]
    assert ids(c.get("/api/alerts")) == everything
    assert ids(c.get("/api/alerts?severity=critical")) == [("tti", "north"), ("tti", "south")]
    assert ids(c.get("/api/alerts?severity=info,warning")) == [("full", None), ("late", None)]
    assert ids(c.get("/api/alerts?district=south")) == [("tti", "south")]
    assert ids(c.get("/api/alerts?domain=parking")) == [("full", None)]
    assert ids(c.get("/api/alerts?rule=late")) == [("late", None)]
    assert ids(c.get("/api/alerts?state=firing")) == everything
    assert ids(c.get("/api/alerts?state=resolved")) == []
    assert ids(c.get(f"/api/alerts?since={T0 - 1}")) == everything
    assert ids(c.get("/api/alerts?since=" + time.strftime("%Y-%m-%dT%H:%M:%S%%2B00:00", time.gmtime()))) == []
    a = c.get("/api/alerts?rule=full").get_json()["alerts"][0]
    assert (a["state"], a["status"], a["severity"], a["value"], a["opened_at"]) == ("firing", "new", "info", 30.0, T0)


def test_paging_walks_every_alert_once(server, store):
    c = login(server, store, "vic")
    seen, cursor = [], None
    while True:
        page = c.get("/api/alerts?limit=3" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [a["id"] for a in page["alerts"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 4 and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize("query, words", [
    ("state=bogus", "state: 'bogus' is not one of"), ("severity=loud", "severity"), ("limit=0", "limit"),
    ("limit=501", "limit"), ("cursor=x", "cursor"), ("since=yesterday", "since"), ("since=2026-01-01T00:00", "offset"),
    ("district=nowhere", "unknown district"), ("domain=weather", "domain"), ("rule=a%20b", "rule"),
    ("colour=red", "unknown parameter")])
def test_bad_filters_are_400_with_a_reason(server, store, query, words):
    r = login(server, store, "vic").get("/api/alerts?" + query)
    assert r.status_code == 400 and words in r.get_json()["error"], r.get_json()


def test_a_district_scoped_user_sees_and_acts_on_its_districts_only(server, store):
    c = login(server, store, "sam")
    assert ids(c.get("/api/alerts")) == [("tti", "north")]  # not south, not the city-wide ones
    assert c.get("/api/alerts?district=south").status_code == 403
    south = alert_id(login(server, store, "ann"), "tti", "south")
    for r in (c.get(f"/api/alerts/{south}"), c.get(f"/api/alerts/{south}/history"),
              post(c, f"/api/alerts/{south}/comment", {"note": "x"})):
        assert r.status_code == 404 and "south" not in r.get_data(as_text=True)
    r = post(c, "/api/silences", {"reason": "works", "for": "1h"})
    assert r.status_code == 403 and "name the district" in r.get_json()["error"]
    assert post(c, "/api/silences", {"reason": "works", "for": "1h", "district": "south"}).status_code == 403
    r = post(c, "/api/silences", {"reason": "works", "for": "1h", "district": "north", "rule": "tti"})
    assert r.status_code == 201, r.get_json()
    assert [s["district"] for s in c.get("/api/silences").get_json()["silences"]] == ["north"]
    sid = r.get_json()["silence"]["id"]
    assert post(c, f"/api/silences/{sid}/end").get_json()["silence"]["ended_by"] == "sam"


def test_who_may_act(server, store):
    anon = server.test_client()
    target = alert_id(login(server, store, "ann"), "late")
    assert anon.get("/api/alerts").status_code == 401
    assert anon.post(f"/api/alerts/{target}/ack", json={}).status_code == 401
    assert anon.post("/api/silences", json={"reason": "x", "for": "1h", "rule": "late"}).status_code == 401
    visitor = app_for(store, anonymous="viewer").test_client()  # reads without signing in, never acts
    assert visitor.get("/api/alerts").status_code == 200
    assert visitor.post(f"/api/alerts/{target}/ack", json={}).status_code == 403
    _device, token = accounts.add_device(store["engine"], "wall 1")
    wall = server.test_client()
    assert wall.get(f"/device/{token}").status_code == 303
    r = wall.post(f"/api/alerts/{target}/ack", json={}, headers={"X-CSRFToken": wall.get_cookie("_csrf_token").value})
    assert r.status_code == 403 and "wall device" in r.get_json()["error"]  # a wall reads, never acts
    viewer = login(server, store, "vic")
    for path in (f"/api/alerts/{target}/ack", "/api/silences", "/api/silences/1/end"):
        assert post(viewer, path, {}).status_code == 403, path
    ann = login(server, store, "ann")
    r = post(ann, f"/api/alerts/{target}/ack", {"note": "x"}, csrf=False)
    assert r.status_code == 403 and "CSRF" in r.get_json()["error"]
    r = post(ann, f"/api/alerts/{target}/ack", {"note": "looking"})
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["alert"]["acknowledged_by"], r.get_json()["event"]["actor"]) == ("ann", "ann")


def test_actions_through_the_api_and_the_history(server, store):
    ann = login(server, store, "ann")
    aid = alert_id(ann, "full")
    assert post(ann, f"/api/alerts/{aid}/ack", {"note": "seen"}).status_code == 200
    assert post(ann, f"/api/alerts/{aid}/assign", {"to": "bob"}).get_json()["alert"]["assignee"] == "bob"
    r = post(ann, f"/api/alerts/{aid}/shelve", {"minutes": 30, "note": "event tonight"})
    assert r.get_json()["alert"]["shelved"] is True
    assert ids(ann.get("/api/alerts?state=shelved")) == [("full", None)]
    assert post(ann, f"/api/alerts/{aid}/comment", {"note": "cars leaving"}).status_code == 200
    r = post(ann, f"/api/alerts/{aid}/resolve", {})
    assert r.status_code == 409 and "still firing" in r.get_json()["error"]
    h = ann.get(f"/api/alerts/{aid}/history").get_json()
    assert [(e["actor"], e["action"], e["to_status"]) for e in h["events"]] == [
        ("system", "open", "new"), ("ann", "ack", "acknowledged"), ("ann", "assign", "assigned"),
        ("ann", "shelve", "assigned"), ("ann", "comment", "assigned")]
    assert h["events"][-1]["note"] == "cars leaving"
    for path, body, status in [(f"/api/alerts/{aid}/assign", {"to": "nobody"}, 400),
                               (f"/api/alerts/{aid}/shelve", {"minutes": -1}, 400),
                               (f"/api/alerts/{aid}/fly", {}, 404), ("/api/alerts/99999/ack", {}, 404),
                               ("/api/silences/99999/end", None, 404)]:
        r = post(ann, path, body)
        assert r.status_code == status and r.get_json()["error"], (path, r.get_json())
    r = ann.post(f"/api/alerts/{aid}/comment", data="not json", headers={"X-CSRFToken": ann.csrf,
                                                                         "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.get_json()["error"]
    assert ann.get("/api/alerts/99999").status_code == 404


def test_silences_through_the_api(server, store):
    ann = login(server, store, "ann")
    r = post(ann, "/api/silences", {"rule": "late", "reason": "timetable change", "for": "2h"})
    assert r.status_code == 201
    s = r.get_json()["silence"]
    assert (s["active"], s["created_by"], round(s["ends_at"] - s["starts_at"])) == (True, "ann", 7200)
    assert s["id"] in [x["id"] for x in ann.get("/api/silences").get_json()["silences"]]
    for body, words in [({"reason": "x", "for": "2h"}, "at least one of"), ({"rule": "late", "for": "2h"}, "reason"),
                        ({"rule": "late", "reason": "x", "for": "2 hours"}, "not a duration"),
                        ({"rule": "late", "reason": "x"}, "how long"), ({"rule": "late", "reason": "x", "for": True}, "duration"),
                        ({"domain": "weather", "reason": "x", "for": "1h"}, "domain"),
                        ({"rule": "late", "reason": "x", "for": "1h", "who": "me"}, "unknown field")]:
        r = post(ann, "/api/silences", body)
        assert r.status_code == 400 and words in r.get_json()["error"], (body, r.get_json())
    assert post(ann, f"/api/silences/{s['id']}/end").get_json()["silence"]["active"] is False
    r = post(ann, f"/api/silences/{s['id']}/end")
    assert r.status_code == 409
    assert s["id"] not in [x["id"] for x in ann.get("/api/silences").get_json()["silences"]]
    assert s["id"] in [x["id"] for x in ann.get("/api/silences?all=1").get_json()["silences"]]
