"""``/embed/<panel-id>``: one panel alone, live, filling its iframe.

Panel ids: a KPI id (``traffic.tti``), ``map-<layer id>`` (``map-traffic``) or ``map`` (the whole map,
``?layers=traffic,air_quality``). Query: ``district``, ``window`` (1h|24h|7d), ``theme`` (dark|light),
``refresh`` (seconds). An unknown id answers HTTP 404 and a bad parameter 400, with a short page,
before Dash serves its index (Dash renders pages client-side, so the status must be decided here).
"""
from __future__ import annotations

import html as htmlmod
import logging
import time
from urllib.parse import unquote

from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import Response, request

from dashboard import views
from dashboard.refresh_cache import mark_shareable
from dashboard.export import UnknownPanel, kpi_value, local_time, parse_request
from dashboard.live import LiveData, StoreUnavailable
from dashboard.params import BadParameter, parse_query
from dashboard.theme import THEMES
from layers import LAYER_BY_ID

log = logging.getLogger("panorama.embed")

PATH = "/embed"
PREFIX = "/embed/"


def panel_id_of(pathname: str) -> str:
    """Return the panel id of an ``/embed/<id>`` path (percent-decoded, no trailing slash)."""
    return unquote((pathname or "")[len(PREFIX):]).rstrip("/")


def error_html(status: int, message: str, theme: str = "dark", title: str | None = None) -> str:
    """Return a short, self-contained error page (the message escaped)."""
    t = THEMES.get(theme, THEMES["dark"])
    title = title or {400: "Bad request", 404: "Panel not found"}.get(status, "Unavailable")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body style='margin:0;font:15px sans-serif;background:{t['bg']};color:{t['text']}'>"
            f"<div style='padding:16px'><h1 style='font-size:18px;margin:0 0 8px'>{status} · {title}</h1>"
            f"<p style='margin:0;color:{t['muted']}'>{htmlmod.escape(message)}</p></div></body></html>")


def _kpi_panel(live: LiveData, req, spec: dict):
    k = kpi_value(live, req)
    s = views.kpi_state(k)
    return html.Div(id="embed-kpi", className=f"embed embed-kpi theme-{req.theme} {s['class']}", children=[
        html.Div([html.Span(k.label, className="kpi-label"),
                  html.Span(_where(live, req.district), className="embed-where"),
                  html.Span(s["status"], id="embed-status", className="kpi-badge")], className="kpi-head"),
        html.Div([html.Span(s["value"], id="embed-value", className="kpi-value embed-value"),
                  html.Span(k.unit, className="kpi-unit")], className="kpi-main"),
        html.Div(s["delta"], id="embed-delta", className="kpi-delta"),
        dcc.Graph(id="embed-spark", figure=views.spark_figure(k, req.theme), className="embed-spark",
                  config={"staticPlot": True, "displayModeBar": False}, responsive=True),
        html.Div([html.Span(s["note"], id="embed-note", className="kpi-note"),
                  html.Span(s["age"], id="embed-age", className="kpi-age")], className="kpi-foot"),
        dcc.Store(id="embed-spec", data=spec),
        dcc.Interval(id="embed-kpi-tick", interval=req.refresh * 1000, n_intervals=0),
    ])


def _map_panel(live: LiveData, req, spec: dict):
    now = time.time()
    frames = live.layer_frames()
    params = live.params(now, req.window, req.district, req.theme)
    fig = views.map_figure(live, frames, params, list(req.layers), layer_ids=list(req.layers))
    legend_layers = [lid for lid in req.layers if lid != "districts"] or list(req.layers)
    empty = [live.no_assets(LAYER_BY_ID[lid].domain) for lid in legend_layers if LAYER_BY_ID[lid].domain]
    return html.Div(id="embed-map-panel", className=f"embed embed-map theme-{req.theme}", children=[
        html.Div([html.Span(req.panel.label, className="embed-title"),
                  html.Span(_where(live, req.district), className="embed-where"),
                  *[html.Span(e, className="embed-empty") for e in empty if e],
                  html.Span("as of " + local_time(live, frames.get("now")), id="embed-updated",
                            className="embed-asof")], className="embed-head"),
        dcc.Graph(id="embed-map", figure=fig, className="embed-graph", responsive=True,
                  config={"scrollZoom": True, "displaylogo": False,
                          "modeBarButtonsToRemove": ["select2d", "lasso2d", "toImage"]}),
        html.Div(views.legend_block(params, legend_layers), className="legend embed-legend"),
        dcc.Store(id="embed-spec", data=spec),
        dcc.Interval(id="embed-map-tick", interval=req.refresh * 1000, n_intervals=0),
    ])


