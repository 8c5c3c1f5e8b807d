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
from dash import ALL, Dash, Input, Output, Patch, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import access
from dashboard.access import OPERATOR, RANK, VIEWER, Rule
from dashboard.alerts import screen, store
from dashboard.live import LiveData, StoreUnavailable
from dashboard.params import BadParameter, check_district
from dashboard.refresh_cache import mark_shareable
from dashboard.theme import THEMES
from layers import DOMAINS

log = logging.getLogger("panorama.manager")

GRID, COUNT, STATE, SEVERITY, DOMAIN = "alerts-grid", "alerts-count", "alerts-state", "alerts-severity", "alerts-domain"
HISTORY, TITLE, MESSAGE, REV, SELECTED, TRACE = ("alert-history", "alert-title", "alert-message", "alerts-rev",
                                                 "alert-selected", "alert-trace")
NOTE, ASSIGNEE, KIND, MINUTES = "alert-note", "alert-assignee", "alert-assign-kind", "alert-minutes"
INCIDENT_TRACE = "incident-trace"
#: The summary line over the grid: a chip per group of two or more alerts of one domain in one district
#: (most severe first; the chip sets the panel's district and domain filters), then "+N more".
GROUPS, GROUP_KEYS, GROUP_MORE, GROUP_CHIP = "alerts-groups", "alerts-group-keys", "alerts-group-more", "alerts-group"
#: Chips on the line: what fits the map's column of a 1366×768 screen, whole.
GROUP_CHIPS = 4
#: An incident's marker: a ring (a disc in its severity's colour under a disc in the map's background)
#: around the place, wider than an alert's dot, which it leaves visible when both are at one place.
RING = (44, 32)
ALERT_SIZE = 20
PROMPT = "Select an alert to see its history and its place on the map"
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
#: ``context.narrow``: the columns assets/alerts_grid.js hides, 1 first, when the grid is too narrow for
#: every column's minimum width (never sideways scrolling; the selected alert's detail says it all).
COLUMNS = [
    {"field": "severity", "headerName": "Severity", "cellStyle": _SEV_STYLE, "minWidth": 100, "flex": 2},
    {"field": "since", "headerName": "Since", "minWidth": 70, "flex": 1, "sortable": False},  # listed newest first
    {"field": "place", "headerName": "Place", "minWidth": 112, "flex": 3, "tooltipField": "summary"},
    {"field": "summary", "headerName": "Rule / summary", "minWidth": 104, "flex": 4, "context": {"narrow": 3}},
    {"field": "state", "headerName": "State", "minWidth": 64, "flex": 1},
    {"field": "status", "headerName": "Status", "minWidth": 84, "flex": 2, "context": {"narrow": 2}},
    {"field": "owner", "headerName": "Owner", "minWidth": 76, "flex": 2},
    {"field": "repeat", "headerName": "Repeat", "minWidth": 80, "flex": 1, "type": "numericColumn",
     "context": {"narrow": 1}},
]
ACTION_RULE = Rule(OPERATOR, why="acts on an alert as the signed-in operator (dashboard.alerts.store.act)")
for _name, _rule in {"alert_rows": Rule(VIEWER), "alert_pick": Rule(VIEWER), "alert_group": Rule(VIEWER),
                     "alert_act": ACTION_RULE}.items():
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
            "marker": {"size": ALERT_SIZE, "color": [], "opacity": 0.9}, "hovertemplate": "%{text}<extra></extra>",
            "name": "alerts", "meta": {"layer": "alerts"}, "uid": "alerts", "showlegend": False}


