"""Panels as data and images: the panel ids, request validation, CSV/JSON and kaleido rendering.

Panel ids come from the registries, so a new KPI or layer is exportable and embeddable with no code:

- a KPI id (see :data:`dashboard.kpis.KPIS`);
- ``map-<layer id>``, e.g. ``map-traffic``: that layer's map (over the district outlines);
- ``map``: the whole map, its layers chosen with ``?layers=traffic,air_quality``.

Images are drawn by one long-lived headless Chromium (kaleido's sync server), started on first use
with the closed-network flags. Map panels are drawn as SVG shapes on plain x/y axes in the map's
projection (:mod:`dashboard.map_image`), not WebGL map traces: the offline basemap is only a background
colour, and software WebGL took seconds per image. Software WebGL (SwiftShader) stays enabled
for any figure that still carries map traces.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dashboard.kpis import KPI_BY_ID, KpiValue
from layers._domain import scope_places
from dashboard.access import view_key
from dashboard.params import BadParameter, check_district, check_layers, check_window
from dashboard.theme import STATUS, THEMES, status_colour
from layers import LAYER_BY_ID, LAYERS

log = logging.getLogger("panorama.export")

MAP_PREFIX = "map-"
FORMATS = ("json", "csv", "png", "svg")
IMAGE_FORMATS = ("png", "svg")
THEME_NAMES = tuple(THEMES)
#: Bounds of the image parameters: (min, max, default).
WIDTH = (200, 4000, 800)
HEIGHT = (150, 4000, 450)
SCALE = (0.5, 4.0, 1.0)
#: Image sizes are snapped to these steps, so that nearly equal sizes share one cached image.
SIZE_STEP = 20
SCALE_STEP = 0.25
#: The most pixels an image may have (width × height × scale²): 4000 × 4000 at scale 1.
MAX_PIXELS = 16_000_000
REFRESH = (1, 3600)
#: Width (px) the legend takes at the left of a map image: the fitted view stays clear of it.
LEGEND_W = 170
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "png": "image/png",
                 "svg": "image/svg+xml"}


class UnknownPanel(LookupError):
    """No panel has this id; the message is one line, safe to show (escaped)."""


@dataclass(frozen=True)
class Panel:
    """One embeddable panel: a KPI, one layer's map or the whole map."""

    id: str
    kind: str  # "kpi" | "map"
    label: str
    kpi_id: str | None = None
    layer_ids: tuple[str, ...] = ()  # layers drawn (map panels)
    fixed_layers: bool = True  # False: the whole map, layers chosen by ?layers=


def panel_ids() -> list[str]:
    """Return every panel id, from the KPI and layer registries."""
    from dashboard.kpis import KPIS

    return [k.id for k in KPIS] + [MAP_PREFIX + layer.id for layer in LAYERS] + ["map"]


def get_panel(panel_id: str) -> Panel:
    """Return the panel ``panel_id`` or raise :class:`UnknownPanel`."""
    pid = panel_id or ""
    if pid in KPI_BY_ID:
        k = KPI_BY_ID[pid]
        return Panel(pid, "kpi", k.label, kpi_id=pid)
    if pid == "map":
        return Panel(pid, "map", "City map", fixed_layers=False)
    if pid.startswith(MAP_PREFIX) and pid[len(MAP_PREFIX):] in LAYER_BY_ID:
        lid = pid[len(MAP_PREFIX):]
        drawn = (lid,) if lid == "districts" else ("districts", lid)
        return Panel(pid, "map", f"{LAYER_BY_ID[lid].name} map", layer_ids=drawn)
    raise UnknownPanel(f"unknown panel {pid[:60]!r}: see /api/panels for the list")


@dataclass(frozen=True)
class PanelRequest:
    """A validated panel request: the panel and every parameter."""

    panel: Panel
    window: str = "24h"
    district: str | None = None
    theme: str = "dark"
    refresh: int = 5
    layers: tuple[str, ...] = ()
    width: int = WIDTH[2]
    height: int = HEIGHT[2]
    scale: float = SCALE[2]
    extra: dict = field(default_factory=dict, compare=False)

    def key(self, fmt: str) -> str:
        """Return a cache key holding every parameter."""
        return (f"panel:{self.panel.id}:{fmt}:{self.window}:{self.district or '*'}:{self.theme}:{self.refresh}:"
                f"{','.join(self.layers)}:{self.width}x{self.height}@{self.scale}:{view_key()}")


