"""Live ingest over MQTT against real brokers: payload kinds, validation, and faults.

The payload test uses the machine's Mosquitto (``mqtt_host_port``); the fault test starts a broker
and a PostgreSQL cluster of its own (``tests/_services.py``) so it can stop and restart them.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from _services import Mosquitto, Postgres
from conftest import build_small_city
from sqlalchemy import func, select, text

from dashboard.mqtt import Message, MqttIngest, classify, parse_url
from dashboard.store.schema import create_schema, make_engine, readings, rejected


FIWARE_AQ = Path(__file__).resolve().parent / "fixtures" / "fiware" / "dataModel.Environment" / "AirQualityObserved" / "examples"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


class Publisher:
    """A QoS 1 publisher that keeps (and resends) what the broker has not acknowledged yet."""

    def __init__(self, host: str, port: int):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{secrets.token_hex(4)}",
                             clean_session=False)
        self.c.max_queued_messages_set(0)
        self.c.max_inflight_messages_set(50)
        self.c.reconnect_delay_set(1, 2)
        self.mids: list[int] = []
        self.acked: set[int] = set()
        self.c.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        connected = threading.Event()
        self.c.on_connect = lambda *_a: connected.set()
        self.c.connect_async(host, port)
        self.c.loop_start()
        assert connected.wait(10), "the publisher could not connect"

    def send(self, topic: str, payload) -> None:
        """Publish with QoS 1; while the broker is away paho keeps the message and sends it on reconnect."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.mids.append(self.c.publish(topic, body, qos=1).mid)

    def wait_all(self, timeout: float = 60) -> None:
        """Wait until the broker has acknowledged (PUBACK) every message sent."""
        wait_for(lambda: self.acked.issuperset(self.mids), timeout, "the broker to acknowledge every message")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def forget_session(host: str, port: int, client_id: str) -> None:
    """Drop a persistent session the broker keeps for ``client_id``."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()  # the broker has dropped the old session by its CONNACK
    c.connect(host, port)
    c.loop_start()
    wait_for(connected.is_set, 10, f"{client_id} to connect with a clean session")
    c.disconnect()
    c.loop_stop()


def wait_for(cond, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- payloads


def test_classify_payload_kinds():
    m = lambda p: Message("city/x", p if isinstance(p, bytes) else json.dumps(p).encode())  # noqa: E731
    kind, rows = classify(m({"asset": "r1", "metric": "speed_kmh", "ts": 1, "value": 2}))
    assert kind == "readings" and rows == [{"asset": "r1", "metric": "speed_kmh", "ts": 1, "value": 2,
                                            "topic": "city/x", "line": 1}]
    kind, rows = classify(m([{"asset": "a", "metric": "m", "ts": 1, "value": 2}, 7, {"asset": "a"}]))
    assert kind == "readings" and len(rows) == 3
    assert rows[1][:2] == (2, 7) and "expected an object" in rows[1][2]
    assert rows[2][0] == 3 and "without metric, ts, value" in rows[2][2]
    assert classify(m({"id": "urn:x", "type": "AirQualityObserved"}))[0] == "ngsi"
    assert classify(m({"subscriptionId": "s", "data": [{"id": "u", "type": "TrafficFlowObserved"}]}))[0] == "ngsi"
    assert classify(m(b"{nope"))[0] == "bad" and "not valid JSON" in classify(m(b"{nope"))[1]
    assert classify(m(b"\xff\xfe\x00"))[1] == "payload is not UTF-8 text"
    assert classify(m([]))[1] == "payload is an empty list"


@pytest.mark.parametrize("url,want", [
    ("mqtt://127.0.0.1", {"host": "127.0.0.1", "port": 1883, "tls": False, "username": None, "password": None}),
    ("mqtts://u:p%40ss@broker:9000", {"host": "broker", "port": 9000, "tls": True, "username": "u",
                                      "password": "p@ss"}),
])
def test_parse_url(url, want):
    assert parse_url(url) == want


@pytest.mark.parametrize("bad", ["http://x", "mqtt://", "127.0.0.1:1883"])
def test_parse_url_refuses(bad):
    with pytest.raises(ValueError):
        parse_url(bad)


def traffic_notification(road: str, when: datetime) -> dict:
    """An NGSI-LD notification with one normalized TrafficFlowObserved entity on ``road`` (15 minutes)."""
    return {"subscriptionId": "urn:ngsi-ld:Subscription:1", "data": [{
        "id": f"urn:ngsi-ld:TrafficFlowObserved:{road}-1", "type": "TrafficFlowObserved",
        "dateObservedFrom": {"type": "Property", "value": iso(when.timestamp() - 900)},
        "dateObservedTo": {"type": "Property", "value": iso(when.timestamp())},
        "averageVehicleSpeed": {"type": "Property", "value": 42.5, "unitCode": "KMH"},
        "intensity": {"type": "Property", "value": 300},
        "refRoadSegment": {"type": "Relationship", "object": f"urn:ngsi-ld:RoadSegment:{road}"}}]}


def test_mqtt_ingest_stores_valid_and_rejects_invalid(small_city, mqtt_host_port):
    host, port = mqtt_host_port
    eng = small_city["engine"]
    prefix = f"test/{secrets.token_hex(4)}"
    client_id = f"panorama-test-{secrets.token_hex(4)}"
    now = time.time() - 3600
    t = [iso(now + 60 * i) for i in range(5)]
    aq = json.loads((FIWARE_AQ / "example.jsonld").read_text())
    messages = [
        (f"{prefix}/traffic/r1", {"asset": "r1", "metric": "speed_kmh", "ts": t[0], "value": 42}),
        (f"{prefix}/batch", [{"asset": "r2", "metric": "speed_kmh", "ts": t[1], "value": 50},
                             {"asset": "p1", "metric": "load_mw", "ts": now + 60, "value": 80.5},  # epoch seconds
                             {"asset": "s1", "metric": "pm25", "ts": t[1], "value": -5}]),
        (f"{prefix}/broken", b"{not json"),
        (f"{prefix}/odd", [5, {"asset": "r1", "metric": "speed_kmh", "value": 3}]),
        (f"{prefix}/x", {"asset": "nowhere", "metric": "speed_kmh", "ts": t[2], "value": 10}),
        (f"{prefix}/ngsi/air", aq),
        (f"{prefix}/ngsi/traffic", traffic_notification("r3", datetime.fromtimestamp(now, timezone.utc))),
        (f"{prefix}/ngsi/other", {"id": "urn:ngsi-ld:WeatherObserved:1", "type": "WeatherObserved"}),
        (f"{prefix}/bytes", b"\xff\xfe\x00"),
        (f"{prefix}/traffic/r1", {"asset": "r1", "metric": "speed_kmh", "ts": t[0], "value": 42}),  # re-sent
        (f"{prefix}/traffic/r1", {"asset": "r1", "metric": "speed_kmh", "ts": t[3], "value": "it's'; DROP TABLE readings;--"}),
    ]
    sub = MqttIngest(eng, f"mqtt://{host}:{port}", [f"{prefix}/#"], client_id=client_id,
                     allow_outside=True).start()  # the FIWARE example is in Madrid
    try:
        wait_for(sub.subscribed.is_set, 10, "the subscriber to connect and subscribe")
        pub = Publisher(host, port)
        for topic, body in messages:
            pub.send(topic, body)
        pub.wait_all()
        pub.close()
        wait_for(lambda: sub.stats.acked == len(messages), 30, "every message to be stored")
    finally:
        sub.stop()
        forget_session(host, port, client_id)
    with eng.connect() as conn:
        got = {(r.id, r.metric): r.value for r in conn.execute(text(
            "SELECT a.id, r.metric, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk"))}
        reasons = [r.reason for r in conn.execute(select(rejected.c.reason).order_by(rejected.c.id))]
        raws = [r.raw for r in conn.execute(select(rejected.c.raw))]
    assert got[("r1", "speed_kmh")] == 42 and got[("r2", "speed_kmh")] == 50 and got[("p1", "load_mw")] == 80.5
    assert got[("r3", "speed_kmh")] == 42.5 and got[("r3", "flow_vph")] == pytest.approx(1200)  # 300 in 15 min
    assert got[("28079004-Pza.deEspanya", "so2")] == 11 and got[("28079004-Pza.deEspanya", "temp_c")] == 12.2
    assert ("s1", "pm25") not in got
    joined = "\n".join(reasons)
    for want in ("outside the physical range", "not valid JSON", "expected an object", "without ts",
                 "unknown asset 'nowhere'", "unknown NGSI type 'WeatherObserved'", "not UTF-8",
                 "is not a finite number"):
        assert want in joined, f"no rejection says {want!r}: {reasons}"
    assert len(reasons) == 8  # exactly the invalid ones; the re-sent reading is "already stored"
    assert any("DROP TABLE readings" in r for r in raws)  # kept verbatim, harmless
    assert sub.stats.duplicates == 1 and sub.stats.messages == len(messages)


# ----------------------------------------------------------------------------- faults


@pytest.fixture
def own_services():
    """A broker and a PostgreSQL cluster of this test's own (stopped and restarted by it)."""
    broker = Mosquitto().start()
    pg = Postgres().start()
    try:
        yield broker, pg
    finally:
        broker.cleanup()
        pg.cleanup()


