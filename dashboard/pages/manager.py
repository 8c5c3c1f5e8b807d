"""The manager view at ``/``: the map with layer toggles, every KPI, a time window, district filter,
drill-down, live refresh. The URL carries district, window and layers."""
from __future__ import annotations

import logging
import time
from datetime import datetime

import dash_ag_grid as dag
from dash import ALL, Dash, Input, Output, Patch, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import views
from dashboard.pages import alerts_panel
from dashboard.refresh_cache import mark_shareable
from dashboard.kpis import KPI_BY_ID
from layers import DOMAINS
from dashboard.live import LiveData, StoreUnavailable
from dashboard.access import ADMIN, current, scope, view_key
from dashboard.login_page import account_corner
from dashboard.params import BadParameter, check_district, check_layers, check_window, parse_query, view_query
from dashboard.store.readmodel import WINDOWS
from dashboard.api import GEOJSON_URL
from dashboard.theme import THEMES
from layers import LAYER_BY_ID, LAYERS

LAYER_IDS = set(LAYER_BY_ID)
log = logging.getLogger("panorama.manager")

PATH = "/"
URL = "manager-url"  # the manager's own dcc.Location (its bookmarkable query)
#: The clock shows the city's time, whatever the browser's timezone.
CLOCK_JS = """function(n, tz){ try { return new Date().toLocaleTimeString('en-GB', {hour12: false, timeZone: tz}); }
catch (e) { return new Date().toLocaleTimeString('en-GB', {hour12: false}); } }"""
#: Spread the compact KPI states over the cards; a sparkline image is drawn from its points here
#: (assets/sparkline.js, the same drawing as views.spark_svg).
KPI_JS = """function(data, ids) {
    const nu = window.dash_clientside.no_update;
    if (!data) { return Array(7).fill(ids.map(() => nu)); }
    const col = (k) => ids.map(i => (data[i.id] ? data[i.id][k] : nu));
    const sparks = ids.map(i => data[i.id] ? window.panoramaSpark(data[i.id][6], %r) : nu);
    return [col(0), col(1), col(2), col(3), col(4), col(5), sparks];
}""" % THEMES["dark"]["accent"]
WINDOW_LABELS = {"1h": "Last hour", "24h": "24 hours", "7d": "7 days"}
#: The drill-down opens at once on a click (its KPI's name, "…" until the server's answer), and closes.
DRILL_JS = """function(kid, labels) {
    if (!kid) { return [true, ""]; }
    return [false, (labels[kid] || kid) + " …"];
}"""
#: The panels being recomputed after a change of window, district or layers are marked "loading"
#: until the answer (new KPI values, or the outage banner) arrives. Set on the element itself: a
#: callback that reads the refresh's outputs would wait for the refresh to finish.
LOADING_JS = """function(w, d, l) {
    const m = document.getElementById('main');
    if (m) { m.classList.add('loading'); }
    return window.dash_clientside.no_update;
}"""
LOADED_JS = """function(kpis, banner) {
    const m = document.getElementById('main');
    if (m) { m.classList.remove('loading'); }
    return window.dash_clientside.no_update;
}"""
#: The drill-down's table in the page's dark colours (dash-ag-grid's Theming API, AG Grid ≥ 33).
_T = THEMES["dark"]
#: The drill-down grid in the dark theme's colours (theme.py), through ag-grid's Theming API.
GRID_THEME = (f"themeAlpine.withParams({{backgroundColor: '{_T['panel_2']}', foregroundColor: '{_T['text']}', "
              f"headerBackgroundColor: '{_T['panel']}', headerTextColor: '{_T['muted']}', borderColor: '{_T['grid']}', "
              f"accentColor: '{_T['accent']}', oddRowBackgroundColor: '#172030', fontSize: 14, "
              "cellHorizontalPadding: 8, fontFamily: 'Inter, DejaVu Sans, sans-serif'})")


def _initial(live: LiveData, search: str):
    q = parse_query(search)
    notices = []
    try:
        window = check_window(q.get("window"))
    except BadParameter as exc:
        window, _ = "24h", notices.append(str(exc))
    try:
        district = check_district(q.get("district"), live.district_ids())
    except BadParameter as exc:
        district, _ = None, notices.append(str(exc))
    try:
        layers_on = check_layers(q.get("layers"))
    except BadParameter as exc:
        layers_on, _ = check_layers(None), notices.append(str(exc))
    if q.get("layers") in (None, ""):
        layers_on = default_layers(live, layers_on)
    return window, district, layers_on, notices


