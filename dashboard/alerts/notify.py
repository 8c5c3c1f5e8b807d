"""Where alert and incident changes leave for the outside: the notifications outbox, if installed.

:func:`dashboard.alerts.store.append` calls :func:`on_change` for every event it writes, inside the
transaction of that change, so a change and its notification are stored together or not at all;
:func:`dashboard.incidents.store.append` calls :func:`on_incident` the same way (an incident's
notification key is its event's ``uid``, ``incident-<id>-<n>``).
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


#: The city's ``[[notify]]`` channels and its rules by id (:func:`configure`, at app start).
_CHANNELS: list = []
_RULES: dict = {}


def configure(channels, rules=()) -> None:
    """Say where this process's alert changes go: the city's channels (``City.notify_channels``) and
    its rules (their condition and summary go into each notification)."""
    global _CHANNELS, _RULES
    _CHANNELS = list(channels or ())
    _RULES = {r.id: r for r in rules or ()}


def event_name(event: dict) -> str:
    """Return the name a channel selects a change by: the engine's event (firing, resolved, nodata,
    error, resumed, unmuted, …) for the evaluator's changes, ``escalated``, or the action itself."""
    if event["action"] in ("open", "engine"):
        return (event.get("detail") or {}).get("event") or event["action"]
    return "escalated" if event["action"] == "escalate" else event["action"]


def transition_of(event: dict, alert: dict, before: dict | None):
    """Return the engine :class:`~dashboard.alerts.engine.Transition` a stored change stands for."""
    from dashboard.alerts.engine import Transition

    d = event.get("detail") or {}
    return Transition(rule=alert["rule"], scope=alert["scope"],
                      from_state=before["state"] if before else "inactive", to_state=alert["state"],
                      event=event_name(event), at=event["at"], value=alert.get("value"), severity=alert["severity"],
                      repeat=alert.get("repeat") or 1, district=alert.get("district_id"), asset=alert.get("asset"),
                      muted=alert.get("muted"), reason=d.get("reason") or event.get("note") or "")


def on_change(conn, event: dict, alert: dict, before: dict | None = None) -> None:
    """Queue the notification of ``event`` for every channel that wants it (in the caller's transaction:
    the change and its notifications are stored together or not at all; the event's ``uid`` keys them)."""
    key, kind, payload = message(event, alert)
    box = outbox()
    if box is not None and _CHANNELS:
        t = transition_of(event, alert, before)
        box.notify_transition(conn, _CHANNELS, t, key, _RULES.get(alert["rule"]))
    for fn in LISTENERS:
        fn(conn, key, kind, payload)


#: Incident actions (``incident_events.action``) that are told to the channels, and the event name
#: a channel selects them by (:data:`dashboard.alerts.outbox.INCIDENT_EVENTS`); ``alerts`` (alerts
#: added) and ``note`` are not.
INCIDENT_EVENTS = {"open": "opened", "owner": "owner", "handover": "handover", "step": "step", "close": "closed",
                   "reopen": "reopened"}


def incident_message(event: dict, row: dict, alert_ids=()) -> dict:
    """Return the JSON a channel receives for an incident event: ``kind`` "incident", the ``event``
    (opened, owner, handover, step, closed, reopened), the incident (id, type, title, severity, status,
    district, domain, owner), ``who`` did it and ``at`` when, ``link`` (the incident's API path), and
    what the event carries: the new owner's predecessor, the step done with its fields, the summary,
    the note; for ``opened``, the rule that grouped it (None: by hand) and its alerts."""
    from datetime import datetime, timezone

    d = event.get("detail") or {}
    name = INCIDENT_EVENTS[event["action"]]
    out = {"kind": "incident", "event": name, "event_id": event["uid"], "incident": row["id"], "type": row["type"],
           "title": row["title"], "severity": row["severity"], "status": row["status"],
           "district": row["district_id"], "domain": row["domain"], "owner": row["owner"],
           "place": row["district_id"] or "city", "who": event["actor"], "at": event["at"],
           "at_iso": datetime.fromtimestamp(event["at"], timezone.utc).isoformat(timespec="seconds"),
           "note": event.get("note"), "link": f"/api/incidents/{row['id']}"}
    if name == "opened":
        out.update(rule=row["rule"], alerts=list(alert_ids))
    elif name == "owner":
        out["previous_owner"] = d.get("from")
    elif name == "step":
        out["step"] = {k: d.get(k) for k in ("step", "text", "role", "fields")}
    elif name == "closed":
        out["summary"] = d.get("summary")
    return out


def on_incident(conn, event: dict, row: dict, alert_ids=()) -> None:
    """Queue the notification of an incident ``event`` (the row as it made it) for every channel that
    wants it, in the caller's transaction; events that are not told (alerts added, notes) queue nothing.
    ``alert_ids``: the incident's alerts, for ``opened``."""
    if event["action"] not in INCIDENT_EVENTS:
        return
    payload = incident_message(event, row, alert_ids)
    box = outbox()
    if box is not None and _CHANNELS:
        box.notify_incident(conn, _CHANNELS, payload)
    for fn in LISTENERS:
        fn(conn, payload["event_id"], f"incident.{payload['event']}", payload)
