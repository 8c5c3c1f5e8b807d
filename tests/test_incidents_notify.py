"""Incident events out to the notification channels, on SQLite and PostgreSQL: opened (by hand and by an
``[[incident_rule]]`` in the evaluator's tick), a new owner, a handover note, a checklist step, closed
with its summary and reopened are queued in the change's own transaction and reach a real webhook
receiver and SMTP server once each — also when the delivering process is stopped mid-queue and
started again; a channel chooses whether it hears of incidents."""
from __future__ import annotations

import signal

import pytest
from _receivers import WebhookReceiver
from sqlalchemy import select
from test_incidents_store import Feed, act, cfg, evaluator, tick
import test_notify
from test_notify import ENV, SECRET, _app, _city, hook, mail, opts, rows, stop_mid_queue

from dashboard import accounts
from dashboard.alerts import notify
from dashboard.alerts.deliver import Deliverer
from dashboard.alerts.outbox import INCIDENT_EVENTS, NotifyError, parse_channels
from dashboard.incidents import store
from dashboard.store.schema import alerts

receiver, smtp = test_notify.receiver, test_notify.smtp  # the webhook receiver and SMTP server fixtures
TOLD = ("open", "owner", "handover", "step", "close", "reopen")  # the incident actions a channel hears of


@pytest.fixture
def unconfigured():
    """Leave this process's notifications as they were found: told nowhere."""
    yield
    notify.configure(())


def told(engine) -> list[str]:
    """Return the uids of every incident event a channel is to hear of, in the order they were written."""
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(select(store.incidents.c.id).order_by(store.incidents.c.id))]
        return [e["uid"] for i in ids for e in store.history(conn, i) if e["action"] in TOLD]


def _users(engine):
    for name, role in (("ann", "operator"), ("tom", "operator"), ("ada", "admin")):
        accounts.add_user(engine, name, role)


