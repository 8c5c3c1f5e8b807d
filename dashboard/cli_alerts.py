"""``panorama alerts`` and ``panorama silence``: the alert lifecycle and maintenance windows from a shell.

Every action names the person it is done as (``--as USER``): an enabled user of the store with the
operator role or above, within their districts — the same rule as the API, so the audit trail
names people, never "the command line". Actions go through the store's functions the API uses, and
their notifications go to the city's ``[[notify]]`` channels as the app's do. Bad input (an unknown
id, an action the status forbids, a missing field, an unknown ``--as``) is one line, exit code 2;
a store that cannot be reached, exit code 1.
"""
from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from dashboard.settings import get_settings

alerts_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Alerts: list, acknowledge, assign, resolve, reopen, shelve, comment, history.")
silence_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Silences (maintenance windows).")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
AS = typer.Option(None, "--as", help="The user acting, an operator or admin (required).")
NOTE = typer.Option(None, help="Why, what is being done.")
#: The exit code of bad input (as click's usage errors); 1 is a store that cannot be reached.
BAD = 2


def _fail(msg: str, code: int = 1):
    console.print(f"[bold red]error:[/] {escape(msg)}")
    raise typer.Exit(code)


def _engine():
    from dashboard.store import make_engine

    return make_engine(get_settings().resolved_database_url)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _person(conn, name: str | None):
    """Return the acting user (name, role, districts) or fail: enabled, operator or admin."""
    from dashboard.access import RANK
    from dashboard.store.schema import users

    if not name:
        _fail("--as: name the user acting (an operator or admin)", BAD)
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None or row.disabled:
        _fail(f"--as: no enabled user {name!r}", BAD)
    if RANK.get(row.role, -1) < RANK["operator"]:
        _fail(f"--as: {name} is a {row.role}; acting on alerts needs an operator or admin", BAD)
    return row.name, row.role, (tuple(row.districts) if row.districts else None)


def _actor(conn, name: str | None):
    """Return the acting user (name, districts) or fail: enabled, operator or admin."""
    who, _role, districts = _person(conn, name)
    return who, districts


def acting_city():
    """Return the configured city (None: there is none) with this process's notifications set up as
    the app sets them up: a change made here reaches the city's ``[[notify]]`` channels. A channel
    that cannot be used fails the command (the app would not start either); broken alert rules
    leave the channels unused, with a warning, as in the app."""
    from dashboard.alerts import notify
    from dashboard.alerts.outbox import NotifyError
    from dashboard.alerts.rules import RuleError
    from dashboard.live import configured_city

    city = configured_city(get_settings())
    notify.configure(())
    if city is not None:
        try:
            notify.configure(city.notify_channels, city.alert_rules)
        except NotifyError as exc:
            _fail(str(exc), BAD)
        except RuleError as exc:
            console.print(f"[bold yellow]warning:[/] {escape(str(exc))}: no notification is sent")
    return city


def _run(fn):
    from dashboard.alerts.store import AlertError

    try:
        return fn()
    except AlertError as exc:
        _fail(str(exc), BAD)
    except SQLAlchemyError as exc:
        _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")


@alerts_app.command("list")
def list_cmd(state: str = typer.Option("open", help="open, new, acknowledged, assigned, resolved, firing, "
                                       "nodata, error, inactive or shelved (comma-separated)"),
             district: str = typer.Option(None, help="A district id."),
             limit: int = typer.Option(50, min=1, max=500)):
    """List alerts, newest first."""
    from dashboard.alerts import store
    from dashboard.alerts.web import STATE_FILTERS

    states = tuple(s.strip() for s in state.split(",") if s.strip())
    bad = [s for s in states if s not in STATE_FILTERS]
    if bad:
        _fail(f"--state: {bad[0]!r} is not one of {', '.join(STATE_FILTERS)}", BAD)

    def go():
        with _engine().connect() as conn:
            return store.list_alerts(conn, states=states, district=district, limit=limit)[0]

    rows = _run(go)
    if not rows:
        out.print("no alert")
    for r in rows:
        place = r["asset"] or r["district_id"] or "city"
        who = r["assignee"] or r["acknowledged_by"] or ""
        out.print(escape(f"{r['id']:>6}  {r['severity']:<8} {r['status']:<12} {r['state']:<8} {r['rule']:<20} "
                         f"{place:<16} since {_when(r['opened_at'])}  {who}").rstrip())


@alerts_app.command("ack")
def ack_cmd(alert_id: int = typer.Argument(..., help="The alert's id."), as_: str = AS, note: str = NOTE):
    """Acknowledge a new alert: you have it."""
    _act(alert_id, "ack", as_, {"note": note})


@alerts_app.command("assign")
def assign_cmd(alert_id: int = typer.Argument(..., help="The alert's id."),
               to: str = typer.Option(None, help="The user (or, with --team, the team) who handles it."),
               team: bool = typer.Option(False, "--team", help="--to names a team of [alerting] teams."),
               as_: str = AS, note: str = NOTE):
    """Assign an alert to a person or a team."""
    _act(alert_id, "assign", as_, {"to": to, "kind": "team" if team else "user", "note": note})


@alerts_app.command("resolve")
def resolve_cmd(alert_id: int = typer.Argument(..., help="The alert's id."), as_: str = AS, note: str = NOTE):
    """Resolve an alert whose condition is clear."""
    _act(alert_id, "resolve", as_, {"note": note})


