"""Incidents in the store: alerts grouped into one event to handle, their checklist and event log.

As for alerts (:mod:`dashboard.alerts.store`), an incident row changes only through an event:
:func:`append` writes the event and the row :func:`apply` computes, in the caller's transaction,
and :func:`replay` rebuilds any incident from its events alone. The checklist is not a table of its
own: it is read from the ``step`` events (:func:`checklist`), so it is history too.

Events (``action``): ``open`` (type, title, place, who opened it, by hand or by which rule),
``alerts`` (alerts added), ``owner``, ``note``, ``handover`` (the note for the next shift),
``step`` (a checklist step done, with its fields), ``close`` (with the summary), ``reopen``.
"""
from __future__ import annotations

import time

from sqlalchemy import func, insert, select

from dashboard.alerts.rules import SEVERITIES
from dashboard.alerts.store import SYSTEM, AlertError, page, write_event
from dashboard.incidents.config import MAX_TEXT, Incidents, IncidentType
from dashboard.store.schema import alert_events, alerts, incident_alerts, incident_events, incidents, users

OPEN, CLOSED = "open", "closed"
STATUSES = (OPEN, CLOSED)
#: Actions a person may take on an incident (the API's and the CLI's verbs); opening is its own call.
ACTIONS = ("add-alerts", "owner", "note", "handover", "step", "close", "reopen")
FIELDS = tuple(c.name for c in incidents.columns)
MAX_ALERTS = 500


class IncidentError(AlertError):
    """An incident action that cannot be done: ``status`` 400, 403 (not this person's step), 404 or 409."""


def worst(*severities: str) -> str:
    """Return the most severe of ``severities``."""
    return max((s for s in severities if s in SEVERITIES), key=SEVERITIES.index, default="info")


# ---------------------------------------------------------------------------- the fold
def apply(row: dict | None, ev: dict) -> dict:
    """Return the incident row after event ``ev``: the one place an incident row changes."""
    a, at, d = ev["action"], ev["at"], ev.get("detail") or {}
    if a == "open":
        r = {f: None for f in FIELDS}
        r.update(id=ev.get("incident_id"), type=d["type"], title=d["title"], district_id=d.get("district"),
                 domain=d.get("domain"), severity=d["severity"], status=OPEN, owner=d.get("owner"), rule=d.get("rule"),
                 opened_at=at, opened_by=ev["actor"], alerts=0, steps_done=0, events=0)
    elif row is None:
        raise ValueError(f"event {a!r} before the incident was opened")
    else:
        r = dict(row)
    if a == "alerts":
        r.update(alerts=r["alerts"] + len(d["alerts"]), severity=worst(r["severity"], d.get("severity", "info")),
                 last_alert_at=d.get("last_alert_at", r["last_alert_at"]))
    elif a == "owner":
        r["owner"] = d["to"]
    elif a == "handover":
        r.update(handover=ev.get("note"), handover_at=at, handover_by=ev["actor"])
    elif a == "step":
        r["steps_done"] += 1
    elif a == "close":
        r.update(status=CLOSED, closed_at=at, closed_by=ev["actor"], summary=d["summary"])
    elif a == "reopen":
        r.update(status=OPEN, closed_at=None, closed_by=None)
    elif a not in ("open", "note"):
        raise ValueError(f"unknown incident event {a!r}")
    r["events"] += 1
    r["updated_at"] = at
    return r


def append(conn, row: dict | None, action: str, actor: str, at: float, note: str | None = None,
           detail: dict | None = None, notify: bool = True) -> tuple[dict, dict]:
    """Write one event and the row it makes (inserting the row for ``open``) and queue its notification
    in the same transaction (``notify`` False: the caller does, :func:`open_incident` once its alerts
    are in); return (row, event)."""
    new, ev = write_event(conn, incidents, incident_events, apply, "incident", row, action, actor, at, note, detail)
    if notify:
        from dashboard.alerts import notify as out

        out.on_incident(conn, ev, new)
    return new, ev


def history(conn, incident_id: int) -> list[dict]:
    """Return the events of an incident, oldest first."""
    q = select(incident_events).where(incident_events.c.incident_id == incident_id).order_by(incident_events.c.seq)
    return [dict(r._mapping) for r in conn.execute(q)]


def replay(conn, incident_id: int) -> dict | None:
    """Return the incident rebuilt from its events alone (None: no event)."""
    row = None
    for ev in history(conn, incident_id):
        row = apply(row, ev)
    return row


def get(conn, incident_id: int, for_update: bool = False) -> dict | None:
    q = select(incidents).where(incidents.c.id == incident_id)
    if for_update and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = conn.execute(q).first()
    return None if r is None else dict(r._mapping)