def incident_trace() -> dict:
    """Return the map's trace of open incidents' places (filled by :func:`incident_patch`): a ring a
    place, drawn under the alerts' dots (the smaller dot wins a hover or click inside the ring)."""
    return {"type": "scattermap", "mode": "markers", "lon": [], "lat": [], "text": [], "customdata": [],
            "marker": {"size": [], "color": [], "opacity": 1}, "hovertemplate": "%{text}<extra></extra>",
            "name": "incidents", "meta": {"layer": "incidents"}, "uid": "incidents", "showlegend": False}


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
        html.Div([*[html.Button("", id=_chip(i), n_clicks=0, hidden=True, className="alerts-chip")
                    for i in range(GROUP_CHIPS)],
                  html.Span("", id=GROUP_MORE, className="alerts-more")], id=GROUPS, className="alerts-groups",
                 role="group", **{"aria-label": "Alerts by district and domain"}),
        dcc.Store(id=GROUP_KEYS, data=[]),
        html.Div([dag.AgGrid(id=GRID, className="alerts-grid", rowData=[], columnDefs=COLUMNS, getRowId="params.data.id",
                   dashGridOptions=grid_opts, defaultColDef={"resizable": True, "sortable": True, "wrapText": True,
                                                             "autoHeight": True, "wrapHeaderText": True,
                                                             "autoHeaderHeight": True},
                   style={"width": "100%"}),  # its height: theme.css (the panel's box; 320 px in portrait)
        html.Div([html.Div(PROMPT, id=TITLE,
                           className="alert-title"),
                  actions,
                  html.Div("", id=MESSAGE, className="alert-message", role="status"),
                  html.Ol([], id=HISTORY, className="alert-history")], className="alert-detail")],
            className="alerts-body"),
        dcc.Store(id=REV, data=0),
        dcc.Store(id=SELECTED, data=None),
    ], id="alerts-panel", className=PANEL_CLASS + " alerts-none")


def _chip(slot) -> dict:
    """Return the id of a chip's slot (a string: pattern-matching ids carry strings, callback_guard)."""
    return {"type": GROUP_CHIP, "slot": slot if slot is ALL else str(slot)}


def group_chips(rows: list[dict], district, domain) -> tuple[list, list, list, list, str]:
    """Return the summary line of ``rows`` (the alerts of the panel's state and severity filters, every
    district the viewer sees): the groups of two or more alerts of one domain in one district, most
    severe first; per chip slot its text, hidden flag, class, then the slots' [district, domain] and
    how many groups there are ("5 groups:", first on the line). The chip of the filters in force is pressed."""
    found = [g for g in screen.groups([screen.ticker_item(r) for r in rows]) if g["n"] > 1]
    shown = found[:GROUP_CHIPS]
    pad = [None] * (GROUP_CHIPS - len(shown))
    texts = [f"{g['district'] or 'City'}: {g['n']} {screen.domain_label(g['domain'])}" for g in shown] + [""] * len(pad)
    hidden = [False] * len(shown) + [True] * len(pad)
    classes = [f"alerts-chip chip-{g['severity']}" + (" chip-on" if (g["district_id"], g["domain"]) == (district, domain)
                                                      else "") for g in shown] + ["alerts-chip"] * len(pad)
    keys = [[g["district_id"], g["domain"]] for g in shown]
    # how many groups there are, first on the line: a chip the width cannot hold wraps out of sight, whole
    more = f"{len(found)} group{'s' if len(found) != 1 else ''}:" if found else ""
    return texts, hidden, classes, keys, more


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


def marker_patch(rows: list[dict], trace: int, p: Patch | None = None) -> Patch:
    """Return a Patch (``p``, else a new one) of the map's alert trace: the open alerts with a place,
    the most severe drawn last."""
    pts = [r for r in reversed(rows) if r["place"]["point"] and r["status"] != store.RESOLVED
           and r["state"] in store.OPEN_STATES]
    p = Patch() if p is None else p
    t = p["data"][trace]
    t["lon"] = [r["place"]["point"][0] for r in pts]
    t["lat"] = [r["place"]["point"][1] for r in pts]
    t["text"] = [f"{screen.SEVERITY[r['severity']][0]} · {r['place']['name']} · {screen.summary_of(r)}" for r in pts]
    t["customdata"] = [r["id"] for r in pts]
    t["marker"]["color"] = [screen.SEVERITY[r["severity"]][1] for r in pts]
    return p


def incident_patch(incidents: list[dict], trace: int, p: Patch) -> Patch:
    """Add to ``p`` the map's incident trace: a ring (two discs) for each open incident with a place."""
    pts = [r for r in incidents if r["place"]["point"]]
    t = p["data"][trace]
    t["lon"] = [r["place"]["point"][0] for r in pts for _ in RING]
    t["lat"] = [r["place"]["point"][1] for r in pts for _ in RING]
    t["text"] = [screen.incident_text(r) for r in pts for _ in RING]
    t["customdata"] = [r["id"] for r in pts for _ in RING]
    t["marker"]["size"] = list(RING) * len(pts)
    t["marker"]["color"] = [c for r in pts for c in (screen.SEVERITY.get(r["severity"], screen.SEVERITY["info"])[1],
                                                      THEMES["dark"]["bg"])]
    return p


