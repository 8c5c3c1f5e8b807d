"""``panorama city``: onboard a city from its own files (``panorama city import <kind> FILE``)."""
from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from dashboard.metrics import ASSET_KINDS
from dashboard.settings import get_settings

city_app = typer.Typer(no_args_is_help=True, help="Onboard a city: import its boundaries, assets, readings, requests.")
import_app = typer.Typer(no_args_is_help=True, help="Import one file in one transaction (all or nothing).")
city_app.add_typer(import_app, name="import")
console = Console(stderr=True, soft_wrap=True)  # errors
out = Console(soft_wrap=True)  # reports

DRY = typer.Option(False, "--dry-run", help="Show what would be imported, write nothing.")
TS_FORMAT = typer.Option(None, "--ts-format", help="strftime format of the times, e.g. '%m/%d/%Y %I:%M:%S %p' "
                         "(default ISO 8601).")


def _city_or_none(settings):
    from dashboard.city import load_city

    try:
        return load_city(settings.city_dir)
    except (FileNotFoundError, ValueError):
        return None


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _run(kind: str, file: Path, dry_run: bool, work):
    """Run one import, print its report (stdout), exit 1 (store untouched) when the file is refused (stderr).

    Everything from the file or the user (names, values, reasons) is printed as plain text, never
    read as console markup.
    """
    from dashboard.importers import ImportProblem, check_file, import_engine, run_import

    s = get_settings()
    t0 = time.perf_counter()
    try:
        check_file(file)
        engine, note = import_engine(s.resolved_database_url, dry_run)
        report = run_import(engine, work, dry_run=dry_run)
    except ImportProblem as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}\nnothing was imported; the store is unchanged")
        raise typer.Exit(1) from None
    dt = time.perf_counter() - t0
    head = "[yellow]dry run[/] (nothing written)" if report.dry_run else "[green]imported[/]"
    out.print(f"{head} {kind} from {escape(str(file))} in {dt:.2f} s: "
              + escape(", ".join(f"{v:,} {k}" for k, v in report.counts.items())))
    if note:
        out.print(f"  {escape(note)}")
    if report.crs:
        out.print(f"  CRS: {escape(str(report.crs))} (stored as EPSG:4326)")
    if report.fields:
        out.print(f"  fields: {escape(', '.join(map(str, report.fields)))}")
    for w in report.warnings[:10]:
        out.print(f"  [yellow]warning:[/] {escape(str(w))}")
    for line, reason in report.problems[:10]:
        out.print(escape(f"  line/feature {line}: {reason}" if line is not None else f"  {reason}"))
    shown = min(len(report.problems), 10)
    if report.counts.get("rejected", 0) > shown:
        out.print(f"  … {report.counts['rejected'] - shown} more rejected rows in the rejected table")
    return report


@import_app.command("boundaries")
def boundaries(file: Path, id_field: str = typer.Option(None, help="Property holding the district id."),
               name_field: str = typer.Option(None, help="Property holding the district name."),
               population_field: str = typer.Option(None, help="Property holding the population."),
               layer: str = typer.Option(None, help="Layer of a multi-layer file (GeoPackage)."),
               crs: str = typer.Option(None, help="CRS of a file that declares none, e.g. EPSG:32188."),
               dissolve: bool = typer.Option(False, help="Merge the features that share an id into one district."),
               encoding: str = typer.Option(None, help="Text encoding of a file that declares none, e.g. gbk."),
               dry_run: bool = DRY):
    """District boundaries: GeoJSON, TopoJSON, GeoPackage or Shapefile, any CRS."""
    from dashboard.importers.boundaries import import_boundaries

    city = _city_or_none(get_settings())
    _run("boundaries", file, dry_run, lambda conn: import_boundaries(
        conn, file, city=city.name if city else None, timezone=city.timezone if city else None,
        id_field=id_field, name_field=name_field, population_field=population_field, layer=layer, crs=crs,
        dissolve=dissolve, encoding=encoding))


@import_app.command("assets")
def assets_cmd(file: Path, kind: str = typer.Option(None, help=f"{', '.join(ASSET_KINDS)} "
                                                               "(default: the 'kind' column)."),
               id_field: str = typer.Option(None), name_field: str = typer.Option(None),
               lon_field: str = typer.Option(None), lat_field: str = typer.Option(None),
               delimiter: str = ",", encoding: str = "utf-8", layer: str = None, crs: str = None,
               id_template: str = typer.Option(None, help="Ids from properties, {n} numbering the features "
                                                          "that share an id, e.g. \"{id}-{n}\"."),
               dry_run: bool = DRY):
    """Assets from CSV with lon/lat or any vector file; districts by point in polygon (lines: midpoint)."""
    from dashboard.importers.assets import import_assets

    _run("assets", file, dry_run, lambda conn: import_assets(
        conn, file, kind=kind, id_field=id_field, name_field=name_field, lon_field=lon_field, lat_field=lat_field,
        delimiter=delimiter, encoding=encoding, layer=layer, crs=crs, id_template=id_template))


