"""The ``panorama`` command: init, simulate, serve, run, ingest, db, city, user, export, report, alerts,
silence, notify, incident."""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from dashboard.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="City Panorama: the city operations dashboard.")
console = Console(stderr=True, soft_wrap=True)  # errors and progress: a long line is not cut
out = Console(soft_wrap=True)  # reports
log = logging.getLogger("panorama")


@app.callback()
def _check_settings() -> None:
    """City Panorama: the city operations dashboard."""
    from pydantic import ValidationError

    from dashboard.settings import settings_problem

    try:
        get_settings()
    except ValidationError as exc:  # a bad PANORAMA_* variable: one line, before any command starts
        _fail(f"bad setting {settings_problem(exc)}", 2)


def _engine(settings):
    from dashboard.store import make_engine

    return make_engine(settings.resolved_database_url)


def _fail(msg: str, code: int = 1):
    console.print(f"[bold red]error:[/] {escape(msg)}")  # the message may quote user data: never markup
    raise typer.Exit(code)


def _city(settings):
    from dashboard.city import load_city

    try:
        return load_city(settings.city_dir)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def init_store(settings, days: int, seed: int, reset: bool = False, progress: bool = True) -> dict:
    """Create the schema, load the city and backfill ``days`` of history."""
    from dashboard.city import install_city
    from dashboard.feeds.simulator import backfill
    from dashboard.store.schema import create_schema, drop_schema

    engine = _engine(settings)
    if reset:
        drop_schema(engine)
    create_schema(engine)
    city = _city(settings)
    counts = install_city(engine, city)
    if days > 0:
        counts.update(backfill(engine, city, days=days, seed=seed, progress=progress))
    return counts


@app.command()
def init(days: int = typer.Option(7, min=0, max=400, help="Days of history to backfill."),
         seed: int = typer.Option(None, help="Seed of the simulated feeds (default PANORAMA_SEED)."),
         reset: bool = typer.Option(False, help="Drop every table first.")):
    """Create the store, load the city and backfill history."""
    s = get_settings()
    counts = init_store(s, days, s.seed if seed is None else seed, reset)
    console.print(f"[green]store ready[/] at {escape(s.resolved_database_url)}: "
                  + ", ".join(f"{v:,} {k}" for k, v in counts.items()))


@app.command()
def simulate(seed: int = typer.Option(None, help="Seed (default PANORAMA_SEED).")):
    """Write live readings every refresh interval until interrupted."""
    from dashboard.feeds.simulator import Simulator

    s = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sim = Simulator(_engine(s), _city(s), seed=s.seed if seed is None else seed, step=s.refresh_seconds)
    stop = threading.Event()
    try:
        sim.run(stop, s.refresh_seconds)
    except KeyboardInterrupt:
        stop.set()


def _check_schema() -> None:
    """Say so when the store's schema is older than this release (the screens cannot migrate it)."""
    from dashboard.store.migrate import current, head

    try:
        have = current(_engine(get_settings()))
    except SQLAlchemyError:
        return  # unreachable now: the screens say so and recover when it is back
    if have != head():
        console.print(f"[bold yellow]warning:[/] the store's schema is {have or 'not migrated'}, this release needs "
                      f"{head()}: run `panorama db upgrade`")


def _serve(host: str, port: int, workers: int, threads: int = 4, settings=None) -> None:
    """Serve on host:port: gunicorn for ``workers`` > 1 (settings from the environment), else waitress
    with ``settings`` (default: from the environment)."""
    from dashboard.web_access import NoSecretKey, check_secret

    try:
        check_secret(settings or get_settings())
    except NoSecretKey as exc:
        _fail(str(exc), 2)
    if workers > 1:
        _check_schema()
        from gunicorn.app.wsgiapp import run as gunicorn_run

        sys.argv = ["gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
                    "--preload", "--config", "python:dashboard.gunicorn_conf",
                    "--chdir", str(Path(__file__).resolve().parent.parent), "app:server"]
        gunicorn_run()
        return
    from waitress import create_server

    from dashboard.app import create_app

    from dashboard.alerts.outbox import NotifyError

    _check_schema()
    try:
        dash_app = create_app(settings)
    except NotifyError as exc:  # a [[notify]] channel of city.toml that cannot be used: one line
        _fail(str(exc), 2)
    ticker = dash_app.server.extensions.get("panorama_alerts")
    if ticker is not None:
        ticker.start()  # the one process: it evaluates every tick
    logging.getLogger("waitress").setLevel(logging.WARNING)  # our one line says where it serves
    try:
        server = create_server(dash_app.server, host=host, port=port, threads=threads, ident="City Panorama")
    except OSError as exc:
        _fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"[bold]City Panorama[/] on {escape(f'http://{shown}:{server.effective_port}/')} (Ctrl-C stops it)")
    notifier = dash_app.server.extensions.get("panorama_notify")
    if notifier is not None:
        notifier.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if notifier is not None:
            notifier.stop()


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8050,
          workers: int = typer.Option(1, min=1, max=64, help="gunicorn worker processes (1 = one waitress process)."),
          threads: int = typer.Option(4, min=1, max=64, help="Threads per worker process.")):
    """Serve the dashboard: with --workers N ≥ 2, gunicorn on app:server (share the cache through Redis)."""
    _serve(host, port, workers, threads)


