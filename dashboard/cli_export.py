"""``panorama report`` and ``panorama export``: a period report, or one panel as a file."""
from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dashboard.settings import get_settings

console = Console(stderr=True, soft_wrap=True)
REPORT_STEPS = 9  # progress steps reported by dashboard.report.build_report, + write (+ pdf)


#: ``--as``: whose district scope an export or report has (the CLI is the store's administrator otherwise).
AS_HELP = ("Act as this user: only their districts (no --district means their first; another is refused). "
           "Without --as the command acts as the store's administrator and may read every district.")


def _acting(name: str | None, engine):
    """Return the context the command runs in: as user ``name`` (their scope), or as the administrator."""
    from contextlib import nullcontext

    from dashboard import accounts
    from dashboard.access import acting

    if name is None:
        return nullcontext()
    try:
        return acting(accounts.principal_of(engine, name))
    except accounts.AccountError as exc:
        _fail(str(exc))


def _fail(msg: str, code: int = 1):
    console.print(f"[bold red]error:[/] {escape(msg)}")  # the message may quote user input: never markup
    raise typer.Exit(code)


def _date(s: str, name: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        _fail(f"{name} must be a date YYYY-MM-DD, not {s[:30]!r}")


def report(
    date_from: str = typer.Option(None, "--from", help="First day of the period (YYYY-MM-DD, city time)."),
    date_to: str = typer.Option(None, "--to", help="Last day of the period, inclusive."),
    district: str = typer.Option(None, help="A district id (default: the whole city)."),
    out: Path = typer.Option(..., help="Output file."),
    fmt: str = typer.Option("html", "--format", help="html or pdf."),
    paper: str = typer.Option(None, help="Printed page size, a4 or letter (default: the city's paper, from "
                              "city.toml's paper or locale, else a4)."),
    as_user: str = typer.Option(None, "--as", help=AS_HELP),
    incident: int = typer.Option(None, help="An incident id: its after-action report (timeline, checklist as "
                                 "done, KPIs and map around the event) instead of a period report."),
):
    """Write a self-contained period report: every KPI vs the previous period, trends, map, sources;
    or, with --incident, an incident's after-action report.

    Acts as the store's administrator (every district) unless --as names a user."""
    from dashboard.report import PAPERS, build_report, default_paper, print_pdf
    from dashboard.store import make_engine

    if fmt not in ("html", "pdf"):
        _fail("--format must be html or pdf")
    if incident is not None:
        if date_from or date_to or district:
            _fail("--incident: the report covers the incident's own span and place (no --from, --to, --district)")
        return _incident_report(incident, out, fmt, as_user)
    if date_from is None or date_to is None:
        _fail("--from and --to: the period (or --incident ID)")
    if paper is not None and paper.lower() not in PAPERS:
        _fail(f"--paper must be {' or '.join(PAPERS)}, not {paper[:20]!r}")
    start, end = _date(date_from, "--from"), _date(date_to, "--to")
    if end < start:
        _fail("--to is before --from")
    from dashboard.live import build_live

    city = _city_or_none(get_settings())
    # the app's wiring: the city's AQI standard, thresholds and options, as on the screens
    live = build_live(get_settings(), city, engine=make_engine(get_settings().resolved_database_url))
    s = live.settings
    from dashboard.access import Forbidden, narrow_district

    with _acting(as_user, live.writer()):
        try:
            district = narrow_district(district or None)
        except Forbidden as exc:
            _fail(str(exc))
    paper = paper.lower() if paper else default_paper(city.config if city else None)
    engine = live.engine
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("starting", total=REPORT_STEPS + (1 if fmt == "pdf" else 0))

        def step(label: str):
            bar.update(task, description=label, advance=1)

        notes: list[str] = []
        try:
            with _acting(as_user, live.writer()):
                page = build_report(engine, start, end, district, s.aqi_standard, progress=step, paper=paper,
                                    thresholds=live.thresholds, notes=notes,
                                    detail=lambda label: bar.update(task, description=label))
        except ValueError as exc:
            _fail(str(exc))
        html_path = out if fmt == "html" else out.with_suffix(".html")
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(page, encoding="utf-8")
        step("written")
        if fmt == "pdf":
            step("printing PDF")
            try:
                print_pdf(html_path, out)
            except (RuntimeError, OSError) as exc:
                _fail(str(exc))
        bar.update(task, completed=bar.tasks[0].total, description="done")
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"{escape(str(out))}: {out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")