def test_each_incident_event_reaches_webhook_and_smtp_once(engine, receiver, smtp, unconfigured):
    _users(engine)
    channels = [hook(receiver.url), mail()]
    notify.configure(channels)
    feed = Feed()
    ev = evaluator(engine, feed)
    tick(ev, feed, 1_780_000_000, tti_north=2.0, slow_north=10)  # two traffic alerts in north: rule "jams" opens one
    tick(ev, feed, 1_780_000_060, tti_south=2.0)  # one in south: not enough for the rule
    with engine.connect() as conn:
        south = conn.execute(select(alerts.c.id).where(alerts.c.district_id == "south")).scalar_one()
        north = sorted(conn.execute(select(alerts.c.id).where(alerts.c.district_id == "north")).scalars())
        auto = conn.execute(select(store.incidents.c.id)).scalar_one()
    with engine.begin() as conn:
        iid = store.open_incident(conn, "ann", cfg().type("jam"), alert_ids=[south], note="one lane shut",
                                  now=1_780_000_100)[0]["id"]
    act(engine, iid, "owner", now=1_780_000_110, to="tom", note="yours")
    act(engine, iid, "note", now=1_780_000_115, note="police called")  # a note is not told
    act(engine, iid, "step", now=1_780_000_120, step=1, fields={"cameras": 3})
    act(engine, iid, "handover", actor="tom", now=1_780_000_130, note="patrol on site; check at 18:00")
    act(engine, iid, "close", actor="tom", now=1_780_000_140, summary="Lorry towed, lanes open")
    act(engine, iid, "reopen", now=1_780_000_150, note="jam is back")
    before = len(rows(engine))
    with pytest.raises(store.IncidentError), engine.begin() as conn:  # a change that fails queues nothing
        store.act(conn, iid, "owner", "ann", "operator", {"to": "ada"}, cfg(), now=1_780_000_160)
        store.act(conn, iid, "close", "ann", "operator", {}, cfg())  # no summary: 400, the owner change goes too
    assert len(rows(engine)) == before

    uids = told(engine)
    assert len(uids) == 7 and uids[0] == f"incident-{auto}-1"  # auto open; open, owner, step, handover, close, reopen
    d = Deliverer(engine, channels, opts(smtp_host="127.0.0.1", smtp_port=smtp.port), environ=ENV)
    done = d.run_once()
    assert done["delivered"] == len(rows(engine)) and not done["failed"]
    hooks = {r["key"]: r["body"] for r in receiver.received if r["body"]["kind"] == "incident"}
    assert sorted(hooks) == sorted(f"{u}:ops-hook" for u in uids)
    assert all(r["signed"] for r in receiver.received)
    assert set(receiver.accepted().values()) == {1}
    assert {r["body"]["kind"] for r in receiver.received} == {"incident", "alert"}  # the alerts' firings too

    by_event = {b["event"]: b for b in hooks.values() if b["incident"] == iid}
    assert sorted(by_event) == sorted(INCIDENT_EVENTS)
    auto_open = hooks[f"incident-{auto}-1:ops-hook"]
    assert {k: auto_open[k] for k in ("event", "incident", "type", "district", "domain", "who", "rule", "alerts",
                                      "severity", "owner", "link", "at", "at_iso")} == {
        "event": "opened", "incident": auto, "type": "jam", "district": "north", "domain": "traffic", "who": "system",
        "rule": "jams", "alerts": north, "severity": "critical", "owner": None, "link": f"/api/incidents/{auto}",
        "at": 1_780_000_000, "at_iso": "2026-05-28T20:26:40+00:00"}
    assert (by_event["opened"]["who"], by_event["opened"]["rule"], by_event["opened"]["alerts"],
            by_event["opened"]["note"]) == ("ann", None, [south], "one lane shut")
    assert (by_event["owner"]["owner"], by_event["owner"]["previous_owner"], by_event["owner"]["who"],
            by_event["owner"]["note"]) == ("tom", None, "ann", "yours")
    assert by_event["step"]["step"] == {"step": 1, "text": "Confirm on cameras", "role": "operator",
                                        "fields": {"cameras": 3}}
    assert (by_event["handover"]["who"], by_event["handover"]["note"]) == ("tom", "patrol on site; check at 18:00")
    assert (by_event["closed"]["status"], by_event["closed"]["summary"]) == ("closed", "Lorry towed, lanes open")
    assert (by_event["reopened"]["status"], by_event["reopened"]["owner"]) == ("open", "tom")

    mails = {m["X-Panorama-Delivery"]: m for _, _, m in smtp.messages if m["X-Panorama-Delivery"].startswith("incident")}
    assert sorted(mails) == sorted(f"{u}:ops-mail" for u in uids)
    assert set(smtp.message_ids().values()) == {1}
    subjects = {k.split(":")[0]: str(m["Subject"]) for k, m in mails.items()}
    assert subjects[f"incident-{auto}-1"] == f"[CRITICAL] incident {auto} jam opened: north"
    assert sorted(s for k, s in subjects.items() if k.startswith(f"incident-{iid}-")) == sorted(
        f"[WARNING] incident {iid} jam {what}: south" for what in (
            "opened", "now owned by tom", "step 1 done", "handed over", "closed", "reopened"))
    closed = next(m for k, m in mails.items() if subjects[k.split(":")[0]].endswith("closed: south"))
    text = closed.get_payload(decode=True).decode()
    assert "Summary: Lorry towed, lanes open" in text and "By: tom" in text and f"Link: /api/incidents/{iid}" in text

    with engine.begin() as conn:  # the same change told again (a retried transaction): nothing new
        for i in (auto, iid):
            for e in store.history(conn, i):
                notify.on_incident(conn, e, store.get(conn, i))
    assert len(rows(engine)) == before and d.run_once() == {}


