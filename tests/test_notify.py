"""Notifications out: channels, the outbox, and delivery to a real HTTP receiver and SMTP server
started by the tests, on SQLite and PostgreSQL, across restarts of the delivering process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from _receivers import SmtpSink, WebhookReceiver, free_port
from dashboard.alerts import outbox as ob
from dashboard.alerts.deliver import Deliverer, Options
from dashboard.alerts.engine import Transition
from dashboard.alerts.outbox import Channel, NotifyError, enqueue, notify_transition, parse_channels
from dashboard.alerts.rules import parse_rules
from dashboard.store.schema import outbox

SECRET = b"receiver-shared-secret-0123456789"
ENV = {"HOOK_SECRET": SECRET.decode()}
REPO = Path(__file__).resolve().parent.parent


def hook(url: str, **kw) -> Channel:
    return Channel("ops-hook", "webhook", url=url, secret_env="HOOK_SECRET", **kw)


def mail(**kw) -> Channel:
    return Channel("ops-mail", "email", to=("duty@city.example",), sender="panorama@city.example", **kw)


def transition(event="firing", severity="critical", district="haidian", muted=None, rule="tti-district") -> Transition:
    return Transition(rule=rule, scope=f"district:{district}", from_state="pending", to_state="firing", event=event,
                      at=1_780_000_000.0, value=1.93, severity=severity, repeat=1, district=district, muted=muted)


def opts(**kw) -> Options:
    base = dict(poll=0.1, timeout=2.0, max_attempts=5, backoff=0.2, backoff_max=1.0, smtp_tls="off")
    return Options(**{**base, **kw})


def wait_until(pred, what: str, timeout: float = 30.0) -> None:
    """Poll the store until ``pred()`` (no event to wait for: the deliverer acts by itself)."""
    deadline, tick = time.monotonic() + timeout, threading.Event()
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tick.wait(0.05)


def rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]


def queue(engine, n: int, channels, start: int = 0) -> list[str]:
    """Queue ``n`` firing changes (audit ids ``start``…) for ``channels``; return their event ids."""
    ids = []
    with engine.begin() as conn:
        for i in range(start, start + n):
            t = transition(district=f"d{i}")
            assert notify_transition(conn, channels, t, f"ev{i}") == len(channels)
            ids.append(f"ev{i}")
    return ids


@pytest.fixture
def receiver():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def smtp():
    s = SmtpSink().start()
    yield s
    s.stop()


# ---------------------------------------------------------------------------- channels
def test_channels_parse_and_route():
    rules = parse_rules([{"id": "tti-district", "when": "traffic.tti > 1.8", "scope": "each district"}])
    got = parse_channels([
        {"name": "ops-hook", "kind": "webhook", "url": "https://ops.example/hook", "secret_env": "OPS_KEY",
         "severities": ["critical"], "districts": ["haidian", "city"]},
        {"name": "duty", "kind": "email", "to": "duty@city.example", "from": "panorama@city.example",
         "rules": ["tti-district"], "events": ["firing"]},
    ], rule_ids={r.id for r in rules}, districts={"haidian", "chaoyang"})
    h, m = got
    assert (h.kind, h.url, h.secret_env, m.to, m.sender) == ("webhook", "https://ops.example/hook", "OPS_KEY",
                                                            ("duty@city.example",), "panorama@city.example")
    assert h.wants(transition()) and h.wants(transition(district=None))
    assert not h.wants(transition(severity="warning")) and not h.wants(transition(district="chaoyang"))
    assert not h.wants(transition(event="pending"))  # pending is not announced by default
    assert m.wants(transition(district="chaoyang")) and not m.wants(transition(event="resolved"))
    assert not m.wants(transition(rule="other"))


@pytest.mark.parametrize("table, message", [
    ({"kind": "webhook"}, "[[notify]] #1: name: missing"),
    ({"name": "x", "kind": "sms"}, "kind: 'sms' is not one of webhook, email"),
    ({"name": "x", "kind": "webhook", "url": "ftp://a", "secret_env": "K"}, "url: 'ftp://a' is not an http(s) URL"),
    ({"name": "x", "kind": "webhook", "url": "https://a"}, "secret_env: name the environment variable"),
    ({"name": "x", "kind": "webhook", "url": "https://a", "secret_env": "K", "to": "a@b"}, "to: not a key of a webhook"),
    ({"name": "x", "kind": "email", "to": "nobody", "from": "a@b"}, "to: one address or a list"),
    ({"name": "x", "kind": "email", "to": "a@b", "from": "a@b", "severities": ["fatal"]}, "unknown severity(s) fatal"),
    ({"name": "x", "kind": "email", "to": "a@b", "from": "a@b", "rules": ["nope"]}, "rules: unknown rule(s) nope"),
    ({"name": "x", "kind": "email", "to": "a@b", "from": "a@b", "districts": ["mars"]}, "unknown district(s) mars"),
    ({"name": "x", "kind": "email", "to": "a@b", "from": "a@b", "colour": "red"}, "unknown key(s) colour"),
])
def test_a_bad_channel_is_one_line_naming_it(table, message):
    with pytest.raises(NotifyError) as exc:
        parse_channels([table], "city.toml", rule_ids={"tti-district"}, districts={"haidian"})
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_the_city_file_declares_channels(tmp_path):
    from dashboard.city import load_city

    (tmp_path / "city.toml").write_text('name = "T"\ntimezone = "UTC"\n[[notify]]\nname = "a"\nkind = "webhook"\n'
                                        'url = "http://127.0.0.1:9/h"\nsecret_env = "K"\n[[notify]]\nname = "a"\n'
                                        'kind = "webhook"\nurl = "http://127.0.0.1:9/h"\nsecret_env = "K"\n')
    with pytest.raises(NotifyError, match=r"city.toml: \[\[notify\]\] 'a': name: used by an earlier channel too"):
        _ = load_city(tmp_path).notify_channels


# ---------------------------------------------------------------------------- the outbox
def test_the_same_change_is_queued_once(engine):
    c = hook("http://127.0.0.1:9/h")
    with engine.begin() as conn:
        assert enqueue(conn, "ev1:ops-hook", c, {"n": 1}) is True
        assert enqueue(conn, "ev1:ops-hook", c, {"n": 2}) is False
    with engine.begin() as conn:  # again in another transaction (a re-run of the evaluation)
        assert notify_transition(conn, [c, mail()], transition(), "ev1") == 1  # only the mail row is new
        assert notify_transition(conn, [c], transition(muted="silence s1"), "ev2") == 0  # muted: not sent
    got = rows(engine)
    assert [(r["key"], r["kind"]) for r in got] == [("ev1:ops-hook", "webhook"), ("ev1:ops-mail", "email")]
    assert got[0]["payload"] == {"n": 1}
    assert got[1]["payload"]["place"] == "haidian" and got[1]["payload"]["event"] == "firing"


def test_nothing_is_queued_when_the_change_rolls_back(engine):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        notify_transition(conn, [hook("http://127.0.0.1:9/h")], transition(), "ev1")
        raise RuntimeError("the state change failed")
    assert rows(engine) == []


# ---------------------------------------------------------------------------- delivery
def test_a_webhook_is_delivered_once_signed_and_never_again(engine, receiver):
    queue(engine, 1, [hook(receiver.url)])
    d = Deliverer(engine, [hook(receiver.url)], opts(), environ=ENV)
    assert d.run_once() == {"delivered": 1}
    assert [(r["key"], r["signed"]) for r in receiver.received] == [("ev0:ops-hook", True)]
    body = receiver.received[0]["body"]
    assert (body["delivery"], body["rule"], body["severity"], body["value"]) == ("ev0:ops-hook", "tti-district",
                                                                               "critical", 1.93)
    (row,) = rows(engine)
    assert row["delivered_at"] is not None and row["attempts"] == 1 and row["next_attempt_at"] is None
    assert d.run_once() == {} and len(receiver.received) == 1  # a delivered row is never sent again
    wrong = Deliverer(engine, [hook(receiver.url)], opts(), environ={"HOOK_SECRET": "another key"})
    queue(engine, 1, [hook(receiver.url)], start=1)
    wrong.run_once()
    assert receiver.received[1]["signed"] is False  # the receiver's check can fail: it is a real check


def test_a_500_is_retried_with_backoff_then_delivered_once(engine):
    r = WebhookReceiver(SECRET, answers=[500, 503]).start()
    try:
        queue(engine, 1, [hook(r.url)])
        d = Deliverer(engine, [hook(r.url)], opts(backoff=0.3), environ=ENV).start()
        r.wait_for(lambda x: x.accepted(), what="the delivery")
        d.stop()
        assert [x["status"] for x in r.received] == [500, 503, 200]
        gaps = [b["at"] - a["at"] for a, b in zip(r.received, r.received[1:])]
        assert gaps[0] >= 0.3 * 0.5 and gaps[1] >= 0.6 * 0.5  # doubling, jitter at most halves it
        (row,) = rows(engine)
        assert row["attempts"] == 3 and row["delivered_at"] and row["last_error"] is None
    finally:
        r.stop()


def test_a_receiver_that_is_down_fails_after_the_limit_with_the_reason(engine):
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
    queue(engine, 1, [hook(url)])
    d = Deliverer(engine, [hook(url)], opts(max_attempts=3, backoff=0.05), environ=ENV).start()
    try:
        wait_until(lambda: rows(engine)[0]["failed_at"], "the row to fail")
    finally:
        d.stop()
    (row,) = rows(engine)
    assert row["attempts"] == 3 and row["delivered_at"] is None and row["next_attempt_at"] is None
    assert "refused" in row["last_error"].lower() and "gave up after 3 attempts" in row["last_error"]
    with engine.begin() as conn:
        (failed,) = ob.deliveries(conn, "failed")
        assert failed["id"] == row["id"] and failed["status"] == "failed"
        assert ob.counts(conn) == {"pending": 0, "failed": 1, "delivered": 0}
        assert ob.retry(conn, row["id"]) is True and ob.retry(conn, 999) is False
    assert rows(engine)[0]["attempts"] == 0 and rows(engine)[0]["failed_at"] is None


def test_a_refusal_or_a_missing_key_fails_at_once(engine):
    r = WebhookReceiver(SECRET, answers=[401]).start()
    try:
        queue(engine, 1, [hook(r.url)])
        assert Deliverer(engine, [hook(r.url)], opts(), environ=ENV).run_once() == {"failed": 1}
        assert "answered 401" in rows(engine)[0]["last_error"]
        queue(engine, 1, [hook(r.url)], start=1)
        assert Deliverer(engine, [hook(r.url)], opts(), environ={}).run_once() == {"failed": 1}
        assert "HOOK_SECRET (the signing key) is not set" in rows(engine)[1]["last_error"]
        assert len(r.received) == 1  # unsigned: never sent
    finally:
        r.stop()


def test_an_email_reaches_the_smtp_server_once(engine, smtp):
    queue(engine, 1, [mail()])
    d = Deliverer(engine, [mail()], opts(smtp_host="127.0.0.1", smtp_port=smtp.port))
    assert d.run_once() == {"delivered": 1}
    assert d.run_once() == {}
    ((sender, to, msg),) = smtp.messages
    assert (sender, to) == ("panorama@city.example", ["duty@city.example"])
    assert msg["Subject"] == "[CRITICAL] tti-district firing: d0"
    assert msg["Message-ID"] == "<ev0-ops-mail@panorama>" and msg["X-Panorama-Delivery"] == "ev0:ops-mail"
    assert "Value: 1.93" in msg.get_payload()


def test_the_deliverer_is_woken_by_a_commit_in_its_process(engine, receiver):
    d = Deliverer(engine, [hook(receiver.url)], opts(poll=600), environ=ENV, parallel=1).start()  # never polls
    try:
        queue(engine, 1, [hook(receiver.url)])
        receiver.wait_for(lambda x: x.accepted(), timeout=10, what="the first delivery")
        wait_until(lambda: rows(engine)[0]["delivered_at"], "the first row marked")  # now it waits (600 s)
        queue(engine, 1, [hook(receiver.url)], start=1)
        receiver.wait_for(lambda x: len(x.accepted()) == 2, timeout=10, what="the woken deliverer")
        with engine.begin() as conn:  # the same change again: no second row, no second delivery
            assert notify_transition(conn, [hook(receiver.url)], transition(district="d1"), "ev1") == 0
        assert d.run_once() == {} and receiver.accepted() == {"ev0:ops-hook": 1, "ev1:ops-hook": 1}
    finally:
        d.stop()


# ---------------------------------------------------------------------------- across restarts
def _city(tmp_path, hook_url: str) -> Path:
    (tmp_path / "city").mkdir()
    (tmp_path / "city" / "city.toml").write_text(f'''name = "Test"
timezone = "UTC"
[[notify]]
name = "ops-hook"
kind = "webhook"
url = "{hook_url}"
secret_env = "HOOK_SECRET"
[[notify]]
name = "ops-mail"
kind = "email"
to = "duty@city.example"
from = "panorama@city.example"
''')
    return tmp_path / "city"


def _app(engine, city: Path, smtp_port: int, log: Path) -> subprocess.Popen:
    """Start ``panorama notify run`` (the deliverer the app runs) in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOOK_SECRET": SECRET.decode(),
           "PANORAMA_DATABASE_URL": engine.url.render_as_string(hide_password=False), "PANORAMA_CITY": str(city),
           "PANORAMA_SMTP_HOST": "127.0.0.1", "PANORAMA_SMTP_PORT": str(smtp_port), "PANORAMA_SMTP_TLS": "off",
           "PANORAMA_NOTIFY_POLL_SECONDS": "0.1", "PANORAMA_NOTIFY_TIMEOUT_SECONDS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dashboard.cli", "notify", "run"], env=env, cwd=REPO,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _channels(receiver):
    return [hook(receiver.url), mail()]