def alert_ids(conn, incident_id: int) -> list[int]:
    """Return the ids of the incident's alerts, in the order they were added."""
    q = select(incident_alerts.c.alert_id).where(incident_alerts.c.incident_id == incident_id) \
        .order_by(incident_alerts.c.added_at, incident_alerts.c.alert_id)
    return [r.alert_id for r in conn.execute(q)]


def incident_of(conn, alert_id: int) -> int | None:
    """Return the id of the incident an alert is in, or None."""
    return conn.execute(select(incident_alerts.c.incident_id).where(incident_alerts.c.alert_id == alert_id)).scalar()


# ---------------------------------------------------------------------------- writing
def _alerts(conn, ids, districts=None) -> list[dict]:
    """Return the alert rows of ``ids`` (each visible in ``districts``, not yet in an incident) or raise."""
    if not isinstance(ids, list) or not ids or len(ids) > MAX_ALERTS or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise IncidentError(400, f"alerts: a list of 1 to {MAX_ALERTS} alert ids")
    rows = {r.id: dict(r._mapping) for r in conn.execute(select(alerts).where(alerts.c.id.in_(set(ids))))}
    out = []
    for i in dict.fromkeys(ids):
        r = rows.get(i)
        if r is None or districts is not None and r["district_id"] not in districts:
            raise IncidentError(404, f"no alert {i}")
        other = incident_of(conn, i)
        if other is not None:
            raise IncidentError(409, f"alert {i} is already in incident {other}")
        out.append(r)
    return out


def _add(conn, row: dict, found: list[dict], actor: str, now: float, note: str | None = None) -> tuple[dict, dict]:
    conn.execute(insert(incident_alerts), [{"incident_id": row["id"], "alert_id": a["id"], "added_at": now,
                                            "added_by": actor} for a in found])
    return append(conn, row, "alerts", actor, now, note, {
        "alerts": [a["id"] for a in found], "severity": worst(*(a["severity"] for a in found)),
        "last_alert_at": max([a["opened_at"] for a in found] + [row["last_alert_at"] or 0])})


def open_incident(conn, actor: str, kind: IncidentType, *, alert_ids: list | None = None, title: str | None = None,
                  district: str | None = None, domain: str | None = None, severity: str | None = None,
                  owner: str | None = None, note: str | None = None, rule: str | None = None,
                  districts=None, now: float | None = None) -> tuple[dict, list[dict]]:
    """Open an incident of type ``kind`` (from alerts, or by hand for a place); return (row, events).

    With alerts, the place is theirs: their district if they share one (else city-wide), their
    domain if they share one; the severity the worst of theirs. ``districts``: what the actor may
    see (an alert outside is 404; a scoped actor cannot open a city-wide incident)."""
    now = time.time() if now is None else float(now)
    found = _alerts(conn, alert_ids, districts) if alert_ids else []
    if found:
        places = {a["district_id"] for a in found}
        doms = {a["domain"] for a in found}
        district = district if district is not None else (places.pop() if len(places) == 1 else None)
        domain = domain if domain is not None else (doms.pop() if len(doms) == 1 else None)
        severity = severity or worst(*(a["severity"] for a in found))
    if districts is not None and district not in districts:
        raise IncidentError(403, "your account sees some districts only: the incident must be in one of them")
    if severity is not None and severity not in SEVERITIES:
        raise IncidentError(400, f"severity: one of {', '.join(SEVERITIES)}")
    if title is not None and (not isinstance(title, str) or not title.strip() or len(title) > 200):
        raise IncidentError(400, "title: text of 1 to 200 characters")
    title = title.strip() if title else f"{kind.label} — {district or 'city-wide'}"
    detail = {"type": kind.id, "title": title, "district": district, "domain": domain,
              "severity": severity or "warning", "owner": _user(conn, owner) if owner else None, "rule": rule}
    row, opened = append(conn, None, "open", actor, now, _note(note), detail, notify=False)
    events = [opened]
    if found:
        row, ev = _add(conn, row, found, actor, now)
        events.append(ev)
    from dashboard.alerts import notify as out

    out.on_incident(conn, opened, row, [a["id"] for a in found])  # told once, with its alerts and their severity
    return row, events


def _note(note, required: str | None = None) -> str | None:
    if note is not None and (not isinstance(note, str) or len(note) > MAX_TEXT):
        raise IncidentError(400, f"note: text of at most {MAX_TEXT} characters")
    note = note.strip() or None if note else None
    if required and not note:
        raise IncidentError(400, required)
    return note


def _user(conn, name) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise IncidentError(400, "owner: the user who owns the incident")
    u = conn.execute(select(users.c.name).where(func.lower(users.c.name) == name.lower(), users.c.disabled == 0)).first()
    if u is None:
        raise IncidentError(400, f"owner: no enabled user {name[:40]!r}")
    return u.name


