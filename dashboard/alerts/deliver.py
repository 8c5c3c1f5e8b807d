"""Notifications out, second half: send what the outbox holds, at least once.

A deliverer takes one due row at a time and sends it — a webhook POST or an e-mail — then records
the outcome: delivered, a retry after an exponential backoff with jitter, or failed (with the
reason) once the attempts run out or the receiver refuses for good (a 4xx answer, a 5xx from the
SMTP server, a channel no longer declared).

- PostgreSQL: the row is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and marked in the same
  transaction, so any number of deliverers (every app worker, ``panorama notify run``) share the
  queue and none takes a row another holds; a deliverer killed mid-send loses its lock with its
  connection and the row is due again at once.
- SQLite (one writer): the claim is a short write that leases the row (its ``next_attempt_at``
  moved past the send's timeout); the outcome is a second short write. The write lock is never
  held while a receiver answers; a deliverer killed mid-send leaves the row to be taken again
  when the lease ends.

At least once, not exactly once: a crash after the receiver got the notification and before the
outcome is stored sends it again. The copy carries the same ``X-Panorama-Delivery`` header
(webhook) or ``Message-ID`` (e-mail): receivers drop one they have seen. A delivered row is
never sent again, and the outbox never holds two rows for one change (its unique key).

Webhooks are signed: ``X-Panorama-Signature: sha256=<hex>``, the HMAC-SHA256 with the channel's
key of ``<X-Panorama-Timestamp>.<raw body>``; a receiver checks it and refuses an old timestamp
(a replay). See README, *Notifications*.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import re
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from sqlalchemy import Engine, select, update

from dashboard.alerts import outbox as ob
from dashboard.store import STORE_OUTAGES
from dashboard.store.schema import outbox

log = logging.getLogger("panorama.notify")

SIGNATURE, TIMESTAMP, DELIVERY = "X-Panorama-Signature", "X-Panorama-Timestamp", "X-Panorama-Delivery"
_WORDS = {"firing": "firing", "resolved": "resolved", "nodata": "no data", "error": "error",
          "resumed": "firing again", "unmuted": "firing, silence over", "escalated": "escalated"}
_INCIDENT_WORDS = {"opened": "opened", "owner": "has a new owner", "handover": "handed over", "step": "step done",
                   "closed": "closed", "reopened": "reopened"}


class Failure(Exception):
    """An attempt that did not deliver: ``reason`` in one line; ``retry`` False when trying again
    cannot help; ``after``: the receiver's Retry-After, in seconds."""

    def __init__(self, reason: str, retry: bool = True, after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry, self.after = reason, retry, after


@dataclass(frozen=True)
class Options:
    """How the deliverer sends (the ``PANORAMA_NOTIFY_*`` and ``PANORAMA_SMTP_*`` settings)."""

    poll: float = 0.5
    timeout: float = 5.0
    max_attempts: int = 10
    backoff: float = 2.0
    backoff_max: float = 300.0
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""

    @classmethod
    def from_settings(cls, s) -> "Options":
        return cls(poll=s.notify_poll_seconds, timeout=s.notify_timeout_seconds, max_attempts=s.notify_max_attempts,
                   backoff=s.notify_backoff_seconds, backoff_max=s.notify_backoff_max_seconds,
                   smtp_host=s.smtp_host, smtp_port=s.smtp_port, smtp_tls=s.smtp_tls, smtp_user=s.smtp_user,
                   smtp_password=s.smtp_password.get_secret_value())

    @property
    def lease(self) -> float:
        """How long a SQLite claim keeps a row from other deliverers: longer than one send may take."""
        return 2 * self.timeout + 5


def backoff(attempt: int, opts: Options, rng=random) -> float:
    """Return the wait after failed attempt number ``attempt`` (1, 2, …): doubling from
    ``opts.backoff`` up to ``opts.backoff_max``, times a random factor in [0.5, 1) so that
    deliverers retrying after one outage do not all come back at the same instant."""
    return min(opts.backoff_max, opts.backoff * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


# ---------------------------------------------------------------------------- webhooks
def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Return the ``X-Panorama-Signature`` value of ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def body_of(key: str, payload: dict) -> bytes:
    """Return the webhook body: the payload with its delivery key, compact JSON."""
    return json.dumps({"delivery": key, **payload}, separators=(",", ":"), sort_keys=True).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib turns a redirected POST into a GET without the body: refuse redirects instead."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def send_webhook(channel: ob.Channel, key: str, payload: dict, timeout: float, environ=os.environ) -> None:
    """POST the signed notification to the channel's URL; raise :class:`Failure` unless it answers 2xx."""
    secret = environ.get(channel.secret_env, "")
    if not secret:
        raise Failure(f"the environment variable {channel.secret_env} (the signing key) is not set", retry=False)
    body = body_of(key, payload)
    ts = str(int(time.time()))
    req = urllib.request.Request(channel.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "City-Panorama-Notify/1",
        DELIVERY: key, TIMESTAMP: ts, SIGNATURE: sign(secret.encode(), ts, body)})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            resp.read(65_536)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise Failure(f"{channel.url} redirects ({exc.code}) to {exc.headers.get('Location')!r}: set the "
                          "channel's url to the final address", retry=False) from None
        retry = exc.code >= 500 or exc.code in (408, 425, 429)
        raise Failure(f"{channel.url} answered {exc.code} {exc.reason}", retry, _retry_after(exc.headers)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        why = getattr(exc, "reason", None) or exc
        raise Failure(f"{channel.url}: {type(why).__name__ if not str(why) else why}") from None


def _retry_after(headers) -> float | None:
    v = (headers or {}).get("Retry-After", "")
    return float(v) if re.fullmatch(r"\d{1,6}", v.strip()) else None


# ---------------------------------------------------------------------------- e-mail
def subject_of(payload: dict) -> str:
    """Return a short subject: severity, rule (incident and type), what happened, where."""
    if payload.get("kind") == "incident":
        what = _INCIDENT_WORDS.get(payload.get("event"), payload.get("event", ""))
        if payload.get("event") == "owner" and payload.get("owner"):
            what = f"now owned by {payload['owner']}"
        elif payload.get("event") == "step" and isinstance(payload.get("step"), dict):
            what = f"step {payload['step'].get('step')} done"
        return (f"[{str(payload.get('severity', '')).upper()}] incident {payload.get('incident')} "
                f"{payload.get('type')} {what}: {payload.get('place', '')}")
    what = _WORDS.get(payload.get("event"), payload.get("event", ""))
    return f"[{str(payload.get('severity', '')).upper()}] {payload.get('rule')} {what}: {payload.get('place', '')}"


#: The lines of an e-mail's body after its first: (label, payload key) of an alert and of an incident.
_LINES = (("Rule", "rule"), ("Condition", "condition"), ("Event", "event"), ("Severity", "severity"),
          ("Place", "place"), ("Value", "value"), ("Since", "at_iso"), ("Repeat", "repeat"), ("Reason", "reason"))
_INCIDENT_LINES = (("Incident", "incident"), ("Type", "type"), ("Event", "event"), ("Severity", "severity"),
                   ("Place", "place"), ("Status", "status"), ("Owner", "owner"), ("Previous owner", "previous_owner"),
                   ("By", "who"), ("At", "at_iso"), ("Step", "step"), ("Summary", "summary"), ("Note", "note"),
                   ("Grouped by rule", "rule"), ("Alerts", "alerts"), ("Link", "link"))


def _text(v) -> str:
    """Return a payload value as a line of an e-mail shows it."""
    if isinstance(v, dict) and "step" in v:  # a checklist step done, with its fields
        fields = ", ".join(f"{k}={x}" for k, x in (v.get("fields") or {}).items())
        return f"{v['step']}. {v.get('text')}" + (f" ({fields})" if fields else "")
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return str(v)


def message_of(channel: ob.Channel, key: str, payload: dict) -> EmailMessage:
    """Return the plain-text e-mail of a notification. Its Message-ID is made from the delivery key,
    so a copy sent again after a crash is recognisable (mail systems and receivers drop it)."""
    msg = EmailMessage()
    msg["Subject"] = subject_of(payload)
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9.!#$%&*+/=?^_`{|}~-]', '-', key)}@panorama>"
    msg[DELIVERY] = key
    incident = payload.get("kind") == "incident"
    lines = [(payload.get("title") if incident else payload.get("summary")) or subject_of(payload), ""]
    for label, k in _INCIDENT_LINES if incident else _LINES:
        if payload.get(k) not in (None, "", []):
            lines.append(f"{label}: {_text(payload[k])}")
    msg.set_content("\n".join(lines) + "\n")
    return msg


def send_email(channel: ob.Channel, key: str, payload: dict, opts: Options) -> None:
    """Send the notification through the configured SMTP server; raise :class:`Failure` if it refuses."""
    if not opts.smtp_host:
        raise Failure("PANORAMA_SMTP_HOST is not set: e-mail channels cannot send", retry=False)
    msg = message_of(channel, key, payload)
    try:
        cls = smtplib.SMTP_SSL if opts.smtp_tls == "ssl" else smtplib.SMTP
        kw = {"context": ssl.create_default_context()} if opts.smtp_tls == "ssl" else {}
        with cls(opts.smtp_host, opts.smtp_port, timeout=opts.timeout, **kw) as smtp:
            if opts.smtp_tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if opts.smtp_user:
                smtp.login(opts.smtp_user, opts.smtp_password)
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        raise Failure(f"the SMTP server refused {', '.join(exc.recipients)} ({codes[0]})",
                      retry=all(400 <= c < 500 for c in codes)) from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise Failure(f"the SMTP server answered {exc.smtp_code} {text.splitlines()[0] if text else ''}".strip(),
                      retry=not 500 <= exc.smtp_code < 600) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise Failure(f"the SMTP server: {exc}", retry=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise Failure(f"SMTP {opts.smtp_host}:{opts.smtp_port}: {exc or type(exc).__name__}") from None


# ---------------------------------------------------------------------------- the deliverer
class Deliverer:
    """Sends the outbox's due rows to ``channels``: :meth:`run_once` until nothing is due (the CLI),
    or :meth:`start` background threads that poll every ``opts.poll`` seconds and are woken at once
    by a row queued in this process (:data:`dashboard.alerts.outbox.woken`)."""

    def __init__(self, engine: Engine, channels, opts: Options = Options(), parallel: int | None = None,
                 environ=os.environ):
        self.engine = engine
        self.channels = {c.name: c for c in channels}
        self.opts = opts
        self.environ = environ
        pg = engine.dialect.name == "postgresql"
        self.parallel = parallel or (4 if pg else 1)  # SQLite has one writer: more threads only queue up
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pid = os.getpid()
        self._rng = random.Random()

    @classmethod
    def for_app(cls, settings, city) -> "Deliverer | None":
        """Return the deliverer of an app process, or None when the city declares no channel or the
        settings say another process delivers. Makes its own engine; nothing is opened until started."""
        channels = city.notify_channels if city is not None else []
        if not channels or not settings.notify_deliver:
            return None
        from dashboard.store import make_engine

        return cls(make_engine(settings.resolved_database_url), channels, Options.from_settings(settings))

    # ------------------------------------------------------------ one row
    def deliver_one(self) -> str | None:
        """Send the row due first, if any; return what became of it (delivered, retry, failed) or None."""
        now = time.time()
        due = outbox.c.next_attempt_at <= now
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                row = conn.execute(select(outbox).where(due).order_by(outbox.c.next_attempt_at).limit(1)
                                   .with_for_update(skip_locked=True)).mappings().first()
                if row is None:
                    return None
                outcome = self._attempt(row)
                conn.execute(update(outbox).where(outbox.c.id == row["id"]).values(**outcome))
        else:
            first = select(outbox.c.id).where(due).order_by(outbox.c.next_attempt_at).limit(1).scalar_subquery()
            with self.engine.begin() as conn:
                row = conn.execute(update(outbox).where(outbox.c.id == first)
                                   .values(next_attempt_at=now + self.opts.lease)
                                   .returning(*outbox.c)).mappings().first()
            if row is None:
                return None
            outcome = self._attempt(row)
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.id == row["id"], outbox.c.delivered_at.is_(None))
                             .values(**outcome))
        return "delivered" if outcome.get("delivered_at") else "failed" if outcome.get("failed_at") else "retry"

    def _attempt(self, row) -> dict:
        """Send one row; return the columns recording the outcome."""
        n = row["attempts"] + 1
        try:
            self.send(row["target"], row["key"], row["payload"])
        except Failure as f:
            now = time.time()
            if f.retry and n < self.opts.max_attempts:
                wait = backoff(n, self.opts, self._rng)
                if f.after is not None:
                    wait = max(wait, min(f.after, self.opts.backoff_max))
                log.warning("notification %s to %s: %s; attempt %d of %d, next in %.1f s", row["key"], row["target"],
                            f.reason, n, self.opts.max_attempts, wait)
                return dict(attempts=n, next_attempt_at=now + wait, last_error=f.reason)
            why = f.reason if not f.retry else f"{f.reason} (gave up after {n} attempts)"
            log.error("notification %s to %s failed: %s", row["key"], row["target"], why)
            return dict(attempts=n, next_attempt_at=None, failed_at=now, last_error=why)
        return dict(attempts=n, next_attempt_at=None, delivered_at=time.time(), last_error=None)

    def send(self, target: str, key: str, payload: dict) -> None:
        """Send one notification to the channel named ``target``; raise :class:`Failure`."""
        c = self.channels.get(target)
        if c is None:
            raise Failure(f"no channel {target!r} among the city's [[notify]] tables", retry=False)
        if c.kind == "webhook":
            send_webhook(c, key, payload, self.opts.timeout, self.environ)
        else:
            send_email(c, key, payload, self.opts)

    def run_once(self, limit: int = 100_000) -> Counter:
        """Send every row due now (at most ``limit``); return how many were delivered, retried, failed."""
        done: Counter = Counter()
        for _ in range(limit):
            what = self.deliver_one()
            if what is None:
                break
            done[what] += 1
        return done

    # ------------------------------------------------------------ in the background
    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; a store outage or a bug in one attempt never ends the loop."""
        while not stop.is_set():
            ob.woken.clear()
            try:
                found = self.deliver_one() is not None
            except STORE_OUTAGES as exc:
                log.warning("notifications wait for the store: %s", str(exc).splitlines()[0])
                found = False
            except Exception:  # noqa: BLE001 - keep delivering the other rows
                log.exception("notification delivery failed")
                found = False
            if not found:
                ob.woken.wait(self.opts.poll)

    def start(self) -> "Deliverer":
        """Start the background threads (again after a fork: threads do not survive one, and the
        pooled connections inherited from the parent are left to it)."""
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._threads, self._pid = [], os.getpid()
            self._stop = threading.Event()
        if any(t.is_alive() for t in self._threads):
            return self
        self._stop.clear()
        self._threads = [threading.Thread(target=self.run, args=(self._stop,), name=f"panorama-notify-{i}",
                                          daemon=True) for i in range(self.parallel)]
        for t in self._threads:
            t.start()
        log.info("delivering notifications to %s", ", ".join(self.channels))
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the threads after the row each is sending (its outcome is stored)."""
        self._stop.set()
        ob.woken.set()
        for t in self._threads:
            t.join(timeout if timeout is not None else self.opts.timeout * 2 + 5)
