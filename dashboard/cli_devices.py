"""``panorama device`` (wall kiosks' tokens) and ``panorama embed`` (signed embed links).

Each command is one audited action (actor ``cli:<os user>``) and fails with one line. A device's
claim URL and a signed link are printed once: the store keeps only a token's digest.
"""
from __future__ import annotations

import getpass
import time

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from dashboard.settings import get_settings

device_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Wall kiosks: a device token per wall, scoped to its wall URL; revocable.")
embed_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Signed embed links: one panel with locked parameters, until it expires.")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
#: Where `panorama serve` listens by default; pass --base-url with the address the walls reach.
DEFAULT_BASE = "http://127.0.0.1:8050"


def actor() -> str:
    """Return who the audit log names for a command run from this shell."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli:?"


def _fail(msg: str, code: int = 1):
    console.print(f"[bold red]error:[/] {escape(msg)}")  # may quote user input: never markup
    raise typer.Exit(code)


def _engine():
    from dashboard.store import make_engine

    return make_engine(get_settings().resolved_database_url)


def _unreachable(exc: SQLAlchemyError):
    _fail(f"the store cannot be reached ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")


def when(ts: int | None) -> str:
    """Return an epoch time as 'YYYY-MM-DD HH:MM' UTC ('' for None)."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else ""


@device_app.command("add")
def device_add(name: str = typer.Argument(..., help="What the wall is, e.g. 'control room left'."),
               url: str = typer.Option("/wall", help="The wall it shows: /wall?district=…&rotate=…&focus=…"),
               base_url: str = typer.Option(DEFAULT_BASE, help="The address walls reach the dashboard at.")):
    """Register a wall; print its claim URL once (open it on the wall: no password to type)."""
    from dashboard import accounts, signing

    try:
        base = signing.check_base(base_url)
        device, token = accounts.add_device(_engine(), name, url, actor=actor())
    except (ValueError, accounts.AccountError) as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _unreachable(exc)
    console.print(f"device {device.id} ({escape(device.name)}) shows {escape(device.path)}; its claim URL, shown "
                  "only now:")
    out.print(escape(f"{base}/device/{token}"))


@device_app.command("list")
def device_list():
    """List the walls: id, name, wall URL, districts, created, last refreshed, revoked."""
    from dashboard import accounts

    try:
        devices = accounts.list_devices(_engine())
    except SQLAlchemyError as exc:
        _unreachable(exc)
    if not devices:
        console.print("no wall devices: add one with `panorama device add NAME --url /wall`")
        return
    now = time.time()
    t = Table(box=box.SIMPLE_HEAD)
    for col in ("id", "name", "wall URL", "districts", "created (UTC)", "last refreshed", "revoked (UTC)"):
        t.add_column(col, overflow="fold")  # a URL or a time is never cut short
    for d in devices:
        t.add_row(str(d.id), escape(d.name), escape(d.path), escape(", ".join(d.districts or ("all",))),
                  when(d.created_at), accounts.seen_text(d.last_seen_at, now), when(d.revoked_at))
    out.print(t)


@device_app.command("revoke")
def device_revoke(device_id: int = typer.Argument(..., help="The device's id (see `panorama device list`).")):
    """Revoke a wall's token: the wall says so within one refresh."""
    from dashboard import accounts

    try:
        d = accounts.revoke_device(_engine(), device_id, actor=actor())
    except accounts.AccountError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _unreachable(exc)
    console.print(f"device {d.id} ({escape(d.name)}) revoked at {when(d.revoked_at)} UTC")


@embed_app.command("sign")
def embed_sign(panel: str = typer.Argument(..., help="A panel id: a KPI id (traffic.tti), map-<layer> or map."),
               district: str = typer.Option(None, help="A district id (default: the whole city)."),
               window: str = typer.Option(None, help="1h, 24h or 7d."),
               theme: str = typer.Option(None, help="dark or light."),
               layers: str = typer.Option(None, help="Layers of the whole map (panel 'map'), comma-separated."),
               expires: str = typer.Option("30d", help="How long the link works: 30d, 12h, 90m (at most 366d)."),
               base_url: str = typer.Option(DEFAULT_BASE, help="The address viewers reach the dashboard at.")):
    """Print a signed URL of one panel: its parameters cannot be changed, it stops at --expires."""
    from dashboard import signing
    from dashboard.export import UnknownPanel, standalone_live
    from dashboard.live import StoreUnavailable
    from dashboard.params import BadParameter

    s = get_settings()
    args = {"district": district, "window": window, "theme": theme, "layers": layers}
    try:
        link, expires_at = signing.make_link(standalone_live(s), s.secret_key.get_secret_value(), panel, args,
                                             expires, base_url, actor())
    except (ValueError, UnknownPanel, BadParameter) as exc:
        _fail(str(exc))
    except (SQLAlchemyError, StoreUnavailable) as exc:
        _unreachable(exc)
    console.print(f"signed link to {escape(panel)}, valid until {when(expires_at)} UTC:")
    out.print(escape(link))


@embed_app.command("rotate-key")
def embed_rotate_key():
    """Replace the embed-signing key: every signed link made before stops working (403)."""
    from dashboard import accounts

    try:
        accounts.rotate_embed_key(_engine(), actor=actor())
    except SQLAlchemyError as exc:
        _unreachable(exc)
    console.print("embed key rotated: every signed link made before now answers 403; sign new ones")
