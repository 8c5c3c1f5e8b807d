"""Live sensor ingest over MQTT (paho-mqtt): validated, batched, acknowledged only once stored.

Payloads (UTF-8 JSON), one per message:

* our reading ``{"asset": …, "metric": …, "ts": …, "value": …}`` or a list of them (``ts``: ISO 8601
  with a UTC offset, or epoch seconds);
* NGSI-LD / NGSI v2 ``AirQualityObserved`` and ``TrafficFlowObserved`` entities, key-values or
  normalized: one entity, a list, or a notification ``{"data": [...]}``
  (see :mod:`dashboard.importers.ngsi`).

Delivery: the subscriber keeps a persistent session (``clean_session=False``, a fixed client id)
and subscribes with QoS 1, with paho's ``manual_ack``: a message is acknowledged only after the
transaction holding its readings (or its rejection) has committed. When the store is down the
batch is retried until it is stored, unacknowledged meanwhile (only an outage holds a batch: a
message whose content fails in any other way is rejected alone, with its reason and the first few
KB of its payload, and the others are stored); when the broker goes away paho
reconnects and the broker redelivers what was not acknowledged. Redelivered readings are
"already stored" for the validated ingest (same asset, metric, time and value), and a redelivered
message's rejections are not recorded twice: every acknowledged message is stored exactly once.
Acknowledgements never cross connections (a message received on an older connection is left to
be redelivered).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from dashboard.store import STORE_OUTAGES
from dashboard.store.ingest import Ingestor, IngestResult
from dashboard.store.schema import rejected

log = logging.getLogger("panorama.mqtt")

#: Errors meaning the store is away (down, unreachable, busy): a batch is held and retried, never rejected.
OUTAGES = STORE_OUTAGES

READING_KEYS = ("asset", "metric", "ts", "value")
SOURCE = "mqtt"
#: Largest payload stored (bytes); a larger message is rejected.
MAX_PAYLOAD = 1_000_000


@dataclass
class Message:
    """One MQTT message as received."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    gen: int = 0  # connection it arrived on
    dup: bool = False


@dataclass
class Stats:
    """What the subscriber did since it started."""

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    acked: int = 0
    connects: int = 0
    store_failures: int = 0

    def add(self, r: IngestResult) -> None:
        """Count an ingest result."""
        self.accepted += r.accepted
        self.duplicates += r.duplicates
        self.rejected += r.rejected

    def summary(self) -> str:
        """Return one line for a person."""
        return (f"{self.messages:,} messages: {self.accepted:,} readings stored, {self.duplicates:,} already "
                f"stored, {self.rejected:,} rejected; {self.batches:,} batches, {self.connects} connection(s), "
                f"{self.store_failures} store failure(s)")


def classify(msg: Message, max_payload: int = MAX_PAYLOAD) -> tuple[str, object]:
    """Return ("readings", rows) | ("ngsi", body) | ("bad", reason) for one message.

    ``rows`` are dicts with asset, metric, ts, value, topic and line (1-based position in the
    payload), or (line, raw, reason) tuples for elements that are not readings at all.
    """
    from dashboard.importers import ImportProblem, decode_json

    if len(msg.payload) > max_payload:
        return "bad", f"payload of {len(msg.payload):,} bytes is larger than {max_payload:,} (PANORAMA_MQTT_MAX_PAYLOAD)"
    try:
        data = decode_json(msg.payload)
    except ImportProblem as exc:
        return "bad", str(exc)
    items = data["data"] if isinstance(data, dict) and isinstance(data.get("data"), list) else data
    items = items if isinstance(items, list) else [items]
    if not items:
        return "bad", "payload is an empty list"
    if any(isinstance(e, dict) and "type" in e and "id" in e for e in items):
        return "ngsi", data
    rows = []
    for i, e in enumerate(items, start=1):
        if not isinstance(e, dict):
            rows.append((i, e, "expected an object with asset, metric, ts and value"))
            continue
        missing = [k for k in READING_KEYS if k not in e]
        if missing:
            rows.append((i, e, f"reading without {', '.join(missing)} (need asset, metric, ts, value)"))
            continue
        rows.append({"asset": e["asset"], "metric": e["metric"], "ts": e["ts"], "value": e["value"],
                     "topic": msg.topic, "line": i})
    return "readings", rows