def _where(live: LiveData, district: str | None) -> str:
    if not district:
        return "whole city"
    return dict(zip(live.districts()["id"], live.districts()["name"])).get(district, district)


def layout(live: LiveData, pathname: str = PREFIX, search: str = ""):
    """Return the embedded panel for ``pathname`` and the query string ``search``."""
    args = parse_query(search)
    try:
        req = parse_request(live, panel_id_of(pathname), args)
        spec = {"panel": req.panel.id, "args": {k: v for k, v in args.items() if isinstance(v, str)}}
        if req.panel.kind == "kpi":
            return _kpi_panel(live, req, spec)
        return _map_panel(live, req, spec)
    except (UnknownPanel, BadParameter) as exc:
        return html.Div([html.H1("Panel unavailable"), html.P(str(exc))], className="embed error-page")
    except StoreUnavailable as exc:
        log.warning("embed: store unavailable: %s", exc)  # the driver's text stays in the log
        return html.Div([html.H1("Data store unreachable"), html.P("Retrying on reload.")],
                        className="embed error-page")


def _spec(spec) -> tuple[str, dict]:
    """Return (panel id, query args) of the ``embed-spec`` store; raise BadParameter if it is not one."""
    if not (isinstance(spec, dict) and isinstance(spec.get("panel"), str) and isinstance(spec.get("args", {}), dict)):
        raise BadParameter("not an embed spec")
    args = spec.get("args") or {}
    if len(args) > 20 or not all(isinstance(v, str) for v in args.values()):
        raise BadParameter("embed args must be a few strings")
    return spec["panel"], args


LIVE_TICKS = ("embed-kpi-tick", "embed-map-tick")  # live refreshes whose answers viewers share


def register(app: Dash, live: LiveData) -> None:
    """Attach the embed page's HTTP checks and live callbacks to ``app``."""

    @app.server.before_request
    def check_embed():
        """Answer 404/400 for an unknown panel or a bad parameter, before Dash serves its index."""
        if not request.path.startswith(PREFIX):
            return None
        args = {k: request.args.get(k) for k in request.args}
        theme = args.get("theme") if args.get("theme") in THEMES else "dark"
        try:
            parse_request(live, panel_id_of(request.path), args)
        except UnknownPanel as exc:
            return Response(error_html(404, str(exc), theme), 404, mimetype="text/html")
        except BadParameter as exc:
            return Response(error_html(400, str(exc), theme), 400, mimetype="text/html")
        except StoreUnavailable as exc:
            log.warning("embed: store unavailable: %s", exc)
            return Response(error_html(503, "the data store cannot be reached; retry shortly", theme), 503,
                            mimetype="text/html")
        return None

    @app.callback(Output("embed-value", "children"), Output("embed-delta", "children"),
                  Output("embed-age", "children"), Output("embed-note", "children"),
                  Output("embed-status", "children"), Output("embed-kpi", "className"),
                  Output("embed-spark", "figure"),
                  Input("embed-kpi-tick", "n_intervals"), State("embed-spec", "data"), prevent_initial_call=True)
    def refresh_kpi(_n, spec):
        """Send the KPI's new number, change, age, status and sparkline points."""
        try:
            req = parse_request(live, *_spec(spec))
            k = kpi_value(live, req)
        except (UnknownPanel, BadParameter, StoreUnavailable, KeyError, TypeError):
            return (no_update,) * 7
        s = views.kpi_state(k)
        mark_shareable()
        return (s["value"], s["delta"], s["age"], s["note"], s["status"],
                f"embed embed-kpi theme-{req.theme} {s['class']}", views.spark_patch(k))

    @app.callback(Output("embed-map", "figure"), Output("embed-updated", "children"),
                  Input("embed-map-tick", "n_intervals"), State("embed-spec", "data"), prevent_initial_call=True)
    def refresh_map(_n, spec):
        """Send only the map's changing values (colours, hover numbers)."""
        try:
            req = parse_request(live, *_spec(spec))
            frames = live.layer_frames()
        except (UnknownPanel, BadParameter, StoreUnavailable, KeyError, TypeError):
            return no_update, no_update
        now = time.time()
        params = live.params(now, req.window, req.district, req.theme)
        patch = views.map_patch(live, frames, params, list(req.layers), layer_ids=list(req.layers))
        mark_shareable()
        return patch, "as of " + local_time(live, frames.get("now"))

