"""Incidents in the store, on SQLite and PostgreSQL: the lifecycle and its audit rows, replay from events,
checklist steps by role, closing with a summary, grouping by rule within a window in the evaluator's
tick. Time is driven by hand (alerts fired through the evaluator with an injected clock)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from dashboard import accounts
from dashboard.alerts.config import parse_alerting
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import RuleError, parse_rules
from dashboard.incidents import config as ic
from dashboard.incidents import store
from dashboard.store.schema import alerts, incident_alerts, incident_events, incidents

DISTRICTS = ("north", "south", "east")
TICK = 60
ALERTING = {"teams": ["traffic-ops"], "auto_resolve_after": "1m"}
CITY = {
    "teams": {"traffic-ops": ["tom"]},
    "incident_type": [{"id": "jam", "label": "Traffic jam", "step": [
        {"text": "Confirm on cameras", "role": "operator", "fields": [{"name": "cameras", "kind": "number"}]},
        {"text": "Send a patrol", "role": "traffic-ops",
         "fields": [{"name": "unit", "kind": "text"}, {"name": "priority", "kind": "choice", "choices": ["p1", "p2"]}]},
        {"text": "Tell the press", "role": "admin"}]}],
    "incident_rule": [{"id": "jams", "type": "jam", "domain": "traffic", "severities": ["warning", "critical"],
                       "window": "30m", "min_alerts": 2}],
}
RULES = [{"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district"},
         {"id": "slow", "when": "traffic.mean_speed < 20", "scope": "each district", "severity": "critical"}]


def cfg():
    return ic.parse_incidents(CITY, alerting=parse_alerting(ALERTING))


class Feed:
    """KPI values by (kpi, district); a pair left out is fine (no data: a district with nothing to measure)."""

    def __init__(self):
        self.values = {}

    def __call__(self, now):
        kpis = {(k, d): KpiObs(None, "absent", "none") for k in ("traffic.tti", "traffic.mean_speed") for d in DISTRICTS}
        kpis.update({key: KpiObs(v) for key, v in self.values.items()})
        return Observations(now=now, districts=DISTRICTS, kpis=kpis)


def evaluator(engine, feed):
    return Evaluator(engine, parse_rules(RULES, districts=set(DISTRICTS)), parse_alerting(ALERTING), feed, TICK,
                     worker="test", incidents=cfg())


def tick(ev, feed, t, **values):
    """Set the KPI values (``tti_north=2.0``, ``slow_north=10``; None: back to normal) and tick at ``t``."""
    for k, v in values.items():
        kind, d = k.split("_")
        key = ("traffic.tti" if kind == "tti" else "traffic.mean_speed", d)
        feed.values[key] = v if v is not None else (1.0 if kind == "tti" else 40.0)
    return ev.tick(t)


def all_incidents(engine):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(incidents).order_by(incidents.c.id))]


def members(engine, incident_id):
    with engine.connect() as conn:
        return store.alert_ids(conn, incident_id)


def act(engine, iid, action, actor="ann", role="operator", now=None, **body):
    with engine.begin() as conn:
        return store.act(conn, iid, action, actor, role, body, cfg(), now=now)[0]


def assert_replays(engine):
    """Every incident rebuilt from its events alone equals its row; its alerts are those its events added."""
    with engine.connect() as conn:
        for row in all_incidents(engine):
            assert store.replay(conn, row["id"]) == row
            added = [a for e in store.history(conn, row["id"]) if e["action"] == "alerts" for a in e["detail"]["alerts"]]
            assert sorted(added) == sorted(store.alert_ids(conn, row["id"]))


def test_the_city_declares_types_rules_and_teams_checked_in_one_line():
    c = cfg()
    assert set(c.types) == {"general", "jam"} and [s.role for s in c.types["jam"].steps] == ["operator", "traffic-ops", "admin"]
    assert c.rules[0].window == 1800 and c.rules[0].min_alerts == 2
    step = c.types["jam"].steps[1]
    assert c.may_do(step, "Tom", "operator") is None and "not in it" in c.may_do(step, "ann", "admin")
    assert "an admin" in c.may_do(c.types["jam"].steps[2], "ann", "operator")
    t = CITY["incident_type"][0]
    bad = [({"incident_type": [{"id": "a b"}]}, "is not a type id"),
           ({"incident_type": [t, t]}, "used by an earlier type"),
           ({"incident_type": [{"id": "x", "step": [{"text": "go", "role": "firemen"}]}]}, "role: 'firemen'"),
           ({"incident_type": [{"id": "x", "step": [{"text": "go", "fields": [{"name": "n", "kind": "date"}]}]}]},
            "kind 'date'"),
           ({"incident_type": [{"id": "x", "step": [{"text": "go", "fields": [{"name": "n", "kind": "choice"}]}]}]},
            "needs choices"),
           ({"incident_type": [{"id": "x", "colour": "red"}]}, "unknown field"),
           ({"incident_rule": [{"id": "r", "type": "nope", "domain": "traffic"}]}, "not an incident type"),
           ({"incident_rule": [{"id": "r", "type": "general", "domain": "weather"}]}, "domain"),
           ({"incident_rule": [{"id": "r", "type": "general", "domain": "traffic", "window": "soon"}]}, "not a duration"),
           ({"incident_rule": [{"id": "r", "type": "general", "domain": "traffic", "min_alerts": 0}]}, "min_alerts"),
           ({"teams": {"fire": ["x"]}}, "not a team of")]
    for table, words in bad:
        with pytest.raises(RuleError, match=words) as e:
            ic.parse_incidents(table, alerting=parse_alerting(ALERTING))
        assert "\n" not in str(e.value) and str(e.value).startswith("city.toml: ")


def test_the_demo_city_declares_its_procedures():
    from dashboard.city import load_city
    from dashboard.settings import DATA_ROOT

    c = load_city(DATA_ROOT / "beijing").incidents
    assert {"air-pollution", "traffic-incident", "feed-outage"} <= set(c.types)
    assert all(t.steps for k, t in c.types.items() if k != "general")
    assert {r.type for r in c.rules} == {"air-pollution", "traffic-incident", "feed-outage"}


def test_the_lifecycle_and_its_audit_rows(engine):
    for name, role in (("ann", "operator"), ("tom", "operator"), ("ada", "admin")):
        accounts.add_user(engine, name, role)
    feed = Feed()
    ev = evaluator(engine, feed)
    tick(ev, feed, 0, tti_north=2.0, tti_south=2.0)
    with engine.connect() as conn:
        north, south = [r.id for r in conn.execute(select(alerts.c.id).order_by(alerts.c.id))]
    assert all_incidents(engine) == []  # one alert each: the rule wants two
    with engine.begin() as conn:
        row, evs = store.open_incident(conn, "ann", cfg().type("jam"), alert_ids=[north], note="looks bad", now=100)
    assert (row["district_id"], row["domain"], row["severity"], row["status"], row["title"], row["alerts"]) == \
        ("north", "traffic", "warning", "open", "Traffic jam — north", 1)
    iid = row["id"]
    with pytest.raises(store.IncidentError, match=f"alert {north} is already in incident {iid}") as e:
        act(engine, iid, "add-alerts", alerts=[north])
    assert e.value.status == 409
    act(engine, iid, "owner", now=110, to="TOM")
    act(engine, iid, "note", now=120, note="police called")
    with engine.connect() as conn:
        assert store.current_step(conn, iid, cfg())["n"] == 1
    a = act(engine, iid, "step", now=130, step=1, fields={"cameras": 3})
    assert a["steps_done"] == 1
    with pytest.raises(store.IncidentError, match="team traffic-ops") as e:
        act(engine, iid, "step", actor="ann", step=2, fields={"unit": "P-7", "priority": "p1"})
    assert e.value.status == 403
    with pytest.raises(store.IncidentError, match="priority: one of p1, p2") as e:
        act(engine, iid, "step", actor="tom", step=2, fields={"unit": "P-7", "priority": "p9"})
    assert e.value.status == 400
    act(engine, iid, "step", actor="tom", now=140, step=2, fields={"unit": "P-7", "priority": "p1"}, note="on the way")
    with pytest.raises(store.IncidentError, match="step 2 was done by tom") as e:
        act(engine, iid, "step", actor="tom", step=2, fields={"unit": "x", "priority": "p2"})
    assert e.value.status == 409
    with pytest.raises(store.IncidentError, match="an admin") as e:
        act(engine, iid, "step", step=3)
    assert e.value.status == 403
    with engine.connect() as conn:
        assert store.current_step(conn, iid, cfg()) == {"n": 3, "text": "Tell the press", "role": "admin", "fields": [],
                                                        "of": 3}
    row = act(engine, iid, "add-alerts", now=150, alerts=[south], note="same jam, across the river")
    assert (row["alerts"], row["district_id"]) == (2, "north")
    act(engine, iid, "handover", now=160, actor="tom", note="patrol P-7 on site; check again at 18:00")
    with pytest.raises(store.IncidentError, match="needs a summary") as e:
        act(engine, iid, "close", now=170)
    assert e.value.status == 400
    row = act(engine, iid, "close", now=180, actor="tom", summary="Lorry removed, traffic back to normal")
    assert (row["status"], row["closed_by"], row["closed_at"], row["summary"]) == \
        ("closed", "tom", 180, "Lorry removed, traffic back to normal")
    for action, body in (("step", {"step": 3}), ("owner", {"to": "ann"}), ("close", {"summary": "x"})):
        with pytest.raises(store.IncidentError, match="closed: reopen it first") as e:
            act(engine, iid, action, actor="ada", role="admin", **body)
        assert e.value.status == 409
    row = act(engine, iid, "reopen", now=200, note="jam is back")
    assert (row["status"], row["closed_at"], row["summary"]) == ("open", None, "Lorry removed, traffic back to normal")
    act(engine, iid, "step", actor="ada", role="admin", now=210, step=3)
    act(engine, iid, "close", now=220, summary="Cleared for good")
    with engine.connect() as conn:
        hist = store.history(conn, iid)
        steps = store.checklist(conn, store.get(conn, iid), cfg())
        tl = store.timeline(conn, iid)
        assert store.current_step(conn, iid, cfg()) is None
    assert [(e["actor"], e["action"]) for e in hist] == [
        ("ann", "open"), ("ann", "alerts"), ("ann", "owner"), ("ann", "note"), ("ann", "step"), ("tom", "step"),
        ("ann", "alerts"), ("tom", "handover"), ("tom", "close"), ("ann", "reopen"), ("ada", "step"), ("ann", "close")]
    assert [e["uid"] for e in hist] == [f"incident-{iid}-{i}" for i in range(1, 13)]
    assert hist[2]["detail"] == {"to": "tom", "from": None} and hist[3]["note"] == "police called"
    assert [(s["done"]["by"], s["done"]["at"], s["done"]["fields"]) for s in steps] == [
        ("ann", 130, {"cameras": 3}), ("tom", 140, {"unit": "P-7", "priority": "p1"}), ("ada", 210, {})]
    assert [(x["source"], x["action"], x["at"]) for x in tl[:4]] == [
        ("alert", "open", 0), ("alert", "open", 0), ("incident", "open", 100), ("incident", "alerts", 100)]
    assert [x["at"] for x in tl] == sorted(x["at"] for x in tl)
    assert_replays(engine)


def test_incident_actions_refused_with_a_reason(engine):
    accounts.add_user(engine, "ann", "operator")
    with engine.begin() as conn:
        iid = store.open_incident(conn, "ann", cfg().type("general"), district="north", now=0)[0]["id"]
        with pytest.raises(store.IncidentError, match="must be in one of them") as e:
            store.open_incident(conn, "sam", cfg().type("general"), district="south", districts=("north",))
        assert e.value.status == 403
        with pytest.raises(store.IncidentError, match="no alert 99") as e:
            store.open_incident(conn, "ann", cfg().type("general"), alert_ids=[99])
        assert e.value.status == 404
    cases = [("fly", {}, 404, "no action"), ("note", {}, 400, "needs text"), ("owner", {"to": "nobody"}, 400, "no enabled"),
             ("add-alerts", {"alerts": []}, 400, "list of 1 to"), ("add-alerts", {"alerts": ["1"]}, 400, "alert ids"),
             ("step", {"step": 1}, 400, "no checklist"), ("reopen", {}, 409, "is open, not closed"),
             ("close", {"summary": "  "}, 400, "needs a summary"), ("note", {"summary": "x"}, 400, "unknown field")]
    for action, body, status, words in cases:
        with pytest.raises(store.IncidentError, match=words) as e:
            act(engine, iid, action, **body)
        assert e.value.status == status, action
    with pytest.raises(store.IncidentError, match="no incident 999"):
        act(engine, 999, "note", note="x")
    with engine.connect() as conn:
        assert [e["action"] for e in store.history(conn, iid)] == ["open"]  # nothing refused was written


def test_grouping_by_rule_within_the_window_in_the_tick(engine):
    feed = Feed()
    ev = evaluator(engine, feed)
    res = tick(ev, feed, 0, tti_north=2.0)
    assert res["incident_events"] == [] and all_incidents(engine) == []  # one alert: min_alerts is 2
    res = tick(ev, feed, 60, slow_north=10.0, tti_south=2.0)  # a second north alert within 30 min
    [inc] = all_incidents(engine)
    assert [e["action"] for e in res["incident_events"]] == ["open", "alerts"]
    assert (inc["type"], inc["district_id"], inc["domain"], inc["severity"], inc["rule"], inc["opened_by"], inc["alerts"]) \
        == ("jam", "north", "traffic", "critical", "jams", "system", 2)
    tick(ev, feed, 120, tti_north=None)  # clears, resolved a minute later …
    tick(ev, feed, 180)
    tick(ev, feed, 240, tti_north=2.0)  # … and comes back: a new alert, within the window: it joins
    [inc] = all_incidents(engine)
    assert (inc["alerts"], inc["last_alert_at"]) == (3, 240)
    tick(ev, feed, 300, tti_north=None)
    tick(ev, feed, 360)
    tick(ev, feed, 240 + 1800 + 60, tti_north=2.0)  # back again, after the window: joins nothing, opens nothing
    tick(ev, feed, 3000, slow_south=10.0)  # south's second alert, 49 min after its first: no incident
    [inc] = all_incidents(engine)
    assert inc["alerts"] == 3
    with engine.connect() as conn:
        grouped = {r.alert_id for r in conn.execute(select(incident_alerts.c.alert_id))}
        rows = {(r.rule, r.district_id, r.opened_at): r.id for r in conn.execute(select(alerts))}
    assert grouped == {rows[("tti", "north", 0)], rows[("slow", "north", 60)], rows[("tti", "north", 240)]}
    assert_replays(engine)


def test_a_failed_grouping_undoes_the_tick(engine, monkeypatch):
    """The alert and its incident are written in one transaction: a grouping that fails leaves neither."""
    from dashboard.incidents import store as istore

    feed = Feed()
    ev = evaluator(engine, feed)
    tick(ev, feed, 0, tti_north=2.0)

    def broken(*a, **k):
        raise RuntimeError("grouping failed")

    monkeypatch.setattr(istore, "group", broken)
    with pytest.raises(RuntimeError):
        tick(ev, feed, 60, slow_north=10.0)
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.rule)).scalars().all() == ["tti"]
        assert conn.execute(select(incident_events.c.id)).all() == []
    monkeypatch.undo()
    tick(ev, feed, 120)
    assert [i["alerts"] for i in all_incidents(engine)] == [2]