def _incident_report(incident_id: int, out: Path, fmt: str, as_user: str | None) -> None:
    """Write incident ``incident_id``'s after-action report (HTML, or printed to PDF)."""
    from dashboard.incidents.config import default
    from dashboard.incidents.report import build_incident_report
    from dashboard.live import build_live
    from dashboard.report import print_pdf
    from dashboard.store import make_engine

    from dashboard.alerts.rules import RuleError

    city = _city_or_none(get_settings())
    live = build_live(get_settings(), city, engine=make_engine(get_settings().resolved_database_url))
    try:
        cfg = city.incidents if city is not None else default()
    except RuleError as exc:
        _fail(str(exc))
    t0 = time.perf_counter()
    try:
        with _acting(as_user, live.writer()):
            page = build_incident_report(live.engine, incident_id, cfg, live.settings.aqi_standard, live.thresholds)
    except ValueError as exc:
        _fail(str(exc))
    html_path = out if fmt == "html" else out.with_suffix(".html")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    if fmt == "pdf":
        try:
            print_pdf(html_path, out)
        except (RuntimeError, OSError) as exc:
            _fail(str(exc))
    console.print(f"{escape(str(out))}: incident {incident_id}, {out.stat().st_size / 1e3:.0f} kB in "
                  f"{time.perf_counter() - t0:.1f} s")


def _city_or_none(settings):
    """Return the configured city's declaration, or None (a bare store: registry defaults, A4)."""
    from dashboard.city import load_city

    try:
        return load_city(settings.city_dir)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        _fail(str(exc))


def export(
    panel_id: str = typer.Argument(..., help="A panel id: a KPI id (traffic.tti), map-<layer> or map."),
    fmt: str = typer.Option("png", "--format", help="png, svg, csv or json."),
    out: Path = typer.Option(..., help="Output file."),
    district: str = typer.Option(None, help="A district id."),
    window: str = typer.Option(None, help="1h, 24h or 7d."),
    theme: str = typer.Option(None, help="dark or light."),
    layers: str = typer.Option(None, help="Layers of the whole map (panel 'map'), comma-separated."),
    width: int = typer.Option(None, help="Image width in px (200–4000)."),
    height: int = typer.Option(None, help="Image height in px (150–4000)."),
    scale: float = typer.Option(None, help="Image scale (0.5–4)."),
    as_user: str = typer.Option(None, "--as", help=AS_HELP),
):
    """Write one panel as an image (PNG/SVG) or its data (CSV/JSON).

    Acts as the store's administrator (every district) unless --as names a user."""
    from dashboard.export import FORMATS, Renderer, UnknownPanel, panel_bytes, parse_request, standalone_live
    from dashboard.params import BadParameter

    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}")
    args = {k: None if v is None else str(v) for k, v in dict(
        district=district, window=window, theme=theme, layers=layers, width=width, height=height, scale=scale).items()}
    from dashboard.access import Forbidden

    live = standalone_live(get_settings())
    try:
        with _acting(as_user, live.writer()):
            req = parse_request(live, panel_id, args)
            body, _ = panel_bytes(live, req, fmt)
    except (UnknownPanel, BadParameter, Forbidden) as exc:
        _fail(str(exc))
    finally:
        Renderer.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    console.print(f"{escape(str(out))}: {len(body):,} bytes")
