"""Pure builders shared by the pages, embeds and exports: map figure, patches, KPI cards, charts."""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from urllib.parse import quote

import numpy as np
import pandas as pd
from dash import Patch, html

from dashboard.kpis import DEFINITIONS, FEED_PERIOD, KPI_BY_ID, STALE_PERIODS, KpiValue
from dashboard.theme import STATUS, THEMES, figure_layout, map_style
from layers import DISTRICTS, DOMAIN_BY_ID, DOMAINS, LAYERS, LayerParams
from layers._common import age_text as _age_text
from layers._domain import scope_places

SPARK_POINTS = 16
MAP_PX = (1100, 760)  # the map's typical size on the manager page, for the initial zoom


#: Room (px) the manager's overlays take from the map: the layer toggles on top, the legend at the
#: bottom left. A fitted view keeps the city clear of them.
MAP_INSETS = {"t": 56, "r": 0, "b": 0, "l": 240}
MAX_ZOOM = 17


def fit_view(lons, lats, px=MAP_PX, pad=0.04, insets: dict | None = None) -> dict:
    """Return map center and zoom that fit the given coordinates in a ``px`` sized map, inside the
    part of it that ``insets`` (px taken at the top, right, bottom, left) leave free."""
    lons, lats = np.asarray(lons, float), np.asarray(lats, float)
    lons, lats = lons[np.isfinite(lons)], lats[np.isfinite(lats)]
    if not len(lons) or not len(lats):
        return {"center": {"lon": 0, "lat": 0}, "zoom": 1}
    lo0, lo1, la0, la1 = lons.min(), lons.max(), lats.min(), lats.max()
    ins = {"t": 0, "r": 0, "b": 0, "l": 0, **(insets or {})}
    w = max(px[0] - ins["l"] - ins["r"], px[0] / 3)
    h = max(px[1] - ins["t"] - ins["b"], px[1] / 3)

    def merc(lat):
        return math.log(math.tan(math.pi / 4 + math.radians(max(-85.0, min(85.0, lat))) / 2))

    dx = max(lo1 - lo0, 1e-3) * (1 + 2 * pad) / 360
    dy = max(merc(la1) - merc(la0), 1e-3) * (1 + 2 * pad) / (2 * math.pi)
    zoom = max(0.0, min(MAX_ZOOM, math.log2(w / 512 / dx), math.log2(h / 512 / dy)))
    # the box's centre goes to the centre of the free part: the map's centre moves by half the
    # difference of opposite insets (a px is 360° / (512·2^zoom) of longitude, 2π/(512·2^zoom) in mercator y)
    per_px = 1 / (512 * 2 ** zoom)
    cx = (lo0 + lo1) / 2 - (ins["l"] - ins["r"]) / 2 * 360 * per_px
    my = (merc(la0) + merc(la1)) / 2 + (ins["t"] - ins["b"]) / 2 * 2 * math.pi * per_px
    cy = math.degrees(2 * math.atan(math.exp(my)) - math.pi / 2)
    return {"center": {"lon": round(cx, 4), "lat": round(cy, 4)}, "zoom": round(zoom, 2)}


def asset_extent(live) -> dict:
    """Return the view that fits the city's assets (the dense core stays legible)."""
    b = asset_bounds(live)
    return fit_view(b["lon"], b["lat"]) if b else fit_view([], [])


def asset_bounds(live) -> dict | None:
    """Return the lon/lat ranges of the city's places drawn as points or lines (not district fills),
    or None without any."""
    lons, lats = [], []
    for d in DOMAINS:
        if d.layer is None or getattr(d.layer, "area", False):
            continue
        st = live.static(d.layer.id)
        if {"lon", "lat"} <= set(st.columns):
            lons += [float(x) for x in st["lon"] if x == x]
            lats += [float(x) for x in st["lat"] if x == x]
    return {"lon": [min(lons), max(lons)], "lat": [min(lats), max(lats)]} if lons else None


def view_bounds(live, district: str | None = None) -> dict | None:
    """Return the lon/lat ranges a map of the city (or of ``district``) fits: the district, else
    ``[map] bounds`` of city.toml, else the districts (assets outside every district never widen
    it), else the assets; None when there is nothing to fit."""
    if district:
        b = live.bounds(district)
        if b:
            return b
    return live.map_config.get("bounds") or live.bounds() or asset_bounds(live)


