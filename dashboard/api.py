"""JSON API over the same numbers as the screens: ``/api/kpis`` and ``/health``."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import time

from flask import Flask, Response, jsonify, request
from sqlalchemy import text

from dashboard.live import LiveData, StoreUnavailable
from dashboard.params import BadParameter, check_district, check_window
from dashboard.store import STORE_OUTAGES


#: Seconds a writer told "store busy" (503) is asked to wait before sending again (``Retry-After``).
RETRY_AFTER_S = 5


def _wait_at_most(conn, seconds: float):
    """Make ``conn`` wait at most ``seconds`` for another writer's lock (then fail: the caller answers 503)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": f"{int(seconds * 1000)}ms"})
    return conn


#: Where pages fetch the district shapes from (the choropleth layers reference it by URL).
GEOJSON_URL = "/api/geo/districts.geojson"

log = logging.getLogger("panorama.api")


def _unavailable(exc: Exception):
    """Return 503 for a store outage: the driver's error goes to the log, the client gets a short reason."""
    log.warning("store unavailable: %s", exc)
    return _error(503, "store unavailable: retry shortly")


def worker_id(salt: bytes, host: str, pid: int) -> str:
    """Return an opaque id of a worker process: equal for one process, different between processes,
    revealing neither the host name nor the pid."""
    return hashlib.blake2b(f"{host}:{pid}".encode(), key=salt, digest_size=6).hexdigest()


