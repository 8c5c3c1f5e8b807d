"""Alerts in the store: the engine's state, alert occurrences and their lifecycle, the event log, silences.

An alert row changes only through an event: :func:`append` writes the event and the row that
:func:`apply` computes from the row and the event, in the caller's transaction. The event log is
never updated, so :func:`replay` rebuilds any alert from its events alone (the next step, time
travel, reads them). The one field outside the log is ``value``: the live reading, refreshed as
it changes, not history.

Lifecycle (``status``): ``new`` → ``acknowledged`` (who, when, note) → ``assigned`` (a person or a
team) → ``resolved`` (by an operator once the condition is clear, or by the system after
``auto_resolve_after``), and ``reopen``. ``shelve`` hides an alert for N minutes (it comes back by
itself); ``comment`` adds a note. ``state`` is the engine's: firing, nodata, error, or inactive once
the condition is clear.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import delete, func, insert, or_, select, update

from dashboard.alerts.engine import ERROR, FIRING, NODATA, Silence
from dashboard.store.schema import alert_events, alert_state, alerts, silences

NEW, ACKNOWLEDGED, ASSIGNED, RESOLVED = "new", "acknowledged", "assigned", "resolved"
STATUSES = (NEW, ACKNOWLEDGED, ASSIGNED, RESOLVED)
#: Row states: the engine's, pending counting as clear (an alert row exists from its firing on).
OPEN_STATES = (FIRING, NODATA, ERROR)
CLEAR = "inactive"
#: The actor of what the evaluator does by itself (open, state changes, auto-resolve, escalation).
SYSTEM = "system"
#: Actions a person may take (the API's and the CLI's verbs).
ACTIONS = ("ack", "assign", "resolve", "reopen", "shelve", "unshelve", "comment")
MAX_NOTE = 2000
MAX_SHELVE_MIN = 7 * 24 * 60
#: Row fields that are not history: refreshed in place, not replayed.
LIVE_FIELDS = ("value",)
FIELDS = tuple(c.name for c in alerts.columns)


class AlertError(ValueError):
    """A lifecycle action that cannot be done: ``status`` 400 (bad input), 404 (no such alert) or 409
    (not in this state); the message is one line, safe to show."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def row_state(engine_state: str) -> str:
    """Return the state an alert row shows for an engine state (pending is not an alert yet)."""
    return engine_state if engine_state in OPEN_STATES else CLEAR


# ---------------------------------------------------------------------------- the fold
def apply(row: dict | None, ev: dict) -> dict:
    """Return the alert row after event ``ev`` (``action``, ``at``, ``actor``, ``note``, ``detail``).

    The one place an alert row changes: the writer and :func:`replay` both go through it."""
    a, at, d = ev["action"], ev["at"], ev.get("detail") or {}
    if a == "open":
        r = {f: None for f in FIELDS}
        r.update(id=ev.get("alert_id"), key=d["key"], rule=d["rule"], scope=d["scope"], district_id=d.get("district"),
                 domain=d["domain"], asset=d.get("asset"), severity=d["severity"], state=d["state"], status=NEW,
                 summary=d.get("summary"), opened_at=at, since=at, value=d.get("value"), repeat=d.get("repeat", 1),
                 muted=d.get("muted"), escalation=0, events=0)
    else:
        if row is None:
            raise ValueError(f"event {a!r} before the alert was opened")
        r = dict(row)
    if a == "engine":
        if d["state"] != r["state"]:
            r["since"] = at
            r["clear_since"] = at if d["state"] == CLEAR else None
        r.update(state=d["state"], repeat=d.get("repeat", r["repeat"]), muted=d.get("muted"))
    elif a == "ack":
        r.update(status=ACKNOWLEDGED, acknowledged_by=ev["actor"], acknowledged_at=at, ack_note=ev.get("note"))
    elif a == "assign":
        if r["acknowledged_at"] is None:  # whoever assigns it has seen it
            r.update(acknowledged_by=ev["actor"], acknowledged_at=at)
        r.update(status=ASSIGNED, assignee=d["to"], assignee_kind=d["kind"])
    elif a == "resolve":
        r.update(status=RESOLVED, resolved_at=at, resolved_by=ev["actor"])
    elif a == "reopen":
        r.update(status=ASSIGNED if r["assignee"] else ACKNOWLEDGED if r["acknowledged_at"] else NEW,
                 resolved_at=None, resolved_by=None)
        if r["state"] == CLEAR:
            r["clear_since"] = at  # the time to resolve by itself starts again
    elif a == "shelve":
        r.update(shelved_until=d["until"], shelved_by=ev["actor"])
    elif a == "unshelve":
        r.update(shelved_until=None, shelved_by=None)
    elif a == "escalate":
        r.update(escalation=d["level"], escalated_at=at, escalated_to=d["target"], severity=d["severity"])
    elif a not in ("open", "comment"):
        raise ValueError(f"unknown alert event {a!r}")
    _clock(row, r, a, at)
    r["events"] += 1
    r["updated_at"] = at
    return r