def zoom_patch(live: LiveData, row: dict, key: str | None = None) -> Patch:
    """Return a Patch of the map's view onto an alert's place (its asset, else its district, else the
    city), or an incident's (``key``: ``incident:<id>``)."""
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
    p["layout"]["map"]["uirevision"] = key or f"alert:{row['id']}"  # the user's own view gives way to this one
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


def _index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000


def _selected_id(selected):
    """Return the alert id of the grid's selection: its rows (a click), or ``{"ids": [...]}`` (set by a
    click on the map); None for none or anything else."""
    if isinstance(selected, dict) and isinstance(selected.get("ids"), list) and selected["ids"]:
        first = selected["ids"][0]
        return int(first) if isinstance(first, str) and first.isdigit() and len(first) < 19 else None
    first = selected[0] if isinstance(selected, list) and selected and isinstance(selected[0], dict) else None
    return first.get("id") if first else None


def clicked_marker(click, trace, itrace) -> tuple[str | None, int | None]:
    """Return what a click on the map hit: ("alert", id), ("incident", id), or (None, None) for a
    district, another layer's point, or a forged click."""
    pts = click.get("points") if isinstance(click, dict) else None
    pt = pts[0] if isinstance(pts, list) and pts and isinstance(pts[0], dict) else {}
    curve, mid = pt.get("curveNumber"), pt.get("customdata")
    if not _index(curve) or isinstance(mid, bool) or not isinstance(mid, int):
        return None, None
    kind = "alert" if _index(trace) and curve == trace else "incident" if _index(itrace) and curve == itrace else None
    return (kind, mid) if kind else (None, None)