def _number(name: str, raw: str | None, lo: float, hi: float, default: float, integer: bool = True):
    if raw in (None, ""):
        return default
    try:
        v = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        raise BadParameter(f"{name} must be a {'whole ' if integer else ''}number, not {str(raw)[:40]!r}") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise BadParameter(f"{name} must be between {lo:g} and {hi:g}")
    return v


def _snap(v: float, step: float, lo: float, hi: float) -> float:
    """Return ``v`` rounded to the nearest multiple of ``step`` within [lo, hi]."""
    return min(hi, max(lo, round(v / step) * step))


def check_theme(theme: str | None) -> str:
    """Return a valid theme name or raise :class:`BadParameter`."""
    if theme in (None, ""):
        return "dark"
    if theme not in THEMES:
        raise BadParameter(f"unknown theme {theme[:40]!r}: choose one of {', '.join(THEMES)}")
    return theme


def parse_request(live, panel_id: str, args: dict, default_refresh: int | None = None) -> PanelRequest:
    """Validate ``panel_id`` and the query ``args``; raise :class:`UnknownPanel` or :class:`BadParameter`."""
    panel = get_panel(panel_id)
    window = check_window(args.get("window"))
    district = check_district(args.get("district"), live.district_ids())
    theme = check_theme(args.get("theme"))
    refresh = _number("refresh", args.get("refresh"), *REFRESH, default_refresh or live.settings.refresh_seconds)
    if panel.fixed_layers:
        if args.get("layers") not in (None, ""):
            raise BadParameter("layers is only for the whole map panel 'map'")
        layers = panel.layer_ids
    else:
        layers = tuple(check_layers(args.get("layers")))
    width = int(_snap(_number("width", args.get("width"), *WIDTH), SIZE_STEP, *WIDTH[:2]))
    height = int(_snap(_number("height", args.get("height"), *HEIGHT), SIZE_STEP, *HEIGHT[:2]))
    scale = float(_snap(_number("scale", args.get("scale"), *SCALE, integer=False), SCALE_STEP, *SCALE[:2]))
    if width * height * scale ** 2 > MAX_PIXELS:
        raise BadParameter(f"width × height × scale² must be at most {MAX_PIXELS / 1e6:g} million pixels")
    return PanelRequest(panel, window, district, theme, int(refresh), layers, width=width, height=height, scale=scale)


# ------------------------------------------------------------------------------ data


def iso(ts: float | None) -> str | None:
    """Return a UTC ISO 8601 time ('…Z') or None."""
    if ts is None or (isinstance(ts, float) and not math.isfinite(ts)):
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def kpi_value(live, req: PanelRequest) -> KpiValue:
    """Return the panel's KPI from the live read model (cached per bucket)."""
    return next(k for k in live.kpis(req.window, req.district) if k.id == req.panel.kpi_id)


def place_values(live, req: PanelRequest):
    """Return the per-place values of the panel's layers now (one row per place, ``layer`` column first)."""
    import pandas as pd


    frames = live.layer_frames()
    names = dict(zip(live.districts()["id"], live.districts()["name"]))
    out = []
    params = live.params(frames["now"], req.window, req.district)
    for lid in req.layers:
        layer = LAYER_BY_ID[lid]
        static = scope_places(live.static(lid), req.district)
        # with as_of, age_s and stale: an old value never passes for current
        df = layer.worst(static, frames.get(lid), max(len(static), 1), now=frames["now"], params=params)
        if len(df):
            df = df.assign(district_name=df["district"].map(names).fillna(df["district"]))
            df.insert(0, "layer", lid)
            out.append(df)
    if not out:
        return pd.DataFrame(columns=["layer", "place", "district", "value", "unit", "district_name"]), frames["now"]
    return pd.concat(out, ignore_index=True), frames["now"]


def panel_data(live, req: PanelRequest) -> dict:
    """Return the panel's numbers as JSON-ready data (the same the read model serves)."""
    head = {"panel": req.panel.id, "kind": req.panel.kind, "label": req.panel.label, "window": req.window,
            "district": req.district, "city": live.meta().get("city"), "generated_at": iso(time.time())}
    if req.panel.kind == "kpi":
        k = kpi_value(live, req)
        trend = [{"ts": iso(x), "t": int(x), "value": y} for x, y in zip(k.spark_x, k.spark_y)]
        return {**head, "kpi": k.as_json(), "as_of": iso(k.as_of), "trend": trend}
    df, now = place_values(live, req)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    return {**head, "layers": list(req.layers), "as_of": iso(now), "places": rows}