def counting(r: dict) -> bool:
    """Return whether alert row ``r`` is on the escalation clock: open, nobody has acknowledged it,
    neither muted (a silence, inhibition) nor shelved."""
    return r["status"] == NEW and r["state"] in OPEN_STATES and not r["muted"] and r["shelved_until"] is None


def _clock(row: dict | None, r: dict, action: str, at: float) -> None:
    """Move the escalation clock of ``r`` (``row`` after an event at ``at``): the time since it last
    started counts, escalating starts it from zero, and it runs on only while :func:`counting`."""
    if row is None:
        r["unacked_s"] = 0.0
    elif row.get("unacked_since") is not None:
        r["unacked_s"] = (row.get("unacked_s") or 0.0) + max(0.0, at - row["unacked_since"])
    if action == "escalate":
        r["unacked_s"] = 0.0  # the next target is told after as long again
    r["unacked_since"] = at if counting(r) else None


def unacked(row: dict, now: float) -> float:
    """Return the seconds alert ``row`` has been on the escalation clock at ``now`` since it opened or
    last escalated (only the time it was open, unacknowledged, neither muted nor shelved)."""
    since = row.get("unacked_since")
    return (row.get("unacked_s") or 0.0) + (0.0 if since is None else max(0.0, now - since))


def append(conn, row: dict | None, action: str, actor: str, at: float, note: str | None = None,
           detail: dict | None = None) -> tuple[dict, dict]:
    """Write one event and the row it makes (inserting the row for ``open``); return (row, event)."""
    new, ev = write_event(conn, alerts, alert_events, apply, "alert", row, action, actor, at, note, detail)
    from dashboard.alerts import notify

    notify.on_change(conn, ev, new, row)  # its notifications, in the same transaction as the change
    return new, ev


def write_event(conn, table, events, fold, kind: str, row: dict | None, action: str, actor: str, at: float,
                note: str | None, detail: dict | None) -> tuple[dict, dict]:
    """Append one event of ``kind`` (alert, incident) to ``events`` and write the row ``fold(row, event)``
    makes to ``table`` (inserted for the first event); return (row, event). The event's ``uid`` is
    ``kind-id-seq``; alert events also say the status they move from and to."""
    ev = {"action": action, "at": float(at), "actor": actor, "note": note, "detail": _json(detail or {})}
    new = fold(row, ev)
    if row is None:
        new["id"] = conn.execute(insert(table).values(**{k: v for k, v in new.items() if k != "id"})).inserted_primary_key[0]
    else:
        changed = {k: v for k, v in new.items() if row.get(k) != v and k != "id"}
        conn.execute(update(table).where(table.c.id == row["id"]).values(**changed))
    ev.update({f"{kind}_id": new["id"], "seq": new["events"], "uid": f"{kind}-{new['id']}-{new['events']}"})
    if "from_status" in events.c:
        ev.update(from_status=None if row is None else row["status"], to_status=new["status"])
    ev["id"] = conn.execute(insert(events).values(**{k: v for k, v in ev.items() if k != "id"})).inserted_primary_key[0]
    return new, ev