def view_for(live, district: str | None = None, px=MAP_PX, insets: dict | None = MAP_INSETS) -> dict:
    """Return the map view (center, zoom) of the city or of ``district``: ``[map] center`` and ``zoom``
    of city.toml when given (the whole city), else :func:`view_bounds` fitted clear of ``insets``."""
    cfg = live.map_config
    if not district and "center" in cfg:
        return {"center": dict(cfg["center"]), "zoom": cfg["zoom"]}
    b = view_bounds(live, district)
    return fit_view(b["lon"], b["lat"], px=px, insets=insets) if b else fit_view([], [])


def _static(live, layer_id: str, params: LayerParams):
    """Return a layer's places: the city's, or only the district's when ``params.clip`` (a viewer who
    may see some districts only gets neither the points nor the hover numbers of the others)."""
    static = live.static(layer_id)
    return scope_places(static, params.district) if params.clip else static


def map_figure(live, frames: dict, params: LayerParams, layers_on: list[str], view: dict | None = None,
               layer_ids: list[str] | None = None) -> dict:
    """Return the full map figure: every layer's traces (hidden unless on) on the offline style."""
    traces = []
    for layer in LAYERS:
        if layer_ids is not None and layer.id not in layer_ids:
            continue
        for t in layer.traces(_static(live, layer.id, params), frames.get(layer.id), params):
            t["visible"] = layer.id in layers_on
            if layer is DISTRICTS:
                _with_district_hover(live, frames, params, layers_on, t)
            traces.append(t)
    t = THEMES.get(params.theme, THEMES["dark"])
    view = view or view_for(live, params.district)
    return {
        "data": traces,
        "layout": {
            "map": {"style": map_style(params.theme), **view, "fitbounds": False, "uirevision": "keep"},
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "paper_bgcolor": t["bg"], "showlegend": False, "uirevision": "keep", "clickmode": "event",
            # hover cards take their point's colour (band, AQI class, fill), as in the legend
            "hoverlabel": {"font": {"size": 15, "family": "Inter, 'DejaVu Sans', sans-serif"}},
            "font": {"color": t["text"]},
        },
    }


def district_hover(live, frames: dict, params: LayerParams, layers_on: list[str]) -> list[str]:
    """Return, per district (in the districts layer's order), the hover lines of the visible layers
    (each layer's ``district_hover``: e.g. energy load as % of capacity, the worst AQI); the
    population when no such layer is on. A stale or missing value says so."""
    ids = _static(live, DISTRICTS.id, params)["id"].tolist()
    out: dict[str, list[str]] = {i: [] for i in ids}
    on = [d.layer for d in DOMAINS if d.layer is not None and d.layer.id in layers_on
          and hasattr(d.layer, "district_hover")]
    for layer in on:
        name, per = layer.district_hover(_static(live, layer.id, params), frames.get(layer.id), params)
        for i in ids:
            out[i].append(f"{name} {per.get(i, 'no data')}")
    if not on:
        pop = dict(zip(ids, live.static(DISTRICTS.id)["population"]))
        for i in ids:
            p = pop.get(i)
            out[i].append(f"population {int(p):,}" if p is not None and pd.notna(p) else "population —")
    return ["<br>".join(out[i]) for i in ids]


def _with_district_hover(live, frames: dict, params: LayerParams, layers_on: list[str], traces) -> None:
    """Put :func:`district_hover` into the districts trace (a figure's dict, or a Patch's entry)."""
    traces["customdata"] = district_hover(live, frames, params, layers_on)


def _assign(node, values: dict) -> None:
    for k, v in values.items():
        if isinstance(v, dict):
            _assign(node[k], v)
        else:
            node[k] = v


def map_patch(live, frames: dict, params: LayerParams, layers_on: list[str],
              layer_ids: list[str] | None = None, set_visibility: bool = True) -> Patch:
    """Return a Patch of only the values that change on a refresh (and, unless told not to, visibility)."""
    p = Patch()
    i = 0
    for layer in LAYERS:
        if layer_ids is not None and layer.id not in layer_ids:
            continue
        for vals in layer.values(_static(live, layer.id, params), frames.get(layer.id), params):
            _assign(p["data"][i], vals)
            if layer is DISTRICTS:
                _with_district_hover(live, frames, params, layers_on, p["data"][i])
            if set_visibility:
                p["data"][i]["visible"] = layer.id in layers_on
            i += 1
    return p