def _show_incident(live: LiveData, incident_id: int) -> tuple:
    """Return alert_pick's outputs for an incident clicked on the map: no alert selected (the grid's
    row let go), the incident's title and timeline, the map at its place."""
    from dashboard.incidents import store as istore
    from dashboard.incidents import web as iweb

    try:
        found = [r for r in screen.read_incidents(live, None, access.scope()) if r["id"] == incident_id]
        if not found:
            return None, f"Incident #{incident_id} is closed or not yours to see", [], no_update, [], no_update
        row = found[0]
        d = live.read(lambda c: iweb.detail(c, istore.get(c, incident_id), screen.incident_config(live)))
    except StoreUnavailable:
        return no_update, "incidents cannot be read right now", no_update, no_update, no_update, no_update
    step = d["current_step"]
    title = f"{screen.incident_text(row)} · {row['title']}"
    lines = ([f"Next: step {step['n']} of {step['of']}: {step['text']} — {step['role']}"] if step else []) + \
        screen.incident_lines(d["timeline"], live.tz())
    return None, title, [html.Li(x) for x in lines], zoom_patch(live, row, f"incident:{incident_id}"), [], no_update


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
                  Output(_chip(ALL), "children"), Output(_chip(ALL), "hidden"), Output(_chip(ALL), "className"),
                  Output(GROUP_KEYS, "data"), Output(GROUP_MORE, "children"),
                  Input("tick", "n_intervals"), Input(STATE, "value"), Input(SEVERITY, "value"),
                  Input(DOMAIN, "value"), Input("district", "value"), Input(REV, "data"), State(TRACE, "data"),
                  State(INCIDENT_TRACE, "data"), prevent_initial_call="initial_duplicate")
    def alert_rows(_n, state, severities, domain, district, rev, trace, itrace):
        """List the alerts of the filters (and draw the open ones and the open incidents on the map): the
        same answer for every viewer of these filters and districts in this refresh bucket. Over the
        grid, the groups of the state and severity filters in every district the viewer sees."""
        now = time.time()
        outs = callback_context.outputs_list
        if not (isinstance(outs, list) and len(outs) == 9
                and all(isinstance(outs[i], list) and len(outs[i]) == GROUP_CHIPS for i in (4, 5, 6))):
            raise PreventUpdate  # the page always has GROUP_CHIPS chips: a forged request gets nothing
        keep = (*([no_update] * GROUP_CHIPS,) * 3, no_update, no_update)  # a wildcard output: one per chip
        try:
            district = check_district(district, live.district_ids())
            if not isinstance(rev, int) or isinstance(rev, bool):
                raise BadParameter("rev")
            states, sevs, domain = _filters(state, severities, domain)
            key = f"alert-rows:{state}:{','.join(sevs)}:{domain}:{district or '*'}:{rev}:{access.view_key()}"
            rows = live.cached(key, lambda: rows_for(live, state, list(sevs), domain, district))
            every = rows if (domain, district) == (None, None) else live.cached(
                f"alert-rows:{state}:{','.join(sevs)}:None:*:{rev}:{access.view_key()}",
                lambda: rows_for(live, state, list(sevs), None, None))
            incidents = live.cached(f"incident-marks:{district or '*'}:{rev}:{access.view_key()}",
                                    lambda: screen.read_incidents(live, district, access.scope()))
        except (BadParameter, TypeError):
            return no_update, "", no_update, no_update, *keep
        except StoreUnavailable:
            return no_update, "alerts cannot be read right now", no_update, no_update, *keep
        n_open = sum(r["state"] in store.OPEN_STATES and r["status"] != store.RESOLVED for r in rows)
        count = f"{len(rows)} shown" + (f" · {n_open} firing" if n_open else "")
        fig = no_update
        if _index(trace) and _index(itrace):
            fig = incident_patch(incidents, itrace, marker_patch(rows, trace))
        mark_shareable()
        # nothing listed: the panel folds to its head and the map takes the room back
        return ([screen.grid_row(r, now) for r in rows], count, fig, PANEL_CLASS + ("" if rows else " alerts-none"),
                *group_chips(every, district, domain))

    @app.callback(Output("district", "value", allow_duplicate=True), Output(DOMAIN, "value"),
                  Input(_chip(ALL), "n_clicks"), State(GROUP_KEYS, "data"), prevent_initial_call=True)
    def alert_group(_clicks, keys):
        """Filter the panel to the clicked group's district (the whole city for a city-wide group) and
        domain. A forged slot, district or domain, or one outside the viewer's districts, does nothing."""
        trigger = callback_context.triggered_id
        slot = trigger.get("slot") if isinstance(trigger, dict) else None  # a forged trigger: no chip
        clicked = callback_context.triggered[0].get("value") if callback_context.triggered else None
        slot = int(slot) if isinstance(slot, str) and slot.isdigit() and len(slot) < 4 else None
        if slot is None or not isinstance(keys, list) or slot >= len(keys) or not clicked:
            raise PreventUpdate
        key = keys[slot]
        district, domain = key if isinstance(key, list) and len(key) == 2 else (None, "")
        mine = access.scope()
        try:
            known = district is None or isinstance(district, str) and district in live.district_ids()
        except StoreUnavailable:
            raise PreventUpdate from None
        if domain not in DOMAIN_IDS or not known or mine is not None and district not in mine:
            raise PreventUpdate
        return district, domain

    @app.callback(Output(SELECTED, "data"), Output(TITLE, "children"), Output(HISTORY, "children"),
                  Output("map", "figure", allow_duplicate=True), Output(GRID, "selectedRows"), Output(GRID, "scrollTo"),
                  Input(GRID, "selectedRows"), Input(REV, "data"), Input("map", "clickData"), State(SELECTED, "data"),
                  State(TRACE, "data"), State(INCIDENT_TRACE, "data"), prevent_initial_call=True)
    def alert_pick(selected, _rev, click, current, trace, itrace):
        """Show the selected alert's history and zoom the map to its place (a new action: its history
        again). A click on an alert's dot on the map selects its row; on an incident's ring, shows
        the incident (its timeline) and zooms to its place; elsewhere on the map, nothing here."""
        trig = callback_context.triggered_id
        rid, grid = current, (no_update, no_update)
        if trig == "map":
            kind, rid = clicked_marker(click, trace, itrace)
            if kind is None:
                raise PreventUpdate
            if kind == "incident":
                return _show_incident(live, rid)
            grid = {"ids": [str(rid)]}, {"rowId": str(rid)}
        elif trig == GRID:
            rid = _selected_id(selected)
        try:
            row = _one(live, rid)
            if row is None:
                return None, PROMPT, [], no_update, *grid
            title, hist = detail(live, row)
        except StoreUnavailable:
            return no_update, "alerts cannot be read right now", no_update, no_update, no_update, no_update
        zoom = zoom_patch(live, row) if trig == "map" or trig == GRID and rid != current else no_update
        return row["id"], title, hist, zoom, *grid

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