def _json(d: dict) -> dict:
    """Return ``d`` with NaN and infinities as None (JSON columns take no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def replay(conn, alert_id: int) -> dict | None:
    """Return the alert rebuilt from its events alone (None: no event), without :data:`LIVE_FIELDS`."""
    row = None
    for ev in history(conn, alert_id):
        row = apply(row, ev)
    if row is not None:
        for f in LIVE_FIELDS:
            row.pop(f, None)
    return row


def history(conn, alert_id: int) -> list[dict]:
    """Return the events of an alert, oldest first."""
    q = select(alert_events).where(alert_events.c.alert_id == alert_id).order_by(alert_events.c.seq)
    return [dict(r._mapping) for r in conn.execute(q)]


def get(conn, alert_id: int, for_update: bool = False) -> dict | None:
    q = select(alerts).where(alerts.c.id == alert_id)
    if for_update and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = conn.execute(q).first()
    return None if r is None else dict(r._mapping)


def open_rows(conn) -> dict[str, dict]:
    """Return the alerts not resolved, by key (at most one per key: a unique index says so)."""
    return {r.key: dict(r._mapping) for r in conn.execute(select(alerts).where(alerts.c.status != RESOLVED))}


# ---------------------------------------------------------------------------- lifecycle actions
def act(conn, alert_id: int, action: str, actor: str, body: dict | None = None, now: float | None = None,
        teams: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Do a person's ``action`` on an alert (in the caller's transaction); return (row, event) or raise
    :class:`AlertError`. ``body``: ``note``; ``to`` and ``kind`` (user | team) for assign; ``minutes``
    for shelve. A user assignee must be an enabled user, a team one of ``teams``."""
    body = body or {}
    if action not in ACTIONS:
        raise AlertError(404, f"no action {action[:20]!r} (one of {', '.join(ACTIONS)})")
    if not isinstance(body, dict):
        raise AlertError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - {"note", "to", "kind", "minutes"})
    if unknown:
        raise AlertError(400, f"unknown field(s) {', '.join(x[:20] for x in unknown)}")
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise AlertError(400, f"note must be text of at most {MAX_NOTE} characters")
    note = note.strip() or None if note else None
    now = time.time() if now is None else float(now)
    row = get(conn, alert_id, for_update=True)
    if row is None:
        raise AlertError(404, f"no alert {alert_id}")
    detail: dict = {}
    status = row["status"]
    if action == "ack":
        if status != NEW:
            raise AlertError(409, f"alert {alert_id} is {status}: only a new alert is acknowledged")
    elif action == "assign":
        if status == RESOLVED:
            raise AlertError(409, f"alert {alert_id} is resolved: reopen it first")
        detail = _assignee(conn, body, teams)
    elif action == "resolve":
        if status == RESOLVED:
            raise AlertError(409, f"alert {alert_id} is already resolved")
        if row["state"] != CLEAR:
            raise AlertError(409, f"alert {alert_id} is still {row['state']}: it resolves once its condition is clear "
                                  "(shelve it or add a silence meanwhile)")
    elif action == "reopen":
        if status != RESOLVED:
            raise AlertError(409, f"alert {alert_id} is {status}, not resolved")
        newer = conn.execute(select(alerts.c.id).where(alerts.c.key == row["key"], alerts.c.status != RESOLVED)).first()
        if newer is not None:
            raise AlertError(409, f"alert {newer.id} is the open occurrence of the same rule and place: act on it")
    elif action == "shelve":
        if status == RESOLVED:
            raise AlertError(409, f"alert {alert_id} is resolved")
        minutes = body.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= MAX_SHELVE_MIN:
            raise AlertError(400, f"minutes: a number of minutes from 1 to {MAX_SHELVE_MIN}")
        detail = {"until": now + float(minutes) * 60, "minutes": minutes}
    elif action == "unshelve":
        if row["shelved_until"] is None:
            raise AlertError(409, f"alert {alert_id} is not shelved")
    elif action == "comment" and not note:
        raise AlertError(400, "note: a comment needs text")
    for f in ("to", "kind") if action != "assign" else ():
        if f in body:
            raise AlertError(400, f"{f}: only for assign")
    if "minutes" in body and action != "shelve":
        raise AlertError(400, "minutes: only for shelve")
    return append(conn, row, action, actor, now, note, detail)