class BatchWriter:
    """Store a batch of messages in one transaction: readings, new NGSI assets, rejections."""

    def __init__(self, engine: Engine, timezone: str | None = None, allow_outside: bool = False,
                 max_payload: int = MAX_PAYLOAD):
        self.engine = engine
        self._timezone = timezone
        self.allow_outside = allow_outside  # NGSI entities outside every district: keep (else reject)
        self.max_payload = max_payload
        self.ingestor = Ingestor(engine)

    def timezone(self, conn) -> str | None:
        """Return the zone of NGSI times without an offset: the one given, else the city's."""
        if self._timezone is None:
            from dashboard.store.readmodel import city_meta

            self._timezone = city_meta(conn).get("timezone") or ""
        return self._timezone or None

    def store(self, batch: list[Message], retry: bool = False) -> IngestResult:
        """Validate and store ``batch`` in one transaction; raise SQLAlchemyError (nothing stored) if that fails.

        ``retry``: the batch (or part of it) may have been stored before; its rejections are not
        recorded twice.
        """
        from dashboard.importers import ImportProblem, ImportReport, _forget_repeated_rejections
        from dashboard.importers.ngsi import import_ngsi

        rows, bad, ngsi = [], [], []
        for m in batch:
            kind, out = classify(m, self.max_payload)
            if kind == "bad":
                bad.append((m.topic, None, m.payload, out))
            elif kind == "ngsi":
                ngsi.append((m, out))
            else:
                for r in out:
                    if isinstance(r, tuple):
                        bad.append((m.topic, *r))
                    else:
                        rows.append(r)
        result = IngestResult()
        redelivered = retry or any(m.dup for m in batch)
        with self.engine.begin() as conn:
            before = conn.execute(select(func.coalesce(func.max(rejected.c.id), 0))).scalar() if redelivered else 0
            for m, body in ngsi:
                try:
                    rep = import_ngsi(conn, body, f"{SOURCE}:{m.topic}", self.timezone(conn), self.allow_outside)
                except ImportProblem as exc:
                    bad.append((m.topic, None, m.payload, str(exc)))
                    continue
                result.accepted += rep.counts.get("accepted", 0)
                result.duplicates += rep.counts.get("duplicates", 0)
                result.rejected += rep.counts.get("rejected", 0)
                result.reasons += rep.problems[:5]
                if rep.counts.get("assets added"):
                    self.ingestor.index.reload()
            if rows:
                result += self.ingestor.ingest(pd.DataFrame(rows), source=SOURCE, conn=conn)
            if bad:
                reject(conn, bad)
                result.rejected += len(bad)
                result.reasons += [(line, reason) for _t, line, _r, reason in bad[:5]]
            if redelivered:  # a message stored before its ack was lost: its rejections are already kept
                _forget_repeated_rejections(conn, before, ImportReport("mqtt", SOURCE))
        return result


def reject(conn, rows: list[tuple]) -> None:
    """Keep rejected (topic, line, raw, reason) rows, each with its topic as the source."""
    from dashboard.importers import ImportReport, store_rejections

    by_topic: dict[str, list] = {}
    for topic, line, raw, reason in rows:
        by_topic.setdefault(topic, []).append((line, raw, reason))
    for topic, items in by_topic.items():
        store_rejections(conn, f"{SOURCE}:{topic}", items, ImportReport("mqtt", SOURCE))


