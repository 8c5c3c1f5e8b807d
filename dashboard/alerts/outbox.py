"""Notifications out, first half: the channels a city declares and the outbox they are queued in.

A state change of an alert is queued here in the very transaction that records it
(:func:`enqueue`, :func:`notify_transition`): if that transaction rolls back nothing is queued, if
it commits the notification is in the store and survives any restart. The row's ``key`` is unique
— one row per change per channel, ``f"{event_id}:{channel}"`` — so queueing the same change again
(a retried transaction, a re-run evaluation) inserts nothing. :mod:`dashboard.alerts.deliver`
sends the rows.

Channels are ``[[notify]]`` tables of ``city.toml`` (see README, *Notifications*); each mistake is
one line naming the channel and the field, as for alert rules.
"""
from __future__ import annotations

import re
import math
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, event, func, select, update

from dashboard.alerts.rules import SEVERITIES
from dashboard.store.schema import outbox

KINDS = ("webhook", "email")
#: The transitions (:class:`~dashboard.alerts.engine.Transition` ``event``) a channel is told of by
#: default: an alert starts, ends, loses or regains its data, or its silence ends while it fires.
DEFAULT_EVENTS = ("firing", "resolved", "nodata", "error", "resumed", "unmuted")
EVENTS = (*DEFAULT_EVENTS, "pending", "inactive", "removed", "escalated")
#: The incident events (:func:`dashboard.alerts.notify.on_incident`) a channel is told of unless its
#: ``incidents`` says otherwise: opened (by hand or by a rule), a new owner, a handover note, a
#: checklist step done, closed (with the summary), reopened.
INCIDENT_EVENTS = ("opened", "owner", "handover", "step", "closed", "reopened")