def downsample(xs, ys, n: int = SPARK_POINTS):
    """Return at most ``n`` points: means of equal chunks (None where all are unknown)."""
    xs, ys = list(xs), [np.nan if y is None else y for y in ys]
    if len(xs) <= n:
        return xs, [None if not np.isfinite(y) else round(float(y), 3) for y in ys]
    edges = np.linspace(0, len(xs), n + 1).astype(int)
    arr = np.asarray(ys, dtype=float)
    # np.nanmean of every chunk, chunks of one length at a time as the rows of a 2-d block: a sum
    # along contiguous rows is the same (pairwise) sum as over each chunk alone, so the same means
    lens = np.diff(edges)
    means = np.full(n, np.nan)
    known = np.zeros(n, dtype=bool)
    for length in np.unique(lens):
        idx = np.flatnonzero(lens == length)
        block = arr[edges[idx][:, None] + np.arange(length)]
        nan = np.isnan(block)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[idx] = np.sum(np.where(nan, 0.0, block), axis=1) / np.sum(~nan, axis=1, dtype=np.intp)
        known[idx] = np.isfinite(block).any(axis=1)
    ox = [xs[b - 1] for b in edges[1:]]
    oy = [round(float(m), 3) if k else None for m, k in zip(means.tolist(), known.tolist())]
    return ox, oy


def _downsample_loop(xs, ys, n: int = SPARK_POINTS):
    """:func:`downsample` chunk by chunk with np.nanmean (the reference it is tested against)."""
    xs, ys = list(xs), [np.nan if y is None else y for y in ys]
    if len(xs) <= n:
        return xs, [None if not np.isfinite(y) else round(float(y), 3) for y in ys]
    edges = np.linspace(0, len(xs), n + 1).astype(int)
    ox, oy = [], []
    arr = np.asarray(ys, dtype=float)
    for a, b in zip(edges[:-1], edges[1:]):
        chunk = arr[a:b]
        ox.append(xs[b - 1])
        oy.append(None if not np.isfinite(chunk).any() else round(float(np.nanmean(chunk)), 3))
    return ox, oy


def spark_points(k: KpiValue) -> list:
    """Return a sparkline's values to 4 significant digits (x is implicit: 0…n-1, no time axis)."""
    _, y = downsample(k.spark_x, k.spark_y)
    return [None if v is None else float(f"{v:.4g}") for v in y]


SPARK_W, SPARK_H = 120, 44


def spark_svg(points: list, colour: str) -> str:
    """Return a sparkline of ``points`` (values or None for gaps) as an SVG ``data:`` URI.

    The manager's cards show it as an image: 18 plotly graphs cost the page about a second to
    draw. x is the index, the y range includes 0 (as the filled plotly sparkline's), a gap splits
    the line. ``assets/sparkline.js`` draws the same in the browser on each refresh.
    """
    def f(v: float) -> str:
        return f"{math.floor(v * 10 + 0.5) / 10:.1f}"

    ys = [v for v in points if v is not None]
    line, area = [], []
    if ys:
        lo, hi = min(0.0, min(ys)), max(0.0, max(ys))
        span, n = (hi - lo) or 1, len(points)

        def x(i):
            return i * SPARK_W / (n - 1) if n > 1 else SPARK_W / 2

        def y(v):
            return SPARK_H - 2 - (v - lo) / span * (SPARK_H - 4)

        y0 = y(0)
        run: list = []
        for i, v in enumerate([*points, None]):
            if v is not None:
                run.append((i, v))
                continue
            if len(run) > 1:
                pts = " L ".join(f"{f(x(j))} {f(y(u))}" for j, u in run)
                line.append(f"M {pts}")
                area.append(f"M {f(x(run[0][0]))} {f(y0)} L {pts} L {f(x(run[-1][0]))} {f(y0)} Z")
            run = []
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SPARK_W} {SPARK_H}" preserveAspectRatio="none">'
           f'<path d="{" ".join(area)}" fill="rgba(127,140,157,0.12)"/><path d="{" ".join(line)}" fill="none" '
           f'stroke="{colour}" stroke-width="2" stroke-linejoin="round" vector-effect="non-scaling-stroke"/></svg>')
    return "data:image/svg+xml," + quote(svg, safe="!~*'()")


def spark_src(k: KpiValue, theme: str = "dark") -> str:
    """Return a KPI card's sparkline image (:func:`spark_svg` of :func:`spark_points`)."""
    return spark_svg(spark_points(k), THEMES.get(theme, THEMES["dark"])["accent"])


