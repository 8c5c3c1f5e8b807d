"""The wall at ``/wall``: a kiosk view for control-room displays that never goes blank.

No controls. The map and the four domains' headline KPIs fill the viewport; a focused domain
rotates like a playlist (``?rotate=30&focus=<domain>,<domain>&district=<id>``); every KPI shows
its age and greys out when stale; when the store (or the server) cannot be reached the last good
picture stays with a "STALE since HH:MM" banner until the source returns.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

from dash import ALL, Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import views
from dashboard.refresh_cache import mark_shareable
from dashboard.kpis import FEED_PERIOD, KPI_BY_ID, KPIS, STALE_PERIODS, KpiValue
from dashboard.live import LiveData, StoreUnavailable, visible_attention
from dashboard.access import Forbidden, view_key
from dashboard.login_page import wall_user
from dashboard.params import BadParameter, check_district, parse_query
from dashboard.theme import STATUS, THEMES
from layers import DISTRICTS, LAYER_BY_ID, LAYERS
from layers import DOMAINS as REGISTRY

LAYER_IDS = frozenset(LAYER_BY_ID)

log = logging.getLogger("panorama.wall")

PATH = "/wall"
WINDOW = "24h"  # the window of the KPIs' "change vs" and sparklines
DEFAULT_ROTATE = 30
ROTATE_RANGE = (2, 3600)  # seconds; 0 = no rotation
#: The domains on the wall (those with wall texts), in registry order, and what the wall says of each.
WALL_DOMAINS = [d for d in REGISTRY if d.wall is not None]
DOMAINS = {d.id: {"label": d.label} for d in WALL_DOMAINS}
DOMAIN_IDS = list(DOMAINS)
#: The one or two KPIs per domain that are always on the wall.
HEADLINE = {d.id: list(d.wall.headline) for d in WALL_DOMAINS}
UNIT_WORDS = {"/ 5": "1–5"}
TILE_TITLE = {d.id: d.wall.title for d in WALL_DOMAINS}
SHORT = {d.id: d.wall.short for d in WALL_DOMAINS}
WHAT = {d.id: d.wall.what for d in WALL_DOMAINS}
#: Each domain's slot on the wall (0, 1, …): wall.css shows the focused slot's panel, caption and
#: legend (``.fslot-N .slot-N``), so no style sheet names a domain.
SLOT = {d: i for i, d in enumerate(DOMAIN_IDS)}
ATTENTION_ROWS = 9
WORST_ROWS = 4
#: Characters of a list row's name and detail that fit the attention column of a 1920×1080 wall
#: (about 335 px of text: a 31 % column less its badge and domain; names bold at 2.1vmin ≈ 23 px,
#: details at 1.65vmin ≈ 18 px in DejaVu Sans, ~14 and ~10 px a character). Longer texts are cut
#: here, on a word boundary with an ellipsis, never mid-word by the browser.
PLACE_CHARS = 24
DETAIL_CHARS = 34
PARAMS = ("rotate", "focus", "district", "sound")

# component ids, in one place
WALL, CITY, WHERE, FOCUS_NAME, CLOCK, UPDATED = "wall", "wall-city", "wall-where", "wall-focus-name", "wall-clock", "wall-updated"
DATE = "wall-date"
BANNER, OFFLINE, NOTICE, MAP, ATTENTION = "wall-banner", "wall-offline", "wall-notice", "wall-map", "wall-attention"
TICK, ROTATE, CLOCK_TICK = "wall-tick", "wall-rotate", "wall-clock-tick"
LIVE_TICKS = (TICK,)  # intervals of the live refresh, whose answers screens share (refresh_cache)
CONFIG, FOCUS, TRACES, LAST_OK = "wall-config", "wall-focus", "wall-traces", "wall-last-ok"
AGES = "wall-ages"  # the as-of times the browser renders every age from, every second
# alerts: the ticker of firing alerts, what the takeover needs (refreshed with the wall), the takeover
TICKER, ALERTS, TAKEOVER, SOUND, SOUND_NOTE = "wall-ticker", "wall-alerts", "wall-takeover", "wall-sound", "wall-sound-note"
TK_WORD, TK_SUMMARY, TK_PLACE, TK_AGE, TK_STEP, TK_MORE = (f"wall-takeover-{x}" for x in
                                                          ("word", "summary", "place", "age", "step", "more"))
#: Characters of a ticker line's place and summary (cut on a word boundary, never by the browser).
TICKER_PLACE_CHARS = 28
TICKER_SUMMARY_CHARS = 40
#: Lines the ticker carries (one line of the wall shows a few): the count says how many fire in all.
TICKER_ITEMS = 12
#: The alert tone (assets/alert-tone.wav), played once per new takeover when the URL has ``sound=1``.
TONE = "/assets/alert-tone.wav"


def _kid(kind: str, kpi: str, slot: str) -> dict:
    return {"type": kind, "kpi": kpi, "slot": slot}


def _all(kind: str) -> dict:
    return {"type": kind, "kpi": ALL, "slot": ALL}


#: Up to this many domains, their tiles share the right half with the focus panel; more take a row
#: of their own across the wall, above the map (``many-tiles`` in wall.css).
TILES_BESIDE_MAP = 4
#: The wall's own classes: more domains than fit beside the map lay the tiles across it.
LAYOUT_CLASS = "many-tiles " if len(DOMAIN_IDS) > TILES_BESIDE_MAP else ""


def tile_columns(n: int) -> dict:
    """Return the tiles' column counts as CSS variables: one row on a landscape wall, two rows
    (or one for up to four) on a portrait one."""
    return {"--tile-cols": n, "--tile-cols-portrait": n if n <= TILES_BESIDE_MAP else -(-n // 2)}


def domain_layer(domain: str) -> str | None:
    """Return the id of the map layer of ``domain``."""
    return next((layer.id for layer in LAYERS if layer.domain == domain), None)


def layers_for(domain: str) -> list[str]:
    """Return the layers shown on the map while ``domain`` is in focus."""
    return [lid for lid in (DISTRICTS.id, domain_layer(domain)) if lid]


# ------------------------------------------------------------------------------- parameters
def parse_params(search: str, districts: set[str] | None) -> tuple[int, list[str], str | None, list[str]]:
    """Return rotate seconds, focus playlist, district and notices for the query ``search``.

    Invalid values fall back to the defaults; each fallback adds a one-line notice.
    """
    q = parse_query(search)
    notices = []
    rotate = DEFAULT_ROTATE
    raw = q.get("rotate")
    if raw not in (None, ""):
        try:
            rotate = int(raw)
            if rotate != 0 and not ROTATE_RANGE[0] <= rotate <= ROTATE_RANGE[1]:
                raise ValueError
        except ValueError:
            rotate = None  # said below, once the playlist is known
    focus = list(DOMAIN_IDS)
    raw = q.get("focus")
    if raw not in (None, ""):
        ids = [x.strip() for x in raw.split(",") if x.strip()]
        bad = [x for x in ids if x not in DOMAINS]
        good = list(dict.fromkeys(x for x in ids if x in DOMAINS))
        if bad:
            notices.append(f"focus {bad[0][:30]!r} unknown (choose from {', '.join(DOMAIN_IDS)})")
        if good:
            focus = good
        elif bad:
            notices[-1] += "; rotating all domains"
    raw = q.get("rotate")
    if rotate is None:
        rotate = DEFAULT_ROTATE
        notices.append(f"rotate={raw[:20]!r} ignored (use {ROTATE_RANGE[0]}–{ROTATE_RANGE[1]} seconds, 0 = off)"
                       + (f"; rotating every {DEFAULT_ROTATE} s" if len(focus) > 1 else ""))
    elif len(focus) < 2 and rotate and raw not in (None, ""):
        notices.append(f"rotate={raw[:20]!r} ignored: only {DOMAINS[focus[0]]['label']} in focus, nothing to rotate")
    district = None
    raw = q.get("district")
    if districts is not None:
        try:
            district = check_district(raw, districts)
        except BadParameter as exc:
            notices.append(f"{exc}; showing the whole city")
    extra = [k for k in q if k not in PARAMS]
    if extra:
        notices.append(f"unknown parameter {extra[0][:20]!r} ignored (use {', '.join(PARAMS)})")
    return rotate, focus, district, notices


# ------------------------------------------------------------------------------- pieces
def _placeholder(kid: str) -> KpiValue:
    k = KPI_BY_ID[kid]
    return KpiValue(id=k.id, domain=k.domain, label=k.label, unit=k.unit, value=None, delta=None, delta_label="",
                    status="unknown", as_of=None, age_s=None, stale=False)


def kpi_view(k: KpiValue, now: float) -> dict:
    """Return what a wall KPI shows: value, status word, age and its classes."""
    s = views.kpi_state(k, now)
    cls = "wall-kpi " + s["class"].removeprefix("kpi ").strip()
    age = k.quiet if k.quiet and k.as_of is not None else s["age"]  # as the browser writes it (_CLOCK_JS)
    age = f"{age} · {k.loading}" if k.loading else age
    return {"value": s["value"], "status": s["status"], "age": age, "class": cls}


def label_with_unit(k: KpiValue) -> str:
    """Return a KPI's label with its unit (the value alone fills the line, legible from afar)."""
    unit = UNIT_WORDS.get(k.unit, k.unit)
    return f"{k.label} ({unit})" if unit else k.label