_BODY = {"add-alerts": {"alerts", "note"}, "owner": {"to", "note"}, "note": {"note"}, "handover": {"note"},
         "step": {"step", "fields", "note"}, "close": {"summary"}, "reopen": {"note"}}


def act(conn, incident_id: int, action: str, actor: str, role: str, body: dict | None, cfg: Incidents,
        districts=None, now: float | None = None) -> tuple[dict, dict]:
    """Do a person's ``action`` on an incident (in the caller's transaction); return (row, event) or
    raise :class:`IncidentError`. ``role`` decides the checklist steps ``actor`` may do; ``districts``
    the alerts they may add."""
    body = {} if body is None else body
    if action not in ACTIONS:
        raise IncidentError(404, f"no action {action[:20]!r} (one of {', '.join(ACTIONS)})")
    if not isinstance(body, dict):
        raise IncidentError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - _BODY[action])
    if unknown:
        raise IncidentError(400, f"unknown field(s) {', '.join(str(x)[:20] for x in unknown)} "
                                 f"(for {action}: {', '.join(sorted(_BODY[action]))})")
    now = time.time() if now is None else float(now)
    row = get(conn, incident_id, for_update=True)
    if row is None:
        raise IncidentError(404, f"no incident {incident_id}")
    if row["status"] == CLOSED and action not in ("reopen", "note"):
        raise IncidentError(409, f"incident {incident_id} is closed: reopen it first")
    if action == "add-alerts":
        return _add(conn, row, _alerts(conn, body.get("alerts"), districts), actor, now, _note(body.get("note")))
    if action == "owner":
        to = _user(conn, body.get("to"))
        if to == row["owner"]:
            raise IncidentError(409, f"incident {incident_id} is already owned by {to}")
        return append(conn, row, "owner", actor, now, _note(body.get("note")), {"to": to, "from": row["owner"]})
    if action == "note":
        return append(conn, row, "note", actor, now, _note(body.get("note"), "note: a note needs text"))
    if action == "handover":
        return append(conn, row, "handover", actor, now, _note(body.get("note"), "note: the handover note's text"))
    if action == "step":
        return _step(conn, row, actor, role, body, cfg, now)
    if action == "close":
        summary = body.get("summary")
        if not isinstance(summary, str) or not summary.strip() or len(summary) > MAX_TEXT:
            raise IncidentError(400, f"summary: closing an incident needs a summary (1 to {MAX_TEXT} characters)")
        return append(conn, row, "close", actor, now, None, {"summary": summary.strip()})
    if row["status"] != CLOSED:
        raise IncidentError(409, f"incident {incident_id} is open, not closed")
    return append(conn, row, "reopen", actor, now, _note(body.get("note")))


def _step(conn, row: dict, actor: str, role: str, body: dict, cfg: Incidents, now: float) -> tuple[dict, dict]:
    kind = cfg.type(row["type"])
    steps = kind.steps if kind else ()
    n = body.get("step")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(steps):
        raise IncidentError(400, f"step: a step number from 1 to {len(steps)}" if steps else
                            f"step: type {row['type']!r} has no checklist")
    step = steps[n - 1]
    done = checklist(conn, row, cfg)[n - 1]["done"]
    if done:
        raise IncidentError(409, f"step {n} was done by {done['by']}")
    why = cfg.may_do(step, actor, role)
    if why:
        raise IncidentError(403, why)
    try:
        fields = step.check(body.get("fields", {}))
    except ValueError as exc:
        raise IncidentError(400, str(exc)) from None
    return append(conn, row, "step", actor, now, _note(body.get("note")),
                  {"step": n, "text": step.text, "role": step.role, "fields": fields})


# ---------------------------------------------------------------------------- grouping by rule
def group(conn, cfg: Incidents, opened: list[dict], now: float) -> list[dict]:
    """Put alerts just opened (their ``open`` events) into incidents by the ``[[incident_rule]]`` tables:
    join the open incident of the rule's type, district and domain that had an alert within the
    window, else open one once ``min_alerts`` alerts not in an incident came within the window.
    Called by the evaluator's tick, in its transaction; returns the incident events written."""
    out = []
    for ev in opened:
        a = conn.execute(select(alerts).where(alerts.c.id == ev["alert_id"])).first()
        if a is None or incident_of(conn, a.id) is not None:
            continue
        for r in cfg.rules:
            if a.domain != r.domain or a.severity not in r.severities:
                continue
            place = incidents.c.district_id.is_(None) if a.district_id is None else incidents.c.district_id == a.district_id
            joined = conn.execute(select(incidents).where(
                incidents.c.status == OPEN, incidents.c.type == r.type, incidents.c.domain == r.domain, place,
                incidents.c.last_alert_at >= now - r.window).order_by(incidents.c.id.desc())).first()
            if joined is not None:
                out.append(_add(conn, dict(joined._mapping), [dict(a._mapping)], SYSTEM, now, f"rule {r.id}")[1])
                break
            near = alerts.c.district_id.is_(None) if a.district_id is None else alerts.c.district_id == a.district_id
            free = ~select(incident_alerts.c.alert_id).where(incident_alerts.c.alert_id == alerts.c.id).exists()
            batch = [dict(x._mapping) for x in conn.execute(select(alerts).where(
                near, alerts.c.domain == r.domain, alerts.c.severity.in_(r.severities),
                alerts.c.opened_at >= now - r.window, free).order_by(alerts.c.id))]
            if len(batch) >= r.min_alerts:
                _row, evs = open_incident(conn, SYSTEM, cfg.type(r.type), alert_ids=[x["id"] for x in batch],
                                          rule=r.id, note=f"{len(batch)} alert(s) within {int(r.window // 60)} min "
                                                          f"(rule {r.id})", now=now)
                out += evs
                break
    return out


