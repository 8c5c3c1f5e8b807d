"""The manager's alerts panel: a grid of alerts with filters, the selected alert's history, its place
on the map, and (for operators) the lifecycle actions.

The grid refreshes on the page's tick with the same answer for every viewer of the same filters and
districts (shared through the refresh cache); an action's answer carries the new revision, so the
one who acted sees the change at once while everyone else sees it at the next refresh. Actions run
:func:`dashboard.alerts.store.act` as the signed-in person (``access.current()``): the operator rule
in :data:`dashboard.access.CALLBACKS` refuses anyone else before the callback runs, and the callback
checks again (a device or an embed is never an actor).
"""
from __future__ import annotations

import logging
import time

import dash_ag_grid as dag
from dash import Dash, Input, Output, Patch, State, callback_context, dcc, html, no_update

from dashboard import access
from dashboard.access import OPERATOR, RANK, VIEWER, Rule
from dashboard.alerts import screen, store
from dashboard.live import LiveData, StoreUnavailable
from dashboard.params import BadParameter, check_district
from dashboard.refresh_cache import mark_shareable
from layers import DOMAINS

log = logging.getLogger("panorama.manager")

GRID, COUNT, STATE, SEVERITY, DOMAIN = "alerts-grid", "alerts-count", "alerts-state", "alerts-severity", "alerts-domain"
HISTORY, TITLE, MESSAGE, REV, SELECTED, TRACE = ("alert-history", "alert-title", "alert-message", "alerts-rev",
                                                 "alert-selected", "alert-trace")
NOTE, ASSIGNEE, KIND, MINUTES = "alert-note", "alert-assignee", "alert-assign-kind", "alert-minutes"
#: The action buttons: id -> (store action, label).
BUTTONS = {"alert-ack": ("ack", "Acknowledge"), "alert-assign": ("assign", "Assign"),
           "alert-resolve": ("resolve", "Resolve"), "alert-reopen": ("reopen", "Reopen"),
           "alert-shelve": ("shelve", "Shelve"), "alert-comment": ("comment", "Comment")}
DOMAIN_IDS = [d.id for d in DOMAINS]
SHELVE_DEFAULT = 30
_SEV_STYLE = {"styleConditions": [
    {"condition": f"params.value == '{word}'", "style": {"backgroundColor": colour, "color": ink, "fontWeight": 700}}
    for word, colour, ink in screen.SEVERITY.values()]}
#: Plain columns and declarative options only: dash-ag-grid reads its "function" strings with its own
#: parser (no eval), and no option here needs AG Grid's string expressions (which would).
COLUMNS = [
    {"field": "severity", "headerName": "Severity", "cellStyle": _SEV_STYLE, "minWidth": 104, "flex": 2},
    {"field": "since", "headerName": "Since", "minWidth": 72, "flex": 1, "sortable": False},  # listed newest first
    {"field": "place", "headerName": "Place", "minWidth": 118, "flex": 3},
    {"field": "summary", "headerName": "Rule / summary", "minWidth": 104, "flex": 4},
    {"field": "state", "headerName": "State", "minWidth": 64, "flex": 1},
    {"field": "status", "headerName": "Status", "minWidth": 84, "flex": 2},
    {"field": "owner", "headerName": "Owner", "minWidth": 76, "flex": 2},
    {"field": "repeat", "headerName": "Repeat count", "minWidth": 78, "flex": 1, "type": "numericColumn"},
]
ACTION_RULE = Rule(OPERATOR, why="acts on an alert as the signed-in operator (dashboard.alerts.store.act)")
for _name, _rule in {"alert_rows": Rule(VIEWER), "alert_pick": Rule(VIEWER), "alert_act": ACTION_RULE}.items():
    access.register(access.CALLBACKS, f"{__name__}.{_name}", _rule)


def may_act() -> bool:
    """Return whether the viewer of this page may act on alerts: a signed-in operator or admin."""
    p = access.current()
    return p is None or p.kind == "user" and RANK.get(p.role, -1) >= RANK[OPERATOR]


PANEL_CLASS = "domain alerts-panel"