def spark_figure(k: KpiValue, theme: str = "dark") -> dict:
    """Return a small SVG sparkline figure of a KPI's trend (status shows on the card, not the line)."""
    colour = THEMES.get(theme, THEMES["dark"])["accent"]
    return {
        "data": [{"type": "scatter", "mode": "lines", "y": spark_points(k), "line": {"color": colour, "width": 2},
                  "fill": "tozeroy", "fillcolor": "rgba(127,140,157,0.12)", "hoverinfo": "skip",
                  "connectgaps": False}],
        "layout": figure_layout(theme, height=44),
    }


def spark_patch(k: KpiValue) -> Patch:
    """Return a Patch of a sparkline's points."""
    p = Patch()
    p["data"][0]["y"] = spark_points(k)
    return p


def age_text(seconds: float | None) -> str:
    """Return a data age as '12 s', '4 min', '3 h', '2 d'."""
    return _age_text(seconds)


#: The badge of a KPI with nothing scheduled to measure now (no bus at night): not "no data".
QUIET_WORD = "OFF HOURS"


def kpi_state(k: KpiValue, now: float | None = None) -> dict:
    """Return what a KPI card shows now: value, delta, age and classes (age relative to ``now``)."""
    now = time.time() if now is None else now
    age = None if k.as_of is None else max(0.0, now - k.as_of)
    stale = age is not None and age > STALE_PERIODS * FEED_PERIOD[k.domain]
    category = isinstance(k.value, str)  # a word (the main pollutant): no change, no status
    if k.delta is None or k.value is None:
        delta = k.note if category else ("" if k.value is None else "no earlier value to compare")
    else:
        arrow = "▲" if k.delta > 0 else ("▼" if k.delta < 0 else "■")
        delta = f"{arrow} {abs(k.delta):,.{k.decimals}f} {k.delta_label}"
    cls = (f"kpi status-{'none' if category else k.status}" + (" stale" if stale else "") + (" nodata" if k.value is None else "")
           + (" noassets" if k.no_assets else "") + (" quiet" if k.quiet else ""))
    age_s = (k.no_assets or "no data yet") if k.as_of is None else (
        f"STALE · {age_text(age)} old" if stale else f"{age_text(age)} ago")
    return {"value": k.formatted(), "delta": delta, "age": age_s, "class": cls,
            "status": "" if category else QUIET_WORD if k.quiet else STATUS[k.status][1],
            "note": " · ".join(x for x in (k.loading, "" if category else k.note) if x)}


def kpi_card(k: KpiValue, theme: str = "dark", big: bool = False) -> html.Div:
    """Return one KPI card (clickable: opens the drill-down)."""
    s = kpi_state(k)
    kid = k.id
    what = DEFINITIONS.get(kid, k.label)
    def_id = "kpi-def-" + kid.replace(".", "-")
    return html.Div(
        id={"type": "kpi", "id": kid}, n_clicks=0, className=s["class"] + (" big" if big else ""),
        title=f"{what}. Click for its trend and worst places.", role="button", tabIndex="0",
        **{"aria-describedby": def_id},
        children=[
            html.Span(what, id=def_id, className="kpi-def"),
            html.Div([html.Span(k.label, className="kpi-label"),
                      html.Span(s["status"], id={"type": "kpi-status", "id": kid}, className="kpi-badge")],
                     className="kpi-head"),
            html.Div([html.Span(s["value"], id={"type": "kpi-value", "id": kid}, className="kpi-value"),
                      html.Span(k.unit, className="kpi-unit")], className="kpi-main"),
            html.Div(s["delta"], id={"type": "kpi-delta", "id": kid}, className="kpi-delta"),
            html.Img(id={"type": "kpi-spark", "id": kid}, src=spark_src(k, theme), className="kpi-spark",
                     alt=f"{k.label}: trend of the window"),
            html.Div([html.Span(s["note"], id={"type": "kpi-note", "id": kid}, className="kpi-note"),
                      html.Span(s["age"], id={"type": "kpi-age", "id": kid}, className="kpi-age")],
                     className="kpi-foot"),
        ])