def _fill_history(settings, days: float, before: float) -> None:
    """Backfill ``days`` of history ending at ``before``, behind data already stored (background)."""
    from dashboard.feeds.simulator import backfill

    engine = _engine(settings)
    try:
        out = backfill(engine, _city(settings), days=days, seed=settings.seed, end=before,
                       known_at=time.time(), progress=False, record=True)
        log.info("history filled in: %s", out)
    except Exception:  # noqa: BLE001 - a background fill must never take the server down
        log.exception("filling in history failed; the dashboard keeps running on what is stored")
        _mark_fill_failed(engine)


def _mark_fill_failed(engine) -> None:
    """Say in the store that the history fill stopped (the screens then say "history incomplete")."""
    from dashboard.store import readmodel as rm

    try:
        with engine.begin() as conn:
            fill = rm.history_fill(conn)
            if fill:
                rm.record_history_fill(conn, fill["from"], fill["to"], fill["done"], failed=True)
    except Exception:  # noqa: BLE001
        log.exception("could not record that the history fill failed")


@app.command()
def run(host: str = "127.0.0.1", port: int = 8050,
        days: int = typer.Option(7, min=1, max=400, help="Days of history on first run.")):
    """Initialise the demo store on first run, then serve the dashboard with live feeds.

    The first run writes the last day of history, starts serving, and fills in the older days
    in the background, so the page shows live data within a minute.
    """
    from dashboard.cli_access import announce_admin, embedded_settings, first_admin
    from dashboard.feeds.simulator import Simulator
    from dashboard.store import is_initialised

    try:
        s = embedded_settings()  # the anonymous viewer and a kept secret key, unless the environment says otherwise
    except (ValueError, OSError) as exc:
        _fail(str(exc), 2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    engine = _engine(s)
    threads = []
    from dashboard.store.schema import create_schema

    create_schema(engine)  # migrate a store made by an earlier release (nothing to do when current)
    if not is_initialised(engine):
        console.print(f"first run: building the {escape(s.city)} demo store (last 24 h now, {days - 1} more days "
                      "in the background)…")
        now = time.time()
        init_store(s, 1, s.seed)
        if days > 1:
            threads.append(threading.Thread(target=_fill_history, args=(s, days - 1, now - 86_400),
                                            name="history", daemon=True))
    password = first_admin(engine)
    if password:
        announce_admin(password)
    sim = Simulator(engine, _city(s), seed=s.seed, step=s.refresh_seconds)
    stop = threading.Event()
    threads.append(threading.Thread(target=sim.run, args=(stop, s.refresh_seconds), name="simulator", daemon=True))
    for t in threads:
        t.start()
    try:
        _serve(host, port, 1, threads=8, settings=s)
    finally:
        stop.set()
        # let the simulator finish its tick: a daemon thread cut off inside the database driver
        # while the interpreter shuts down can crash the process
        threads[-1].join(timeout=30)


class _IngestGroup(TyperGroup):
    """``panorama ingest FILE`` means ``panorama ingest csv FILE``; ``ingest mqtt`` subscribes."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["csv", *args]
        return super().parse_args(ctx, args)


ingest_app = typer.Typer(cls=_IngestGroup, add_completion=False, no_args_is_help=True,
                         help="Store readings: from a CSV file, or live from an MQTT broker.")
app.add_typer(ingest_app, name="ingest")


@ingest_app.command("csv")
def ingest_csv_cmd(file: Path = typer.Argument(..., help="CSV in long form: asset_id, metric, ts (ISO 8601 with offset), value."),
           source: str = typer.Option(None, help="Source name kept with rejections (default: the file path).")):
    """Validate and store readings from a CSV file: all of it, or nothing if the file can't be read.

    ``panorama ingest FILE`` is short for ``panorama ingest csv FILE``. The file is read whole first,
    then stored 200,000 rows a transaction, so other writers are not locked out meanwhile.
    """
    import sqlite3

    import psycopg

    from dashboard.store.ingest import IngestResult, ingest_csv

    from dashboard.importers.textio import check_file

    s = get_settings()
    try:
        check_file(file)
    except ValueError as exc:
        _fail(str(exc))
    t0 = time.perf_counter()
    done = IngestResult()

    def stored(chunk: IngestResult) -> None:
        nonlocal done
        done += chunk

    try:
        result = ingest_csv(_engine(s), file, source=source, each=stored)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        msg = str(exc) if str(exc).startswith(str(file)) else f"{file}: {exc}"
        _fail(f"{msg}; nothing was stored")
    except (SQLAlchemyError, sqlite3.Error, psycopg.Error) as exc:  # the bulk writes use the driver directly
        why = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if not (done.accepted or done.duplicates or done.rejected):
            _fail(f"the store cannot be reached ({why}); nothing was stored")
        _fail(f"the store failed midway ({why}) after {done.summary()}: those chunks stay stored; run the "
              "same command again to store the rest (readings already stored are recognised)")
    except Exception as exc:  # noqa: BLE001 - pandas parser errors and the like
        _fail(f"{file}: could not read ({type(exc).__name__}: {exc}); nothing was stored")
    dt = time.perf_counter() - t0
    out.print(escape(f"{file}: {result.summary()} in {dt:.2f} s"))
    for line, reason in result.reasons[:10]:
        out.print(escape(f"  line {line}: {reason}" if line else f"  {reason}"))
    if result.rejected > len(result.reasons[:10]):
        out.print(f"  … {result.rejected - len(result.reasons[:10])} more in the rejected table")


@ingest_app.command("mqtt")
def ingest_mqtt(url: str = typer.Option("mqtt://127.0.0.1:1883", help="Broker: mqtt://[user[:password]@]host[:port] "
                                        "or mqtts://… (TLS)."),
                topic: list[str] = typer.Option(["city/#"], help="Topic filter (repeat for several)."),
                client_id: str = typer.Option("panorama-ingest", help="Client id: the broker keeps this "
                                              "subscriber's session (and its unacknowledged messages) under it."),
                batch: int = typer.Option(500, min=1, max=100_000, help="Most messages stored per transaction.")):
    """Subscribe to live sensor readings (our JSON or NGSI-LD) and store them until interrupted.

    QoS 1, persistent session, each message acknowledged only after it is stored; reconnects by
    itself after a broker restart and retries the store after a database outage.
    """
    from dashboard.mqtt import MqttIngest

    s = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    engine = _engine(s)
    try:
        from dashboard.store.migrate import upgrade

        upgrade(engine)
        sub = MqttIngest(engine, url, topic, client_id=client_id, batch_messages=batch,
                         allow_outside=s.ngsi_allow_outside, max_payload=s.mqtt_max_payload)
    except ValueError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(f"the store cannot be reached ({str(exc.orig or exc).splitlines()[0]})")
    console.print(f"[bold]ingesting[/] {escape(', '.join(topic))} from {escape(sub.url)} into {escape(engine.url.render_as_string())}")
    stop = threading.Event()
    # a service manager's stop (SIGTERM) ends it as Ctrl-C does: the batch in hand is stored and
    # acknowledged, the summary printed (and SIGINT may be ignored: a job started in the background)
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
    try:
        sub.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(escape(sub.stats.summary()))


# --- sub-commands: one line each -------------------------------------------------------
from dashboard.cli_export import export, report  # noqa: E402
app.command()(report); app.command()(export)  # noqa: E702
from dashboard.cli_city import city_app  # noqa: E402
app.add_typer(city_app, name="city")
from dashboard.cli_db import db_app  # noqa: E402
app.add_typer(db_app, name="db")
from dashboard.cli_access import user_app  # noqa: E402
app.add_typer(user_app, name="user")
from dashboard.cli_alerts import alerts_app, silence_app  # noqa: E402
app.add_typer(alerts_app, name="alerts")
app.add_typer(silence_app, name="silence")
from dashboard.cli_notify import notify_app  # noqa: E402
app.add_typer(notify_app, name="notify")
from dashboard.cli_devices import device_app, embed_app  # noqa: E402
app.add_typer(device_app, name="device")
app.add_typer(embed_app, name="embed")
from dashboard.cli_incidents import incident_app  # noqa: E402
app.add_typer(incident_app, name="incident")


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