def marker_trace() -> dict:
    """Return the map's trace of firing alerts' places (filled by :func:`marker_patch`): circles in the
    severity's colour, one trace on the page's one map (no WebGL context of its own)."""
    return {"type": "scattermap", "mode": "markers", "lon": [], "lat": [], "text": [], "customdata": [],
            "marker": {"size": 20, "color": [], "opacity": 0.9}, "hovertemplate": "%{text}<extra></extra>",
            "name": "alerts", "meta": {"layer": "alerts"}, "uid": "alerts", "showlegend": False}


def panel(live: LiveData) -> html.Section:
    """Return the alerts panel (filters, grid, the selected alert, the actions for operators)."""
    grid_opts = {"rowSelection": {"mode": "singleRow", "checkboxes": False, "enableClickSelection": True},
                 "theme": {"function": _grid_theme()}, "animateRows": False,
                 "localeText": {"noRowsToShow": "No alert matches these filters"}}
    actions = None
    if may_act():
        actions = html.Div([
            dcc.Input(id=NOTE, type="text", placeholder="Note (why, what was done)", className="alert-note",
                      maxLength=store.MAX_NOTE, debounce=False),
            html.Div([html.Button(BUTTONS[b][1], id=b, n_clicks=0, className="btn alert-btn")
                      for b in ("alert-ack", "alert-resolve", "alert-reopen", "alert-comment")], className="alert-btns"),
            html.Div([dcc.Input(id=ASSIGNEE, type="text", placeholder="user or team", className="alert-assignee",
                                maxLength=100),
                      dcc.RadioItems(id=KIND, value="user", inline=True, className="alert-kind",
                                     options=[{"label": "person", "value": "user"}, {"label": "team", "value": "team"}]),
                      html.Button("Assign", id="alert-assign", n_clicks=0, className="btn alert-btn")],
                     className="alert-row"),
            html.Div([dcc.Input(id=MINUTES, type="number", value=SHELVE_DEFAULT, min=1, max=store.MAX_SHELVE_MIN,
                                className="alert-minutes"), html.Span("min", className="alert-unit"),
                      html.Button("Shelve", id="alert-shelve", n_clicks=0, className="btn alert-btn")],
                     className="alert-row"),
        ], id="alert-actions", className="alert-actions")
    return html.Section([
        html.Div([html.H2("Alerts", className="domain-title"), html.Span(id=COUNT, className="alerts-count"),
                  html.Div([
            dcc.Dropdown(id=STATE, value="open", clearable=False, searchable=False, className="alerts-filter",
                         options=[{"label": k, "value": k} for k in screen.STATE_FILTERS]),
            dcc.Dropdown(id=SEVERITY, value=[], multi=True, searchable=False, placeholder="any severity",
                         className="alerts-filter", options=[{"label": w, "value": s}
                                                             for s, (w, _c, _i) in screen.SEVERITY.items()]),
            dcc.Dropdown(id=DOMAIN, value=None, searchable=False, placeholder="any domain", className="alerts-filter",
                         options=[{"label": d.label, "value": d.id} for d in DOMAINS]),
        ], className="alerts-filters")], className="alerts-head"),
        html.Div([dag.AgGrid(id=GRID, className="alerts-grid", rowData=[], columnDefs=COLUMNS, getRowId="params.data.id",
                   dashGridOptions=grid_opts, defaultColDef={"resizable": True, "sortable": True, "wrapText": True,
                                                             "autoHeight": True, "wrapHeaderText": True,
                                                             "autoHeaderHeight": True},
                   style={"height": "100%", "width": "100%"}),
        html.Div([html.Div("Select an alert to see its history and its place on the map", id=TITLE,
                           className="alert-title"),
                  actions,
                  html.Div("", id=MESSAGE, className="alert-message", role="status"),
                  html.Ol([], id=HISTORY, className="alert-history")], className="alert-detail")],
            className="alerts-body"),
        dcc.Store(id=REV, data=0),
        dcc.Store(id=SELECTED, data=None),
    ], id="alerts-panel", className=PANEL_CLASS + " alerts-none")


def _grid_theme() -> str:
    from dashboard.pages.manager import GRID_THEME

    return GRID_THEME