_KEYS = {"name", "kind", "url", "secret_env", "to", "from", "severities", "rules", "districts", "events", "incidents"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")


class NotifyError(ValueError):
    """A ``[[notify]]`` channel of the city file that cannot be used, in one line."""


@dataclass(frozen=True)
class Channel:
    """Where notifications go: a webhook (``url``, HMAC key in the environment variable ``secret_env``)
    or an e-mail (``to``, ``sender``; the SMTP server comes from the settings). ``severities``,
    ``rules``, ``districts`` and ``events`` select what it is told of (empty: everything;
    ``events`` defaults to :data:`DEFAULT_EVENTS`); ``districts`` may name ``city`` for the
    city-wide alerts. ``incidents``: the incident events it is told of (default
    :data:`INCIDENT_EVENTS`, empty: none), chosen by ``severities`` and ``districts`` as alerts are;
    ``rules`` and ``events`` are the alerts' alone."""

    name: str
    kind: str
    url: str = ""
    secret_env: str = ""
    to: tuple[str, ...] = ()
    sender: str = ""
    severities: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    districts: tuple[str, ...] = ()
    events: tuple[str, ...] = DEFAULT_EVENTS
    incidents: tuple[str, ...] = INCIDENT_EVENTS

    def wants(self, t) -> bool:
        """Return whether a :class:`~dashboard.alerts.engine.Transition` is for this channel."""
        return (t.event in self.events) and (not self.rules or t.rule in self.rules) and \
            self._selects(t.severity, t.district)

    def wants_incident(self, event: str, severity: str, district: str | None) -> bool:
        """Return whether an incident's ``event`` (one of :data:`INCIDENT_EVENTS`) is for this channel."""
        return event in self.incidents and self._selects(severity, district)

    def _selects(self, severity: str, district: str | None) -> bool:
        return (not self.severities or severity in self.severities) and \
            (not self.districts or (district or "city") in self.districts)


def parse_channels(tables, where: str = "city.toml", rule_ids=None, districts=None) -> list[Channel]:
    """Return the channels of ``[[notify]]`` ``tables``, checked; raise :class:`NotifyError`.

    ``rule_ids``/``districts``: the known ones (None: not checked)."""
    if tables is None:
        return []
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise NotifyError(f"{where}: notification channels are [[notify]] tables")
    out: list[Channel] = []
    for n, t in enumerate(tables, 1):
        name = t.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise NotifyError(f"{where}: [[notify]] #{n}: name: {'missing' if name is None else repr(name) + ' is not'} "
                              "a name (letters, digits, _ . -; at most 64)")
        here = f"{where}: [[notify]] {name!r}"
        if any(c.name == name for c in out):
            raise NotifyError(f"{here}: name: used by an earlier channel too")
        unknown = sorted(set(t) - _KEYS)
        if unknown:
            raise NotifyError(f"{here}: unknown key(s) {', '.join(unknown)} (use {', '.join(sorted(_KEYS))})")
        kind = t.get("kind")
        if kind not in KINDS:
            raise NotifyError(f"{here}: kind: {kind!r} is not one of {', '.join(KINDS)}")
        wrong = sorted(set(t) & ({"to", "from"} if kind == "webhook" else {"url", "secret_env"}))
        if wrong:
            raise NotifyError(f"{here}: {', '.join(wrong)}: not a key of a {kind} channel")

        def names(key, allowed=None, what="value"):
            v = t.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise NotifyError(f"{here}: {key}: a list of {what}s")
            bad = sorted(set(v) - set(allowed)) if allowed is not None else []
            if bad:
                raise NotifyError(f"{here}: {key}: unknown {what}(s) {', '.join(bad)}")
            return tuple(v)

        fields = dict(severities=names("severities", SEVERITIES, "severity"),
                      rules=names("rules", rule_ids, "rule"),
                      districts=names("districts", None if districts is None else {"city", *districts}, "district"),
                      events=names("events", EVENTS, "event") or DEFAULT_EVENTS,
                      incidents=_incident_events(t, here))
        if kind == "webhook":
            url, env = t.get("url"), t.get("secret_env")
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise NotifyError(f"{here}: url: {url!r} is not an http(s) URL")
            if not isinstance(env, str) or not _ENV.match(env):
                raise NotifyError(f"{here}: secret_env: name the environment variable holding the signing key "
                                  f"(got {env!r}); the key itself never goes in city.toml")
            out.append(Channel(name, kind, url=url, secret_env=env, **fields))
        else:
            to = t.get("to")
            to = [to] if isinstance(to, str) else to
            if not isinstance(to, list) or not to or not all(isinstance(a, str) and _ADDRESS.match(a) for a in to):
                raise NotifyError(f"{here}: to: one address or a list of addresses (got {t.get('to')!r})")
            sender = t.get("from")
            if not isinstance(sender, str) or not _ADDRESS.match(sender):
                raise NotifyError(f"{here}: from: {sender!r} is not an address")
            out.append(Channel(name, kind, to=tuple(to), sender=sender, **fields))
    return out


def _incident_events(t: dict, here: str) -> tuple[str, ...]:
    """Return the incident events a channel table asks for: ``incidents = true`` (the default: all),
    ``false`` (none) or a list of :data:`INCIDENT_EVENTS`."""
    v = t.get("incidents", True)
    if isinstance(v, bool):
        return INCIDENT_EVENTS if v else ()
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise NotifyError(f"{here}: incidents: true, false or a list of incident events "
                          f"({', '.join(INCIDENT_EVENTS)})")
    bad = sorted(set(v) - set(INCIDENT_EVENTS))
    if bad:
        raise NotifyError(f"{here}: incidents: unknown incident event(s) {', '.join(bad)} "
                          f"(use {', '.join(INCIDENT_EVENTS)})")
    return tuple(x for x in INCIDENT_EVENTS if x in v)


# ---------------------------------------------------------------------------- queueing
def enqueue(conn: Connection, key: str, channel: Channel, payload: dict, now: float | None = None) -> bool:
    """Queue ``payload`` for ``channel`` in the caller's transaction; return False when ``key`` is
    queued already (nothing inserted: one row per key, whatever the number of calls)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = time.time() if now is None else now
    res = conn.execute(insert(outbox).values(key=key, target=channel.name, kind=channel.kind, payload=payload,
                                             created_at=now, attempts=0, next_attempt_at=now)
                       .on_conflict_do_nothing(index_elements=["key"]).returning(outbox.c.id))
    _wake_after_commit(conn)
    return res.first() is not None


def payload_of(t, event_id, rule=None, place: str | None = None) -> dict:
    """Return the JSON a channel receives for a :class:`~dashboard.alerts.engine.Transition`:
    ``rule`` (a :class:`~dashboard.alerts.rules.Rule`) adds its condition and summary, ``place`` a
    display name of its district or asset."""
    out = {"kind": "alert", "event_id": event_id, **t.as_row(),
           "at_iso": datetime.fromtimestamp(t.at, timezone.utc).isoformat(timespec="seconds"),
           "place": place or t.asset or t.district or "city"}
    out["from"], out["to"] = out.pop("from_state"), out.pop("to_state")
    if out["value"] is not None and not math.isfinite(out["value"]):
        out["value"] = None  # JSON has no NaN
    if rule is not None:
        out.update(condition=rule.describe(), summary=rule.summary, domain=rule.domain)
    return out


def notify_transition(conn: Connection, channels, t, event_id, rule=None, place: str | None = None,
                      now: float | None = None) -> int:
    """Queue a transition for every channel that wants it, in the caller's transaction; return how
    many rows were inserted. Muted transitions are not sent (the ``unmuted`` one is, when the
    mute ends). ``event_id``: the id of the change's audit row, stable across retries."""
    if t.muted:
        return 0
    payload = None
    n = 0
    for c in channels:
        if c.wants(t):
            payload = payload or payload_of(t, event_id, rule, place)
            n += enqueue(conn, f"{event_id}:{c.name}", c, payload, now)
    return n


def notify_incident(conn: Connection, channels, payload: dict, now: float | None = None) -> int:
    """Queue an incident event's ``payload`` (:func:`dashboard.alerts.notify.incident_message`) for
    every channel that wants it, in the caller's transaction, keyed by its ``event_id`` (the
    incident event's uid); return how many rows were inserted."""
    n = 0
    for c in channels:
        if c.wants_incident(payload["event"], payload["severity"], payload["district"]):
            n += enqueue(conn, f"{payload['event_id']}:{c.name}", c, payload, now)
    return n


# ---------------------------------------------------------------------------- reading and retrying
STATUSES = ("pending", "failed", "delivered")


def _status_filter(status: str):
    if status == "delivered":
        return outbox.c.delivered_at.is_not(None)
    if status == "failed":
        return outbox.c.failed_at.is_not(None)
    if status == "pending":
        return outbox.c.delivered_at.is_(None) & outbox.c.failed_at.is_(None)
    raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")


def deliveries(conn: Connection, status: str | None = None, limit: int = 100) -> list[dict]:
    """Return the newest outbox rows (of ``status``: pending, failed or delivered), each with its
    ``status`` and, when failed or retrying, the reason (``last_error``)."""
    q = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if status is not None:
        q = q.where(_status_filter(status))
    out = []
    for r in conn.execute(q).mappings():
        d = dict(r)
        d["status"] = "delivered" if d["delivered_at"] else "failed" if d["failed_at"] else "pending"
        out.append(d)
    return out


def counts(conn: Connection) -> dict[str, int]:
    """Return the number of rows per status."""
    return {s: conn.execute(select(func.count()).select_from(outbox).where(_status_filter(s))).scalar_one()
            for s in STATUSES}


def retry(conn: Connection, row_id: int, now: float | None = None) -> bool:
    """Queue a failed row again (its attempts counted afresh); return False when no failed row has that id."""
    now = time.time() if now is None else now
    res = conn.execute(update(outbox).where(outbox.c.id == row_id, outbox.c.failed_at.is_not(None))
                       .values(failed_at=None, attempts=0, next_attempt_at=now))
    if res.rowcount:
        _wake_after_commit(conn)
    return res.rowcount == 1


# ---------------------------------------------------------------------------- waking the deliverer
#: Set when a row was queued in this process: the deliverer thread looks at once instead of at its
#: next poll. Set after the transaction ends (when its connection goes back to the pool), so the
#: deliverer finds the row committed; a rolled-back one only costs it an empty look.
woken = threading.Event()
_WAKE = "panorama_outbox_wake"
_watched: weakref.WeakSet = weakref.WeakSet()  # pools with the listener
_watched_lock = threading.Lock()


def wake() -> None:
    """Have this process's deliverer look at the outbox now."""
    woken.set()


def _on_checkin(_dbapi_conn, record) -> None:
    if record is not None and record.info.pop(_WAKE, False):
        woken.set()


def _wake_after_commit(conn: Connection) -> None:
    pool = conn.engine.pool
    with _watched_lock:
        if pool not in _watched:
            event.listen(pool, "checkin", _on_checkin)
            _watched.add(pool)
    conn.connection.info[_WAKE] = True
