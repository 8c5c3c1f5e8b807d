"""Alerts in the store, on SQLite and PostgreSQL: the lifecycle and its audit rows, replay from events,
one evaluation per tick, restarts, escalation, shelves and silences. Time is driven by hand."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from dashboard import accounts
from dashboard.alerts import notify, store
from dashboard.alerts.config import parse_alerting
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator, evaluations
from dashboard.alerts.rules import RuleError, parse_rules
from dashboard.store.schema import alert_events, alert_state, alert_ticks, alerts

DISTRICTS = ("north", "south", "east")
TICK = 60


def rules(*tables):
    return parse_rules([dict(t) for t in tables], districts=set(DISTRICTS))


TTI = {"id": "tti", "when": "traffic.tti > 1.6", "for": "10m", "summary": "Heavy congestion"}


class Feed:
    """The city's TTI over time (None: no data), per district when given a dict (a district left
    out has no roads: nothing to measure there)."""

    def __init__(self, value=1.0):
        self.value = value

    def __call__(self, now):
        v = self.value
        kpis = {("traffic.tti", d): KpiObs(x) for d, x in (v.items() if isinstance(v, dict) else [(None, v)])}
        if isinstance(v, dict):
            kpis.update({("traffic.tti", d): KpiObs(None, "absent", "no roads") for d in DISTRICTS if d not in v})
        return Observations(now=now, districts=DISTRICTS, kpis=kpis)


def evaluator(engine, feed, *tables, alerting=None):
    return Evaluator(engine, rules(*(tables or (TTI,))), parse_alerting(alerting), feed, TICK, worker="test")


def run(ev, feed, values: dict):
    """Tick at each time of ``values`` ({t: value}) in order; return the events written."""
    out = []
    for t, v in sorted(values.items()):
        feed.value = v
        res = ev.tick(t)
        out += res["events"] if res else []
    return out


def rows(engine):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.id))]


def events(engine, alert_id):
    with engine.connect() as conn:
        return [(e["actor"], e["action"], e["from_status"], e["to_status"]) for e in store.history(conn, alert_id)]


def act(engine, alert_id, action, actor="ann", now=None, **body):
    with engine.begin() as conn:
        return store.act(conn, alert_id, action, actor, body, now=now, teams=("traffic-ops",))[0]


def assert_replays(engine):
    """Every alert rebuilt from its events alone equals its row (the live value aside)."""
    with engine.connect() as conn:
        for row in rows(engine):
            rebuilt = store.replay(conn, row["id"])
            row.pop("value")
            assert rebuilt == row


def test_the_lifecycle_and_its_audit_rows(engine):
    accounts.add_user(engine, "bob", "operator")
    feed = Feed()
    ev = evaluator(engine, feed, alerting={"auto_resolve_after": "5m"})
    run(ev, feed, {0: 1.7, 300: 1.7})
    assert rows(engine) == []  # pending: not an alert yet
    run(ev, feed, {600: 1.8})
    [a] = rows(engine)
    assert (a["state"], a["status"], a["opened_at"], a["value"], a["repeat"]) == ("firing", "new", 600, 1.8, 1)
    assert (a["rule"], a["scope"], a["domain"], a["severity"], a["summary"]) == \
        ("tti", "city", "traffic", "warning", "Heavy congestion")
    a = act(engine, a["id"], "ack", now=660, note="on it")
    assert (a["status"], a["acknowledged_by"], a["acknowledged_at"], a["ack_note"]) == ("acknowledged", "ann", 660, "on it")
    a = act(engine, a["id"], "assign", now=670, to="BOB")
    assert (a["status"], a["assignee"], a["assignee_kind"]) == ("assigned", "bob", "user")
    a = act(engine, a["id"], "assign", now=680, to="traffic-ops", kind="team", note="handover to the team")
    act(engine, a["id"], "comment", now=690, note="police on site")
    run(ev, feed, {720: 1.5})  # the condition clears: the alert stays assigned, its state inactive
    [a] = rows(engine)
    assert (a["state"], a["status"], a["clear_since"]) == ("inactive", "assigned", 720)
    run(ev, feed, {960: 1.5})
    assert rows(engine)[0]["status"] == "assigned"  # clear for 4 min: not yet
    run(ev, feed, {1020: 1.5})
    [a] = rows(engine)
    assert (a["status"], a["resolved_by"], a["resolved_at"]) == ("resolved", "system", 1020)
    a = act(engine, a["id"], "reopen", now=1100, note="not fixed, cones still out")
    assert (a["status"], a["resolved_at"], a["clear_since"]) == ("assigned", None, 1100)
    a = act(engine, a["id"], "resolve", now=1110, actor="bob", note="cones cleared")
    assert (a["status"], a["resolved_by"]) == ("resolved", "bob")
    assert events(engine, a["id"]) == [
        ("system", "open", None, "new"), ("ann", "ack", "new", "acknowledged"),
        ("ann", "assign", "acknowledged", "assigned"), ("ann", "assign", "assigned", "assigned"),
        ("ann", "comment", "assigned", "assigned"), ("system", "engine", "assigned", "assigned"),
        ("system", "resolve", "assigned", "resolved"), ("ann", "reopen", "resolved", "assigned"),
        ("bob", "resolve", "assigned", "resolved")]
    with engine.connect() as conn:
        hist = store.history(conn, a["id"])
    assert [e["uid"] for e in hist] == [f"alert-{a['id']}-{i}" for i in range(1, 10)]
    assert hist[4]["note"] == "police on site" and hist[5]["detail"]["event"] == "resolved"
    assert_replays(engine)


def test_actions_refused_with_a_reason(engine):
    feed = Feed()
    ev = evaluator(engine, feed, {**TTI, "for": 0})
    run(ev, feed, {0: 2.0})
    [a] = rows(engine)
    cases = [("resolve", {}, 409, "still firing"), ("reopen", {}, 409, "not resolved"),
             ("unshelve", {}, 409, "not shelved"), ("comment", {}, 400, "needs text"),
             ("assign", {"to": "nobody"}, 400, "no enabled user"), ("assign", {"to": "x", "kind": "x"}, 400, "user or team"),
             ("assign", {"to": "fire", "kind": "team"}, 400, "no team 'fire'"), ("shelve", {"minutes": 0}, 400, "minutes"),
             ("shelve", {"minutes": "5"}, 400, "minutes"), ("ack", {"minutes": 5}, 400, "only for shelve"),
             ("ack", {"note": 5}, 400, "note"), ("ack", {"why": "x"}, 400, "unknown field"), ("fly", {}, 404, "no action")]
    for action, body, status, words in cases:
        with pytest.raises(store.AlertError, match=words) as e:
            act(engine, a["id"], action, **body)
        assert e.value.status == status, action
    with pytest.raises(store.AlertError, match="no alert 999") as e:
        act(engine, 999, "ack")
    assert e.value.status == 404
    act(engine, a["id"], "ack")
    with pytest.raises(store.AlertError, match="only a new alert") as e:
        act(engine, a["id"], "ack")
    assert e.value.status == 409
    assert [x[1] for x in events(engine, a["id"])] == ["open", "ack"]  # nothing refused was written


def test_a_condition_back_before_resolution_is_the_same_alert_then_a_new_one(engine):
    feed = Feed()
    ev = evaluator(engine, feed, {**TTI, "for": 0}, alerting={"auto_resolve_after": "10m"})
    run(ev, feed, {0: 2.0, 60: 1.0, 120: 2.0})  # fires, clears, fires again within 10 min
    [a] = rows(engine)
    assert (a["state"], a["repeat"], a["clear_since"]) == ("firing", 2, None)
    run(ev, feed, {180: 1.0, 780: 1.0})  # clear for 10 min: resolved
    run(ev, feed, {840: 2.0})  # a new occurrence: a new alert
    first, second = rows(engine)
    assert (first["id"], first["status"]) == (a["id"], "resolved")
    assert (second["status"], second["state"], second["repeat"], second["opened_at"]) == ("new", "firing", 1, 840)
    with pytest.raises(store.AlertError, match=f"alert {second['id']} is the open occurrence") as e:
        act(engine, first["id"], "reopen")
    assert e.value.status == 409
    assert_replays(engine)


def test_flaps_absorbed_by_keep_firing_for_count_as_repeats(engine):
    feed = Feed()
    ev = evaluator(engine, feed, {**TTI, "for": 0, "keep_firing_for": "5m"})
    run(ev, feed, {t: (1.7 if (t // 60) % 2 == 0 else 1.5) for t in range(0, 600, 60)})
    [a] = rows(engine)
    assert (a["state"], a["repeat"]) == ("firing", 5)
    assert [x[1] for x in events(engine, a["id"])] == ["open"] + ["engine"] * 4  # each return, an event
    assert_replays(engine)


def test_one_evaluation_per_tick_between_processes(engine):
    """Two evaluators (two processes) on one store ask for the same ticks at the same time: each tick
    is evaluated once; the one that lost a tick writes nothing."""
    feed = Feed(2.0)
    started, go = threading.Event(), threading.Event()

    def slow(now):  # the first evaluator holds the tick while the second asks for it
        started.set()
        go.wait(10)
        return feed(now)

    a = Evaluator(engine, rules({**TTI, "for": 0}), None, slow, TICK, worker="a")
    b = Evaluator(engine, rules({**TTI, "for": 0}), None, feed, TICK, worker="b")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("a", a.tick(0)))
    t.start()
    assert started.wait(10)
    if engine.dialect.name == "postgresql":
        assert b.tick(0) is None  # a holds the advisory lock: b does not evaluate
        go.set()
        t.join(10)
        assert out["a"] is not None and b.tick(30) is None  # the tick is done: nobody evaluates it again
    else:  # SQLite: b evaluates first (a is still observing); a's insert of the same tick loses
        assert b.tick(0) is not None
        go.set()
        t.join(10)
        assert out["a"] is None
    for now in range(60, 600, 60):
        for ev in (a, b):
            ev.tick(now + 1)
    with engine.connect() as conn:
        ticks = evaluations(conn)
        n_events = conn.execute(select(func.count()).select_from(alert_events)).scalar()
    assert [x["tick"] for x in ticks] == list(range(10))
    assert a.evaluations + b.evaluations == 10
    assert n_events == 1 and len(rows(engine)) == 1  # one open event, not one per process


def test_a_restart_keeps_pending_timers_and_does_not_refire(engine):
    feed = Feed(1.7)
    first = evaluator(engine, feed)
    run(first, feed, {0: 1.7, 60: 1.7, 120: 1.7, 180: 1.7})  # pending since 0, for 10 min
    with engine.connect() as conn:
        [entry] = [r.entry for r in conn.execute(select(alert_state))]
    assert (entry["state"], entry["active_at"]) == ("pending", 0)
    del first  # the app stops mid-pending …
    second = evaluator(engine, feed)  # … and starts again: nothing but the store carries over
    got = run(second, feed, {t: 1.7 for t in range(420, 1200, 60)})
    assert [(e["action"], e["at"]) for e in got] == [("open", 600)]  # fires at the right time, once
    third = evaluator(engine, feed)
    assert run(third, feed, {1260: 1.7, 1320: 1.8}) == []  # restarted while firing: not re-fired
    [a] = rows(engine)
    assert (a["opened_at"], a["repeat"], a["value"]) == (600, 1, 1.8)


def test_only_changed_state_entries_are_written(engine):
    feed = Feed({"north": 2.0, "south": 2.0, "east": 1.0})
    ev = evaluator(engine, feed, {**TTI, "for": "5m", "scope": "each district"})
    run(ev, feed, {0: feed.value})

    def written():
        with engine.connect() as conn:
            return {r.key: r.updated_at for r in conn.execute(select(alert_state))}

    assert written() == {"tti|district:north": 0, "tti|district:south": 0}
    run(ev, feed, {60: {"north": 2.0, "south": 2.0, "east": 2.0}})
    assert written() == {"tti|district:north": 0, "tti|district:south": 0, "tti|district:east": 60}
    run(ev, feed, {120: {"north": 2.0, "south": 1.0, "east": 2.0}})
    assert written() == {"tti|district:north": 0, "tti|district:east": 60}


def test_escalation_after_n_minutes_without_acknowledgement(engine):
    feed = Feed({"north": 2.0, "south": 2.0})
    cfg = {"escalate_after": "15m", "targets": ["duty-officer", "shift-lead"], "escalate_from": "warning"}
    ev = evaluator(engine, feed, {**TTI, "for": 0, "scope": "each district"}, alerting=cfg)
    run(ev, feed, {0: feed.value})
    north, south = rows(engine)
    act(engine, south["id"], "ack", now=600)  # acknowledged in time: never escalates
    run(ev, feed, {t: feed.value for t in range(60, 900, 60)})
    assert rows(engine)[0]["escalation"] == 0  # 14 minutes: not yet
    got = run(ev, feed, {900: feed.value})
    assert [(e["action"], e["alert_id"], e["detail"]["target"], e["detail"]["severity"]) for e in got] == \
        [("escalate", north["id"], "duty-officer", "critical")]  # the next target, the severity raised
    run(ev, feed, {t: feed.value for t in range(960, 3600, 60)})
    north, south = rows(engine)
    assert (north["escalation"], north["escalated_to"], north["escalated_at"], north["severity"]) == \
        (2, "shift-lead", 1800, "critical")  # again after 15 more minutes; no target left after that
    assert (south["escalation"], south["severity"]) == (0, "warning")
    assert_replays(engine)


ESCALATE = {"escalate_after": "15m", "targets": ["duty-officer", "shift-lead"]}


def escalations(engine, alert_id):
    return [e["at"] for e in _history(engine, alert_id) if e["action"] == "escalate"]


def _history(engine, alert_id):
    with engine.connect() as conn:
        return store.history(conn, alert_id)


def test_a_shelve_pauses_the_escalation_clock(engine):
    """Shelved for 20 of its first 30 minutes, an alert has been unacknowledged 10 of them: with
    escalate_after 15 min it escalates at 35 min, not when the shelve ends."""
    feed = Feed(2.0)
    ev = evaluator(engine, feed, {**TTI, "for": 0, "severity": "critical"}, alerting=ESCALATE)
    run(ev, feed, {t: 2.0 for t in range(0, 301, 60)})
    [a] = rows(engine)
    act(engine, a["id"], "shelve", now=300, minutes=20)
    run(ev, feed, {t: 2.0 for t in range(360, 1801, 60)})
    [a] = rows(engine)
    assert a["shelved_until"] is None and escalations(engine, a["id"]) == []  # back at 25 min, 10 min counted
    assert store.unacked(a, 1800) == 600
    run(ev, feed, {t: 2.0 for t in range(1860, 2041, 60)})
    assert escalations(engine, a["id"]) == []  # 14 min counted
    run(ev, feed, {2100: 2.0})
    assert escalations(engine, a["id"]) == [2100]  # 15 min counted: 5 before the shelve, 10 after
    assert rows(engine)[0]["escalation"] == 1
    assert_replays(engine)


def test_a_silence_pauses_the_escalation_clock(engine):
    feed = Feed(2.0)
    ev = evaluator(engine, feed, {**TTI, "for": 0, "severity": "critical"}, alerting=ESCALATE)
    with engine.begin() as conn:
        store.add_silence(conn, actor="ann", reason="parade", rule="tti", start=300, end=1500, now=0)
    run(ev, feed, {t: 2.0 for t in range(0, 1801, 60)})
    [a] = rows(engine)
    assert a["muted"] is None and escalations(engine, a["id"]) == []  # muted 5 → 25 min: 10 min counted
    run(ev, feed, {t: 2.0 for t in range(1860, 2041, 60)})
    assert escalations(engine, a["id"]) == []
    run(ev, feed, {2100: 2.0})
    assert escalations(engine, a["id"]) == [2100]
    assert [x["event"] for x in _details(engine, a["id"]) if "event" in x] == ["firing", "muted", "unmuted"]
    assert_replays(engine)


def test_a_restart_keeps_the_escalation_clock(engine):
    """The counted time lives in the alert row: evaluators started afresh (mid-shelve, then after it)
    go on from it, and the time the alert was clear counts no more than the shelve."""
    feed = Feed(2.0)
    spec = {**TTI, "for": 0, "severity": "critical"}
    run(evaluator(engine, feed, spec, alerting=ESCALATE), feed, {t: 2.0 for t in range(0, 301, 60)})
    [a] = rows(engine)
    act(engine, a["id"], "shelve", now=300, minutes=20)
    run(evaluator(engine, feed, spec, alerting=ESCALATE), feed, {t: 2.0 for t in range(360, 1201, 60)})
    run(evaluator(engine, feed, spec, alerting=ESCALATE), feed,
        {**{t: 2.0 for t in range(1260, 1801, 60)}, **{t: 1.0 for t in range(1860, 2101, 60)}})
    [a] = rows(engine)
    assert (a["state"], store.unacked(a, 2100)) == ("inactive", 660)  # clear from 31 min: paused again
    ev = evaluator(engine, feed, spec, alerting=ESCALATE)
    run(ev, feed, {t: 2.0 for t in range(2160, 2341, 60)})
    assert escalations(engine, a["id"]) == []  # 11 + 3 min
    run(ev, feed, {2400: 2.0})
    assert escalations(engine, a["id"]) == [2400]
    assert_replays(engine)


def test_only_severities_from_escalate_from_escalate():
    assert not parse_alerting({"targets": ["a"]}).escalates("warning")
    assert parse_alerting({"targets": ["a"]}).escalates("critical")
    assert not parse_alerting({}).escalates("critical")  # no target: nobody to tell
    for bad, words in [({"escalate_after": "0s"}, "more than 0"), ({"targets": "a"}, "list of names"),
                       ({"escalate_from": "high"}, "not one of"), ({"nope": 1}, "unknown key")]:
        with pytest.raises(RuleError, match=words):
            parse_alerting(bad)


def test_a_shelve_expires_by_itself(engine):
    feed = Feed(2.0)
    ev = evaluator(engine, feed, {**TTI, "for": 0})
    run(ev, feed, {0: 2.0})
    [a] = rows(engine)
    a = act(engine, a["id"], "shelve", now=30, minutes=10, note="known roadworks")
    assert (a["shelved_until"], a["shelved_by"]) == (630, "ann")
    run(ev, feed, {t: 2.0 for t in range(60, 660, 60)})
    assert rows(engine)[0]["shelved_until"] == 630  # shelved for 10 min …
    run(ev, feed, {660: 2.0})
    [a] = rows(engine)
    assert a["shelved_until"] is None  # … then back by itself
    assert events(engine, a["id"])[-1] == ("system", "unshelve", "new", "new")
    assert_replays(engine)


def test_silences_mute_then_expire(engine):
    feed = Feed({"north": 2.0, "south": 2.0})
    ev = evaluator(engine, feed, {**TTI, "for": 0, "scope": "each district"})
    with engine.begin() as conn:
        s = store.add_silence(conn, actor="ann", reason="parade", district="north", duration=3600, now=0)
        short = store.add_silence(conn, actor="ann", reason="test", district="south", duration=3600, now=0)
    assert s["active"] and (s["starts_at"], s["ends_at"], s["created_by"]) == (0, 3600, "ann")
    run(ev, feed, {0: feed.value})
    north, south = rows(engine)
    assert (north["muted"], south["muted"]) == (f"silence {s['id']}", f"silence {short['id']}")
    with engine.begin() as conn:
        store.end_silence(conn, short["id"], "bob", now=600)
        with pytest.raises(store.AlertError, match="already ended"):
            store.end_silence(conn, short["id"], "bob", now=610)
    run(ev, feed, {660: feed.value})
    assert [r["muted"] for r in rows(engine)] == [f"silence {s['id']}", None]  # ended by hand
    run(ev, feed, {t: feed.value for t in range(720, 3660, 60)})
    assert [r["muted"] for r in rows(engine)] == [None, None]  # expired by itself at 3600
    assert [x["event"] for x in _details(engine, north["id"])] == ["firing", "unmuted"]
    with engine.connect() as conn:
        assert store.list_silences(conn, now=3600) == []
        assert [x["id"] for x in store.list_silences(conn, now=3600, current=False)] == [short["id"], s["id"]]
    with engine.begin() as conn:
        for kw, words in [({"duration": 60}, "at least one of"), ({"district": "north"}, "how long"),
                          ({"district": "north", "end": 10, "start": 20}, "after start"),
                          ({"district": "north", "start": 0, "end": 100}, "already past")]:
            with pytest.raises(store.AlertError, match=words):
                store.add_silence(conn, actor="ann", reason="x", now=3600, **kw)
    assert_replays(engine)


def _details(engine, alert_id):
    with engine.connect() as conn:
        return [e["detail"] for e in store.history(conn, alert_id)]


def test_a_tick_is_one_transaction_with_its_notifications(engine, monkeypatch):
    """Each event reaches the notification hook inside the tick's transaction: a failing hook undoes
    the whole tick (no alert, no state, no tick row), and the next tick does it again, once."""
    seen = []

    def hook(conn, key, kind, payload):
        if fail:
            raise RuntimeError("outbox down")
        seen.append((key, kind, payload["alert"]["status"]))

    monkeypatch.setattr(notify, "LISTENERS", [hook])
    feed = Feed(2.0)
    ev = evaluator(engine, feed, {**TTI, "for": 0})
    fail = True
    with pytest.raises(RuntimeError):
        ev.tick(0)
    with engine.connect() as conn:
        assert [conn.execute(select(func.count()).select_from(t)).scalar() for t in
                (alerts, alert_events, alert_state, alert_ticks)] == [0, 0, 0, 0]
    fail = False
    ev.tick(60)
    [a] = rows(engine)
    act(engine, a["id"], "ack", now=70)
    assert seen == [(f"alert-{a['id']}-1", "open", "new"), (f"alert-{a['id']}-2", "ack", "acknowledged")]


def test_the_demo_city_declares_its_alerting():
    from dashboard.city import load_city
    from dashboard.settings import DATA_ROOT

    cfg = load_city(DATA_ROOT / "beijing").alerting
    assert (cfg.auto_resolve_after, cfg.escalate_after, cfg.targets[0]) == (600, 900, "duty-officer")
    assert cfg.escalates("critical") and not cfg.escalates("warning") and "traffic-ops" in cfg.teams
