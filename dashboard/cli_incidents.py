"""``panorama incident``: list, show (timeline and checklist), open, give an owner, hand over, do a
checklist step, close and reopen incidents from a shell.

As for alerts (:mod:`dashboard.cli_alerts`), every change names the person it is done as (``--as
USER``, an enabled operator or admin, within their districts; their role decides the steps they may
do), goes through :func:`dashboard.incidents.store.act` as the API's do, and is told to the city's
``[[notify]]`` channels. Bad input is one line, exit code 2. The after-action report is
``panorama report --incident ID``.
"""
from __future__ import annotations

import typer
from rich.markup import escape

from dashboard.cli_alerts import AS, BAD, NOTE, _actor, _engine, _fail, _person, _run, _when, acting_city, out

incident_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Incidents: list, show, open, owner, handover, step, close, reopen.")


def incident_config(city=None):
    """Return the incident types and rules of ``city`` (default: the configured one; the ``general``
    type alone without a city)."""
    from dashboard.alerts.rules import RuleError
    from dashboard.incidents.config import default
    from dashboard.live import configured_city
    from dashboard.settings import get_settings

    city = configured_city(get_settings()) if city is None else city
    try:
        return city.incidents if city is not None else default()
    except RuleError as exc:
        _fail(str(exc))


@incident_app.command("list")
def list_cmd(status: str = typer.Option(None, help="open or closed (default: both)."),
             district: str = typer.Option(None, help="A district id."),
             limit: int = typer.Option(50, min=1, max=500)):
    """List incidents, newest first."""
    from dashboard.incidents import store

    if status is not None and status not in store.STATUSES:
        _fail(f"--status: {status!r} is not one of {', '.join(store.STATUSES)}", BAD)

    def go():
        with _engine().connect() as conn:
            return store.list_incidents(conn, statuses=(status,) if status else (), district=district, limit=limit)[0]

    rows = _run(go)
    if not rows:
        out.print("no incident")
    for r in rows:
        out.print(escape(f"{r['id']:>6}  {r['severity']:<8} {r['status']:<7} {r['type']:<18} "
                         f"{r['district_id'] or 'city':<12} {r['alerts']:>3} alert(s)  since {_when(r['opened_at'])}  "
                         f"{r['owner'] or '-':<10} {r['title']}").rstrip())


@incident_app.command("show")
def show_cmd(incident_id: int = typer.Argument(..., help="The incident's id.")):
    """Show an incident: its place, owner, checklist and timeline."""
    from dashboard.incidents import store

    cfg = incident_config()

    def go():
        with _engine().connect() as conn:
            row = store.get(conn, incident_id)
            if row is None:
                raise store.IncidentError(404, f"no incident {incident_id}")
            return row, store.checklist(conn, row, cfg), store.timeline(conn, incident_id)

    row, steps, timeline = _run(go)
    out.print(escape(f"incident {row['id']}: {row['title']} ({row['type']}, {row['severity']}, {row['status']})"))
    out.print(escape(f"  place {row['district_id'] or 'city-wide'} / {row['domain'] or '-'}   owner {row['owner'] or '-'}"
                     f"   opened {_when(row['opened_at'])} by {row['opened_by']}"))
    for label, key in (("summary", "summary"), ("handover", "handover")):
        if row[key]:
            out.print(escape(f"  {label}: {row[key]}"))
    for s in steps:
        d = s["done"]
        mark = "[x]" if d else "[ ]"
        done = f" — {d['by']} {_when(d['at'])} {d['fields'] or ''}" if d else ""
        out.print(escape(f"  {mark} {s['n']}. {s['text']} ({s['role']}){done}").rstrip())
    for x in timeline:
        what = f"alert {x['alert_id']} {x['action']}" if x["source"] == "alert" else x["action"]
        out.print(escape(f"  {_when(x['at'])}  {x['actor']:<10} {what:<22} {x['note'] or ''}").rstrip())


@incident_app.command("open")
def open_cmd(type_: str = typer.Option(..., "--type", help="An incident type of the city."),
             alerts: str = typer.Option(None, help="Alert ids to group, comma-separated."),
             district: str = typer.Option(None, help="The district (without alerts)."),
             title: str = typer.Option(None, help="A title (default: the type and the place)."),
             note: str = typer.Option(None, help="What is known."), as_: str = AS):
    """Open an incident from alerts or for a place."""
    from dashboard.incidents import store

    cfg = incident_config(acting_city())
    kind = cfg.type(type_)
    if kind is None:
        _fail(f"--type: one of {', '.join(cfg.types)}", BAD)
    try:
        ids = [int(x) for x in alerts.split(",") if x.strip()] if alerts else None
    except ValueError:
        _fail("--alerts: alert ids, comma-separated", BAD)

    def go():
        with _engine().begin() as conn:
            actor, districts = _actor(conn, as_)
            return store.open_incident(conn, actor, kind, alert_ids=ids, district=district, title=title, note=note,
                                       districts=districts)[0]

    row = _run(go)
    out.print(escape(f"incident {row['id']} opened: {row['title']}"))


