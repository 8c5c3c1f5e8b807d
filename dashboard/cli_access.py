"""``panorama user``: accounts from a terminal, and what ``panorama run`` sets up for the embedded default.

Every change is audited with the operating-system user as its actor (``cli:<login>``): whoever
can run this command can read the store's URL anyway, so the terminal is an administrator's.
Passwords are read from stdin or generated and printed once; never taken on the command line
(where ``ps`` and shell history would keep them).
"""
from __future__ import annotations

import getpass
import os
import secrets
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from dashboard.access import ADMIN, ROLES
from dashboard.settings import get_settings

user_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Users of the dashboard: add, list, change role, disable, reset a password.")
console = Console(stderr=True, soft_wrap=True)  # errors
out = Console(soft_wrap=True)  # what was asked for: the table, a new password

#: The file of the data folder holding the secret key of the embedded default (``panorama run``).
SECRET_FILE = "secret_key"
#: The administrator ``panorama run`` makes on a store that has none.
FIRST_ADMIN = "admin"

ROLE_HELP = f"One of {', '.join(ROLES)}."
DISTRICT = typer.Option(None, "--district", help="A district id this user may see (repeat for several; "
                        "none: every district).")
PASSWORD_STDIN = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin "
                              "(otherwise one is generated and printed once).")


def actor() -> str:
    """Return who runs this command, as the audit log names them."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container's numeric user)
        who = f"uid{os.getuid()}"
    return f"cli:{who}"


def _fail(msg: str, code: int = 1):
    console.print(f"[bold red]error:[/] {escape(msg)}")  # the message may quote user input: never markup
    raise typer.Exit(code)


def _engine():
    from dashboard.store import make_engine

    return make_engine(get_settings().resolved_database_url)


def _store_problem(engine, exc: SQLAlchemyError) -> str:
    """Return one line on why the store failed: not migrated to this release, or not reachable."""
    from dashboard.store.migrate import current, head

    try:
        have = current(engine)
    except SQLAlchemyError:
        have = head()  # unreachable: say that, below
    if have != head():
        return f"the store's schema is {have or 'not created'}, this release needs {head()}: run `panorama init` or `panorama db upgrade`"
    return f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})"


def _do(work):
    """Run ``work(engine)``; an account error or a store failure is one line on stderr, exit 1."""
    from dashboard.accounts import AccountError

    engine = _engine()
    try:
        return work(engine)
    except AccountError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(_store_problem(engine, exc))
    finally:
        engine.dispose()


def _role(role: str) -> str:
    if role not in ROLES:
        _fail(f"unknown role {role[:20]!r}: choose one of {', '.join(ROLES)}")
    return role


def _read_password(from_stdin: bool) -> str | None:
    """Return the first line of stdin (``--password-stdin``), else None (generate one)."""
    if not from_stdin:
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        _fail("--password-stdin: stdin gave no password")
    return line


def _scope(districts) -> str:
    return ", ".join(districts) if districts else "all"


def _when(at: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else "never"


@user_app.command("add")
def add(name: str = typer.Argument(..., help="Sign-in name."),
        role: str = typer.Option(..., "--role", help=ROLE_HELP),
        district: list[str] = DISTRICT, password_stdin: bool = PASSWORD_STDIN):
    """Add a user; without --password-stdin a password is generated and printed once."""
    from dashboard import accounts

    role, password = _role(role), _read_password(password_stdin)
    user, pw = _do(lambda e: accounts.add_user(e, name, role, password, district or None, actor=actor()))
    console.print(f"[green]user {escape(user.name)} added[/]: {user.role}, districts {escape(_scope(user.districts))}")
    if password is None:
        _print_password(user.name, pw)


def _print_password(name: str, password: str) -> None:
    console.print(f"password of {escape(name)} (shown once, keep it now):")
    out.print(escape(password))  # alone on stdout: `panorama user add … | …` takes just the password


@user_app.command("list")
def list_cmd():
    """List the users: name, role, districts, whether disabled, last sign-in."""
    from dashboard import accounts

    users = _do(accounts.list_users)
    table = Table("name", "role", "districts", "disabled", "last login", box=None, pad_edge=False)
    for u in users:
        table.add_row(escape(u.name), u.role, escape(_scope(u.districts)), "yes" if u.disabled else "no",
                      _when(u.last_login_at))
    out.print(table if users else "no users")


@user_app.command("set-role")
def set_role(name: str = typer.Argument(..., help="Sign-in name."),
             role: str = typer.Argument(..., help=ROLE_HELP),
             district: list[str] = DISTRICT,
             all_districts: bool = typer.Option(False, "--all-districts", help="Let the user see every district.")):
    """Change a user's role (and districts); their sessions end, they sign in again."""
    from dashboard import accounts

    if all_districts and district:
        _fail("give --district or --all-districts, not both")
    role = _role(role)
    user = _do(lambda e: accounts.set_role(e, name, role, district or None, all_districts, actor=actor()))
    console.print(f"[green]{escape(user.name)}[/] is now {user.role}, districts {escape(_scope(user.districts))}")


