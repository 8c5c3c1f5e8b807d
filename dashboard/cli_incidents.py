"""``panorama incident``: list, show (timeline and checklist), open and close incidents from a shell.

As for alerts (:mod:`dashboard.cli_alerts`), every change names the person it is done as (``--as
USER``, an enabled operator or admin, within their districts). The after-action report is
``panorama report --incident ID``.
"""
from __future__ import annotations

import typer
from rich.markup import escape

from dashboard.cli_alerts import AS, _actor, _engine, _fail, _run, _when, out

incident_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Incidents: list, show, open, close.")


def incident_config():
    """Return the configured city's incident types and rules (the ``general`` type alone without a city)."""
    from dashboard.alerts.rules import RuleError
    from dashboard.incidents.config import default
    from dashboard.live import configured_city
    from dashboard.settings import get_settings

    city = configured_city(get_settings())
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
        _fail(f"--status: {status!r} is not one of {', '.join(store.STATUSES)}")

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

    cfg = incident_config()
    kind = cfg.type(type_)
    if kind is None:
        _fail(f"--type: one of {', '.join(cfg.types)}")
    try:
        ids = [int(x) for x in alerts.split(",") if x.strip()] if alerts else None
    except ValueError:
        _fail("--alerts: alert ids, comma-separated")

    def go():
        with _engine().begin() as conn:
            actor, districts = _actor(conn, as_)
            return store.open_incident(conn, actor, kind, alert_ids=ids, district=district, title=title, note=note,
                                       districts=districts)[0]

    row = _run(go)
    out.print(escape(f"incident {row['id']} opened: {row['title']}"))


@incident_app.command("close")
def close_cmd(incident_id: int = typer.Argument(..., help="The incident's id."),
              summary: str = typer.Option(..., help="What happened and what was done (the report's summary)."),
              as_: str = AS):
    """Close an incident with its summary."""
    from dashboard.incidents import store

    cfg = incident_config()

    def go():
        with _engine().begin() as conn:
            actor, districts = _actor(conn, as_)
            row = store.get(conn, incident_id)
            if row is None or districts is not None and row["district_id"] not in districts:
                raise store.IncidentError(404, f"no incident {incident_id}")
            return store.act(conn, incident_id, "close", actor, "operator", {"summary": summary}, cfg)[0]

    row = _run(go)
    out.print(escape(f"incident {row['id']} closed"))