def _act(incident_id: int, name: str | None, *actions) -> dict:
    """Do ``actions`` ((action, body) pairs; a body's None values left out) on an incident as user
    ``name``, in one transaction, through :func:`dashboard.incidents.store.act`; return the row."""
    from dashboard.incidents import store

    cfg = incident_config(acting_city())

    def go():
        with _engine().begin() as conn:
            actor, role, districts = _person(conn, name)
            row = store.get(conn, incident_id)
            if row is None or districts is not None and row["district_id"] not in districts:
                raise store.IncidentError(404, f"no incident {incident_id}")
            for action, body in actions:
                body = body(row, cfg) if callable(body) else body
                row = store.act(conn, incident_id, action, actor, role, {k: v for k, v in body.items() if v is not None},
                                cfg, districts=districts)[0]
            return row

    return _run(go)


@incident_app.command("owner")
def owner_cmd(incident_id: int = typer.Argument(..., help="The incident's id."),
              to: str = typer.Option(None, help="The user who owns it from now on."),
              note: str = NOTE,
              handover: str = typer.Option(None, help="The handover note for the new owner (recorded as a handover)."),
              as_: str = AS):
    """Give an incident an owner, or hand it over to the next one with a handover note."""
    actions = [("owner", {"to": to, "note": note})] + ([("handover", {"note": handover})] if handover is not None else [])
    row = _act(incident_id, as_, *actions)
    out.print(escape(f"incident {row['id']}: owned by {row['owner']}" + (" (handover noted)" if handover else "")))


@incident_app.command("handover")
def handover_cmd(incident_id: int = typer.Argument(..., help="The incident's id."),
                 note: str = typer.Option(None, help="The note for the next shift: where things stand."),
                 as_: str = AS):
    """Write the handover note for the next shift."""
    row = _act(incident_id, as_, ("handover", {"note": note}))
    out.print(escape(f"incident {row['id']}: handover noted"))


def _fields(pairs: list[str] | None) -> dict[str, str]:
    out_: dict[str, str] = {}
    for p in pairs or ():
        k, eq, v = p.partition("=")
        if not eq or not k.strip():
            _fail(f"--field: NAME=VALUE, not {p[:40]!r}", BAD)
        if k.strip() in out_:
            _fail(f"--field: {k.strip()[:40]} given twice", BAD)
        out_[k.strip()] = v
    return out_


def _typed(fields: dict[str, str], step: int, row: dict, cfg) -> dict:
    """Return ``fields`` with the step's number fields as numbers (a value that is not one is left for
    the store to refuse, naming the field)."""
    kind = cfg.type(row["type"])
    steps = kind.steps if kind else ()
    kinds = {f.name: f.kind for f in steps[step - 1].fields} if 1 <= step <= len(steps) else {}
    out_ = {}
    for k, v in fields.items():
        if kinds.get(k) == "number":
            try:
                v = int(v) if v.strip().lstrip("+-").isdigit() else float(v)
            except ValueError:
                pass
        out_[k] = v
    return out_


@incident_app.command("step")
def step_cmd(incident_id: int = typer.Argument(..., help="The incident's id."),
             step: int = typer.Argument(..., help="The step's number (see `panorama incident show`)."),
             field: list[str] = typer.Option(None, "--field", help="A field the step records, NAME=VALUE "
                                             "(once per field)."),
             note: str = NOTE, as_: str = AS):
    """Mark a checklist step done, with the fields it records."""
    fields = _fields(field)
    row = _act(incident_id, as_, ("step", lambda row, cfg: {"step": step, "fields": _typed(fields, step, row, cfg),
                                                            "note": note}))
    out.print(escape(f"incident {row['id']}: step {step} done ({row['steps_done']} done)"))


@incident_app.command("close")
def close_cmd(incident_id: int = typer.Argument(..., help="The incident's id."),
              summary: str = typer.Option(None, help="What happened and what was done (the report's summary)."),
              as_: str = AS):
    """Close an incident with its summary."""
    row = _act(incident_id, as_, ("close", {"summary": summary}))
    out.print(escape(f"incident {row['id']} closed"))


@incident_app.command("reopen")
def reopen_cmd(incident_id: int = typer.Argument(..., help="The incident's id."), note: str = NOTE, as_: str = AS):
    """Reopen a closed incident."""
    row = _act(incident_id, as_, ("reopen", {"note": note}))
    out.print(escape(f"incident {row['id']} reopened"))