def url_kpi(live: LiveData, search: str) -> tuple[str | None, str | None]:
    """Return the KPI whose drill-down the URL opens (``kpi=``), None for none, and a notice when
    the URL names a KPI this city's page does not show."""
    kid = parse_query(search).get("kpi")
    if kid in (None, ""):
        return None, None
    if kid in KPI_BY_ID and kid in live.kpi_ids:
        return kid, None
    return None, f"unknown KPI {kid[:40]!r}"


def url_view(live: LiveData, search: str) -> tuple:
    """Return the (window, district, layers, drill-down KPI) a URL shows; invalid parts as the defaults."""
    window, district, layers_on, _ = _initial(live, search)
    return window, district, layers_on, url_kpi(live, search)[0]


def default_layers(live: LiveData, defaults: list[str]) -> list[str]:
    """Return the default layers without those of domains that have no assets in the city; when no
    domain layer is left, the first layer of a domain that needs no assets (service requests)."""
    on = [lid for lid in defaults if not (LAYER_BY_ID[lid].domain and live.no_assets(LAYER_BY_ID[lid].domain))]
    if not any(LAYER_BY_ID[lid].domain for lid in on):
        spare = next((d.layer.id for d in DOMAINS if d.layer is not None and not d.kinds), None)
        if spare:
            on.append(spare)
    return on


def _admin_link() -> list:
    """The "Admin" link of the header, for a signed-in admin only."""
    p = current()
    return [html.A("Admin", href="/admin", className="btn admin-link")] if p and p.kind == "user" and p.role == ADMIN \
        else []


def layout(live: LiveData, pathname: str = "/", search: str = ""):
    """Return the manager page for the query string ``search``."""
    try:
        window, district, layers_on, notices = _initial(live, search)
        kid, bad_kpi = url_kpi(live, search)
        notices += [bad_kpi] if bad_kpi else []
        now = time.time()
        params = live.params(now, window, district, geojson_url=GEOJSON_URL)
        frames = live.layer_frames()
        kpis = [k for k in live.kpis(window, district) if k.id in live.kpi_ids]
        fig = views.map_figure(live, frames, params, layers_on)
        # the open incidents' and the alerts' places (the dots over the rings): filled by the panel's refresh
        fig["data"] += [alerts_panel.incident_trace(), alerts_panel.marker_trace()]
    except StoreUnavailable as exc:
        log.warning("manager: store unavailable: %s", exc)  # the driver's text stays in the log
        return html.Div([html.H1("City Panorama"),
                         html.Div("The data store cannot be reached. This page retries on reload.",
                                  className="banner banner-error")], className="error-page")
    d = live.districts()
    mine = scope()  # a scoped viewer picks among their districts only, and never the whole city
    if mine is not None:
        d = d[d["id"].isin(mine)]
    refresh_ms = live.settings.refresh_seconds * 1000
    city = live.meta().get("city", "City")
    return html.Div([
        html.Header([
            html.Div([html.Span(city, className="city-name"), html.Span("City Panorama", className="product")],
                     className="brand"),
            html.Div([
                dcc.RadioItems(id="window", value=window, className="window-picker", inline=True,
                               options=[{"label": WINDOW_LABELS[w], "value": w} for w in WINDOWS]),
                dcc.Dropdown(id="district", value=district, placeholder="Whole city", clearable=mine is None,
                             className="district-picker",
                             options=[{"label": r.name, "value": r.id} for r in d.itertuples()]),
                html.Button("Whole city", id="whole-city", n_clicks=0, className="btn", hidden=mine is not None),
            ], className="controls"),
            *_admin_link(),
            html.Div([html.Span(id="clock", className="clock"),
                      html.Span(id="updated", className="updated")], className="status"),
            account_corner(pathname + (search if not search or search.startswith("?") else "?" + search)),
        ], className="topbar"),
        html.Div(id="banner", className="banner", children=" · ".join(notices), hidden=not notices),
        html.Main([
            html.Div([html.Div([
                dcc.Graph(id="map", figure=fig, className="map", config={
                    "scrollZoom": True, "displaylogo": False,
                    "modeBarButtonsToRemove": ["select2d", "lasso2d", "toImage"]}),
                dcc.Checklist(id="layers", value=layers_on, className="layer-toggles", inline=True,
                              options=[{"label": layer_label(live, layer), "value": layer.id} for layer in LAYERS]),
                html.Div(views.legend_block(params, layers_on), id="legend", className="legend",
                         tabIndex="0", title="Legend of the visible layers"),
            ], className="map-wrap"), alerts_panel.panel(live)], className="map-col"),
            html.Div(views.kpi_sections(kpis), id="kpis", className="kpi-panel"),
        ], id="main", className="main"),
        drill_panel(kid),
        dcc.Store(id="drill-kpi", data=kid),
        dcc.Store(id="kpi-live"),
        dcc.Store(id="loading-mark"),
        dcc.Store(id="kpi-labels", data={k.id: k.label for k in KPI_BY_ID.values()}),
        dcc.Store(id="city-tz", data=str(live.tz())),
        dcc.Store(id=alerts_panel.TRACE, data=len(fig["data"]) - 1),
        dcc.Store(id=alerts_panel.INCIDENT_TRACE, data=len(fig["data"]) - 2),
        dcc.Interval(id="tick", interval=refresh_ms, n_intervals=0),
        # the page's own view of the browser's URL: a callback of this page may not take the app
        # shell's "url" with this page's controls as inputs (on another page those are missing)
        dcc.Location(id=URL, refresh=False),
    ], className="manager")