@contextmanager
def _queue_for_apps(engine, smtp, tmp_path, n: int, hold: str):
    """Queue ``n`` changes for a webhook receiver holding ``hold`` and the SMTP server; yield
    (receiver, event ids, start an app process, its log), killing what is left at the end."""
    r = WebhookReceiver(SECRET, hold=hold).start()
    procs: list[subprocess.Popen] = []
    city, log = _city(tmp_path, r.url), tmp_path / "app.log"

    def start() -> subprocess.Popen:
        procs.append(_app(engine, city, smtp.port, log))
        return procs[-1]

    try:
        yield r, queue(engine, n, _channels(r)), start, log
    finally:
        for p in procs:
            p.kill()
        r.stop()


def stop_mid_queue(proc: subprocess.Popen, r: WebhookReceiver, engine, log: Path) -> None:
    """Stop a delivering process (SIGTERM) while ``r`` holds a webhook; assert it stopped cleanly with work left."""
    assert r.holding.wait(60), log.read_text()
    proc.send_signal(signal.SIGTERM)
    r.release.set()
    assert proc.wait(30) == 0, log.read_text()
    pending = [x for x in rows(engine) if x["delivered_at"] is None]
    assert pending and not any(x["failed_at"] for x in pending)  # stopped with work left


def test_every_change_arrives_exactly_once_across_a_clean_restart(engine, smtp, tmp_path):
    with _queue_for_apps(engine, smtp, tmp_path, 20, "ev7:ops-hook") as (r, events, start, log):
        procs = [start()]
        stop_mid_queue(procs[0], r, engine, log)
        procs.append(start())
        r.wait_for(lambda x: len(x.accepted()) == 20, what="every webhook")
        smtp.wait_for(lambda x: len(x.message_ids()) == 20, what="every e-mail")
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
        assert sorted(x["key"] for x in r.received) == sorted(f"{e}:ops-hook" for e in events)  # no copy
        assert all(x["signed"] for x in r.received)
        assert sorted(smtp.message_ids()) == sorted(f"<{e}-ops-mail@panorama>" for e in events)
        assert set(smtp.message_ids().values()) == {1}
        assert all(x["delivered_at"] for x in rows(engine)) and len(rows(engine)) == 40


