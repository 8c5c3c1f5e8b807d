"""The incidents API: ``/api/incidents`` (filters, paging), one incident with its timeline and checklist,
opening one (from alerts or for a place) and its actions; ``/api/incident-types`` for the screens' forms.

The same rules as ``/api/alerts`` (:mod:`dashboard.alerts.web`): reads need a viewer and show a
district-scoped reader only its districts' incidents (and, inside one, only its districts' alerts);
actions need an operator signed in as a person, whose name is the actor of the event and whose role
(and team, ``[teams]``) decides which checklist steps they may do — another's step is 403 with the
reason. Cookie sessions send ``X-CSRFToken`` (the gate checks it). Closing without a summary is 400.
"""
from __future__ import annotations

import logging
from functools import partial
import time

from flask import Blueprint, Flask, jsonify, request

from dashboard import access
from dashboard.access import OPERATOR, VIEWER, Rule
from dashboard.alerts.rules import RuleError
from dashboard.alerts.web import (MAX_LIMIT, Bad, _actor, _body, _int, _list, alert_json, answer_of, checked_district,
                                  parse_time)
from dashboard.incidents import config as ic
from dashboard.incidents import store

log = logging.getLogger("panorama.incidents")

BP = "incidents"
ENDPOINTS = {
    "list_incidents": Rule(VIEWER, why="incidents as JSON (filters, paging), the caller's districts only"),
    "get_incident": Rule(VIEWER, why="one incident with its timeline and checklist, if in the caller's districts"),
    "incident_types": Rule(VIEWER, why="the city's incident types and their procedures"),
    "open_incident": Rule(OPERATOR, why="open an incident from alerts or for a place: by a signed-in person"),
    "incident_action": Rule(OPERATOR, why="add alerts, owner, note, handover, step, close, reopen: by a signed-in person"),
}
for _name, _rule in ENDPOINTS.items():
    access.register(access.ROUTES, f"{BP}.{_name}", _rule)


def incident_json(row: dict) -> dict:
    """Return an incident row as the API shows it."""
    out = {k: v for k, v in row.items() if k not in ("district_id", "events")}
    out["district"] = row["district_id"]
    out["href"] = f"/api/incidents/{row['id']}"
    return out


def _visible(row: dict | None) -> bool:
    districts = access.scope()
    return row is not None and (districts is None or row["district_id"] in districts)


def detail(conn, row: dict, cfg: ic.Incidents) -> dict:
    """Return one incident as ``GET /api/incidents/<id>`` shows it: with its alerts, checklist, current
    step and timeline (a scoped reader sees only its districts' alerts in them)."""
    from sqlalchemy import select

    from dashboard.store.schema import alerts

    districts = access.scope()
    ids = store.alert_ids(conn, row["id"])
    rows = [dict(r._mapping) for r in conn.execute(select(alerts).where(alerts.c.id.in_(ids)).order_by(alerts.c.id))] \
        if ids else []
    shown = {a["id"] for a in rows if districts is None or a["district_id"] in districts}
    timeline = [x for x in store.timeline(conn, row["id"]) if x["source"] != "alert" or x["alert_id"] in shown]
    kind = cfg.type(row["type"])
    return {"incident": incident_json(row), "type": {"id": row["type"], "label": kind.label if kind else row["type"]},
            "alerts": [alert_json(a) for a in rows if a["id"] in shown], "checklist": store.checklist(conn, row, cfg),
            "current_step": store.current_step(conn, row["id"], cfg), "timeline": timeline}