@user_app.command("disable")
def disable(name: str = typer.Argument(..., help="Sign-in name.")):
    """Disable a user: they cannot sign in, and their open sessions stop within a second."""
    from dashboard import accounts

    user = _do(lambda e: accounts.set_disabled(e, name, True, actor=actor()))
    console.print(f"[green]{escape(user.name)} disabled[/]")


@user_app.command("enable")
def enable(name: str = typer.Argument(..., help="Sign-in name.")):
    """Enable a disabled user again."""
    from dashboard import accounts

    user = _do(lambda e: accounts.set_disabled(e, name, False, actor=actor()))
    console.print(f"[green]{escape(user.name)} enabled[/]")


@user_app.command("reset-password")
def reset_password(name: str = typer.Argument(..., help="Sign-in name."), password_stdin: bool = PASSWORD_STDIN):
    """Set a new password (generated and printed once without --password-stdin); the user's sessions end."""
    from dashboard import accounts

    password = _read_password(password_stdin)
    pw = _do(lambda e: accounts.reset_password(e, name, password, actor=actor()))
    console.print(f"[green]password of {escape(name)} reset[/]; their sessions ended")
    if password is None:
        _print_password(name, pw)


# --- the embedded default (`panorama run`) --------------------------------------------------------

def embedded_secret(data_dir: Path) -> str:
    """Return the secret key kept in ``data_dir/secret_key``, making it (mode 0600) on first use.

    Written to a private temporary file and linked into place, so a crash never leaves a
    half-written key and two first runs at once end up with one key.
    """
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another first run made it meanwhile: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable secret key (fewer than 32 characters): delete it to make a new one")
    return key


def embedded_settings(environ=os.environ, **overrides):
    """Return the settings of ``panorama run``: the anonymous viewer unless PANORAMA_ANONYMOUS says
    otherwise, and the data folder's secret key unless PANORAMA_SECRET_KEY is set."""
    if not environ.get("PANORAMA_ANONYMOUS"):
        overrides.setdefault("anonymous", "viewer")
    if not environ.get("PANORAMA_SECRET_KEY"):
        data_dir = overrides.get("data_dir") or get_settings().data_dir
        overrides.setdefault("secret_key", embedded_secret(data_dir))
    return get_settings(**overrides)


def first_admin(engine) -> str | None:
    """Make the user ``admin`` (role admin) when the store has no administrator; return its password
    (to be shown once), or None when an administrator exists or the name is taken."""
    from sqlalchemy import select

    from dashboard import accounts
    from dashboard.store.schema import users

    with engine.connect() as conn:
        if conn.execute(select(users.c.id).where(users.c.role == ADMIN).limit(1)).first() is not None:
            return None
        if accounts.get_user(conn, FIRST_ADMIN) is not None:
            return None
    try:
        return accounts.add_user(engine, FIRST_ADMIN, ADMIN, actor="panorama run")[1]
    except accounts.AccountError:  # made by another first run at the same moment
        return None


def announce_admin(password: str) -> None:
    """Print the first administrator's password, once, with how to get another."""
    console.print(f"[bold]first run: user {FIRST_ADMIN!r} (administrator) made[/]; its password, shown this once:")
    console.print(f"    {escape(password)}")
    console.print(f"sign in with it at /login; `panorama user reset-password {FIRST_ADMIN}` makes a new one")
