"""``panorama notify``: send the queued alert and incident notifications, list them, retry a failed one."""
from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from dashboard.settings import get_settings

notify_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Alert and incident notifications: the outbox and its delivery (webhooks, e-mail).")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {escape(msg)}")  # may quote user input: never markup
    raise typer.Exit(1)


def _engine():
    from dashboard.store import make_engine

    return make_engine(get_settings().resolved_database_url)


def _deliverer():
    """Return a deliverer on the store for the configured city's channels (even when
    PANORAMA_NOTIFY_DELIVER is off: that setting is about the app's thread)."""
    from dashboard.alerts.deliver import Deliverer, Options
    from dashboard.city import load_city

    s = get_settings()
    try:
        channels = load_city(s.city_dir).notify_channels
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if not channels:
        _fail(f"{s.city_dir / 'city.toml'} declares no [[notify]] channel: nothing to send to")
    return Deliverer(_engine(), channels, Options.from_settings(s))


def _when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@notify_app.command("run-once")
def run_once():
    """Send every notification due now, then stop (retries not yet due wait for the next run)."""
    d = _deliverer()
    try:
        done = d.run_once()
    except SQLAlchemyError as exc:
        _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")
    out.print(f"{done['delivered']} delivered, {done['retry']} to retry later, {done['failed']} failed")
    if done["failed"]:
        raise typer.Exit(1)


@notify_app.command("run")
def run():
    """Send notifications until interrupted (for a deployment whose app processes do not:
    PANORAMA_NOTIFY_DELIVER=0)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    d = _deliverer()
    from dashboard.store.migrate import upgrade

    try:
        upgrade(d.engine)
    except SQLAlchemyError as exc:
        _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
    d.start()
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        d.stop()
    console.print("stopped: every notification sent so far has its outcome stored")


@notify_app.command("list")
def list_(failed: bool = typer.Option(False, "--failed", help="Only those that failed for good."),
          pending: bool = typer.Option(False, "--pending", help="Only those still to send (or retry)."),
          limit: int = typer.Option(50, min=1, max=10_000, help="Newest first, at most this many.")):
    """List the newest notifications: status, channel, attempts, and why the last attempt failed."""
    from dashboard.alerts.outbox import counts, deliveries

    if failed and pending:
        _fail("--failed or --pending, not both")
    try:
        with _engine().connect() as conn:
            rows = deliveries(conn, "failed" if failed else "pending" if pending else None, limit)
            n = counts(conn)
    except SQLAlchemyError as exc:
        _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")
    out.print(escape(f"{n['pending']} pending, {n['failed']} failed, {n['delivered']} delivered"))
    for r in rows:
        when = _when(r["delivered_at"] or r["failed_at"] or r["next_attempt_at"])
        label = {"delivered": "at", "failed": "at", "pending": "next"}[r["status"]]
        line = (f"{r['id']:>6}  {r['status']:<9} {r['target']:<16} {r['kind']:<7} {r['key']:<28} "
                f"attempts {r['attempts']:<3} {label} {when}")
        out.print(escape(line + (f"\n        {r['last_error']}" if r["last_error"] else "")))


@notify_app.command("retry")
def retry_cmd(row_id: int = typer.Argument(..., help="The id `notify list --failed` shows.")):
    """Queue a failed notification again, its attempts counted afresh."""
    from dashboard.alerts.outbox import retry

    try:
        with _engine().begin() as conn:
            ok = retry(conn, row_id)
    except SQLAlchemyError as exc:
        _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")
    if not ok:
        _fail(f"no failed notification has id {row_id} (`panorama notify list --failed`)")
    out.print(f"notification {row_id} queued again")
