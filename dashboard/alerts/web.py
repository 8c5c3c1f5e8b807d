"""The alerts API: ``/api/alerts`` (filters, paging), an alert's history, its lifecycle actions, silences.

Reads need a viewer and show a district-scoped reader only its districts' alerts (not the city-wide
ones: those are the whole city's numbers); actions need an operator signed in as a person — the actor
of every event is that person's name (``access.current()``), never a wall device or a signed embed.
Cookie sessions send the CSRF token in ``X-CSRFToken`` (checked by the gate). Bad input is 400 with
the reason, an unknown or out-of-scope alert or silence 404, an action the alert's state forbids 409.
"""
from __future__ import annotations

import logging
from functools import partial
import math
import re
import time
from datetime import datetime

from flask import Blueprint, Flask, jsonify, request

from dashboard import access
from dashboard.access import OPERATOR, VIEWER, Rule
from dashboard.alerts import store
from dashboard.alerts.rules import SEVERITIES, RuleError, parse_duration

log = logging.getLogger("panorama.alerts")

BP = "alerts"
#: The access rule of each endpoint (registered in :data:`dashboard.access.ROUTES`).
ENDPOINTS = {
    "list_alerts": Rule(VIEWER, why="alerts as JSON (filters, paging), the caller's districts only"),
    "get_alert": Rule(VIEWER, why="one alert, if in the caller's districts"),
    "alert_history": Rule(VIEWER, why="an alert's events, if in the caller's districts"),
    "alert_action": Rule(OPERATOR, why="ack, assign, resolve, reopen, shelve, unshelve, comment: by a signed-in person"),
    "list_silences": Rule(VIEWER, why="maintenance windows, the caller's districts only"),
    "add_silence": Rule(OPERATOR, why="add a maintenance window (a scoped operator: in its districts)"),
    "end_silence": Rule(OPERATOR, why="end a maintenance window early"),
}
for _name, _rule in ENDPOINTS.items():
    access.register(access.ROUTES, f"{BP}.{_name}", _rule)
# rule administration (admin) has no route: rules are declared in city.toml

MAX_LIMIT = 500
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
ROW_STATES = ("firing", "nodata", "error", "inactive")
STATE_FILTERS = (*store.STATUSES, *ROW_STATES, "open", "shelved")


class Bad(ValueError):
    """A request parameter or body field that cannot be used (400)."""


def alert_json(row: dict, now: float | None = None) -> dict:
    """Return an alert row as the API shows it."""
    now = time.time() if now is None else now
    out = {k: v for k, v in row.items() if k not in ("district_id", "key", "events")}
    out["district"] = row["district_id"]
    out["shelved"] = row["shelved_until"] is not None and row["shelved_until"] > now
    out["value"] = None if row["value"] is None or not math.isfinite(row["value"]) else row["value"]
    out["history"] = f"/api/alerts/{row['id']}/history"
    return out


def parse_time(name: str, value: str) -> float:
    """Return epoch seconds of ``value``: a number, or ISO 8601 with a UTC offset."""
    try:
        t = float(value)
    except ValueError:
        try:
            d = datetime.fromisoformat(value)
        except ValueError:
            raise Bad(f"{name}: {value[:40]!r} is not a time (epoch seconds or ISO 8601 with an offset)") from None
        if d.tzinfo is None:
            raise Bad(f"{name}: {value[:40]!r} has no UTC offset") from None
        return d.timestamp()
    if not math.isfinite(t) or t < 0:
        raise Bad(f"{name}: {value[:40]!r} is not a time")
    return t