def test_a_channel_chooses_whether_it_hears_of_incidents(engine, unconfigured):
    base = {"kind": "email", "to": "duty@city.example", "from": "panorama@city.example"}
    every, none, some, critical = parse_channels([
        {"name": "every", **base}, {"name": "none", **base, "incidents": False},
        {"name": "some", **base, "incidents": ["closed", "opened"]},
        {"name": "critical", **base, "severities": ["critical"], "districts": ["north", "city"]}])
    assert every.incidents == INCIDENT_EVENTS and none.incidents == () and some.incidents == ("opened", "closed")
    assert every.wants_incident("step", "info", None) and not none.wants_incident("opened", "critical", "north")
    assert some.wants_incident("closed", "info", "east") and not some.wants_incident("owner", "info", "east")
    assert critical.wants_incident("opened", "critical", None) and critical.wants_incident("step", "critical", "north")
    assert not critical.wants_incident("opened", "warning", "north")  # severities: as for alerts
    assert not critical.wants_incident("opened", "critical", "south")  # districts: as for alerts
    for value, words in ((["opened", "burnt"], "incidents: unknown incident event(s) burnt"),
                         ("yes", "incidents: true, false or a list"), ([], "incidents: true, false or a list")):
        with pytest.raises(NotifyError, match=r"\[\[notify\]\] 'x': " + words.replace("(", r"\(").replace(")", r"\)")):
            parse_channels([{"name": "x", **base, "incidents": value}])

    _users(engine)
    notify.configure([none, some, critical])
    with engine.begin() as conn:
        iid = store.open_incident(conn, "ann", cfg().type("jam"), district="north", now=100)[0]["id"]  # warning
    act(engine, iid, "owner", to="tom", now=110)
    act(engine, iid, "close", summary="done", now=120)
    assert [(r["key"], r["payload"]["event"]) for r in rows(engine)] == [
        (f"incident-{iid}-1:some", "opened"), (f"incident-{iid}-3:some", "closed")]


def test_incident_events_arrive_exactly_once_across_a_restart(engine, smtp, tmp_path, unconfigured):
    _users(engine)
    r = WebhookReceiver(SECRET).start()
    procs = []
    city, log = _city(tmp_path, r.url), tmp_path / "app.log"
    try:
        notify.configure([hook(r.url), mail()])
        for n, district in enumerate(("north", "south", "east")):
            with engine.begin() as conn:
                iid = store.open_incident(conn, "ann", cfg().type("jam"), district=district, now=200 + n)[0]["id"]
            act(engine, iid, "owner", to="tom", now=210 + n)
            act(engine, iid, "step", step=1, fields={"cameras": n}, now=220 + n)
            act(engine, iid, "handover", actor="tom", note=f"shift {n}", now=230 + n)
            act(engine, iid, "close", actor="tom", summary=f"cleared {n}", now=240 + n)
            act(engine, iid, "reopen", now=250 + n)
        uids = told(engine)
        assert len(uids) == 18 and len(rows(engine)) == 36  # 3 × 6 events, two channels each
        r.hold = f"{uids[8]}:ops-hook"  # the third event of the second incident is being answered at the stop
        procs.append(_app(engine, city, smtp.port, log))
        stop_mid_queue(procs[0], r, engine, log)  # while a webhook is being answered
        procs.append(_app(engine, city, smtp.port, log))
        r.wait_for(lambda x: len(x.accepted()) == 18, what="every incident webhook")
        smtp.wait_for(lambda x: len(x.message_ids()) == 18, what="every incident e-mail")
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0, log.read_text()
        assert sorted(x["key"] for x in r.received) == sorted(f"{u}:ops-hook" for u in uids)  # no copy
        assert all(x["signed"] and x["body"]["kind"] == "incident" for x in r.received)
        assert sorted(smtp.message_ids()) == sorted(f"<{u}-ops-mail@panorama>" for u in uids)
        assert set(smtp.message_ids().values()) == {1}
        assert all(x["delivered_at"] for x in rows(engine))
    finally:
        for p in procs:
            p.kill()
        r.stop()