def kpi_sections(values: list[KpiValue], theme: str = "dark") -> list:
    """Return the KPI cards grouped by domain, in registry order; a domain with no assets in the city
    is one line that says so ("no stations in this city"), not a row of empty cards."""
    out = []
    for d in DOMAINS:
        ks = [k for k in values if k.domain == d.id]
        if ks and all(k.no_assets for k in ks):
            out.append(html.Section([html.H2(d.label, className="domain-title"),
                                     html.Div(ks[0].no_assets, className="domain-empty")],
                                    className=f"domain domain-{d.id} noassets", **{"data-domain": d.id}))
        elif ks:
            out.append(html.Section([html.H2(d.label, className="domain-title"),
                                     html.Div([kpi_card(k, theme) for k in ks], className="kpi-row")],
                                    className=f"domain domain-{d.id}", **{"data-domain": d.id}))
    return out


def legend_block(params: LayerParams, layers_on: list[str]) -> list:
    """Return the HTML legend of the visible layers."""
    out = []
    for layer in LAYERS:
        if layer.id not in layers_on:
            continue
        items = [html.Div([html.Span(className="swatch", style={"background": c}), html.Span(lbl)],
                          className="legend-item") for lbl, c in layer.legend(params)]
        out.append(html.Div([html.Div(layer.name, className="legend-title"), *items], className="legend-layer"))
    return out


def kpi_thresholds(kid: str, overrides: dict | None = None) -> tuple[float, float] | None:
    """Return the (warn, bad) thresholds a KPI's own values are judged by (the city's ``overrides``
    first), or None: a KPI without thresholds, or whose status is judged on another value
    (the load in MW by its share of capacity in %)."""
    k = KPI_BY_ID.get(kid)
    if k is None or k.status_from is not None:
        return None
    warn, bad = (overrides or {}).get(kid, (k.warn, k.bad))
    return None if warn is None or bad is None else (float(warn), float(bad))


def threshold_lines(thresholds: tuple[float, float] | None) -> dict:
    """Return layout shapes and annotations: a dashed line at each threshold, labelled WATCH / ALERT."""
    shapes, notes = [], []
    for status, y in zip(("warn", "bad"), thresholds or ()):
        colour, word = STATUS[status]
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
                       "line": {"color": colour, "width": 1.5, "dash": "dash"}, "layer": "below"})
        notes.append({"xref": "paper", "x": 0, "xanchor": "left", "yref": "y", "y": y, "yanchor": "bottom",
                      "text": f"{word} {y:g}", "showarrow": False, "font": {"color": colour, "size": 12}})
    return {"shapes": shapes, "annotations": notes}


def trend_figure(k: KpiValue, tz, theme: str = "dark", thresholds: tuple[float, float] | None = None) -> dict:
    """Return the drill-down trend chart of a KPI (SVG), with its ``thresholds`` (warn, bad) as lines."""
    t = THEMES.get(theme, THEMES["dark"])
    xs = [datetime.fromtimestamp(x, timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M") for x in k.spark_x]
    return {
        "data": [{"type": "scatter", "mode": "lines", "x": xs, "y": k.spark_y, "name": k.label,
                  "line": {"color": STATUS[k.status][0], "width": 3}, "connectgaps": False,
                  "hovertemplate": "%{x}<br>%{y:,.2f} " + k.unit + "<extra></extra>"}],
        "layout": figure_layout(
            theme, height=300, margin=dict(l=60, r=20, t=28 if thresholds else 10, b=40),
            xaxis=dict(visible=True, gridcolor=t["grid"], color=t["muted"], type="date"),
            yaxis=dict(visible=True, gridcolor=t["grid"], color=t["muted"], title=k.unit or None, fixedrange=True),
            hovermode="x unified", font=dict(color=t["text"], size=14), **threshold_lines(thresholds)),
    }


def worst_places(live, domain: str, frames: dict, params: LayerParams, n: int = 10, current_only: bool = False):
    """Return the worst places now for a domain, from its layer, in ``params.district`` (the one
    scope, applied before the top ``n``): places whose value is older than the feed's stale age
    come after every current one (band "stale", with ``as_of`` and ``age_s``), or,
    ``current_only``, not at all."""
    d = DOMAIN_BY_ID.get(domain)
    if d is None or d.layer is None:
        return None
    layer = d.layer
    static = live.static(layer.id)
    mine = scope_places(static, params.district)
    df = layer.worst(mine, frames.get(layer.id), max(len(mine), n), now=params.now, params=params)
    if current_only and "stale" in df.columns:  # a value too old to be current is no place's state "now"
        df = df[~df["stale"].astype(bool)]
    df = df.head(n)
    names = dict(zip(live.districts()["id"], live.districts()["name"]))
    df = df.assign(district=df["district"].map(names).fillna(df["district"]))
    return df