def drill_panel(kid: str | None) -> html.Section:
    """Return the drill-down: a panel over the right of the page (seen wherever the KPI clicked
    was), a spinner over its chart and table while they are computed."""
    return html.Section(id="drill", className="drill", hidden=not kid, role="dialog", children=[
        html.Div([html.H2(id="drill-title"),
                  html.Button("Close", id="drill-close", n_clicks=0, className="btn")], className="drill-head"),
        dcc.Loading(id="drill-loading", type="circle", color=THEMES["dark"]["accent"],
                    overlay_style={"visibility": "visible", "opacity": 0.35}, children=html.Div([
                        dcc.Graph(id="drill-trend", config={"displaylogo": False}, className="drill-trend"),
                        dag.AgGrid(id="drill-grid", className="drill-grid", rowData=[], columnDefs=[],
                                   dashGridOptions={"domLayout": "autoHeight", "theme": {"function": GRID_THEME}},
                                   # every column in the panel's width: long names and headers wrap
                                   defaultColDef={"wrapText": True, "autoHeight": True, "wrapHeaderText": True,
                                                  "autoHeaderHeight": True, "resizable": True, "minWidth": 72},
                                   columnSize="responsiveSizeToFit"),
                    ], className="drill-body")),
    ])


def layer_label(live: LiveData, layer) -> str:
    """Return a layer toggle's label; a layer whose domain has no assets in the city says so."""
    empty = live.no_assets(layer.domain) if layer.domain else ""
    return f"{layer.name} ({empty})" if empty else layer.name


LIVE_TICKS = ("tick",)  # intervals of the live refresh, whose answers screens share (refresh_cache)