def init_app(server: Flask, live, settings) -> None:
    """Register the incidents API on ``server``."""
    from layers import DOMAIN_BY_ID

    city = live.city
    try:
        cfg = city.incidents if city is not None else ic.default()
    except RuleError as exc:
        log.error("%s", exc)
        cfg = ic.default()
    bp = Blueprint(BP, __name__)

    answer = partial(answer_of, errors=store.IncidentError)
    district_arg = partial(checked_district, live)

    @bp.get("/api/incidents")
    def list_incidents():
        """Incidents newest first: ?status=&type=&district=&domain=&since=&limit=&cursor=."""
        def run():
            a = request.args
            unknown = sorted(set(a) - {"status", "type", "district", "domain", "since", "limit", "cursor"})
            if unknown:
                raise Bad(f"unknown parameter {unknown[0][:40]!r}")
            domain = a.get("domain") or None
            if domain is not None and domain not in DOMAIN_BY_ID:
                raise Bad(f"domain: {domain[:40]!r} is not one of {', '.join(DOMAIN_BY_ID)}")
            with live.engine.connect() as conn:
                rows, nxt = store.list_incidents(
                    conn, statuses=_list("status", a.get("status"), store.STATUSES),
                    types=_list("type", a.get("type"), tuple(cfg.types)), districts=access.scope(),
                    district=district_arg(a.get("district")), domain=domain,
                    since=parse_time("since", a["since"]) if a.get("since") else None,
                    limit=_int("limit", a.get("limit"), 1, MAX_LIMIT, 100),
                    cursor=_int("cursor", a.get("cursor"), 1, 2**62, None))
            return jsonify({"incidents": [incident_json(r) for r in rows], "next": str(nxt) if nxt else None})
        return answer(run)

    @bp.get("/api/incidents/<int:incident_id>")
    def get_incident(incident_id: int):
        def run():
            with live.engine.connect() as conn:
                row = store.get(conn, incident_id)
                if not _visible(row):
                    raise store.IncidentError(404, f"no incident {incident_id}")
                return jsonify(detail(conn, row, cfg))
        return answer(run)

    @bp.get("/api/incident-types")
    def incident_types():
        return jsonify({"types": [{"id": t.id, "label": t.label, "steps": [s.as_dict() for s in t.steps]}
                                  for t in cfg.types.values()]})

    @bp.post("/api/incidents")
    def open_incident():
        """{type, alerts?: [ids], title?, district?, domain?, severity?, owner?, note?} → 201."""
        def run():
            actor, body = _actor(), _body()
            unknown = sorted(set(body) - {"type", "alerts", "title", "district", "domain", "severity", "owner", "note"})
            if unknown:
                raise Bad(f"unknown field(s) {', '.join(str(x)[:20] for x in unknown)}")
            kind = cfg.type(body.get("type"))
            if kind is None:
                raise Bad(f"type: one of {', '.join(cfg.types)}")
            domain = body.get("domain")
            if domain is not None and domain not in DOMAIN_BY_ID:
                raise Bad(f"domain: {str(domain)[:40]!r} is not one of {', '.join(DOMAIN_BY_ID)}")
            if not body.get("alerts") and body.get("district") is None and access.scope() is not None:
                raise access.Forbidden("your account sees some districts only: name the district")
            with live.writer().begin() as conn:
                row, _events = store.open_incident(
                    conn, actor, kind, alert_ids=body.get("alerts"), title=body.get("title"),
                    district=district_arg(body.get("district")), domain=domain, severity=body.get("severity"),
                    owner=body.get("owner"), note=body.get("note"), districts=access.scope(), now=time.time())
                return jsonify(detail(conn, row, cfg)), 201
        return answer(run)

    @bp.post("/api/incidents/<int:incident_id>/<action>")
    def incident_action(incident_id: int, action: str):
        """add-alerts {alerts, note}, owner {to, note}, note {note}, handover {note},
        step {step, fields, note}, close {summary}, reopen {note}."""
        def run():
            actor, body = _actor(), _body()
            with live.writer().begin() as conn:
                if not _visible(store.get(conn, incident_id)):
                    raise store.IncidentError(404, f"no incident {incident_id}")
                row, ev = store.act(conn, incident_id, action, actor, access.current().role, body, cfg,
                                    districts=access.scope())
            return jsonify({"incident": incident_json(row), "event": ev})
        return answer(run)

    server.register_blueprint(bp)