def panel_csv(live, req: PanelRequest) -> str:
    """Return the panel's numbers as CSV: a KPI's fields on every trend row, or one row per place."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if req.panel.kind == "kpi":
        k = kpi_value(live, req)
        j = k.as_json()
        cols = ["kpi", "label", "unit", "window", "district", "value", "delta", "status", "as_of", "ts", "trend_value"]
        w.writerow(cols)
        fixed = [k.id, k.label, k.unit, req.window, req.district or "", _cell(j["value"]), _cell(j["delta"]),
                 k.status, j["as_of"] or ""]
        for x, y in zip(k.spark_x, k.spark_y) if k.spark_x else [(None, None)]:
            w.writerow([_safe_csv(c) for c in fixed] + [iso(x) or "", _cell(y)])
        return buf.getvalue()
    df, _ = place_values(live, req)
    w.writerow(list(df.columns))
    for row in df.itertuples(index=False):
        w.writerow([_safe_csv(_cell(v)) for v in row])
    return buf.getvalue()


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(float(v)) if isinstance(v, float) else str(v)


#: A text cell starting with one of these is read as a formula by spreadsheets (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_csv(v: str) -> str:
    """Defuse spreadsheet formulas in text cells (CSV injection): prefix ``'``; plain numbers stay numbers."""
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) and not _is_num(v) else v


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _is_num(s: str) -> bool:
    """Return True for a plain decimal number such as ``-3.5`` or ``1e-3`` (not ``-inf``, ``-1+1`` or ``-1_0``)."""
    return _NUMBER.fullmatch(s) is not None


# ------------------------------------------------------------------------------ figures


def _corner(text: str, t: dict, x: float, y: float, xanchor: str, yanchor: str, size: int = 12) -> dict:
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": xanchor,
            "yanchor": yanchor, "showarrow": False, "font": {"size": size, "color": t["muted"]}}


def local_time(live, ts: float | None) -> str:
    """Return 'YYYY-MM-DD HH:MM' in the city's timezone, or 'no data'."""
    if ts is None:
        return "no data"
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(live.tz()).strftime("%Y-%m-%d %H:%M")