def _assignee(conn, body: dict, teams: tuple[str, ...]) -> dict:
    from dashboard.store.schema import users

    to, kind = body.get("to"), body.get("kind", "user")
    if not isinstance(to, str) or not to.strip() or len(to) > 100:
        raise AlertError(400, "to: the user or team to assign the alert to")
    if kind == "team":
        if to not in teams:
            raise AlertError(400, f"to: no team {to[:40]!r} in [alerting] teams"
                                  + (f" ({', '.join(teams)})" if teams else " (none declared)"))
    elif kind == "user":
        u = conn.execute(select(users.c.name).where(func.lower(users.c.name) == to.lower(), users.c.disabled == 0)).first()
        if u is None:
            raise AlertError(400, f"to: no enabled user {to[:40]!r}")
        to = u.name
    else:
        raise AlertError(400, "kind: user or team")
    return {"to": to, "kind": kind}


# ---------------------------------------------------------------------------- reads
def list_alerts(conn, *, states=(), severities=(), districts=None, district=None, domain=None, rule=None,
                since=None, limit=100, cursor=None, now=None) -> tuple[list[dict], int | None]:
    """Return alerts newest first and the cursor of the next page (None: the last page).

    ``states``: lifecycle statuses, engine states, ``open`` (not resolved) or ``shelved`` (any of them);
    ``districts``: the districts the reader may see (None: every one, city-wide alerts included);
    ``since``: opened or changed at or after; ``cursor``: the id the previous page ended before."""
    now = time.time() if now is None else now
    q = select(alerts)
    conds = []
    for s in states:
        if s in STATUSES:
            conds.append(alerts.c.status == s)
        elif s == "open":
            conds.append(alerts.c.status != RESOLVED)
        elif s == "shelved":
            conds.append(alerts.c.shelved_until > now)
        else:
            conds.append(alerts.c.state == s)
    if conds:
        q = q.where(or_(*conds))
    if severities:
        q = q.where(alerts.c.severity.in_(list(severities)))
    if districts is not None:
        q = q.where(alerts.c.district_id.in_(list(districts)))
    if district is not None:
        q = q.where(alerts.c.district_id == district)
    if domain is not None:
        q = q.where(alerts.c.domain == domain)
    if rule is not None:
        q = q.where(alerts.c.rule == rule)
    if since is not None:
        q = q.where(alerts.c.updated_at >= since)
    return page(conn, q, alerts.c.id, limit, cursor)