def test_a_crash_between_send_and_mark_resends_with_the_same_delivery_key(engine, smtp, tmp_path):
    with _queue_for_apps(engine, smtp, tmp_path, 10, "ev4:ops-hook") as (r, events, start, log):
        procs = [start()]
        assert r.holding.wait(60), log.read_text()
        procs[0].kill()  # kill -9 after the receiver has the notification, before the outbox knows
        procs[0].wait(30)
        killed_at = time.time()
        r.release.set()
        procs.append(start())
        r.wait_for(lambda x: len(x.accepted()) == 10 and x.accepted()["ev4:ops-hook"] == 2,
                   timeout=60, what="every webhook, the one in flight at the kill twice")
        smtp.wait_for(lambda x: len(x.message_ids()) == 10, what="every e-mail")
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
        raw = [x["key"] for x in r.received]
        assert raw.count("ev4:ops-hook") == 2  # at least once: sent again, with the same key...
        assert sorted(set(raw)) == sorted(f"{e}:ops-hook" for e in events)  # ...so deduped, once per change
        for k in set(raw) - {"ev4:ops-hook"}:  # any other copy was of a send in flight at the kill too
            assert raw.count(k) == 1 or min(x["at"] for x in r.received if x["key"] == k) < killed_at
        assert all(x["delivered_at"] for x in rows(engine)) and len(rows(engine)) == 20