def kpi_figure(live, req: PanelRequest, k: KpiValue | None = None) -> dict:
    """Return a KPI panel as one plotly figure: title, big number, change, status, trend, as-of time."""
    from dashboard import views

    k = k or kpi_value(live, req)
    t = THEMES[req.theme]
    s = views.kpi_state(k)
    colour, word = status_colour(k.status, req.theme), STATUS[k.status][1]  # as theme.css draws it
    where = _where(live, req.district)
    h = req.height
    big = max(18, min(int(h * 0.22), int(req.width * 0.14)))
    trace = views.spark_figure(k, req.theme)["data"][0] | {"xaxis": "x", "yaxis": "y"}
    ann = [
        {"text": f"<b>{_esc(k.label)}</b> · {_esc(where)}", "x": 0.02, "y": 0.98, "xref": "paper", "yref": "paper",
         "xanchor": "left", "yanchor": "top", "showarrow": False, "font": {"size": max(12, big // 3), "color": t["text"]}},
        {"text": f"<b>{_esc(word)}</b>", "x": 0.98, "y": 0.98, "xref": "paper", "yref": "paper", "xanchor": "right",
         "yanchor": "top", "showarrow": False, "font": {"size": max(11, big // 4), "color": "#06121d"},
         "bgcolor": colour, "borderpad": 3},
        {"text": f"<b>{_esc(s['value'])}</b> <span style='font-size:{max(11, big // 3)}px'>{_esc(k.unit)}</span>",
         "x": 0.02, "y": 0.80, "xref": "paper", "yref": "paper", "xanchor": "left", "yanchor": "top",
         "showarrow": False, "font": {"size": big, "color": t["text"]}},
        _corner(_esc(s["delta"]), t, 0.02, 0.80 - (big + 8) / h, "left", "top", max(11, big // 4)),
        _corner(_esc(k.no_assets) if k.no_assets else f"as of {local_time(live, k.as_of)}", t, 0.98, 0.01, "right",
                "bottom", max(10, big // 5)),
        _corner(f"window {req.window}", t, 0.02, 0.01, "left", "bottom", max(10, big // 5)),
    ]
    layout = {
        "width": req.width, "height": req.height, "paper_bgcolor": t["panel"], "plot_bgcolor": t["panel"],
        "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "showlegend": False,
        "font": {"color": t["text"], "family": "Inter, 'DejaVu Sans', Arial, sans-serif"},
        "xaxis": {"visible": False, "domain": [0.02, 0.98], "fixedrange": True},
        "yaxis": {"visible": False, "domain": [0.1, 0.42], "fixedrange": True},
        "shapes": [{"type": "rect", "xref": "paper", "yref": "paper", "x0": 0, "x1": 0.012, "y0": 0, "y1": 1,
                    "fillcolor": colour, "line": {"width": 0}}],
        "annotations": ann,
    }
    return {"data": [trace], "layout": layout}


def map_panel_figure(live, req: PanelRequest, webgl: bool = False) -> dict:
    """Return a map panel as one plotly figure: the map, a title, the legend and the as-of time.

    The map is drawn as SVG shapes on hidden x/y axes (:mod:`dashboard.map_image`), from the
    same layer traces as the live map: no WebGL, so it renders fast. ``webgl=True`` returns the
    live map's own figure (``scattermap``/``choroplethmap`` on MapLibre) instead.
    """
    from dashboard import views
    from dashboard.map_image import static_map_figure

    t = THEMES[req.theme]
    now = time.time()
    frames = live.layer_frames()
    params = live.params(now, req.window, req.district, req.theme)
    title_h = 34
    legend_w = LEGEND_W if any(lid != "districts" for lid in req.layers) or len(req.layers) == 1 else 0
    view = _view(live, req, (req.width, max(50, req.height - title_h)), {"l": min(legend_w, req.width // 3)})
    fig = views.map_figure(live, frames, params, list(req.layers), view=view, layer_ids=list(req.layers))
    lay = fig["layout"]
    lay.update(width=req.width, height=req.height, margin={"l": 0, "r": 0, "t": title_h, "b": 0},
               paper_bgcolor=t["panel"])
    lay["map"]["domain"] = {"x": [0, 1], "y": [0, 1]}
    ann = [{"text": f"<b>{_esc(req.panel.label)}</b> · {_esc(_where(live, req.district))}", "x": 0.01,
            "y": 1, "xref": "paper", "yref": "paper", "yshift": title_h - 4, "xanchor": "left", "yanchor": "top",
            "showarrow": False, "font": {"size": 16, "color": t["text"]}},
           {**_corner(f"as of {local_time(live, frames.get('now'))}", t, 1, 1, "right", "top", 12),
            "yshift": title_h - 8}]
    lines = []
    for lid in req.layers:
        items = LAYER_BY_ID[lid].legend(params)
        if items and lid != "districts" or len(req.layers) == 1:
            lines.append(f"<b>{_esc(LAYER_BY_ID[lid].name)}</b>")
            empty = live.no_assets(LAYER_BY_ID[lid].domain) if LAYER_BY_ID[lid].domain else ""
            lines += [f"<i>{_esc(empty)}</i>"] if empty else [f"<span style='color:{c}'>■</span> {_esc(lbl)}"
                                                              for lbl, c in items]
    if lines:
        ann.append({"text": "<br>".join(lines), "x": 0.01, "y": 0.01, "xref": "paper", "yref": "paper",
                    "xanchor": "left", "yanchor": "bottom", "align": "left", "showarrow": False,
                    "bgcolor": t["panel_2"], "bordercolor": t["grid"], "borderpad": 6, "opacity": 0.92,
                    "font": {"size": 11, "color": t["text"]}})
    lay["annotations"] = ann
    return fig if webgl else static_map_figure(fig)


def _view(live, req: PanelRequest, px, insets: dict | None = None) -> dict:
    from dashboard import views

    return views.view_for(live, req.district, px=px, insets=insets)


def panel_figure(live, req: PanelRequest) -> dict:
    """Return the figure that draws the panel (KPI card or map)."""
    return kpi_figure(live, req) if req.panel.kind == "kpi" else map_panel_figure(live, req)


def _where(live, district: str | None) -> str:
    if not district:
        return "whole city"
    return dict(zip(live.districts()["id"], live.districts()["name"])).get(district, district)


def _esc(s) -> str:
    """Escape text placed in plotly annotations (they accept a little HTML)."""
    import html

    return html.escape(str(s), quote=True)


# ------------------------------------------------------------------------------ rendering

#: Chromium flags for a closed network: nothing leaves the machine but localhost.
CLOSED_NETWORK_FLAGS = (
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--no-first-run", "--disable-default-apps", "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
)
#: Software WebGL, so map traces (MapLibre) draw without a GPU.
SOFTWARE_GL_FLAGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")


def browser_path() -> str | None:
    """Return the Chromium to use: $BROWSER_PATH, else /usr/bin/chromium when present."""
    p = os.environ.get("BROWSER_PATH")
    if p:
        return p
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


class RendererBusy(RuntimeError):
    """The image renderer cannot take this image now; the message is one line, safe to show."""

    retry_after = 10  # seconds a client should wait before asking again


class RenderAbandoned(RuntimeError):
    """The request of a queued image gave up before its turn: the image was not drawn."""


class Renderer:
    """One long-lived kaleido Chromium for the whole process; calls are serialised.

    At most :attr:`max_waiting` images wait for their turn (another one is refused with
    :class:`RendererBusy`), each at most :attr:`wait_s` seconds; an image whose request gave up
    meanwhile (``gone()`` is true when its turn comes) is skipped, not drawn.
    """

    _lock = threading.Lock()
    _queue = threading.Lock()
    _started = False
    renders = 0
    waiting = 0  # images waiting for their turn now
    skipped = 0  # images not drawn because their request gave up or waited too long
    max_waiting = 4
    wait_s = 20.0

    @classmethod
    def start(cls) -> None:
        """Start the kaleido server (idempotent)."""
        import kaleido
        from choreographer.browsers.chromium import Chromium

        class _Chromium(Chromium):
            def get_cli(self):
                cli = [a for a in super().get_cli() if a != "--disable-gpu"]
                return [*cli, *CLOSED_NETWORK_FLAGS, *SOFTWARE_GL_FLAGS]

        if cls._started:
            return
        with cls._lock:
            if cls._started:
                return
            kw = {"path": browser_path()} if browser_path() else {}
            kaleido.start_sync_server(n=1, timeout=60, mathjax=False, browser_cls=_Chromium,
                                      silence_warnings=True, **kw)
            cls._started = True
            log.info("kaleido renderer started")

    @classmethod
    def render(cls, fig: dict, fmt: str, width: int, height: int, scale: float = 1.0, gone=None) -> bytes:
        """Return the figure as PNG or SVG bytes; raise :class:`RendererBusy` when the queue is full or
        the turn does not come in time, :class:`RenderAbandoned` when ``gone()`` says nobody waits."""
        cls.start()
        with cls._queue:
            if cls.waiting >= cls.max_waiting:
                raise RendererBusy(f"the image renderer is busy ({cls.waiting} images queued): retry shortly")
            cls.waiting += 1
        try:
            turn = cls._lock.acquire(timeout=cls.wait_s)
        finally:
            with cls._queue:
                cls.waiting -= 1
        if not turn:
            cls.skipped += 1
            raise RendererBusy("the image renderer is busy: retry shortly")
        try:
            if gone is not None and gone():
                cls.skipped += 1
                raise RenderAbandoned("the request gave up before its image was drawn")
            cls.renders += 1
            return cls._draw(fig, fmt, width, height, scale)
        finally:
            cls._lock.release()

    @classmethod
    def _draw(cls, fig: dict, fmt: str, width: int, height: int, scale: float) -> bytes:
        import kaleido

        return kaleido.calc_fig_sync(fig, opts={"format": fmt, "width": width, "height": height, "scale": scale})

    @classmethod
    def stop(cls) -> None:
        """Stop the renderer's Chromium."""
        import kaleido

        with cls._lock:
            if cls._started:
                kaleido.stop_sync_server(silence_warnings=True)
                cls._started = False


def panel_bytes(live, req: PanelRequest, fmt: str, gone=None) -> tuple[bytes, str]:
    """Return the panel in ``fmt`` (json|csv|png|svg) and its content type, cached per refresh bucket.

    ``gone()``, when given, says whether the asking client has gone: then its image is not drawn."""
    import json

    if fmt not in FORMATS:
        raise BadParameter(f"unknown format {fmt[:20]!r}: choose one of {', '.join(FORMATS)}")
    bucket = int(time.time() // req.refresh)

    def make() -> bytes:
        if fmt == "json":
            return json.dumps(panel_data(live, req), ensure_ascii=False, default=str).encode()
        if fmt == "csv":
            return panel_csv(live, req).encode()
        fig = panel_figure(live, req)
        return Renderer.render(fig, fmt, req.width, req.height, req.scale, gone=gone)

    return live.cache.compute_once(req.key(fmt), bucket, make), CONTENT_TYPES[fmt]


def standalone_live(settings=None, city=None):
    """Return a :class:`LiveData` outside the web app (CLI, benchmarks): the app's wiring
    (:func:`dashboard.live.build_live`, so the city's thresholds and options apply), a private cache."""
    from dashboard.live import build_live

    return build_live(settings, city)