def kpi_block(k: KpiValue, slot: str, now: float) -> html.Div:
    """Return one wall KPI: label, big value with unit, status word and age."""
    s = kpi_view(k, now)
    return html.Div(id=_kid("wall-kpi", k.id, slot), className=s["class"], children=[
        html.Div(label_with_unit(k), className="wk-label"),
        html.Div(html.Span(s["value"], id=_kid("wall-value", k.id, slot), className="wk-value"), className="wk-main"),
        html.Div([html.Span(s["status"], id=_kid("wall-status", k.id, slot), className="wk-badge"),
                  html.Span(s["age"], id=_kid("wall-age", k.id, slot), className="wk-age")], className="wk-foot"),
    ])


def fit(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` characters on a word boundary, ending in "…"
    (a single word longer than ``limit`` is cut in it: there is no boundary to cut at)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    cut = head.rsplit(" ", 1)[0] if " " in head and text[limit - 1] != " " else head
    return cut.rstrip(" ·,;:-–(") + "…"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 10 else f"{v:,.2f}"
    return str(v)


def worst_rows(live: LiveData, domain: str, frames: dict, params) -> list:
    """Return the focused domain's worst places now as list items."""
    df = views.worst_places(live, domain, frames, params, n=WORST_ROWS, current_only=True)
    if df is None or df.empty:
        return [html.Li(live.no_assets(domain) or "no current data", className="worst-empty")]
    out = []
    for r in df.to_dict("records"):
        extra = []
        for c, v in r.items():
            if c in ("place", "district", "value", "unit", "as_of", "age_s", "stale") or v in ("", None):
                continue
            extra.append((c if v == "yes" else str(v)) if isinstance(v, str) else f"{_fmt(v)} {c}")
        out.append(html.Li([
            html.Span(fit(r["place"], PLACE_CHARS), className="worst-place"),
            html.Span(f"{_fmt(r['value'])} {r['unit']}", className="worst-value"),
            html.Span(fit(" · ".join([str(r["district"]), *extra]), DETAIL_CHARS), className="worst-detail"),
        ]))
    return out


def attention_rows(items: list[dict]) -> list:
    """Return the "needs attention" list: how many, the most severe rows (the worst of every domain
    with one among them), then one line of the sensors whose last value is too old to count (never
    listed as alerts). Texts are cut to fit a 1080p wall on a word boundary."""
    stale = [i for i in items if i["level"] == "stale"]
    items = [i for i in items if i["level"] != "stale"]
    tail = [stale_row(stale)] if stale else []
    if not items:
        return [html.Li([html.Span("OK", className="att-badge"),
                         html.Span("All clear: nothing in a bad band right now", className="att-place")],
                        className="att att-good"), *tail]
    shown, _rest = visible_attention(items, ATTENTION_ROWS)
    rows = [html.Li([
        html.Span(STATUS[i["level"]][1], className="att-badge"),
        html.Span(SHORT[i["domain"]], className="att-dom"),
        html.Div([html.Span(fit(i["place"], PLACE_CHARS), className="att-place"),
                  html.Span(fit(i["detail"], DETAIL_CHARS), className="att-detail")],
                 className="att-text"),
    ], className=f"att att-{i['level']}") for i in shown]
    if len(items) > 1:  # the count first: it stays on screen however few rows fit below it
        n_bad = sum(i["level"] == "bad" for i in items)
        rows.insert(0, html.Li(f"{len(items)} in a bad band ({n_bad} ALERT, {len(items) - n_bad} WATCH), "
                               "the worst of each domain first", className="att-more"))
    return rows + tail


def stale_row(stale: list[dict]) -> html.Li:
    """Return the one line of stale sensors: how many, the most recently silent named with their age."""
    named = ", ".join(f"{i['place']} ({i['detail'].removeprefix('last value ')})" for i in stale[:3])
    more = f" + {len(stale) - 3} more" if len(stale) > 3 else ""
    return html.Li([html.Span("STALE", className="att-badge"),
                    html.Div([html.Span(f"{len(stale)} stale sensor{'s' if len(stale) != 1 else ''}",
                                        className="att-place"),
                              html.Span(fit(named + more, DETAIL_CHARS), className="att-detail")],
                             className="att-text")],
                   className="att att-stale")


def alert_items(live: LiveData, district: str | None, now: float) -> list[dict]:
    """Return the firing alerts the wall tells of (the viewer's districts only), as the ticker and the
    takeover need them; computed once per refresh bucket for every screen of the same view."""
    from dashboard.access import scope
    from dashboard.alerts import screen

    districts = scope()
    return live.cached(f"wall-alerts:{district or '*'}:{view_key()}",
                       lambda: [screen.ticker_item(r) for r in screen.firing(live, district, districts)])


def takeover_queue(items: list[dict]) -> list[dict]:
    """Return the alerts that may take the wall over: critical, nobody has acknowledged them (the
    browser orders them and times each takeover)."""
    return [i for i in items if i["severity"] == "critical" and i["status"] == "new"]


def takeover_max(live: LiveData) -> float:
    """Return how long, at most, a critical alert nobody acknowledged holds the wall (``[alerting]
    takeover_max`` of city.toml, 10 min by default)."""
    from dashboard.alerts.config import Alerting
    from dashboard.alerts.rules import RuleError

    try:
        return (live.city.alerting if live.city is not None else Alerting()).takeover_max
    except RuleError:
        return Alerting().takeover_max  # the alerts API logs the city's mistake


def ticker_rows(items: list[dict], now: float) -> list:
    """Return the ticker: how many alerts fire, then one line per alert (severity word, place, what,
    age), or per group of two or more of one domain in one district ("14 air-quality alerts in
    Haidian": its worst severity, its oldest age); most severe first, then the larger groups, then the
    oldest. The lines that do not fit the wall's width wrap out of sight, whole."""
    if not items:
        return [html.Div(html.Span("No alert firing", className="tk-count tk-clear"), className="tk-line")]
    from dashboard.alerts.screen import age_text, domain_label, groups

    n_crit = sum(i["severity"] == "critical" for i in items)
    count = f"{len(items)} alert{'s' if len(items) != 1 else ''}" + (f" · {n_crit} critical" if n_crit else "")
    rows = [html.Span(count, className="tk-count")]
    for g in groups(items)[:TICKER_ITEMS]:
        i = g["items"][0]
        what = [html.Span(fit(i["place"], TICKER_PLACE_CHARS), className="tk-place"),
                html.Span(fit(i["summary"], TICKER_SUMMARY_CHARS), className="tk-summary")]
        if g["n"] > 1:
            text = f"{g['n']} {domain_label(g['domain']).replace(' ', '-')} alerts in {g['district'] or 'the city'}"
            what = [html.Span(fit(text, TICKER_PLACE_CHARS + TICKER_SUMMARY_CHARS), className="tk-summary tk-group")]
        rows.append(html.Span([
            html.Span(g["word"], className="tk-sev"), *what,
            html.Span(age_text(now - g["opened"]), className="tk-age", **{"data-opened": g["opened"]}),
        ], className=f"tk-item tk-{g['severity']}"))
    return [html.Div(rows, className="tk-line")]


def takeover_box() -> html.Section:
    """Return the takeover: what a critical alert nobody acknowledged says over the map (filled in and
    shown by the browser, ``_TAKEOVER_JS``)."""
    return html.Section(id=TAKEOVER, className="wall-takeover", hidden=True, role="alert", children=[
        html.Div([html.Span("CRITICAL", id=TK_WORD, className="to-sev"),
                  html.Span("not acknowledged", className="to-unacked"),
                  html.Span("", id=TK_AGE, className="to-age")], className="to-head"),
        html.Div("", id=TK_SUMMARY, className="to-summary"),
        html.Div("", id=TK_PLACE, className="to-place"),
        html.Div("", id=TK_STEP, className="to-step", hidden=True),
        html.Div("", id=TK_MORE, className="to-more", hidden=True),
    ])


def caption(k: KpiValue | None, domain: str, now: float) -> tuple[str, str]:
    """Return the map caption of a domain's layer (with its data age) and its class."""
    s = views.kpi_state(k, now) if k is not None else {"age": "no data yet", "class": ""}
    stale = " stale" if "stale" in s["class"] else ""
    if k is not None and k.no_assets:
        return f"{DOMAINS[domain]['label']} · {k.no_assets}", f"map-caption caption-{domain} slot-{SLOT[domain]} noassets"
    age = s["age"] if k is not None and k.as_of is not None else "no data yet"  # never "data no data yet"
    return (f"{DOMAINS[domain]['label']} · {WHAT[domain]} · " + (age if age == "no data yet" else f"data {age}"),
            f"map-caption caption-{domain} slot-{SLOT[domain]}{stale}")


def _age_entry(k: KpiValue | None, prefix: str = "", quiet: bool = True) -> list:
    """Return what the browser needs to write an age ("12 s ago", "STALE · 3 min old") every second:
    [prefix, as_of, seconds until stale, text without data, suffix]; ``quiet``: a KPI with nothing
    scheduled now says so instead (a tile; a map caption keeps its feed's age)."""
    if k is None:
        return [prefix, None, 0, "no data yet", ""]
    if quiet and k.quiet and k.as_of is not None:  # nothing scheduled now (no bus at night): not an age
        return [prefix, None, 0, k.quiet, k.loading]
    return [prefix, k.as_of, STALE_PERIODS * FEED_PERIOD[k.domain], k.no_assets or "no data yet", k.loading]


def ages(kpis: dict, now: float) -> dict:
    """Return the wall's ages as the browser renders them (see ``_CLOCK_JS``): of each KPI and of each
    domain's map caption, so they keep ticking while the server cannot be reached."""
    caps = {}
    for dom in DOMAIN_IDS:
        k = kpis.get(HEADLINE[dom][0])
        text = caption(k, dom, now)[0]
        caps[dom] = ([text, None, 0, "", ""] if k is not None and k.no_assets
                     else _age_entry(k, f"{DOMAINS[dom]['label']} · {WHAT[dom]} · data ", quiet=False))
    return {"now": now, "kpis": {kid: _age_entry(k) for kid, k in kpis.items()}, "captions": caps}


def _legend(live: LiveData, params) -> list:
    out = []
    for dom in DOMAIN_IDS:
        lid = domain_layer(dom)
        layer = next(layer for layer in LAYERS if layer.id == lid)
        items = [html.Span([html.Span(className="swatch", style={"background": c}), html.Span(lbl)],
                           className="wall-legend-item") for lbl, c in layer.legend(params)]
        out.append(html.Div(items, className=f"wall-legend legend-{dom} slot-{SLOT[dom]}"))
    return out


def wall_view(live: LiveData, district: str | None) -> dict:
    """Return what the wall's map fits to its size, clear of the caption and legend: the district's,
    ``[map] bounds`` or the districts' lon/lat ranges; or city.toml's fixed ``center`` and ``zoom``."""
    cfg = live.map_config
    if not district and "center" in cfg:
        return {"center": cfg["center"], "zoom": cfg["zoom"]}
    return views.view_bounds(live, district) or {}


def _fmt_time(ts: float, tz, fmt="%H:%M:%S") -> str:
    return datetime.fromtimestamp(ts, tz).strftime(fmt)


def utc_offset(minutes: int) -> str:
    """Return an offset from UTC as "UTC+8", "UTC-3:30", "UTC"."""
    if not minutes:
        return "UTC"
    h, m = divmod(abs(minutes), 60)
    return f"UTC{'+' if minutes > 0 else '-'}{h}" + (f":{m:02d}" if m else "")


def zone_names(tz) -> dict:
    """Return the city's time zone abbreviations by UTC offset in minutes ("480": "CST"), winter and summer
    (the clock picks the one of its offset); a numeric abbreviation ("+08") is left out."""
    if tz is None:
        return {}
    year = datetime.now(tz).year
    out = {}
    for month in (1, 7):
        d = datetime(year, month, 1, 12, tzinfo=tz)
        abbr, off = d.tzname() or "", int(d.utcoffset().total_seconds() // 60)
        if abbr and abbr[0].isalpha() and abbr != "UTC":
            out[str(off)] = abbr
    return out


def date_zone(ts: float, tz) -> str:
    """Return the date and time zone the wall's clock is in: "Sun 6 Dec · CST/UTC+8"."""
    d = datetime.fromtimestamp(ts, tz)
    off = utc_offset(int(d.utcoffset().total_seconds() // 60))
    abbr = zone_names(tz).get(str(int(d.utcoffset().total_seconds() // 60)))
    return f"{d:%a} {d.day} {d:%b} · " + (f"{abbr}/{off}" if abbr else off)


# ------------------------------------------------------------------------------- layout
def layout(live: LiveData, pathname: str = PATH, search: str = ""):
    """Return the wall for the query string ``search`` (never an error page)."""
    now = time.time()
    try:
        districts = live.district_ids()
    except StoreUnavailable:
        districts = None
    rotate, focus, district, notices = parse_params(search, districts)
    if districts is not None and not parse_query(search).get("focus"):
        # by default the playlist skips the domains the city has nothing to measure for
        focus = [d for d in focus if not live.no_assets(d)] or focus
    first = focus[0]
    banner = ""
    try:
        kpis = {k.id: k for k in live.kpis(WINDOW, district)}
        frames = live.layer_frames()
        params = live.params(now, WINDOW, district)
        fig = views.map_figure(live, frames, params, layers_for(first),
                               view=views.view_for(live, district, px=(1280, 720), insets=None))
        attention = live.attention(district)
        city, tz = live.meta().get("city", "City"), live.tz()
        live.stale_since = None
    except StoreUnavailable as exc:  # draw the frame now; the refresh fills it in when the store returns
        log.warning("wall: store unavailable at first draw: %s", exc)
        kpis, frames, params, attention = {k.id: _placeholder(k.id) for k in KPIS}, None, None, []
        fig = {"data": [], "layout": {"paper_bgcolor": THEMES["dark"]["bg"], "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
                                      "xaxis": {"visible": False}, "yaxis": {"visible": False}}}
        city, tz = "City Panorama", None
        since = live.stale_since = live.stale_since or now
        banner = f"STALE since {_fmt_time(since, tz, '%H:%M')}: the data store cannot be reached; retrying"
    where = "Whole city"
    if district and districts:
        where = dict(zip(live.districts()["id"], live.districts()["name"])).get(district, district)
    traces = [t["meta"]["layer"] for t in fig["data"]]
    view = wall_view(live, district) if traces else {}
    refresh_ms = live.settings.refresh_seconds * 1000
    sound = parse_query(search).get("sound") in ("1", "true", "yes", "on")
    try:
        firing = alert_items(live, district, now)
    except StoreUnavailable:
        firing = []
    config = {"tz": str(tz) if tz else "UTC", "zones": zone_names(tz), "focus": focus, "district": district,
              "refresh_ms": refresh_ms, "labels": {d: DOMAINS[d]["label"] for d in DOMAIN_IDS}, "slots": SLOT, "layout": LAYOUT_CLASS, "view": view,
              "layers": {d: layers_for(d) for d in DOMAIN_IDS}, "sound": sound,
              "takeover_max": takeover_max(live)}

    def blocks(ks: list[KpiValue], slot: str) -> list:
        """The domain's KPIs; or one line when the city has no assets for it ("no stations in this city")."""
        if ks and all(k.no_assets for k in ks):
            return [html.Div(ks[0].no_assets, className=f"wall-empty empty-{slot}")]
        return [kpi_block(k, slot, now) for k in ks]

    tiles = [html.Section([
        html.H2(TILE_TITLE[dom], className="tile-title"),
        html.Div(blocks([kpis[kid] for kid in HEADLINE[dom]], "tile"), className="tile-kpis"),
    ], className=f"wall-tile tile-{dom} slot-{SLOT[dom]}") for dom in DOMAIN_IDS]
    panels = [html.Section([
        html.H2(["FOCUS ", html.Span(DOMAINS[dom]["label"], className="focus-dom")], className="focus-title"),
        html.Div(blocks([k for k in kpis.values() if k.domain == dom], "focus"), className="focus-kpis"),
        html.H3("Worst now", className="worst-title"),
        html.Ol(worst_rows(live, dom, frames, params) if frames is not None else [],
                id={"type": "wall-worst", "domain": dom}, className="worst-list"),
    ], className=f"focus-panel panel-{dom} slot-{SLOT[dom]}") for dom in DOMAIN_IDS]
    captions = []
    for dom in DOMAIN_IDS:
        text, cls = caption(kpis.get(HEADLINE[dom][0]), dom, now)
        captions.append(html.Div(text, id={"type": "wall-caption", "domain": dom}, className=cls))
    return html.Div(id=WALL, className=f"wall {LAYOUT_CLASS}focus-{first} fslot-{SLOT[first]}", children=[
        html.Header([
            html.Div([html.Div(city, id=CITY, className="wall-cityname"),
                      html.Div(f"City Panorama · {where}", id=WHERE, className="wall-sub")], className="wall-brand"),
            html.Div([html.Span("FOCUS", className="wall-focus-label"),
                      html.Span(DOMAINS[first]["label"], id=FOCUS_NAME, className="wall-focus-name"),
                      html.Span(f"every {rotate} s" if rotate and len(focus) > 1 else "fixed",
                                className="wall-focus-rotate")],
                     className="wall-focus-now"),
            # notices and banners in the header bar: they cover nothing of the picture, and the
            # values a banner warns about stay readable
            html.Div(" · ".join(notices), id=NOTICE, className="wall-notice", hidden=not notices, role="status"),
            html.Div(banner, id=BANNER, className="wall-banner", hidden=not banner, role="alert"),
            html.Div("", id=OFFLINE, className="wall-banner wall-offline", hidden=True, role="alert"),
            html.Div([html.Div(_fmt_time(now, tz) if tz else "", id=CLOCK, className="wall-clock"),
                      html.Div([html.Span(date_zone(now, tz) if tz else "", id=DATE, className="wall-date"),
                                html.Span("updated " + _fmt_time(now, tz) if tz else "waiting for data", id=UPDATED,
                                          className="wall-updated"), wall_user()], className="wall-time-sub")],
                     className="wall-time"),
        ], className="wall-head"),
        html.Div([
            dcc.Graph(id=MAP, figure=fig, className="wall-mapgraph",
                      config={"displayModeBar": False, "scrollZoom": False, "doubleClick": False,
                              "responsive": True}),
            *captions,
            html.Div(_legend(live, params) if params is not None else [], className="wall-legends"),
        ], className="wall-map"),
        html.Div(tiles, className="wall-tiles", style=tile_columns(len(DOMAIN_IDS))),
        html.Div(panels, className="wall-focus"),
        html.Section([html.H2("Needs attention", className="att-title"),
                      html.Ol(attention_rows(attention), id=ATTENTION, className="att-list")],
                     className="wall-attention"),
        html.Div(ticker_rows(firing, now), id=TICKER, className="wall-ticker", role="marquee", **{"aria-live": "polite"}),
        takeover_box(),
        html.Audio(id=SOUND, src=TONE, preload="auto") if sound else None,
        html.Div("Sound is blocked by this browser until someone clicks or taps the wall once",
                 id=SOUND_NOTE, className="wall-sound-note", hidden=True, role="status"),
        dcc.Interval(id=TICK, interval=refresh_ms, n_intervals=0),
        dcc.Interval(id=ROTATE, interval=max(rotate, 1) * 1000, n_intervals=0, disabled=rotate == 0 or len(focus) < 2),
        dcc.Interval(id=CLOCK_TICK, interval=1000, n_intervals=0),
        dcc.Store(id=CONFIG, data=config),
        dcc.Store(id=FOCUS, data=first),
        dcc.Store(id=TRACES, data=traces),
        dcc.Store(id=LAST_OK, data=now * 1000),
        dcc.Store(id=AGES, data=ages(kpis, now)),
        dcc.Store(id=ALERTS, data=takeover_queue(firing)),
    ])


# ------------------------------------------------------------------------------- callbacks
def _trace_list(traces) -> bool:
    """Return True for a list of layer ids, one per trace of the wall's map (as the layout stores it)."""
    return (isinstance(traces, list) and len(traces) <= 8 * len(LAYERS)
            and all(isinstance(t, str) and t in LAYER_IDS for t in traces))


def _refresh_request_ok(focus, traces, cfg, ids, worst_ids) -> bool:
    """Return True when the wall refresh's inputs have the shapes and values the wall's layout gives them
    (each KPI and domain id known, one output per component asked about)."""
    from dash import callback_context as ctx

    if not (isinstance(cfg, dict) and (focus is None or isinstance(focus, str))
            and (traces is None or _trace_list(traces)) and isinstance(ids, list) and isinstance(worst_ids, list)):
        return False
    if not all(isinstance(i, dict) and isinstance(i.get("kpi"), str) and i["kpi"] in KPI_BY_ID for i in ids):
        return False
    domains = [w.get("domain") if isinstance(w, dict) else None for w in worst_ids]
    if not all(isinstance(d, str) and d in DOMAINS for d in domains) or len(set(domains)) != len(domains):
        return False
    outs = ctx.outputs_list  # the components the answer's lists are for: one per KPI, one per domain
    return all(len(o) == len(ids) for o in outs[2:5]) and all(len(o) == len(worst_ids) for o in outs[5:7])


_ROTATE_JS = """
function(n, cfg) {
    const nu = window.dash_clientside.no_update;
    if ((window.panoramaWall || {}).takeover) { return [nu, nu, nu]; }  // a critical alert holds the wall
    const f = cfg.focus, d = f[n % f.length];
    return [d, 'wall ' + (cfg.layout || '') + 'focus-' + d + ' fslot-' + cfg.slots[d], cfg.labels[d]];
}"""

# The focused domain's layer (and the district outlines) on the map, in the browser: the map
# matches its caption even while the server cannot be reached. Visibility only.
_SHOW_JS = """
function(domain, traces, cfg) {
    const on = cfg && cfg.layers && cfg.layers[domain];
    if (!on || !Array.isArray(traces) || !traces.length) { return window.dash_clientside.no_update; }
    const p = new window.dash_clientside.Patch();
    traces.forEach((lid, i) => p.assign(['data', i, 'visible'], on.includes(lid)));
    return p.build();
}"""

# Every second (and on each refresh answer): the clock in the city's timezone; every age on the
# wall from its as-of time (they tick on with the server away); "STALE since" when no refresh
# answer has come for two refresh intervals (assets/wall_live.js notes each answer's arrival); the
# map view fitted to the map's size, clear of the focused layer's caption and legend.
_CLOCK_JS = """
function(n, lastOk, cfg, ages, ageIds, capIds, bannerHidden) {
    const nu = window.dash_clientside.no_update;
    const tz = cfg.tz || 'UTC';
    const fmt = (t, sec) => new Date(t).toLocaleTimeString('en-GB',
        {timeZone: tz, hour12: false, hour: '2-digit', minute: '2-digit', second: sec ? '2-digit' : undefined});
    // the browser's clock, as the server's (a wall and its server keep time by NTP); not the time
    // in an answer: screens share a refresh's answer for its whole bucket
    const W = window.panoramaWall = window.panoramaWall || {};
    const now = Date.now();
    const clock = fmt(now, true);
    W.loaded = W.loaded || now;
    const okAt = Math.max(window.panoramaWallOk || 0, W.loaded);
    // the date and time zone beside it ("Sun 6 Dec · CST/UTC+8"), written only when it changes
    const dateEl = document.getElementById('""" + DATE + """');
    if (dateEl) {
        const d = new Date(), p = {};
        new Intl.DateTimeFormat('en-GB', {timeZone: tz, year: 'numeric', month: 'numeric', day: 'numeric',
            hour: 'numeric', minute: 'numeric', hourCycle: 'h23', weekday: 'short'})
            .formatToParts(d).forEach((x) => { p[x.type] = x.value; });
        const off = Math.round((Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute)
            - Math.floor(d.getTime() / 60000) * 60000) / 60000);
        const h = Math.floor(Math.abs(off) / 60), m = Math.abs(off) % 60;
        const utc = off ? 'UTC' + (off > 0 ? '+' : '-') + h + (m ? ':' + String(m).padStart(2, '0') : '') : 'UTC';
        const abbr = (cfg.zones || {})[String(off)];
        const month = d.toLocaleString('en-GB', {timeZone: tz, month: 'short'});
        const text = p.weekday + ' ' + (+p.day) + ' ' + month + ' · ' + (abbr ? abbr + '/' + utc : utc);
        if (dateEl.textContent !== text) {
            window.dash_clientside.set_props('""" + DATE + """', {children: text});
        }
    }
    let offline = true, msg = '';
    if (bannerHidden !== false && now - okAt > 2 * cfg.refresh_ms) {
        offline = false;
        msg = 'STALE since ' + fmt(okAt, false)
            + ' · the server is not responding · showing the last good picture';
    }
    // as views.age_text / views.kpi_state: "12 s ago", "STALE · 4 min old", "no data yet"
    const ageText = (s) => s < 90 ? Math.round(s) + ' s' : s < 5400 ? Math.round(s / 60) + ' min'
        : s < 172800 ? Math.round(s / 3600) + ' h' : Math.round(s / 86400) + ' d';
    const text = (e) => {
        if (!e) { return nu; }
        const [pre, asOf, limit, none, suffix] = e;
        let t = none;
        if (asOf !== null && asOf !== undefined) {
            const a = Math.max(0, now / 1000 - asOf);
            t = a > limit ? 'STALE · ' + ageText(a) + ' old' : ageText(a) + ' ago';
        }
        return pre + t + (suffix ? ' · ' + suffix : '');
    };
    const kpiAges = (ageIds || []).map(i => text(ages && ages.kpis && ages.kpis[i.kpi]));
    const capTexts = (capIds || []).map(i => text(ages && ages.captions && ages.captions[i.domain]));
    const gd = document.querySelector('#wall-map .js-plotly-plot');
    const v = (W.takeover && W.takeover.view) || cfg.view;  // a takeover's place, else the wall's
    const sp = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
    // fit only a map whose style has loaded: a new view racing the first draw breaks plotly
    if (sp && sp.map && sp.map.isStyleLoaded() && v && (v.lon || v.center) && gd.layout && gd.layout.map) {
        const w = gd.clientWidth, h = gd.clientHeight;
        if (w > 0 && h > 0) {
            let center = v.center, zoom = v.zoom;
            if (v.lon) {
                // the part of the map the focused layer's caption (top) and legend (bottom) leave free
                const box = gd.getBoundingClientRect();
                const shown = (sel) => Array.from(document.querySelectorAll(sel)).find(e => e.offsetParent !== null);
                const cap = shown('.wall-map .map-caption'), leg = shown('.wall-map .wall-legend');
                // the largest seen at this size: the view stays put as the playlist turns
                const seen = (window.panoramaWallInsets && window.panoramaWallInsets.w === w
                              && window.panoramaWallInsets.h === h) ? window.panoramaWallInsets : {w: w, h: h, t: 0, b: 0};
                seen.t = Math.max(seen.t, cap ? cap.getBoundingClientRect().bottom - box.top : 0);
                seen.b = Math.max(seen.b, leg ? box.bottom - leg.getBoundingClientRect().top : 0);
                window.panoramaWallInsets = seen;
                const top = seen.t, bottom = seen.b;
                const fh = Math.max(h - top - bottom, h / 3);
                const merc = (lat) => Math.log(Math.tan(Math.PI / 4
                    + Math.max(-85, Math.min(85, lat)) * Math.PI / 360));
                const pad = 1.08;
                const dx = Math.max(v.lon[1] - v.lon[0], 1e-3) * pad / 360;
                const dy = Math.max(merc(v.lat[1]) - merc(v.lat[0]), 1e-3) * pad / (2 * Math.PI);
                zoom = Math.max(0, Math.min(17, Math.log2(w / 512 / dx), Math.log2(fh / 512 / dy)));
                zoom = Math.round(100 * zoom) / 100;
                // the box's centre at the centre of the free part: the map's centre moves north by half
                // the difference of the top and bottom insets
                const my = (merc(v.lat[0]) + merc(v.lat[1])) / 2
                    + (top - bottom) / 2 * 2 * Math.PI / (512 * Math.pow(2, zoom));
                center = {lon: (v.lon[0] + v.lon[1]) / 2,
                          lat: (2 * Math.atan(Math.exp(my)) - Math.PI / 2) * 180 / Math.PI};
            }
            const cur = gd.layout.map.center || {};
            // into the figure Dash keeps, not a Plotly.relayout: the next refresh re-renders that figure
            // and would put the view back; a wall has no user to move it, so any other view is refitted
            if (Math.abs((gd.layout.map.zoom || 0) - zoom) > 0.005 || Math.abs((cur.lat || 0) - center.lat) > 1e-4
                    || Math.abs((cur.lon || 0) - center.lon) > 1e-4) {
                window.dash_clientside.set_props('""" + MAP + """', {figure: new window.dash_clientside.Patch()
                    .merge(['layout', 'map'], {center: center, zoom: zoom}).build()});
            }
        }
    }
    return [clock, offline, msg, kpiAges, capTexts];
}"""


# Every second and on each refresh answer: a critical alert nobody acknowledged takes the wall over
# (its domain in focus, the map at its place, its age), the oldest first; each for at most
# ``takeover_max`` seconds from when this wall began showing it, then the next in the queue; when none
# is left the rotation goes on where it was. The ticker's ages tick here too. With ``?sound=1`` a
# tone plays once per new takeover; a browser that blocks sound until a user gesture is said so on
# screen, and the first click or tap on the wall allows it.
_TAKEOVER_JS = """
function(n, items, cfg, rot) {
    const nu = window.dash_clientside.no_update, sp = window.dash_clientside.set_props;
    const W = window.panoramaWall = window.panoramaWall || {};
    const now = Date.now() / 1000;
    const ageText = (s) => { s = Math.max(0, s); return s < 90 ? Math.round(s) + ' s' : s < 5400
        ? Math.round(s / 60) + ' min' : s < 172800 ? Math.round(s / 3600) + ' h' : Math.round(s / 86400) + ' d'; };
    document.querySelectorAll('#""" + TICKER + """ .tk-age').forEach((e) => {
        const o = parseFloat(e.dataset.opened);
        if (!isNaN(o) && e.textContent !== ageText(now - o)) { e.textContent = ageText(now - o); }
    });
    const tone = document.getElementById('""" + SOUND + """');
    if (cfg.sound && !W.soundHook) {
        W.soundHook = true;
        // a browser that plays no sound before a user gesture: the first click or tap allows it
        document.addEventListener('pointerdown', () => {
            if (!tone) { return; }
            const on = !!W.takeover;
            tone.muted = !on;
            tone.play().then(() => { if (!on) { tone.pause(); } tone.muted = false;
                sp('""" + SOUND_NOTE + """', {hidden: true}); }, () => {});
        }, {capture: true});
        const policy = navigator.getAutoplayPolicy ? navigator.getAutoplayPolicy('mediaelement') : 'allowed';
        if (policy !== 'allowed') { sp('""" + SOUND_NOTE + """', {hidden: false}); }
    }
    W.took = W.took || {};  // alert id -> when this wall began showing its takeover
    const max = cfg.takeover_max || 600;
    const queue = (items || []).filter((a) => a.severity === 'critical' && a.status === 'new'
                                             && !(a.id in W.took && now - W.took[a.id] >= max))
        .sort((a, b) => a.opened - b.opened || a.id - b.id);
    const t = queue[0] || null, was = W.takeover ? W.takeover.id : null;
    const cls = (d, on) => 'wall ' + (cfg.layout || '') + 'focus-' + d + ' fslot-' + cfg.slots[d] + (on ? ' takeover' : '');
    const keep = [nu, nu, nu, nu, nu, nu, nu, nu];
    if (!t) {
        W.takeover = null;
        if (was === null) { return [nu, ...keep, nu, nu, nu]; }
        const f = cfg.focus, d = f[(rot || 0) % f.length];  // released: the rotation goes on
        return [true, ...keep, d, cls(d, false), cfg.labels[d]];
    }
    if (!(t.id in W.took)) { W.took[t.id] = now; }
    W.takeover = {id: t.id, view: t.view};
    if (t.id !== was && cfg.sound && tone) {
        tone.currentTime = 0;
        const p = tone.play();
        if (p && p.then) {
            p.then(() => sp('""" + SOUND_NOTE + """', {hidden: true}), () => sp('""" + SOUND_NOTE + """', {hidden: false}));
        }
    }
    const more = queue.length - 1, d = t.domain in cfg.slots ? t.domain : null;
    const focus = t.id !== was && d ? [d, cls(d, true), cfg.labels[d]] : [nu, nu, nu];
    return [false, t.word, t.summary, t.place, ageText(now - t.opened) + ' ago', t.step || '', !t.step,
            more > 0 ? '+' + more + ' more critical' : '', more <= 0, ...focus];
}"""


def register(app: Dash, live: LiveData) -> None:
    """Attach the wall's callbacks to ``app``."""
    app.clientside_callback(_ROTATE_JS, Output(FOCUS, "data"), Output(WALL, "className"),
                            Output(FOCUS_NAME, "children"), Input(ROTATE, "n_intervals"), State(CONFIG, "data"),
                            prevent_initial_call=True)
    app.clientside_callback(_SHOW_JS, Output(MAP, "figure", allow_duplicate=True), Input(FOCUS, "data"),
                            State(TRACES, "data"), State(CONFIG, "data"), prevent_initial_call=True)
    app.clientside_callback(_CLOCK_JS, Output(CLOCK, "children"), Output(OFFLINE, "hidden"),
                            Output(OFFLINE, "children"), Output(_all("wall-age"), "children"),
                            Output({"type": "wall-caption", "domain": ALL}, "children"),
                            Input(CLOCK_TICK, "n_intervals"), Input(LAST_OK, "data"), State(CONFIG, "data"),
                            State(AGES, "data"), State(_all("wall-age"), "id"),
                            State({"type": "wall-caption", "domain": ALL}, "id"), State(BANNER, "hidden"))
    app.clientside_callback(_TAKEOVER_JS, Output(TAKEOVER, "hidden"), Output(TK_WORD, "children"),
                            Output(TK_SUMMARY, "children"), Output(TK_PLACE, "children"), Output(TK_AGE, "children"),
                            Output(TK_STEP, "children"), Output(TK_STEP, "hidden"), Output(TK_MORE, "children"),
                            Output(TK_MORE, "hidden"), Output(FOCUS, "data", allow_duplicate=True),
                            Output(WALL, "className", allow_duplicate=True),
                            Output(FOCUS_NAME, "children", allow_duplicate=True),
                            Input(CLOCK_TICK, "n_intervals"), Input(ALERTS, "data"), State(CONFIG, "data"),
                            State(ROTATE, "n_intervals"), prevent_initial_call=True)

    @app.callback(
        Output(MAP, "figure", allow_duplicate=True),
        Output(TRACES, "data"),
        Output(_all("wall-value"), "children"),
        Output(_all("wall-status"), "children"),
        Output(_all("wall-kpi"), "className"),
        Output({"type": "wall-worst", "domain": ALL}, "children"),
        Output({"type": "wall-caption", "domain": ALL}, "className"),
        Output(ATTENTION, "children"),
        Output(CITY, "children"),
        Output(UPDATED, "children"),
        Output(BANNER, "children"),
        Output(BANNER, "hidden"),
        Output(LAST_OK, "data"),
        Output(AGES, "data"),
        Output(TICKER, "children"),
        Output(ALERTS, "data"),
        Input(TICK, "n_intervals"),
        State(FOCUS, "data"), State(TRACES, "data"), State(CONFIG, "data"),
        State(_all("wall-kpi"), "id"), State({"type": "wall-worst", "domain": ALL}, "id"),
        prevent_initial_call=True,
    )
    def refresh(_n, focus, traces, cfg, ids, worst_ids):
        """Send only what changed: map colours, numbers, ages, lists. Keep the last picture on failure."""
        now = time.time()
        if not _refresh_request_ok(focus, traces, cfg, ids, worst_ids):
            raise PreventUpdate  # a forged request: nothing to compute, nothing to cache
        district = cfg.get("district")
        try:
            district = check_district(district, live.district_ids())  # before any value is cached for it
            kpis = {k.id: k for k in live.kpis(WINDOW, district)}
            tz = live.tz()
            city = live.meta().get("city", "City")
            on = layers_for(focus if focus in DOMAINS else DOMAIN_IDS[0])
            domains = [w["domain"] for w in worst_ids]

            def render():
                """The map values and the worst-places lists: the same for every screen showing this."""
                frames = live.layer_frames()
                params = live.params(time.time(), WINDOW, district)
                if traces:
                    # values only: visibility belongs to show_focus (a late refresh must not undo a rotation)
                    fig, traces_out = views.map_patch(live, frames, params, on, set_visibility=False), None
                else:  # the first draw had no data: send the whole map once
                    fig = views.map_figure(live, frames, params, on)
                    traces_out = [t["meta"]["layer"] for t in fig["data"]]
                worst = [worst_rows(live, d, frames, params) for d in domains]
                return fig, traces_out, worst, attention_rows(live.attention(district))

            key = (f"wall:{district or '*'}:{','.join(on)}:{'patch' if traces else 'full'}:{'|'.join(domains)}:"
                   f"{view_key()}")
            fig, traces_out, worst, attention = live.cached(key, render)
            traces_out = no_update if traces_out is None else traces_out
            firing = alert_items(live, district, now)
        except BadParameter:
            raise PreventUpdate from None  # a district the city does not have
        except Forbidden:
            raise  # answered 403 (dashboard.web_access)
        except Exception as exc:  # noqa: BLE001 - the wall never shows a stack trace: keep the last picture
            if not isinstance(exc, StoreUnavailable):
                log.exception("wall refresh failed")
            since = live.stale_since = live.stale_since or now
            try:
                tz = live.tz()
            except Exception:  # noqa: BLE001
                tz = None
            what = "the data store cannot be reached" if isinstance(exc, StoreUnavailable) else "the refresh failed"
            msg = f"STALE since {_fmt_time(since, tz, '%H:%M')}: {what}; showing the last good picture, retrying"
            n, nw = len(ids), len(worst_ids)
            return (no_update, no_update, [no_update] * n, [no_update] * n, [no_update] * n,
                    [no_update] * nw, [no_update] * nw, no_update, no_update, no_update,
                    msg, False, no_update, no_update, no_update, no_update)
        live.stale_since = None
        mark_shareable()  # every screen asking this in this bucket may get this very answer
        views_ = [kpi_view(kpis[i["kpi"]], now) for i in ids]
        caps = [caption(kpis.get(HEADLINE[w["domain"]][0]), w["domain"], now) for w in worst_ids]
        return (fig, traces_out, [v["value"] for v in views_], [v["status"] for v in views_],
                [v["class"] for v in views_], worst, [c[1] for c in caps], attention, city,
                "updated " + _fmt_time(now, tz), "", True, now * 1000, ages(kpis, now), ticker_rows(firing, now),
                takeover_queue(firing))
