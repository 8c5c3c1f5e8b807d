"""``panorama db``: schema migrations and the dashboards' read-only role."""
from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from dashboard.settings import get_settings

db_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The store's schema and roles.")
console = Console(stderr=True)


def _engine():
    from dashboard.store import make_engine

    return make_engine(get_settings().resolved_database_url)


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {escape(msg)}")  # may quote user input: never markup
    raise typer.Exit(1)


def _unreachable(exc: SQLAlchemyError) -> None:
    _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")


@db_app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")):
    """Migrate the store (PANORAMA_DATABASE_URL) to this release's schema; safe to repeat."""
    from dashboard.store.migrate import upgrade as run_upgrade

    try:
        before, after = run_upgrade(_engine(), revision)
    except SQLAlchemyError as exc:
        _unreachable(exc)
    if before == after:
        console.print(f"[green]schema up to date[/] (revision {after})")
    else:
        console.print(f"[green]schema migrated[/] {before or 'empty'} → {after}")


@db_app.command()
def current():
    """Print the store's schema revision and this release's."""
    from dashboard.store.migrate import current as rev, head

    try:
        have = rev(_engine())
    except SQLAlchemyError as exc:
        _unreachable(exc)
    want = head()
    typer.echo(f"store: {have or 'not migrated'}  release: {want}")
    if have != want:
        raise typer.Exit(3)


@db_app.command("grant-reader")
def grant_reader(role: str = typer.Argument("panorama_reader", help="Login role to create or update."),
                 password_env: str = typer.Option("PANORAMA_READER_PASSWORD",
                                                  help="Environment variable holding its password.")):
    """Create a PostgreSQL login role that can only read (for PANORAMA_READ_DATABASE_URL)."""
    from dashboard.store.migrate import grant_reader as grant

    password = os.environ.get(password_env)
    if not password:
        _fail(f"set {password_env} to the role's password (it is never taken on the command line)")
    try:
        grant(_engine(), role, password)
    except ValueError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _unreachable(exc)
    console.print(f"[green]role {escape(role)} can log in and read[/]; point PANORAMA_READ_DATABASE_URL at it")