def page(conn, q, id_col, limit: int, cursor: int | None) -> tuple[list[dict], int | None]:
    """Return one page of ``q``'s rows, newest (highest ``id_col``) first, before ``cursor``, and the
    cursor of the next page (None: the last page)."""
    if cursor is not None:
        q = q.where(id_col < cursor)
    rows = [dict(r._mapping) for r in conn.execute(q.order_by(id_col.desc()).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


# ---------------------------------------------------------------------------- the engine's state
#: Entry fields that change every evaluation without changing what the alert is: not worth a write.
_VOLATILE = ("last", "evaluations")


def load_state(conn) -> dict:
    """Return the engine's state as kept in the store."""
    entries = {r.key: r.entry for r in conn.execute(select(alert_state.c.key, alert_state.c.entry))}
    return {"version": 1, "at": None, "alerts": entries}


def save_state(conn, old: dict, new: dict, now: float) -> int:
    """Write the entries of ``new`` that differ from ``old`` (beyond :data:`_VOLATILE`), delete the gone
    ones; return how many rows were written or deleted."""
    def same(a, b):
        return a is not None and b is not None and all(a.get(k) == b.get(k) for k in set(a) | set(b)
                                                       if k not in _VOLATILE)

    old_e, new_e = old.get("alerts") or {}, new.get("alerts") or {}
    gone = [k for k in old_e if k not in new_e]
    changed = [k for k, e in new_e.items() if not same(old_e.get(k), e)]
    stale = gone + [k for k in changed if k in old_e]
    for i in range(0, len(stale), 500):
        conn.execute(delete(alert_state).where(alert_state.c.key.in_(stale[i:i + 500])))
    if changed:
        conn.execute(insert(alert_state), [{"key": k, "entry": _clean(new_e[k]), "updated_at": int(now)}
                                           for k in changed])
    return len(gone) + len(changed)


def _clean(e: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in e.items()}


# ---------------------------------------------------------------------------- silences
def add_silence(conn, *, actor: str, reason: str, rule=None, domain=None, district=None, asset=None,
                start: float | None = None, end: float | None = None, duration: float | None = None,
                now: float | None = None) -> dict:
    """Add a silence (checked as the engine checks it) and say so in the audit log; return it."""
    from dashboard.accounts import audit

    now = time.time() if now is None else float(now)
    start = now if start is None else start
    if end is None:
        if duration is None or duration <= 0:
            raise AlertError(400, "give how long (for) or until when (end)")
        end = float(start) + duration
    try:
        s = Silence("new", start, end, reason, actor, rule, domain, district, asset)
    except ValueError as exc:
        raise AlertError(400, str(exc).replace("silence 'new': ", "")) from None
    if s.end <= now:
        raise AlertError(400, "end: already past")
    if len(reason) > MAX_NOTE:
        raise AlertError(400, f"reason: at most {MAX_NOTE} characters")
    sid = conn.execute(insert(silences).values(rule=rule, domain=domain, district_id=district, asset=asset,
                                               starts_at=s.start, ends_at=s.end, reason=reason.strip(),
                                               created_by=actor, created_at=now)).inserted_primary_key[0]
    audit(conn, "silence.add", actor, f"silence {sid}", {"rule": rule, "domain": domain, "district": district,
                                                         "asset": asset, "from": s.start, "to": s.end}, now=now)
    return get_silence(conn, sid, now)


def end_silence(conn, silence_id: int, actor: str, now: float | None = None, districts=None) -> dict:
    """End a silence now (it stops muting at the next evaluation); raise :class:`AlertError`."""
    from dashboard.accounts import audit

    now = time.time() if now is None else float(now)
    s = get_silence(conn, silence_id, now)
    if s is None or districts is not None and s["district"] not in districts:
        raise AlertError(404, f"no silence {silence_id}")
    if s["ended_at"] is not None or s["ends_at"] <= now:
        raise AlertError(409, f"silence {silence_id} has already ended")
    conn.execute(update(silences).where(silences.c.id == silence_id).values(ended_at=now, ended_by=actor))
    audit(conn, "silence.end", actor, f"silence {silence_id}", now=now)
    return get_silence(conn, silence_id, now)


def _silence_json(r, now: float) -> dict:
    d = dict(r._mapping)
    d["district"] = d.pop("district_id")
    end = d["ends_at"] if d["ended_at"] is None else min(d["ends_at"], d["ended_at"])
    d["active"] = d["starts_at"] <= now < end
    return d


def get_silence(conn, silence_id: int, now: float | None = None) -> dict | None:
    r = conn.execute(select(silences).where(silences.c.id == silence_id)).first()
    return None if r is None else _silence_json(r, time.time() if now is None else now)


def list_silences(conn, now: float | None = None, current: bool = True, districts=None) -> list[dict]:
    """Return silences (``current``: those not yet over), newest first; ``districts``: those of the
    reader's districts only."""
    now = time.time() if now is None else now
    q = select(silences).order_by(silences.c.id.desc())
    if current:
        q = q.where(silences.c.ends_at > now, silences.c.ended_at.is_(None))
    else:
        q = q.limit(500)
    if districts is not None:
        q = q.where(silences.c.district_id.in_(list(districts)))
    return [_silence_json(r, now) for r in conn.execute(q)]


def active_silences(conn, now: float) -> list[Silence]:
    """Return the silences muting alerts at ``now``, for the engine."""
    q = select(silences).where(silences.c.starts_at <= now, silences.c.ends_at > now, silences.c.ended_at.is_(None))
    return [Silence(str(r.id), r.starts_at, r.ends_at, r.reason, r.created_by, r.rule, r.domain, r.district_id,
                    r.asset) for r in conn.execute(q)]


__all__ = ["ACTIONS", "AlertError", "STATUSES", "act", "active_silences", "add_silence", "append", "apply",
           "counting", "end_silence", "get", "history", "list_alerts", "list_silences", "load_state", "open_rows",
           "replay", "save_state", "unacked"]
