"""From a firing condition to the webhook receiver: the evaluator's changes are queued in their tick's
transaction for the city's channels and delivered once (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from _receivers import WebhookReceiver
from sqlalchemy import select
from test_alerts_store import TTI, Feed, evaluator, rules, run
from test_notify import ENV, SECRET, hook, opts

from dashboard.alerts import notify
from dashboard.alerts.deliver import Deliverer
from dashboard.store.schema import outbox


@pytest.fixture
def receiver():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def channel(receiver):
    c = hook(receiver.url, severities=("warning", "critical"))
    notify.configure([c], rules(TTI))
    yield c
    notify.configure(())


def test_a_firing_and_its_resolution_reach_the_receiver_once(engine, receiver, channel):
    feed = Feed(1.0)
    ev = evaluator(engine, feed)
    t0 = 1_780_000_000
    run(ev, feed, {t0: 2.0, t0 + 60: 2.0})  # pending
    with engine.connect() as conn:
        assert conn.execute(select(outbox)).first() is None  # pending is not an alert: nothing sent
    run(ev, feed, {t0 + 600: 2.0, t0 + 660: 2.1, t0 + 1200: 1.0})  # fires after `for: 10m`, then clears
    d = Deliverer(engine, [channel], opts(), environ=ENV)
    assert d.run_once() == {"delivered": 2}
    got = [(r["body"]["event"], r["body"]["rule"], r["body"]["from"], r["body"]["to"], r["signed"])
           for r in receiver.received]
    assert got == [("firing", "tti", "inactive", "firing", True), ("resolved", "tti", "firing", "inactive", True)]
    first = receiver.received[0]["body"]
    assert first["summary"] == "Heavy congestion" and first["condition"] and first["value"] == 2.0
    run(ev, feed, {t0 + 1260: 1.0})  # nothing new: nothing queued, nothing sent again
    assert d.run_once() == {} and len(receiver.received) == 2


def test_a_change_queues_nothing_for_a_channel_that_does_not_want_it(engine, receiver):
    notify.configure([hook(receiver.url, severities=("critical",))], rules(TTI))  # TTI is a warning
    try:
        feed = Feed(2.0)
        run(evaluator(engine, feed), feed, {0: 2.0, 600: 2.0})
        with engine.connect() as conn:
            assert conn.execute(select(outbox)).first() is None
    finally:
        notify.configure(())
