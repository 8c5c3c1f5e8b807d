"""What the screens show of alerts: the rows of the manager's panel, the wall's ticker and takeover.

Reads only (actions go through :func:`dashboard.alerts.store.act`). Every read takes the districts
the viewer may see: a district-scoped viewer gets its districts' alerts and not the city-wide ones
(those are the whole city's numbers), as ``/api/alerts`` does. Each alert carries its place: the
asset's name and point, or the district's name and outline box, or the whole city.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import select

from dashboard.alerts import store
from dashboard.theme import STATUS_COLOURS

#: Severity: the word shown (never colour alone), its colour and the text colour on it, most severe first.
SEVERITY = {"critical": ("CRITICAL", STATUS_COLOURS["dark"]["bad"], "#1d0800"),
            "warning": ("WARNING", STATUS_COLOURS["dark"]["warn"], "#1b1a00"),
            "info": ("INFO", "#4cc3ff", "#06121d")}
RANK = {s: i for i, s in enumerate(SEVERITY)}
#: The state filter of the manager's panel: the open ones (firing, no data, error; not resolved),
#: those acknowledged or assigned, those shelved now, those resolved.
STATE_FILTERS = {"open": ("open",), "acknowledged": ("acknowledged", "assigned"), "shelved": ("shelved",),
                 "resolved": ("resolved",)}
#: At most this many alerts on a screen (the API pages through more).
MAX_ROWS = 200
#: An asset alert's map view: this zoom around its point.
ASSET_ZOOM = 14.0


def age_text(seconds: float) -> str:
    """Return an alert's age: "40 s", "12 min", "3 h", "2 d"."""
    s = max(0.0, seconds)
    return (f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.0f} h" if s < 172800
            else f"{s / 86400:.0f} d")


def _places(live, rows: list[dict]) -> dict:
    """Return {asset id: (name, lon, lat)} of the assets the alerts name (one query)."""
    from dashboard.store.schema import assets

    ids = sorted({r["asset"] for r in rows if r.get("asset")})
    if not ids:
        return {}
    q = select(assets.c.id, assets.c.name, assets.c.lon, assets.c.lat).where(assets.c.id.in_(ids))
    return {r.id: (r.name or r.id, r.lon, r.lat) for r in live.read(lambda c: list(c.execute(q)))}


def place_of(live, row: dict, assets: dict, names: dict) -> dict:
    """Return where an alert is: ``name`` (asset · district, district, or "whole city") and ``view``:
    a point and zoom for an asset, a lon/lat box for a district, None for the whole city."""
    district = names.get(row.get("district_id"), row.get("district_id"))
    a = assets.get(row.get("asset")) if row.get("asset") else None
    if a is not None:
        name = f"{a[0]} · {district}" if district else a[0]
        if a[1] is not None and a[2] is not None and math.isfinite(a[1]) and math.isfinite(a[2]):
            return {"name": name, "view": {"center": {"lon": a[1], "lat": a[2]}, "zoom": ASSET_ZOOM},
                    "point": [a[1], a[2]]}
        return {"name": name, "view": None, "point": None}
    if row.get("district_id"):
        b = live.bounds(row["district_id"])
        point = [(b["lon"][0] + b["lon"][1]) / 2, (b["lat"][0] + b["lat"][1]) / 2] if b else None
        return {"name": district, "view": b, "point": point}
    return {"name": "whole city", "view": None, "point": None}


def read_alerts(live, states: tuple[str, ...] = ("open",), severities=(), district: str | None = None,
                domain: str | None = None, districts=None, now: float | None = None) -> list[dict]:
    """Return the alerts of the filters, most severe and newest first, each with its place.

    ``district``: that district's alerts and the city-wide ones (a district's screen is also told
    what the whole city has); ``districts``: the viewer's scope (None: every district)."""
    now = time.time() if now is None else now

    def q(conn):
        rows, _ = store.list_alerts(conn, states=states, severities=severities, districts=districts, domain=domain,
                                    limit=MAX_ROWS, now=now)
        return rows

    rows = live.read(q)
    if district is not None:
        rows = [r for r in rows if r["district_id"] in (district, None)]
    assets = _places(live, rows)
    names = dict(zip(live.districts()["id"], live.districts()["name"]))
    out = []
    for r in rows:
        shelved = r["shelved_until"] is not None and r["shelved_until"] > now
        out.append({**r, "shelved": shelved, "place": place_of(live, r, assets, names),
                    "district_name": names.get(r["district_id"], r["district_id"])})
    out.sort(key=lambda r: (RANK.get(r["severity"], 9), -r["opened_at"], -r["id"]))
    return out


