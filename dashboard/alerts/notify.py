"""Where alert changes leave for the outside: the notifications outbox, if installed.

:func:`dashboard.alerts.store.append` calls :func:`on_change` for every event it writes, inside the
transaction of that change, so a change and its notification are stored together or not at all.
The event's ``uid`` (alert id and event number) is the outbox key: the same change is never sent
twice, even when a restart repeats a delivery. Without the outbox module (``dashboard.alerts.outbox``,
built separately) nothing is sent; :data:`LISTENERS` lets tests and other in-process consumers see
every change all the same.
"""
from __future__ import annotations

import importlib
import importlib.util

#: Callables ``(conn, key, kind, payload)`` told of every change, in its transaction.
LISTENERS: list = []
_outbox = None


def outbox():
    """Return the outbox module when it is installed, else None (looked up once)."""
    global _outbox
    if _outbox is None:
        spec = importlib.util.find_spec("dashboard.alerts.outbox")
        _outbox = importlib.import_module("dashboard.alerts.outbox") if spec is not None else False
    return _outbox or None


def message(event: dict, alert: dict) -> tuple[str, str, dict]:
    """Return (key, kind, payload) of the notification of one alert event."""
    kind = event["action"] if event["action"] != "engine" else f"engine.{event['detail'].get('event', 'state')}"
    payload = {"event": {k: event.get(k) for k in ("uid", "at", "actor", "action", "from_status", "to_status",
                                                   "note", "detail")},
               "alert": {k: alert.get(k) for k in ("id", "rule", "scope", "district_id", "domain", "asset", "severity",
                                                   "state", "status", "summary", "value", "repeat", "muted",
                                                   "opened_at", "acknowledged_by", "assignee", "escalation",
                                                   "escalated_to")}}
    return event["uid"], kind, payload


def on_change(conn, event: dict, alert: dict) -> None:
    """Queue the notification of ``event`` (in the caller's transaction)."""
    key, kind, payload = message(event, alert)
    box = outbox()
    if box is not None:
        box.enqueue(conn, key, kind, payload)  # notifications: outbox.enqueue here
    for fn in LISTENERS:
        fn(conn, key, kind, payload)