@import_app.command("readings")
def readings_cmd(file: Path,
                 layout: str = typer.Option("long", help="long, wide-metric (a column per metric) or wide-asset."),
                 metric: str = typer.Option(None, help="The metric of a wide-asset file."),
                 asset: str = typer.Option(None, help="The asset of a wide-metric file."),
                 asset_column: str = typer.Option(None, help="Column with the asset id."),
                 asset_prefix: str = typer.Option("", help="Prefix added to asset ids (e.g. aq-)."),
                 ts_column: str = typer.Option(None, help="Column with the time (default ts/time/timestamp)."),
                 time_columns: str = typer.Option(None, help="Comma-separated year,month,day,hour columns."),
                 timezone: str = typer.Option(None, help="Zone of times without offset, e.g. America/Montreal."),
                 ts_format: str = TS_FORMAT,
                 decimal: str = typer.Option(".", help="Decimal separator."),
                 delimiter: str = typer.Option(",", help="Field delimiter."),
                 encoding: str = typer.Option("utf-8", help="File encoding (UTF-8 with or without BOM)."),
                 unit: list[str] = typer.Option(None, help="METRIC=UNIT of the values in the file, e.g. co=mg/m3."),
                 rename: list[str] = typer.Option(None, help="COLUMN=metric (or asset), e.g. PM2.5=pm25."),
                 dry_run: bool = DRY):
    """Readings from CSV, long or wide; gaps stay gaps; units converted to the stored ones."""
    from dashboard.importers.readings import import_readings

    units, ren = _pairs(unit, "--unit"), _pairs(rename, "--rename")
    _run("readings", file, dry_run, lambda conn: import_readings(
        conn, file, layout=layout, metric=metric, asset=asset, asset_column=asset_column, asset_prefix=asset_prefix,
        ts_column=ts_column, time_columns=time_columns.split(",") if time_columns else None, timezone=timezone,
        ts_format=ts_format, decimal=decimal, delimiter=delimiter, encoding=encoding, units=units, rename=ren))


@import_app.command("requests")
def requests_cmd(file: Path, timezone: str = typer.Option(None, help="Zone of times without offset."),
                 id_field: str = None, category_field: str = None, opened_field: str = None,
                 closed_field: str = None, lon_field: str = None, lat_field: str = None,
                 status_field: str = None, district_field: str = None,
                 status_map: str = typer.Option(None, help="STATUS=open|closed,... over the defaults, e.g. "
                                                           "\"In Progress=open,Duplicate=closed\"."),
                 delimiter: str = ",", encoding: str = "utf-8",
                 ts_format: str = TS_FORMAT,
                 add_categories: bool = typer.Option(True, help="Create categories the store lacks."),
                 dry_run: bool = DRY):
    """Service requests: Open311 GeoReport v2 JSON, a flat JSON export (Socrata) or a CSV export.

    Statuses: closed, resolved, completed, done, cancelled, ... are closed; any other (in progress,
    assigned, pending, on hold, ...) is open, unless --status-map says otherwise.
    """
    from dashboard.importers.requests import import_requests
    from dashboard.store.services import parse_status_map

    try:
        smap = parse_status_map(status_map)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    opts = dict(timezone=timezone, id_field=id_field, category_field=category_field, opened_field=opened_field,
                closed_field=closed_field, lon_field=lon_field, lat_field=lat_field, status_field=status_field,
                district_field=district_field, delimiter=delimiter, encoding=encoding, ts_format=ts_format)
    report = _run("requests", file, dry_run, lambda conn: import_requests(
        conn, file, add_categories=add_categories, status_map=smap, **opts))
    read = report.counts.get("read", 0)
    if read and report.counts.get("rejected", 0) == read:
        console.print(f"[bold red]error:[/] every one of the {read:,} requests was rejected (fields of the "
                      "file above; name the columns with --id-field, --category-field, ...)")
        raise typer.Exit(1)


@import_app.command("categories")
def categories_cmd(file: Path, dry_run: bool = DRY):
    """Service categories from CSV (id, name, sla_hours): upserted by id."""
    from dashboard.importers.categories import import_categories

    _run("categories", file, dry_run, lambda conn: import_categories(conn, file))


@import_app.command("ngsi")
def ngsi_cmd(file: Path, timezone: str = typer.Option(None, help="Zone of times without offset "
                                                                 "(default: the city's)."),
             ts_format: str = TS_FORMAT,
             allow_outside: bool = typer.Option(False, "--allow-outside", help="Keep entities located outside "
                                                "every district (as assets without a district); default: reject."),
             dry_run: bool = DRY):
    """FIWARE NGSI-LD / v2 entities (AirQualityObserved, TrafficFlowObserved), key-values or normalized.

    Valid entities are stored; the others are rejected one by one, with their reason.
    """
    from dashboard.importers.ngsi import import_ngsi_file

    city = _city_or_none(get_settings())
    tz = timezone or (city.timezone if city else None)
    _run("ngsi", file, dry_run, lambda conn: import_ngsi_file(conn, file, tz, ts_format, allow_outside))