def _filters(state, severities, domain) -> tuple:
    """Return the checked filters (a forged value: BadParameter)."""
    if state not in screen.STATE_FILTERS:
        raise BadParameter("state: one of " + ", ".join(screen.STATE_FILTERS))
    severities = severities or []
    if not isinstance(severities, list) or not all(s in screen.SEVERITY for s in severities):
        raise BadParameter("severity: " + ", ".join(screen.SEVERITY))
    if domain is not None and domain not in DOMAIN_IDS:
        raise BadParameter("domain: " + ", ".join(DOMAIN_IDS))
    return screen.STATE_FILTERS[state], tuple(sorted(severities)), domain


def rows_for(live: LiveData, state, severities, domain, district, now: float | None = None) -> list[dict]:
    """Return the alerts of the panel's filters for the page's district, in the viewer's districts."""
    now = time.time() if now is None else now
    states, sevs, domain = _filters(state, severities, domain)
    return screen.read_alerts(live, states, sevs, district=district, domain=domain, districts=access.scope(), now=now)


def marker_patch(rows: list[dict], trace: int) -> Patch:
    """Return a Patch of the map's alert trace: the open alerts with a place, the most severe drawn last."""
    pts = [r for r in reversed(rows) if r["place"]["point"] and r["status"] != store.RESOLVED
           and r["state"] in store.OPEN_STATES]
    p = Patch()
    t = p["data"][trace]
    t["lon"] = [r["place"]["point"][0] for r in pts]
    t["lat"] = [r["place"]["point"][1] for r in pts]
    t["text"] = [f"{screen.SEVERITY[r['severity']][0]} · {r['place']['name']} · {screen.summary_of(r)}" for r in pts]
    t["customdata"] = [r["id"] for r in pts]
    t["marker"]["color"] = [screen.SEVERITY[r["severity"]][1] for r in pts]
    return p


def zoom_patch(live: LiveData, row: dict) -> Patch:
    """Return a Patch of the map's view onto an alert's place (its asset, else its district, else the city)."""
    from dashboard import views

    v = row["place"]["view"]
    if v is None:
        view = views.view_for(live, None)
    elif "center" in v:
        view = {"center": v["center"], "zoom": v["zoom"]}
    else:
        view = views.fit_view(v["lon"], v["lat"], px=views.MAP_PX, insets=views.MAP_INSETS)
    p = Patch()
    p["layout"]["map"]["center"] = view["center"]
    p["layout"]["map"]["zoom"] = view["zoom"]
    p["layout"]["map"]["uirevision"] = f"alert:{row['id']}"  # the user's own view gives way to this one
    return p


def _one(live: LiveData, alert_id) -> dict | None:
    """Return the alert ``alert_id`` with its place if the viewer may see it, else None."""
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        return None
    row = live.read(lambda c: store.get(c, alert_id))
    districts = access.scope()
    if row is None or districts is not None and row["district_id"] not in districts:
        return None
    names = dict(zip(live.districts()["id"], live.districts()["name"]))
    row["shelved"] = row["shelved_until"] is not None and row["shelved_until"] > time.time()
    row["place"] = screen.place_of(live, row, screen._places(live, [row]), names)
    return row


def detail(live: LiveData, row: dict) -> tuple[str, list]:
    """Return an alert's title line and its history, oldest first."""
    events = live.read(lambda c: store.history(c, row["id"]))
    title = (f"#{row['id']} {screen.SEVERITY[row['severity']][0]} · {row['place']['name']} · "
             f"{screen.summary_of(row)} · {row['status']}")
    return title, [html.Li(line) for line in screen.history_lines(events, live.tz())]