def register(app: Dash, live: LiveData) -> None:
    """Attach the manager page's callbacks to ``app``."""

    @app.callback(Output("district", "value"),
                  Input("map", "clickData"), Input("whole-city", "n_clicks"), State("district", "value"),
                  prevent_initial_call=True)
    def pick_district(click, _n, current):
        """Select the clicked district; click it again (or 'Whole city') to clear."""
        trig = callback_context.triggered_id
        mine = scope()  # a scoped viewer stays in their districts: no whole city, no other district's shape
        if trig == "whole-city":
            return None if mine is None else no_update
        pts = click.get("points") if isinstance(click, dict) else None
        loc = next((p["location"] for p in pts if isinstance(p, dict) and isinstance(p.get("location"), str)),
                   None) if isinstance(pts, list) else None
        try:
            if loc is None or loc not in live.district_ids() or mine is not None and loc not in mine:
                return no_update
        except StoreUnavailable:
            return no_update
        if loc == current:
            return None if mine is None else no_update
        return loc

    @app.callback(Output("map", "figure", allow_duplicate=True), Input("district", "value"),
                  prevent_initial_call=True)
    def fly_to(district):
        """Zoom the map to the picked district, or back to the whole city (only when the pick changes:
        the live refreshes leave a view the user moved alone)."""
        try:
            return view_patch(live, check_district(district, live.district_ids()))
        except (StoreUnavailable, BadParameter):
            return no_update

    @app.callback(Output(URL, "search"), Output("window", "value"),
                  Output("district", "value", allow_duplicate=True), Output("layers", "value"),
                  Output("drill-kpi", "data", allow_duplicate=True),
                  Input(URL, "search"), Input("window", "value"), Input("district", "value"),
                  Input("layers", "value"), Input("drill-kpi", "data"),
                  prevent_initial_call=True)
    def sync_url(search, window, district, layers_on, kid):
        """Keep the URL a bookmark of the view; when the URL changes (the browser's back and forward
        buttons), the controls and the drill-down follow it. One callback both ways (two would be
        a circular dependency)."""
        try:
            return url_sync(live, callback_context.triggered_id, search, window, district, layers_on, kid)
        except (BadParameter, StoreUnavailable):
            return (no_update,) * 5

    @app.callback(Output("legend", "children"), Input("layers", "value"), prevent_initial_call=True)
    def legend(layers_on):
        """Show the legend of the visible layers."""
        try:
            return views.legend_block(live.params(time.time()), check_layers(layers_on or []))
        except (BadParameter, StoreUnavailable):
            return no_update

    kpi_all = {"type": "kpi", "id": ALL}

    @app.callback(
        Output("map", "figure"),
        Output("kpi-live", "data"),
        Output("updated", "children"),
        Output("banner", "children"),
        Output("banner", "hidden"),
        Input("tick", "n_intervals"), Input("window", "value"), Input("district", "value"), Input("layers", "value"),
        State(kpi_all, "id"),
        prevent_initial_call=True,
    )
    def refresh(_n, window, district, layers_on, ids):
        """Send only the values that changed: map colours, KPI texts, sparklines (computed once per bucket).

        The KPI values travel as one compact object that a clientside callback spreads over the
        cards: per-component outputs would repeat every component id in every response.
        """
        now = time.time()
        try:
            layers_on = [lid for lid in LAYER_BY_ID if lid in check_layers(layers_on or [])]  # one order: one key
            window = check_window(window)
        except BadParameter:
            raise PreventUpdate from None  # a forged request: nothing to show
        if not isinstance(ids, list):
            raise PreventUpdate
        order = [i.get("id") for i in ids if isinstance(i, dict)]
        shown = list(live.kpi_ids)  # the cards the page has: the answer holds them all, whatever the order asked
        if len(order) != len(ids) or not all(isinstance(i, str) and i in shown for i in order):
            raise PreventUpdate
        try:
            district = check_district(district, live.district_ids())
            key = f"mgr:{window}:{district or '*'}:{','.join(layers_on)}:{view_key()}"
            patch, every, updated = live.cached(key, lambda: _render(live, window, district, layers_on, shown))
            out = patch, {i: every[i] for i in order if i in every}, updated
        except (StoreUnavailable, BadParameter) as exc:
            if live.stale_since is None:
                log.warning("manager refresh failed: %s", exc)
            since = live.stale_since = live.stale_since or now
            why = exc if isinstance(exc, BadParameter) else "the data store cannot be reached"  # driver text: log
            msg = f"STALE since {datetime.fromtimestamp(since, live.tz()).strftime('%H:%M:%S')} — {why}"
            return no_update, no_update, no_update, msg, False
        live.stale_since = None
        mark_shareable()
        return (*out, "", True)

    app.clientside_callback(
        KPI_JS,
        Output({"type": "kpi-value", "id": ALL}, "children"),
        Output({"type": "kpi-delta", "id": ALL}, "children"),
        Output({"type": "kpi-age", "id": ALL}, "children"),
        Output({"type": "kpi-note", "id": ALL}, "children"),
        Output({"type": "kpi-status", "id": ALL}, "children"),
        Output(kpi_all, "className"),
        Output({"type": "kpi-spark", "id": ALL}, "src"),
        Input("kpi-live", "data"), State(kpi_all, "id"),
        prevent_initial_call=True,
    )

    app.clientside_callback(CLOCK_JS, Output("clock", "children"), Input("tick", "n_intervals"), State("city-tz", "data"))

    @app.callback(Output("drill-kpi", "data"), Input({"type": "kpi", "id": ALL}, "n_clicks"),
                  Input("drill-close", "n_clicks"), prevent_initial_call=True)
    def open_drill(clicks, _close):
        """Open the drill-down of the clicked KPI, or close it."""
        trig = callback_context.triggered_id
        if trig == "drill-close" or not (isinstance(clicks, list) and any(clicks)):
            return None
        kid = trig.get("id") if isinstance(trig, dict) else None
        return kid if isinstance(kid, str) and kid in KPI_BY_ID else no_update

    alerts_panel.register(app, live)

    app.clientside_callback(DRILL_JS, Output("drill", "hidden"), Output("drill-title", "children", allow_duplicate=True),
                            Input("drill-kpi", "data"), State("kpi-labels", "data"), prevent_initial_call=True)
    app.clientside_callback(LOADING_JS, Output("loading-mark", "data"),
                            Input("window", "value"), Input("district", "value"), Input("layers", "value"),
                            prevent_initial_call=True)
    app.clientside_callback(LOADED_JS, Output("loading-mark", "data", allow_duplicate=True),
                            Input("kpi-live", "data"), Input("banner", "children"), prevent_initial_call=True)

    @app.callback(Output("drill-title", "children"), Output("drill-trend", "figure"),
                  Output("drill-grid", "rowData"), Output("drill-grid", "columnDefs"),
                  Input("drill-kpi", "data"), Input("window", "value"), Input("district", "value"))
    def drill(kid, window, district):
        """Show a KPI's trend over the window (its thresholds drawn) and the worst places now."""
        if not isinstance(kid, str) or kid not in KPI_BY_ID:
            return "", {}, [], []
        try:  # validated before anything is computed or cached for it
            window, district = check_window(window), check_district(district, live.district_ids())
        except BadParameter:
            return "", {}, [], []
        except StoreUnavailable:
            return no_update, no_update, no_update, no_update
        try:
            kv = next(k for k in live.kpis(window, district) if k.id == kid)
            frames = live.layer_frames()
        except StoreUnavailable:
            return no_update, no_update, no_update, no_update
        params = live.params(time.time(), window, district)
        df = views.worst_places(live, kv.domain, frames, params)
        rows = [] if df is None else df.to_dict("records")
        cols = [] if df is None else [{"field": c, "headerName": c.replace("_", " "), "flex": 2 if c == "place" else 1}
                                      for c in df.columns]
        where = dict(zip(live.districts()["id"], live.districts()["name"])).get(district, "whole city")
        title = f"{kv.label} — {WINDOW_LABELS[window].lower()}, {where}"
        trend = views.trend_figure(kv, live.tz(), thresholds=views.kpi_thresholds(kid, live.thresholds))
        return title, trend, rows, cols