def firing(live, district: str | None, districts=None, now: float | None = None) -> list[dict]:
    """Return the alerts the wall tells of: firing (or no data, or error), not resolved, not shelved,
    not muted by a silence or an inhibition; most severe and newest first."""
    now = time.time() if now is None else now
    rows = read_alerts(live, ("open",), district=district, districts=districts, now=now)
    return with_procedure_steps(live, [r for r in rows if r["state"] in store.OPEN_STATES and not r["shelved"]
                                       and not r["muted"]])


def summary_of(r: dict) -> str:
    """Return what an alert says: its rule's summary, else the rule id; and its state when not firing."""
    text = r.get("summary") or r["rule"]
    return text if r["state"] == "firing" else f"{text} ({'no data' if r['state'] == 'nodata' else r['state']})"


def owner_of(r: dict) -> str:
    """Return who has the alert: the assignee (a team says so), else who acknowledged it."""
    if r.get("assignee"):
        return f"{r['assignee']} (team)" if r.get("assignee_kind") == "team" else r["assignee"]
    return r.get("acknowledged_by") or ""


def grid_row(r: dict, now: float) -> dict:
    """Return one row of the manager's alerts grid (plain values: the grid sorts and shows them)."""
    status = r["status"] + (" · shelved" if r["shelved"] else "") + (" · muted" if r["muted"] else "")
    return {"id": r["id"], "severity": SEVERITY.get(r["severity"], (r["severity"].upper(),))[0],
            "since": age_text(now - r["opened_at"]), "opened": r["opened_at"], "place": r["place"]["name"],
            "summary": summary_of(r), "domain": r["domain"], "state": r["state"], "status": status,
            "owner": owner_of(r), "repeat": r["repeat"]}


def ticker_item(r: dict) -> dict:
    """Return what the wall needs of one firing alert (its ticker line and, critical, its takeover)."""
    return {"id": r["id"], "severity": r["severity"], "word": SEVERITY.get(r["severity"], (r["severity"].upper(),))[0],
            "place": r["place"]["name"], "summary": summary_of(r), "opened": r["opened_at"], "domain": r["domain"],
            "status": r["status"], "view": r["place"]["view"], "step": procedure_step(r),
            "district_id": r.get("district_id"), "district": r.get("district_name")}


def domain_label(domain: str) -> str:
    """Return a domain's label in running text ("air quality"), from the layers' registry."""
    from layers import DOMAINS

    return next((d.label for d in DOMAINS if d.id == domain), domain.replace("_", " ")).lower()


def groups(items: list[dict]) -> list[dict]:
    """Return ``items`` (as :func:`ticker_item` makes them) grouped by district and domain: each group's
    ``district_id`` and ``district`` (None: city-wide), ``domain``, ``n``, its most severe alert's
    ``severity`` and ``word``, its oldest ``opened`` and its ``items``. Most severe first, then the
    larger groups, then the oldest."""
    by: dict[tuple, list[dict]] = {}
    for i in items:
        by.setdefault((i.get("district_id"), i["domain"]), []).append(i)
    out = []
    for (did, domain), its in by.items():
        worst = min(its, key=lambda i: RANK.get(i["severity"], len(RANK)))
        out.append({"district_id": did, "district": its[0].get("district") or did, "domain": domain, "n": len(its),
                    "severity": worst["severity"], "word": worst["word"], "opened": min(i["opened"] for i in its),
                    "items": its})
    out.sort(key=lambda g: (RANK.get(g["severity"], len(RANK)), -g["n"], g["opened"]))
    return out


def procedure_step(r: dict) -> str | None:
    """Return the current step of the procedure of the incident an alert belongs to (set by
    :func:`with_procedure_steps`), for the wall's takeover; None outside an incident or when every
    step is done."""
    return r.get("step")


def with_procedure_steps(live, rows: list[dict]) -> list[dict]:
    """Give each critical alert the current step of its incident's procedure ("Step 2 of 4: … — traffic-ops"):
    what the wall's takeover shows. One read for the alerts that can take over; none when none can."""
    crit = [r for r in rows if r["severity"] == "critical"]
    if not crit:
        return rows
    from dashboard.incidents import store as incidents

    cfg = incident_config(live)

    def q(conn):
        out = {}
        for r in crit:
            iid = incidents.incident_of(conn, r["id"])
            step = incidents.current_step(conn, iid, cfg) if iid is not None else None
            if step is not None:
                out[r["id"]] = f"Step {step['n']} of {step['of']}: {step['text']} — {step['role']}"
        return out

    steps = live.read(q)
    return [{**r, "step": steps.get(r["id"])} for r in rows]


def incident_config(live):
    """Return the city's incident types (the defaults when the city file has none or a mistake: the
    mistake is said where incidents are served)."""
    from dashboard.alerts.rules import RuleError
    from dashboard.incidents import config as ic

    try:
        return live.city.incidents if live.city is not None else ic.default()
    except RuleError:
        return ic.default()