def test_every_acknowledged_message_is_stored_once_through_broker_and_database_restarts(own_services):
    broker, pg = own_services
    eng = make_engine(pg.url)
    create_schema(eng)
    build_small_city(eng)
    n, start = 600, time.time() - 86_400
    sub = MqttIngest(eng, f"mqtt://127.0.0.1:{broker.port}", ["city/#"], client_id="panorama-fault",
                     batch_messages=20).start()
    pub = Publisher("127.0.0.1", broker.port)

    def stored() -> int:
        try:
            with eng.connect() as conn:
                return conn.execute(select(func.count()).select_from(readings)).scalar()
        except Exception:  # noqa: BLE001 - the database may be down right now
            return -1

    try:
        wait_for(sub.connected.is_set, 10, "the subscriber to connect")

        def publish(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                pub.send(f"city/traffic/r{1 + i % 3}", {"asset": f"r{1 + i % 3}", "metric": "speed_kmh",
                                                         "ts": int(start + 60 * i), "value": 20 + i % 50})
                time.sleep(0.002)  # sensors publish over time: the outages below come mid-stream

        publish(0, 200)
        broker.stop()                       # the broker goes away mid-stream …
        th = threading.Thread(target=publish, args=(200, 300))  # … while sensors keep publishing
        th.start()
        wait_for(lambda: not sub.connected.is_set(), 30, "the subscriber to notice the broker is gone")
        th.join()
        broker.start()                      # … and comes back on the same port, with its queue
        wait_for(lambda: sub.stats.connects >= 2, 30, "the subscriber to reconnect")
        assert sub.resumed, "the broker lost the subscriber's session"
        publish(300, 400)
        pg.stop()                           # the database goes away mid-stream …
        publish(400, 500)
        wait_for(lambda: sub.stats.store_failures > 0, 60, "the subscriber to fail a store")
        pg.start()                          # … and comes back
        publish(500, n)
        pub.wait_all()
        wait_for(lambda: sub.stats.store_failures > 0 and stored() >= n, 60,
                 lambda: f"every reading to be stored: {stored()} of {n}, {sub.stats.summary()}")
        # every message received (redeliveries too) taken from the queue before the count; stop()
        # then finishes the batch in hand: a reading stored twice would show below
        wait_for(sub._q.empty, 30, lambda: f"the subscriber's queue to drain: {sub.stats.summary()}")
    finally:
        pub.close()
        sub.stop()
    with eng.connect() as conn:
        rows = conn.execute(select(readings.c.ts)).scalars().all()
        nrej = conn.execute(select(func.count()).select_from(rejected)).scalar()
    assert len(rows) == n and len(set(rows)) == n  # every message once
    assert sorted(rows) == [int(start + 60 * i) for i in range(n)]
    assert nrej == 0
    assert sub.stats.connects >= 2 and sub.stats.store_failures > 0
    eng.dispose()


def test_a_message_the_store_refuses_is_rejected_alone_not_retried_forever(small_city, monkeypatch):
    from sqlalchemy.exc import DataError

    eng = small_city["engine"]
    sub = MqttIngest(eng, "mqtt://127.0.0.1:1", ["city/#"])  # never started: only its writer is used
    real = sub.writer.store

    def store(batch, retry=False):
        if any(m.payload == b'"poison"' for m in batch):
            raise DataError("INSERT …", {}, Exception("value refused by the server"))
        return real(batch, retry)

    monkeypatch.setattr(sub.writer, "store", store)
    t0 = int(time.time()) - 3600
    batch = [Message("city/r1", json.dumps({"asset": "r1", "metric": "speed_kmh", "ts": t0 + i, "value": 30}).encode())
             for i in range(6)]
    batch.insert(3, Message("city/bad", b'"poison"'))
    out = sub._store(batch, retry=False)
    assert (out.accepted, out.rejected) == (6, 1)
    with eng.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings)).scalar() == 6
        rej = conn.execute(select(rejected.c.source, rejected.c.raw, rejected.c.reason)).one()
    assert rej.source == "mqtt:city/bad" and rej.raw == '"poison"'
    assert rej.reason == "the store refused this message: value refused by the server"