def url_sync(live: LiveData, trigger, search, window, district, layers_on, kid) -> tuple:
    """Return (URL query, window, district, layers, drill-down KPI) to set: the controls' view as
    the URL when they changed, the URL's view in the controls when it changed (no_update where a
    value is already shown, so nothing is recomputed for it and no history entry is added)."""
    shown = url_view(live, search if isinstance(search, str) else "")
    if trigger == URL:
        now = (window, district, layers_on, kid)
        same = [a == b if i != 2 else _layer_set(a) == _layer_set(b) for i, (a, b) in enumerate(zip(shown, now))]
        return (no_update, *(no_update if s else v for s, v in zip(same, shown)))
    view = (check_window(window), check_district(district, live.district_ids()), check_layers(layers_on or []),
            kid if isinstance(kid, str) and kid in KPI_BY_ID and kid in live.kpi_ids else None)
    # ticking an area layer turns the other one off (check_layers keeps the one just ticked)
    layers_out = view[2] if set(view[2]) != _layer_set(layers_on) else no_update
    if view[:2] == shown[:2] and set(view[2]) == set(shown[2]) and view[3] == shown[3]:
        return (no_update, no_update, no_update, layers_out, no_update)  # the URL shows this view already
    return (view_query(*view), no_update, no_update, layers_out, no_update)


def _layer_set(layers) -> set | None:
    """Return a layer list as a set (None when it is not a list of ids: a forged request)."""
    if not layers:
        return set()
    return set(layers) if isinstance(layers, list) and all(isinstance(x, str) for x in layers) else None


def view_patch(live: LiveData, district: str | None) -> Patch:
    """Return a Patch of the map's view: fitted to ``district``, or the whole city's."""
    view = views.view_for(live, district)
    p = Patch()
    p["layout"]["map"]["center"] = view["center"]
    p["layout"]["map"]["zoom"] = view["zoom"]
    # a new uirevision per pick: plotly drops the view the user dragged to and takes this one; the
    # refreshes that follow keep it, so a view the user moves after the pick stays
    p["layout"]["map"]["uirevision"] = f"pick:{district or '*'}"
    return p


def _render(live: LiveData, window: str, district: str | None, layers_on: list[str], order: list[str]) -> tuple:
    """Return the refresh outputs: map Patch, KPI states {id: [value, delta, age, note, status, class,
    sparkline]}, 'updated' text."""
    now = time.time()
    frames = live.layer_frames()
    kpis = {k.id: k for k in live.kpis(window, district)}
    params = live.params(now, window, district)
    patch = views.map_patch(live, frames, params, layers_on)
    states = {}
    for i in (i for i in order if i in kpis):  # a KPI the city lists but the store cannot compute has no card
        s = views.kpi_state(kpis[i], now)
        states[i] = [s["value"], s["delta"], s["age"], s["note"], s["status"], s["class"], views.spark_points(kpis[i])]
    updated = "updated " + datetime.fromtimestamp(now, live.tz()).strftime("%H:%M:%S")
    return patch, states, updated