# ---------------------------------------------------------------------------- reads
def checklist(conn, row: dict, cfg: Incidents) -> list[dict]:
    """Return the incident's checklist: each step of its type with ``done`` (who, when, fields, note) or None."""
    kind = cfg.type(row["type"])
    done = {}
    for e in history(conn, row["id"]):
        if e["action"] == "step":
            done.setdefault(e["detail"]["step"], {"by": e["actor"], "at": e["at"], "fields": e["detail"]["fields"],
                                                  "note": e["note"]})
    return [{**s.as_dict(), "done": done.get(s.n)} for s in (kind.steps if kind else ())]


def current_step(conn, incident_id: int, cfg: Incidents) -> dict | None:
    """Return the first step of an open incident's checklist not done yet (``n``, ``text``, ``role``,
    ``fields``, ``of``: how many steps), or None (closed, no checklist, or every step done). What the
    wall's takeover shows as "the current procedure step"."""
    row = get(conn, incident_id)
    if row is None or row["status"] != OPEN:
        return None
    steps = checklist(conn, row, cfg)
    nxt = next((s for s in steps if s["done"] is None), None)
    return None if nxt is None else {**{k: v for k, v in nxt.items() if k != "done"}, "of": len(steps)}


def timeline(conn, incident_id: int) -> list[dict]:
    """Return what happened, oldest first: the incident's events and every event of its alerts,
    merged by time (``source`` incident or alert; an alert's events carry ``alert_id``)."""
    items = [{"at": e["at"], "source": "incident", "actor": e["actor"], "action": e["action"], "note": e["note"],
              "detail": e["detail"], "order": (0, e["seq"])} for e in history(conn, incident_id)]
    ids = alert_ids(conn, incident_id)
    if ids:
        q = select(alert_events, alerts.c.rule, alerts.c.asset, alerts.c.district_id) \
            .join(alerts, alerts.c.id == alert_events.c.alert_id).where(alert_events.c.alert_id.in_(ids))
        for e in conn.execute(q):
            items.append({"at": e.at, "source": "alert", "alert_id": e.alert_id, "rule": e.rule,
                          "place": e.asset or e.district_id, "actor": e.actor, "action": e.action, "note": e.note,
                          "detail": e.detail, "to_status": e.to_status, "order": (1 if e.action != "open" else -1, e.seq)})
    items.sort(key=lambda x: (x["at"], x["order"]))
    for x in items:
        del x["order"]
    return items


def list_incidents(conn, *, statuses=(), types=(), districts=None, district=None, domain=None, since=None,
                   limit=100, cursor=None) -> tuple[list[dict], int | None]:
    """Return incidents newest first and the cursor of the next page (None: the last page).

    ``districts``: those the reader may see (None: every one, city-wide incidents included);
    ``since``: opened or changed at or after."""
    q = select(incidents)
    if statuses:
        q = q.where(incidents.c.status.in_(list(statuses)))
    if types:
        q = q.where(incidents.c.type.in_(list(types)))
    if districts is not None:
        q = q.where(incidents.c.district_id.in_(list(districts)))
    if district is not None:
        q = q.where(incidents.c.district_id == district)
    if domain is not None:
        q = q.where(incidents.c.domain == domain)
    if since is not None:
        q = q.where(incidents.c.updated_at >= since)
    return page(conn, q, incidents.c.id, limit, cursor)


def window(conn, incident_id: int) -> tuple[float, float | None]:
    """Return (first alert opened or the incident opened, closed or None): the event's span."""
    row = get(conn, incident_id)
    first = conn.execute(select(func.min(alerts.c.opened_at)).join(
        incident_alerts, incident_alerts.c.alert_id == alerts.c.id).where(
        incident_alerts.c.incident_id == incident_id)).scalar()
    return min(x for x in (first, row["opened_at"]) if x is not None), row["closed_at"]