def register(app: Dash, live: LiveData) -> None:
    """Attach the alerts panel's callbacks to ``app``."""

    @app.callback(Output(GRID, "rowData"), Output(COUNT, "children"),
                  Output("map", "figure", allow_duplicate=True), Output("alerts-panel", "className"),
                  Input("tick", "n_intervals"), Input(STATE, "value"), Input(SEVERITY, "value"),
                  Input(DOMAIN, "value"), Input("district", "value"), Input(REV, "data"), State(TRACE, "data"),
                  prevent_initial_call="initial_duplicate")
    def alert_rows(_n, state, severities, domain, district, rev, trace):
        """List the alerts of the filters (and draw the open ones on the map): the same answer for every
        viewer of these filters and districts in this refresh bucket."""
        now = time.time()
        try:
            district = check_district(district, live.district_ids())
            if not isinstance(rev, int) or isinstance(rev, bool):
                raise BadParameter("rev")
            states, sevs, domain = _filters(state, severities, domain)
            key = f"alert-rows:{state}:{','.join(sevs)}:{domain}:{district or '*'}:{rev}:{access.view_key()}"
            rows = live.cached(key, lambda: rows_for(live, state, list(sevs), domain, district))
        except (BadParameter, TypeError):
            return no_update, "", no_update, no_update
        except StoreUnavailable:
            return no_update, "alerts cannot be read right now", no_update, no_update
        n_open = sum(r["state"] in store.OPEN_STATES and r["status"] != store.RESOLVED for r in rows)
        count = f"{len(rows)} shown" + (f" · {n_open} firing" if n_open else "")
        fig = marker_patch(rows, trace) if isinstance(trace, int) and not isinstance(trace, bool) else no_update
        mark_shareable()
        # nothing listed: the panel folds to its head and the map takes the room back
        return [screen.grid_row(r, now) for r in rows], count, fig, PANEL_CLASS + ("" if rows else " alerts-none")

    @app.callback(Output(SELECTED, "data"), Output(TITLE, "children"), Output(HISTORY, "children"),
                  Output("map", "figure", allow_duplicate=True),
                  Input(GRID, "selectedRows"), Input(REV, "data"), State(SELECTED, "data"), prevent_initial_call=True)
    def alert_pick(selected, _rev, current):
        """Show the selected alert's history and zoom the map to its place (a new action: its history again)."""
        trig = callback_context.triggered_id
        rid = current
        if trig == GRID:
            first = selected[0] if isinstance(selected, list) and selected and isinstance(selected[0], dict) else None
            rid = first.get("id") if first else None
        try:
            row = _one(live, rid)
            if row is None:
                return None, "Select an alert to see its history and its place on the map", [], no_update
            title, hist = detail(live, row)
        except StoreUnavailable:
            return no_update, "alerts cannot be read right now", no_update, no_update
        zoom = zoom_patch(live, row) if trig == GRID and rid != current else no_update
        return row["id"], title, hist, zoom

    @app.callback(Output(MESSAGE, "children"), Output(REV, "data", allow_duplicate=True),
                  *[Input(b, "n_clicks") for b in BUTTONS],
                  State(SELECTED, "data"), State(NOTE, "value"), State(ASSIGNEE, "value"), State(KIND, "value"),
                  State(MINUTES, "value"), prevent_initial_call=True)
    def alert_act(*args):
        """Do the clicked action on the selected alert as the signed-in operator; say what happened."""
        alert_id, note, to, kind, minutes = args[len(BUTTONS):]
        button = callback_context.triggered_id
        p = access.current()
        if p is not None and p.kind != "user":
            raise access.Forbidden("sign in as a person to act on alerts")
        if button not in BUTTONS:
            return "Choose an action", no_update
        action = BUTTONS[button][0]
        if isinstance(alert_id, bool) or not isinstance(alert_id, int):
            return "Select an alert first", no_update
        body = {"note": note} if isinstance(note, str) and note.strip() else {}
        if action == "assign":
            body.update(to=to, kind=kind if kind in ("user", "team") else "user")
        if action == "shelve":
            body["minutes"] = minutes
        from dashboard.store import STORE_OUTAGES

        config = _alerting(live)
        try:
            if _one(live, alert_id) is None:
                raise store.AlertError(404, f"no alert {alert_id}")
            with live.writer().begin() as conn:
                row, ev = store.act(conn, alert_id, action, p.name if p else store.SYSTEM, body, teams=config.teams)
        except store.AlertError as exc:
            return str(exc), no_update
        except (StoreUnavailable, *STORE_OUTAGES):
            return "the store cannot be reached: nothing was done", no_update
        return f"{BUTTONS[button][1]}: alert #{row['id']} is {row['status']}", ev["id"]


def _alerting(live: LiveData):
    from dashboard.alerts.config import Alerting
    from dashboard.alerts.rules import RuleError

    try:
        return live.city.alerting if live.city is not None else Alerting()
    except RuleError:
        return Alerting()