def incident_place(live, row: dict, located: list[dict], names: dict) -> dict:
    """Return where an incident is (``name``, ``point``, ``view`` as :func:`place_of`): the place of its
    alerts when they share one (``located``: their places, the viewer's only), else its district's
    centre, else the middle of its alerts' points, else nowhere (city-wide, no alert at a place)."""
    placed = [p for p in located if p["point"]]
    if placed and all(p["view"] == placed[0]["view"] for p in placed):
        return placed[0]
    if row["district_id"] or not placed:
        return place_of(live, {"district_id": row["district_id"]}, {}, names)
    lons, lats = [p["point"][0] for p in placed], [p["point"][1] for p in placed]
    return {"name": "several places", "point": [sum(lons) / len(lons), sum(lats) / len(lats)],
            "view": {"lon": [min(lons), max(lons)], "lat": [min(lats), max(lats)]}}


def read_incidents(live, district: str | None = None, districts=None) -> list[dict]:
    """Return the open incidents, newest first, each with its type's ``label`` and its ``place``
    (:func:`incident_place`). ``district`` and ``districts`` as for :func:`read_alerts`: a scoped
    viewer sees its districts' incidents, placed by its districts' alerts only."""
    from dashboard.incidents import store as incidents
    from dashboard.store.schema import alerts, incident_alerts

    def q(conn):
        rows, _ = incidents.list_incidents(conn, statuses=(incidents.OPEN,), districts=districts, limit=MAX_ROWS)
        rows = [r for r in rows if district is None or r["district_id"] in (district, None)]
        ids = [r["id"] for r in rows]
        members = [] if not ids else [dict(m._mapping) for m in conn.execute(
            select(incident_alerts.c.incident_id, alerts.c.id, alerts.c.asset, alerts.c.district_id)
            .join(alerts, alerts.c.id == incident_alerts.c.alert_id)
            .where(incident_alerts.c.incident_id.in_(ids)).order_by(alerts.c.id))]
        return rows, [m for m in members if districts is None or m["district_id"] in districts]

    rows, members = live.read(q)
    assets = _places(live, members)
    names = dict(zip(live.districts()["id"], live.districts()["name"]))
    cfg = incident_config(live)
    out = []
    for r in rows:
        located = [place_of(live, m, assets, names) for m in members if m["incident_id"] == r["id"]]
        kind = cfg.type(r["type"])
        out.append({**r, "label": kind.label if kind else r["type"], "place": incident_place(live, r, located, names)})
    return out


def incident_text(r: dict) -> str:
    """Return an incident's hover line: "Incident #3 · Traffic jam · owner ann · open · Chaoyang"."""
    owner = f"owner {r['owner']}" if r.get("owner") else "no owner"
    return f"Incident #{r['id']} · {r['label']} · {owner} · {r['status']} · {r['place']['name']}"


def history_lines(events: list[dict], tz) -> list[str]:
    """Return an alert's events as lines: "14:02:11 · ann · ack · new → acknowledged · on it"."""
    from datetime import datetime

    out = []
    for e in events:
        change = f"{e['from_status']} → {e['to_status']}" if e["from_status"] and e["from_status"] != e["to_status"] else ""
        detail = e.get("detail") or {}
        extra = (f"to {detail['to']}" if e["action"] == "assign" else
                 f"{detail.get('minutes')} min" if e["action"] == "shelve" else
                 detail.get("state", "") if e["action"] == "engine" else "")
        parts = [datetime.fromtimestamp(e["at"], tz).strftime("%d %b %H:%M:%S"), e["actor"], e["action"], extra, change,
                 e.get("note") or ""]
        out.append(" · ".join(p for p in parts if p))
    return out


def incident_lines(timeline: list[dict], tz) -> list[str]:
    """Return an incident's timeline (:func:`dashboard.incidents.store.timeline`) as lines:
    "14:02:11 · ann · owner · to bob · on it", an alert's events as "… · alert #7 · system · open"."""
    from datetime import datetime

    out = []
    for e in timeline:
        d = e.get("detail") or {}
        extra = (f"to {d.get('to')}" if e["action"] == "owner" else
                 f"step {d.get('step')}: {d.get('text')}" if e["action"] == "step" else
                 d.get("summary", "") if e["action"] == "close" else
                 f"{len(d.get('alerts', []))} alert(s)" if e["action"] == "alerts" else
                 e.get("to_status") or "" if e["source"] == "alert" else "")
        who = f"alert #{e['alert_id']}" if e["source"] == "alert" else ""
        parts = [datetime.fromtimestamp(e["at"], tz).strftime("%d %b %H:%M:%S"), who, e["actor"], e["action"], extra,
                 e.get("note") or ""]
        out.append(" · ".join(p for p in parts if p))
    return out