@alerts_app.command("reopen")
def reopen_cmd(alert_id: int = typer.Argument(..., help="The alert's id."), as_: str = AS, note: str = NOTE):
    """Reopen a resolved alert."""
    _act(alert_id, "reopen", as_, {"note": note})


@alerts_app.command("shelve")
def shelve_cmd(alert_id: int = typer.Argument(..., help="The alert's id."),
               minutes: float = typer.Option(None, help="How long it is hidden; it comes back by itself."),
               as_: str = AS, note: str = NOTE):
    """Hide an alert for --minutes."""
    _act(alert_id, "shelve", as_, {"minutes": minutes, "note": note})


@alerts_app.command("comment")
def comment_cmd(alert_id: int = typer.Argument(..., help="The alert's id."), as_: str = AS,
                note: str = typer.Option(None, help="The comment.")):
    """Add a comment to an alert's history."""
    _act(alert_id, "comment", as_, {"note": note})


def _act(alert_id: int, action: str, name: str | None, body: dict) -> None:
    """Do ``action`` on an alert as user ``name`` through :func:`dashboard.alerts.store.act`, as the
    API does; the body's None values are left out (the store says what is missing)."""
    from dashboard.alerts import store
    from dashboard.alerts.rules import RuleError

    city = acting_city()
    try:
        teams = city.alerting.teams if city is not None else ()
    except RuleError as exc:
        _fail(str(exc), BAD)
    body = {k: v for k, v in body.items() if v is not None}
    if isinstance(body.get("minutes"), float) and body["minutes"].is_integer():
        body["minutes"] = int(body["minutes"])

    def go():
        with _engine().begin() as conn:
            actor, districts = _actor(conn, name)
            row = store.get(conn, alert_id)
            if row is None or districts is not None and row["district_id"] not in districts:
                raise store.AlertError(404, f"no alert {alert_id}")
            return store.act(conn, alert_id, action, actor, body, teams=teams)[0]

    row = _run(go)
    extra = {"assign": f", assigned to {row['assignee']}",
             "shelve": f", shelved until {_when(row['shelved_until'])}"}.get(action, "")
    out.print(escape(f"alert {row['id']}: {row['status']} ({row['rule']}, {row['state']}){extra}"))


@alerts_app.command("history")
def history_cmd(alert_id: int = typer.Argument(..., help="The alert's id.")):
    """Show what happened to an alert, oldest first."""
    from dashboard.alerts import store

    def go():
        with _engine().connect() as conn:
            return store.history(conn, alert_id)

    events = _run(go)
    if not events:
        _fail(f"no alert {alert_id}", BAD)
    for e in events:
        moved = f"{e['from_status'] or '-'} -> {e['to_status']}"
        extra = e["note"] or e["detail"].get("event") or ""
        out.print(escape(f"{_when(e['at'])}  {e['actor']:<12} {e['action']:<9} {moved:<28} {extra}").rstrip())


@silence_app.command("add")
def silence_add(reason: str = typer.Option(..., help="Why (shown with every alert it mutes)."),
                for_: str = typer.Option(..., "--for", help="How long: 30m, 2h, 1d."),
                rule: str = typer.Option(None, help="A rule id."), domain: str = typer.Option(None, help="A domain id."),
                district: str = typer.Option(None, help="A district id."),
                asset: str = typer.Option(None, help="An asset id."), as_: str = AS):
    """Mute the alerts matching every matcher given, from now for --for; it ends by itself."""
    from dashboard.alerts import store
    from dashboard.alerts.rules import RuleError, parse_duration

    try:
        duration = parse_duration(for_, "--for")
    except RuleError as exc:
        _fail(str(exc), BAD)

    def go():
        with _engine().begin() as conn:
            actor, districts = _actor(conn, as_)
            if districts is not None and district not in districts:
                _fail(f"--district: {actor} may silence {', '.join(districts)} only", BAD)
            return store.add_silence(conn, actor=actor, reason=reason, rule=rule, domain=domain, district=district,
                                     asset=asset, duration=duration)

    s = _run(go)
    out.print(escape(f"silence {s['id']} until {_when(s['ends_at'])}"))


@silence_app.command("list")
def silence_list(all_: bool = typer.Option(False, "--all", help="Ended and expired ones too (the last 500).")):
    """List silences not yet over."""
    from dashboard.alerts import store

    def go():
        with _engine().connect() as conn:
            return store.list_silences(conn, current=not all_)

    rows = _run(go)
    if not rows:
        out.print("no silence")
    for s in rows:
        what = " ".join(f"{k}={s[k]}" for k in ("rule", "domain", "district", "asset") if s[k])
        state = "active" if s["active"] else "ended" if s["ended_at"] or s["ends_at"] <= time.time() else "planned"
        out.print(escape(f"{s['id']:>5}  {state:<7} {_when(s['starts_at'])} -> {_when(s['ends_at'])}  {what}  "
                         f"by {s['created_by']}: {s['reason']}"))


@silence_app.command("end")
def silence_end(silence_id: int = typer.Argument(..., help="The silence's id."), as_: str = AS):
    """End a silence now."""
    from dashboard.alerts import store

    def go():
        with _engine().begin() as conn:
            actor, districts = _actor(conn, as_)
            return store.end_silence(conn, silence_id, actor, districts=districts)

    s = _run(go)
    out.print(escape(f"silence {s['id']} ended"))