def mask_url(url: str) -> str:
    """Return ``url`` with its password (``user:password@``) shown as ``***``: for logs and messages."""
    head, at, host = url.rpartition("@")
    if not at:
        return url
    scheme, slashes, cred = head.rpartition("//")
    user, colon, _password = cred.partition(":")
    return f"{scheme}{slashes}{user}{':***' if colon else ''}@{host}"


def parse_url(url: str) -> dict:
    """Return host, port, tls, username, password of ``mqtt://[user[:pw]@]host[:port]`` (or mqtts://)."""
    u = urlparse(url)
    shown = mask_url(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"{shown!r}: use mqtt://host[:port] or mqtts://host[:port]")
    if not u.hostname:
        raise ValueError(f"{shown!r}: no host")
    try:
        port = u.port
    except ValueError:
        raise ValueError(f"{shown!r}: the port is not a number from 0 to 65535") from None
    tls = u.scheme in ("mqtts", "ssl")
    return {"host": u.hostname, "port": port or (8883 if tls else 1883), "tls": tls,
            "username": unquote(u.username) if u.username else None,
            "password": unquote(u.password) if u.password else None}


class MqttIngest:
    """Subscribe to ``topics`` and store every message, acknowledging it once stored.

    ``start()`` returns at once (paho's network thread and a writer thread do the work);
    ``stop()`` ends both, leaving what was not stored unacknowledged for the next run.
    """

    def __init__(self, engine: Engine, url: str, topics: list[str], client_id: str = "panorama-ingest",
                 batch_messages: int = 500, linger_s: float = 0.02, timezone: str | None = None,
                 keepalive: int = 30, allow_outside: bool = False, max_payload: int = MAX_PAYLOAD):
        import paho.mqtt.client as mqtt

        self.where = parse_url(url)
        self.url = mask_url(url)  # what logs and messages show: never the password
        self.topics = list(topics)
        if not self.topics:
            raise ValueError("give at least one topic filter")
        self.writer = BatchWriter(engine, timezone, allow_outside, max_payload)
        self.batch_messages = batch_messages
        self.linger_s = linger_s
        self.keepalive = keepalive
        self.stats = Stats()
        self._q: queue.Queue[Message] = queue.Queue()
        self._gen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker acknowledged every topic filter of this connection
        self._pending_subs: set[int] = set()
        self.resumed = False  # the broker kept our session (subscriptions, queued messages)
        self._unreachable = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311, manual_ack=True)
        if self.where["username"]:
            c.username_pw_set(self.where["username"], self.where["password"])
        if self.where["tls"]:
            c.tls_set()
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    # ------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client, _userdata, flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason_code)
            return
        self._gen += 1
        self._unreachable = False
        self.stats.connects += 1
        self.resumed = bool(flags.session_present)
        if self.stats.connects > 1 and not self.resumed:
            log.warning("the broker %s lost this subscriber's session: messages published while it was away "
                        "and not queued are lost (enable persistence on the broker)", self.url)
        else:
            log.info("connected to %s (session %s)", self.url, "resumed" if self.resumed else "new")
        self.subscribed.clear()
        self._pending_subs = {client.subscribe(t, qos=1)[1] for t in self.topics}
        self.connected.set()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _props) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.warning("the broker %s refused a subscription: %s", self.url, reason_codes)
            return
        self._pending_subs.discard(mid)
        if not self._pending_subs and not self.subscribed.is_set():
            log.info("subscribed to %s", ", ".join(self.topics))
            self.subscribed.set()

    def _on_connect_fail(self, _client, _userdata) -> None:
        if not self._unreachable:  # once per outage: paho keeps retrying
            log.warning("cannot reach the MQTT broker %s; retrying", self.url)
        self._unreachable = True

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("lost the MQTT broker %s (%s); reconnecting", self.url, reason_code)

    def _on_message(self, _client, _userdata, msg) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # a broker that lets a topic that is not UTF-8 through
            topic = bytes(msg._topic).decode("utf-8", "backslashreplace")
        self._q.put(Message(topic, msg.payload, msg.mid, msg.qos, self._gen, bool(msg.dup)))

    # ------------------------------------------------------------- lifecycle
    def start(self) -> "MqttIngest":
        """Connect (retrying in the background until the broker answers) and start storing."""
        self.client.connect_async(self.where["host"], self.where["port"], keepalive=self.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._write_loop, name="mqtt-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, finish the batch being stored, disconnect."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set."""
        self.start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            self.stop()

    # ------------------------------------------------------------- the writer thread
    def _take(self) -> list[Message]:
        try:
            first = self._q.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch_messages:
            try:
                batch.append(self._q.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[Message], retry: bool) -> IngestResult:
        """Store ``batch``; a message that fails for any reason but a store outage is rejected alone.

        Only an outage (the store unreachable, busy) holds the batch for a retry. Any other error
        (the store refuses a value, a message's content trips a bug) is narrowed down by halves to
        the message(s) causing it; each is rejected with the reason and its raw payload, and the
        rest is stored: one bad message never stops the stream.
        """
        try:
            return self.writer.store(batch, retry)
        except OUTAGES:
            raise  # the store is away: the caller retries the whole batch
        except Exception as exc:  # noqa: BLE001 - whatever a message's content causes
            if len(batch) > 1:  # find the message that fails: halves, recursively
                half = len(batch) // 2
                out = self._store(batch[:half], retry)
                out += self._store(batch[half:], retry)
                return out
            return self._reject_alone(batch[0], exc)

    def _reject_alone(self, m: Message, exc: Exception) -> IngestResult:
        """Keep one message that cannot be stored in ``rejected``, with the reason."""
        from dashboard.store.ingest import MAX_REASON_CHARS, clip_text

        if isinstance(exc, SQLAlchemyError):
            why = "the store refused this message: " + str(getattr(exc, "orig", None) or exc).splitlines()[0]
            log.warning("%s (topic %s): rejected", why, m.topic)
        else:
            why = f"this message could not be stored ({type(exc).__name__}: {str(exc)[:200]})"
            log.exception("a message on %s could not be stored: rejected", m.topic)
        why = clip_text(why, MAX_REASON_CHARS)
        try:
            with self.writer.engine.begin() as conn:
                reject(conn, [(m.topic, None, m.payload, why)])
        except OUTAGES:
            raise
        except Exception:  # noqa: BLE001 - the payload itself cannot be kept as text: keep it as hex
            log.exception("keeping the rejected message on %s failed; keeping its payload as hex", m.topic)
            with self.writer.engine.begin() as conn:
                reject(conn, [(m.topic.encode("ascii", "backslashreplace").decode(), None,
                               "hex:" + m.payload[:2048].hex(), why.encode("ascii", "backslashreplace").decode())])
        return IngestResult(rejected=1, reasons=[(None, why)])

    def _write_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                continue
            retry = False
            while True:
                try:
                    result = self._store(batch, retry)
                except SQLAlchemyError as exc:
                    retry = True
                    self.stats.store_failures += 1
                    if self.stats.store_failures == 1 or backoff == 0.5:
                        log.warning("the store cannot take readings (%s); %d message(s) held unacknowledged, "
                                    "retrying", str(getattr(exc, "orig", None) or exc).splitlines()[0], len(batch))
                    if self._stop.wait(backoff):
                        return  # stopping: the broker redelivers these to the next run
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception:  # noqa: BLE001 - a bug must not ack (nor lose) the batch
                    log.exception("storing a batch failed; its %d message(s) stay unacknowledged", len(batch))
                    if self._stop.wait(5.0):
                        return
                    continue
                if backoff > 0.5:
                    log.warning("the store takes readings again")
                backoff = 0.5
                break
            self.stats.batches += 1
            self.stats.messages += len(batch)
            self.stats.add(result)
            gen = self._gen
            for m in batch:
                if m.qos > 0 and m.gen == gen:
                    self.client.ack(m.mid, m.qos)
                    self.stats.acked += 1