# ---------------------------------------------------------------------------- the app and the CLI
def test_the_app_delivers_only_where_channels_are_declared(tmp_path):
    from dashboard.city import load_city
    from dashboard.settings import get_settings

    city = load_city(_city(tmp_path, "http://127.0.0.1:9/hook"))
    s = get_settings(database_url=f"sqlite:///{tmp_path / 's.sqlite'}")
    d = Deliverer.for_app(s, city)
    assert sorted(d.channels) == ["ops-hook", "ops-mail"] and d.parallel == 1 and d.opts.poll == 0.5
    assert Deliverer.for_app(get_settings(notify_deliver=False), city) is None  # `notify run` delivers instead
    assert Deliverer.for_app(s, load_city(REPO / "data" / "beijing")) is None  # no [[notify]]: no thread


def test_notify_cli_lists_retries_and_runs_once(engine, receiver, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dashboard.cli import app as cli

    for k, v in {"PANORAMA_DATABASE_URL": engine.url.render_as_string(hide_password=False),
                 "PANORAMA_CITY": str(_city(tmp_path, receiver.url)), "HOOK_SECRET": "",
                 "PANORAMA_SMTP_HOST": ""}.items():
        monkeypatch.setenv(k, v)
    queue(engine, 1, _channels(receiver))
    run = CliRunner().invoke(cli, ["notify", "run-once"])
    assert run.exit_code == 1 and "0 delivered, 0 to retry later, 2 failed" in run.output
    listed = CliRunner().invoke(cli, ["notify", "list", "--failed"])
    assert "0 pending, 2 failed, 0 delivered" in listed.output
    assert "HOOK_SECRET (the signing key) is not set" in listed.output
    assert "PANORAMA_SMTP_HOST is not set" in listed.output
    hook_id = next(x["id"] for x in rows(engine) if x["kind"] == "webhook")
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    assert CliRunner().invoke(cli, ["notify", "retry", str(hook_id)]).exit_code == 0
    again = CliRunner().invoke(cli, ["notify", "retry", str(hook_id)])
    assert again.exit_code == 1 and f"no failed notification has id {hook_id}" in again.output
    assert "1 delivered, 0 to retry later, 0 failed" in CliRunner().invoke(cli, ["notify", "run-once"]).output
    assert receiver.accepted() == {"ev0:ops-hook": 1} and receiver.received[0]["signed"]