def _list(name: str, value: str | None, allowed) -> tuple[str, ...]:
    if not value:
        return ()
    items = tuple(x.strip() for x in value.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if bad or len(items) > len(allowed):
        raise Bad(f"{name}: {(bad or items)[0][:40]!r} is not one of {', '.join(allowed)}")
    return items


def _int(name: str, value: str | None, lo: int, hi: int, default: int | None) -> int | None:
    if value in (None, ""):
        return default
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise Bad(f"{name}: a whole number from {lo} to {hi}")
    return int(value)


def answer_of(fn, errors):
    """Run ``fn()`` (an API answer), mapping errors to their status: a bad parameter 400, an ``errors``
    exception its own ``status`` (404, 409 …), a store outage 503."""
    from dashboard.api import _error, _unavailable
    from dashboard.store import STORE_OUTAGES

    try:
        return fn()
    except Bad as exc:
        return _error(400, str(exc))
    except errors as exc:
        return _error(exc.status, str(exc))
    except STORE_OUTAGES as exc:
        return _unavailable(exc)


def checked_district(live, value) -> str | None:
    """Return a ``district`` filter (None: any); 400 for one the city has not, 403 outside the caller's scope."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value not in live.district_ids():
        raise Bad(f"district: unknown district {str(value)[:60]!r}")
    if access.current() is None or access.current().sees(value):
        return value
    raise access.Forbidden(f"district {value[:60]!r} is outside what you may see")


def _actor() -> str:
    """Return the name of the person acting; refuse anyone else (the gate's levels already do)."""
    p = access.current()
    if p is None or p.kind != "user":
        raise access.Forbidden("sign in as a person to act on alerts")
    return p.name


def _body() -> dict:
    if not request.get_data(cache=True).strip():
        return {}
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise Bad("the body must be a JSON object")
    return body


def _visible(row: dict | None) -> bool:
    districts = access.scope()
    return row is not None and (districts is None or row["district_id"] in districts)


def init_app(server: Flask, live, settings) -> None:
    """Register the alerts API on ``server`` and, unless alert evaluation is off, the evaluator's
    ticker (``server.extensions["panorama_alerts"]``; started by ``panorama serve``/``run``)."""
    from dashboard.alerts.config import Alerting
    from dashboard.alerts.evaluator import Ticker, for_live
    from layers import DOMAIN_BY_ID

    city = live.city
    try:
        config = city.alerting if city is not None else Alerting()
    except RuleError as exc:
        log.error("%s", exc)
        config = Alerting()
    evaluator = for_live(live, settings)
    if evaluator is not None:
        server.extensions["panorama_alerts"] = Ticker(evaluator)
    bp = Blueprint(BP, __name__)

    answer = partial(answer_of, errors=store.AlertError)
    district_arg = partial(checked_district, live)

    @bp.get("/api/alerts")
    def list_alerts():
        """Alerts newest first: ?state=&severity=&district=&domain=&rule=&since=&limit=&cursor=."""
        def run():
            a = request.args
            unknown = sorted(set(a) - {"state", "severity", "district", "domain", "rule", "since", "limit", "cursor"})
            if unknown:
                raise Bad(f"unknown parameter {unknown[0][:40]!r}")
            domain = a.get("domain") or None
            if domain is not None and domain not in DOMAIN_BY_ID:
                raise Bad(f"domain: {domain[:40]!r} is not one of {', '.join(DOMAIN_BY_ID)}")
            rule = a.get("rule") or None
            if rule is not None and not _ID.match(rule):
                raise Bad(f"rule: {rule[:40]!r} is not a rule id")
            now = time.time()
            with live.engine.connect() as conn:
                rows, nxt = store.list_alerts(
                    conn, states=_list("state", a.get("state"), STATE_FILTERS),
                    severities=_list("severity", a.get("severity"), SEVERITIES), districts=access.scope(),
                    district=district_arg(a.get("district")), domain=domain, rule=rule,
                    since=parse_time("since", a["since"]) if a.get("since") else None,
                    limit=_int("limit", a.get("limit"), 1, MAX_LIMIT, 100),
                    cursor=_int("cursor", a.get("cursor"), 1, 2**62, None), now=now)
            return jsonify({"alerts": [alert_json(r, now) for r in rows], "next": str(nxt) if nxt else None})
        return answer(run)

    @bp.get("/api/alerts/<int:alert_id>")
    def get_alert(alert_id: int):
        def run():
            with live.engine.connect() as conn:
                row = store.get(conn, alert_id)
            if not _visible(row):
                raise store.AlertError(404, f"no alert {alert_id}")
            return jsonify(alert_json(row))
        return answer(run)

    @bp.get("/api/alerts/<int:alert_id>/history")
    def alert_history(alert_id: int):
        """The alert's events, oldest first: who did what when, from which state to which."""
        def run():
            with live.engine.connect() as conn:
                row = store.get(conn, alert_id)
                if not _visible(row):
                    raise store.AlertError(404, f"no alert {alert_id}")
                events = store.history(conn, alert_id)
            return jsonify({"alert": alert_json(row), "events": events})
        return answer(run)

    @bp.post("/api/alerts/<int:alert_id>/<action>")
    def alert_action(alert_id: int, action: str):
        """ack {note}, assign {to, kind: user|team, note}, resolve {note}, reopen {note},
        shelve {minutes, note}, unshelve {note}, comment {note}."""
        def run():
            actor, body = _actor(), _body()
            with live.writer().begin() as conn:
                if not _visible(store.get(conn, alert_id)):
                    raise store.AlertError(404, f"no alert {alert_id}")
                row, ev = store.act(conn, alert_id, action, actor, body, teams=config.teams)
            return jsonify({"alert": alert_json(row), "event": ev})
        return answer(run)

    @bp.get("/api/silences")
    def list_silences():
        """Silences not yet over (?all=1: the last 500 of every kind)."""
        def run():
            with live.engine.connect() as conn:
                out = store.list_silences(conn, current=request.args.get("all") not in ("1", "true"),
                                          districts=access.scope())
            return jsonify({"silences": out})
        return answer(run)

    @bp.post("/api/silences")
    def add_silence():
        """{rule?, domain?, district?, asset?, reason, for: "2h" | end: time, start?: time}."""
        def run():
            actor, body = _actor(), _body()
            unknown = sorted(set(body) - {"rule", "domain", "district", "asset", "reason", "for", "start", "end"})
            if unknown:
                raise Bad(f"unknown field(s) {', '.join(x[:20] for x in unknown)}")
            for f in ("rule", "domain", "district", "asset", "reason"):
                if body.get(f) is not None and (not isinstance(body[f], str) or len(body[f]) > store.MAX_NOTE):
                    raise Bad(f"{f}: must be text")
            for f in ("for", "start", "end"):
                if body.get(f) is not None and (isinstance(body[f], bool) or not isinstance(body[f], (str, int, float))):
                    raise Bad(f"{f}: a duration or a time")
            if body.get("domain") is not None and body["domain"] not in DOMAIN_BY_ID:
                raise Bad(f"domain: {str(body['domain'])[:40]!r} is not one of {', '.join(DOMAIN_BY_ID)}")
            if body.get("rule") is not None and not _ID.match(str(body["rule"])):
                raise Bad("rule: not a rule id")
            district = district_arg(body.get("district"))
            if district is None and access.scope() is not None:
                raise access.Forbidden("your account sees some districts only: name the district to silence")
            if not isinstance(body.get("reason"), str):
                raise Bad("reason: say why (text)")
            try:
                duration = parse_duration(body["for"], "for") if body.get("for") is not None else None
            except RuleError as exc:
                raise Bad(str(exc)) from None
            start = parse_time("start", str(body["start"])) if body.get("start") is not None else None
            end = parse_time("end", str(body["end"])) if body.get("end") is not None else None
            with live.writer().begin() as conn:
                s = store.add_silence(conn, actor=actor, reason=body["reason"], rule=body.get("rule"),
                                      domain=body.get("domain"), district=district, asset=body.get("asset"),
                                      start=start, end=end, duration=duration)
            return jsonify({"silence": s}), 201
        return answer(run)

    @bp.post("/api/silences/<int:silence_id>/end")
    def end_silence(silence_id: int):
        def run():
            actor = _actor()
            with live.writer().begin() as conn:
                s = store.end_silence(conn, silence_id, actor, districts=access.scope())
            return jsonify({"silence": s})
        return answer(run)

    server.register_blueprint(bp)