def test_panorama_ingest_mqtt_command(small_city, mqtt_host_port, tmp_path):
    """The command itself: subscribes, stores, and when stopped (SIGTERM, a service manager's stop;
    as Ctrl-C) prints what it did. SIGTERM, not SIGINT: a suite started in the background (``cmd &``)
    passes SIGINT on ignored, and the command must stop all the same."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    host, port = mqtt_host_port
    eng = small_city["engine"]
    prefix, client_id = f"cli/{secrets.token_hex(4)}", f"panorama-cli-{secrets.token_hex(4)}"
    env = {**os.environ, "PANORAMA_DATABASE_URL": eng.url.render_as_string(hide_password=False),
           "PANORAMA_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "panorama"), "ingest", "mqtt", "--url",
                             f"mqtt://panorama:pw-s3cret@{host}:{port}", "--topic", f"{prefix}/#", "--client-id",
                             client_id],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # until the command ends
    reader.start()
    try:
        wait_for(lambda: any("subscribed to" in ln for ln in lines) or proc.poll() is not None, 60,
                 "the command to connect and subscribe")
        pub = Publisher(host, port)
        t0 = int(time.time()) - 600
        pub.send(f"{prefix}/r1", [{"asset": "r1", "metric": "speed_kmh", "ts": t0 + i, "value": 40 + i} for i in range(5)])
        pub.send(f"{prefix}/r1", {"asset": "r1", "metric": "speed_kmh", "ts": t0, "value": -1})
        pub.wait_all()
        pub.close()

        def count() -> int:
            with eng.connect() as conn:
                return conn.execute(select(func.count()).select_from(readings)).scalar()

        wait_for(lambda: count() == 5, 20, "the command to store the readings")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(10)
        forget_session(host, port, client_id)
    out = "".join(lines)
    assert "2 messages: 5 readings stored, 0 already stored, 1 rejected" in " ".join(out.split()), out
    assert f"from mqtt://panorama:***@{host}:{port}" in out and "pw-s3cret" not in out  # issue 14.14


def test_panorama_ingest_mqtt_refuses_a_bad_url(tmp_path):
    from typer.testing import CliRunner

    from dashboard.cli import app

    r = CliRunner().invoke(app, ["ingest", "mqtt", "--url", "http://broker"],
                           env={"PANORAMA_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}"})
    assert r.exit_code == 1 and "use mqtt://host[:port]" in r.output
    r = CliRunner().invoke(app, ["ingest", "mqtt", "--url", "mqtt://panorama:pw-s3cret@"],
                           env={"PANORAMA_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}"})
    assert r.exit_code == 1 and "no host" in r.output and "pw-s3cret" not in r.output


# ----------------------------------------------------------------------------- hostile input (issues 14.1, 14.14, 15.12)


def test_a_malformed_message_is_rejected_and_every_later_message_is_stored(small_city, mqtt_host_port):
    """Issue 14.1: a reading whose asset is an object (TypeError) or an NGSI entity observed in 9999
    (OutOfBoundsDatetime) held its batch unacknowledged, and everything after it, for good."""
    host, port = mqtt_host_port
    eng = small_city["engine"]
    prefix, client_id = f"test/{secrets.token_hex(4)}", f"panorama-test-{secrets.token_hex(4)}"
    t0 = int(time.time()) - 3600
    inside = {"type": "Point", "coordinates": [116.05, 40.15]}  # district north of the small city
    poison = [
        {"asset": {"x": 1}, "metric": "speed_kmh", "ts": 1796523000, "value": 42},
        {"id": "urn:ngsi-ld:AirQualityObserved:late", "type": "AirQualityObserved", "dateObserved": "9999-12-31T00:00:00Z",
         "pm25": 10, "location": inside, "refPointOfInterest": "late"},
        {"asset": "r1", "metric": ["speed_kmh"], "ts": t0, "value": 1},
        {"asset": "r1", "metric": "speed_kmh", "ts": True, "value": 1},
        {"asset": "r1", "metric": "speed_kmh", "ts": t0, "value": True},
        # a valid entity and one of another type in one message (issue 15.12)
        [{"id": "urn:ngsi-ld:AirQualityObserved:ok", "type": "AirQualityObserved", "refPointOfInterest": "aq-ok",
          "dateObserved": iso(t0), "pm25": 10, "location": inside},
         {"id": "urn:ngsi-ld:WeatherObserved:1", "type": "WeatherObserved", "dateObserved": iso(t0)}],
    ]
    sub = MqttIngest(eng, f"mqtt://{host}:{port}", [f"{prefix}/#"], client_id=client_id, batch_messages=3).start()
    try:
        wait_for(sub.subscribed.is_set, 10, "the subscriber to connect and subscribe")
        pub = Publisher(host, port)
        for i, body in enumerate(poison):
            pub.send(f"{prefix}/bad/{i}", body)
            pub.send(f"{prefix}/good", {"asset": "r2", "metric": "speed_kmh", "ts": t0 + i, "value": 30 + i})
        pub.wait_all()
        pub.close()
        total = 2 * len(poison)
        wait_for(lambda: sub.stats.acked == total, 30,
                 lambda: f"every message to be stored or rejected and acknowledged: {sub.stats.summary()}")
    finally:
        sub.stop()
        forget_session(host, port, client_id)
    with eng.connect() as conn:
        got = dict(conn.execute(text("SELECT r.ts, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                                     "WHERE a.id = 'r2'")).all())
        aq = conn.execute(text("SELECT r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                               "WHERE a.id = 'aq-ok' AND r.metric = 'pm25'")).scalar()
        rej = conn.execute(select(rejected.c.source, rejected.c.raw, rejected.c.reason)).all()
    assert got == {t0 + i: 30 + i for i in range(len(poison))}  # every valid message after a bad one
    assert aq == 10  # the valid entity beside the unsupported one
    reasons = {r.source.rsplit("/", 1)[-1] if r.source != "mqtt" else json.loads(r.raw)["topic"].rsplit("/", 1)[-1]:
               r.reason for r in rej}
    assert reasons.keys() == {"0", "1", "2", "3", "4", "5"}, rej
    assert reasons["0"] == "asset {'x': 1} is not text"
    assert "dateObserved '9999-12-31T00:00:00Z' is not a time between 1970 and now" in reasons["1"]
    assert reasons["2"] == "metric ['speed_kmh'] is not text"
    assert reasons["3"] == "ts True is not a time" and reasons["4"] == "value True is not a number"
    assert reasons["5"].startswith("entity 2 ('urn:ngsi-ld:WeatherObserved:1'): unknown NGSI type 'WeatherObserved'")
    assert any('"x": 1' in r.raw for r in rej)  # the raw input is kept with the reason


def test_an_oversized_message_is_rejected_with_its_first_kilobytes(small_city):
    eng = small_city["engine"]
    sub = MqttIngest(eng, "mqtt://127.0.0.1:1", ["city/#"], max_payload=10_000)  # never started: its writer only
    big = json.dumps({"asset": "r1", "metric": "speed_kmh", "ts": 1, "value": 1, "pad": "x" * 50_000}).encode()
    out = sub._store([Message("city/big", big)], retry=False)
    assert out.rejected == 1
    with eng.connect() as conn:
        rej = conn.execute(select(rejected.c.raw, rejected.c.reason)).one()
    assert rej.reason == f"payload of {len(big):,} bytes is larger than 10,000 (PANORAMA_MQTT_MAX_PAYLOAD)"
    assert rej.raw.startswith(big[:100].decode()) and rej.raw.endswith(f"… [cut: {len(big):,} bytes in all]")
    assert len(rej.raw) < 4200


def test_the_mqtt_password_is_never_shown(small_city, mqtt_host_port, caplog):
    """Issue 14.14: the password was in every connect / disconnect log line (and the start-up line)."""
    import logging

    host, port = mqtt_host_port
    eng = small_city["engine"]
    caplog.set_level(logging.INFO, logger="panorama.mqtt")
    away = MqttIngest(eng, "mqtt://panorama:pw-s3cret@127.0.0.1:1", ["x/#"]).start()
    try:
        wait_for(lambda: "cannot reach" in caplog.text, 20, "the connection failure to be logged")
    finally:
        away.stop()
    client_id = f"panorama-test-{secrets.token_hex(4)}"
    sub = MqttIngest(eng, f"mqtt://panorama:pw-s3cret@{host}:{port}", ["x/#"], client_id=client_id).start()
    try:
        wait_for(sub.connected.is_set, 10, "the subscriber to connect")
        wait_for(lambda: "connected to" in caplog.text, 10, "the connection to be logged")
        sub.client.disconnect()  # the broker connection ends while the subscriber runs
        wait_for(lambda: "lost the MQTT broker" in caplog.text, 10, "the disconnection to be logged")
    finally:
        sub.stop()
        forget_session(host, port, client_id)
    assert "pw-s3cret" not in caplog.text
    assert "mqtt://panorama:***@127.0.0.1:1" in caplog.text and f"mqtt://panorama:***@{host}:{port}" in caplog.text
    with pytest.raises(ValueError) as exc:
        parse_url("mqtt://panorama:pw-s3cret@")
    assert "pw-s3cret" not in str(exc.value) and "panorama:***@" in str(exc.value)