def client_gone(environ: dict):
    """Return a function telling whether the client of a request has closed its connection (False
    when the server does not say which socket it is)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")

    def gone() -> bool:
        if sock is None:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # open, nothing sent: still waiting for its answer
        except ValueError:
            return False  # a TLS socket cannot peek: assume the client waits
        except OSError:
            return True

    return gone


def _error(status: int, message: str, **extra):
    """Return a JSON error; ``<``, ``>`` and ``&`` escaped so echoed input is inert even if sniffed as HTML."""
    import json

    from flask import Response

    body = json.dumps({"error": message, **extra}).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Response(body + "\n", status=status, mimetype="application/json")


def init_app(server: Flask, live: LiveData) -> None:
    """Register the API routes on ``server``."""

    host = socket.gethostname()
    salt = secrets.token_bytes(16)

    @server.after_request
    def which_worker(resp):
        """Say which process answered (behind a load balancer, with several workers), by an opaque id."""
        resp.headers["X-Panorama-Worker"] = worker_id(salt, host, os.getpid())  # the pid after gunicorn's fork
        return resp

    @server.get("/api/kpis")
    def api_kpis():
        """Return every KPI for ?district=<id>&window=<1h|24h|7d>."""
        try:
            window = check_window(request.args.get("window"))
            district = check_district(request.args.get("district"), live.district_ids())
            values = live.kpis(window, district)
        except BadParameter as exc:
            return _error(400, str(exc))
        except StoreUnavailable as exc:
            return _unavailable(exc)
        now = time.time()
        out = []
        for k in values:
            j = k.as_json()
            j["data_age_s"] = None if k.as_of is None else round(max(0.0, now - k.as_of), 1)
            out.append(j)
        return jsonify({"window": window, "district": district, "city": live.meta().get("city"),
                        "aqi_standard": live.settings.aqi_standard, "kpis": out})

    @server.get("/api/panels")
    def api_panels():
        """List every panel id, with its embed and data URLs."""
        from dashboard.export import FORMATS, get_panel, panel_ids

        return jsonify({"panels": [{"id": pid, "kind": get_panel(pid).kind, "label": get_panel(pid).label,
                                    "embed": f"/embed/{pid}",
                                    **{fmt: f"/api/panels/{pid}.{fmt}" for fmt in FORMATS}}
                                   for pid in panel_ids()]})

    @server.get("/api/panels/<path:name>")
    def api_panel(name: str):
        """Return a panel as .json, .csv, .png or .svg with the embed parameters (+ width, height, scale)."""
        from flask import Response

        from dashboard.export import (FORMATS, RenderAbandoned, RendererBusy, UnknownPanel, get_panel, panel_bytes,
                                      parse_request)

        pid, dot, fmt = name.rpartition(".")
        if not dot:
            return _error(404, "add a format to the panel id: .json, .csv, .png or .svg")
        try:
            get_panel(pid)
            if fmt not in FORMATS:
                raise BadParameter(f"unknown format {fmt[:20]!r}: choose one of {', '.join(FORMATS)}")
            req = parse_request(live, pid, {k: request.args.get(k) for k in request.args})
            body, ctype = panel_bytes(live, req, fmt, gone=client_gone(request.environ))
        except (RendererBusy, RenderAbandoned) as exc:
            resp = _error(503, str(exc))
            resp.headers["Retry-After"] = str(RendererBusy.retry_after)
            return resp
        except UnknownPanel as exc:
            return _error(404, str(exc))
        except BadParameter as exc:
            return _error(400, str(exc))
        except StoreUnavailable as exc:
            return _unavailable(exc)
        resp = Response(body, mimetype=ctype.split(";")[0])
        resp.headers["Content-Type"] = ctype
        resp.headers["Cache-Control"] = f"max-age={req.refresh}"
        if fmt in ("csv", "png", "svg"):
            resp.headers["Content-Disposition"] = f'inline; filename="{req.panel.id}.{fmt}"'
        return resp

    @server.get(GEOJSON_URL)
    def districts_geojson():
        """Return the district shapes the map draws (sent once; browsers cache them)."""
        from layers._common import districts_geojson as build

        try:
            body = json.dumps(build(live.static("districts")), separators=(",", ":"))
        except StoreUnavailable as exc:
            return _unavailable(exc)
        etag = hashlib.sha1(body.encode()).hexdigest()[:16]
        if request.if_none_match.contains(etag):
            return Response(status=304)
        resp = Response(body, mimetype="application/geo+json")
        resp.set_etag(etag)
        resp.cache_control.max_age = 3600
        resp.cache_control.public = True
        return resp

    @server.post("/ngsi-ld/notify")
    def ngsi_notify():
        """Import an NGSI-LD (or v2) notification: Authorization: Bearer <PANORAMA_NGSI_TOKEN>.

        Valid entities are stored and bad ones rejected one by one (kept in ``rejected``); the answer
        lists the rejections. 400 when nothing could be stored, 413 over ``PANORAMA_NGSI_MAX_BODY``.
        """
        import hmac

        from dashboard.importers import ImportProblem, decode_json, run_import
        from dashboard.importers.ngsi import import_each, reject_body

        settings = live.settings
        token = settings.ngsi_token
        if not token:
            return _error(503, "disabled: set PANORAMA_NGSI_TOKEN to accept NGSI-LD notifications")
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _error(401, "missing or wrong bearer token (send Authorization: Bearer <token>)")
        limit = settings.ngsi_max_body
        too_big = _error(413, f"body larger than {limit:,} bytes (PANORAMA_NGSI_MAX_BODY): split the notification")
        if (request.content_length or 0) > limit:
            return too_big
        raw = request.stream.read(limit + 1)
        if len(raw) > limit:
            return too_big
        source = "ngsi-ld/notify"
        tz = live.meta().get("timezone")
        try:
            body = decode_json(raw, "body")
            report = import_each(live.writer(), body, source, tz, settings.ngsi_allow_outside,
                                 prepare=lambda conn: _wait_at_most(conn, settings.write_wait_seconds))
        except ImportProblem as exc:
            reason = str(exc)
            run_import(live.writer(), lambda conn: reject_body(conn, source, raw, reason))
            return _error(400, reason)
        except STORE_OUTAGES as exc:  # busy (another writer's transaction) or away: the sender retries
            why = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            resp = _error(503, f"store busy or unavailable ({why}): nothing of this notification was stored; "
                               f"send it again after {RETRY_AFTER_S} s")
            resp.headers["Retry-After"] = str(RETRY_AFTER_S)
            return resp
        out = report.as_json()
        if report.counts.get("rejected") and not report.counts.get("entities"):
            first = "; ".join(r for _ln, r in report.problems[:3])
            return _error(400, f"no entity stored: {report.counts['rejected']} rejected ({first})", **out)
        return jsonify(out)

    @server.get("/health")
    def health():
        """Return the store's reachability and the newest data age per domain."""
        h = live.health()
        ticker = server.extensions.get("panorama_alerts")
        h["worker"]["alert_evaluations"] = ticker.evaluator.evaluations if ticker is not None else None
        if h["store"] != "ok":
            log.warning("health: store %s", h["store"])  # the driver's text stays in the log
            h["store"] = "unreachable"
        return jsonify(h), 200 if h["store"] == "ok" else 503
