"""The map as a static image with no WebGL: map traces redrawn as SVG on plain lon/lat axes.

The offline basemap is only a background colour (``theme.map_style``), so an image of the map needs
no MapLibre. :func:`static_map_figure` takes the live map figure (``views.map_figure``: the layers'
own ``traces()`` output, so the same values, colour scales, sizes and view) and draws

- ``choroplethmap`` → one filled path shape per district, its fill the trace's colour scale at its
  ``z`` (linear in RGBA, as plotly.js maps it) times the marker opacity, with the trace's outline;
- ``scattermap`` markers → for a dense layer of one marker size (the traffic dots) one path of
  round dots per colour (thousands of SVG point elements are what cost plotly.js the time);
  otherwise a ``scatter`` trace with the same marker (colours, sizes, opacity); hover-only traces
  (marker opacity 0) are left out;

on hidden axes x = longitude, y = latitude, with ``scaleanchor`` and ``scaleratio = 1 / cos(latitude)``
(the local aspect of the Web Mercator map), over the same centre and zoom, on the map's background
colour. Headless Chromium draws this in a fraction of the time software WebGL takes.
"""
from __future__ import annotations

import math
import re

import numpy as np
from shapely.geometry import shape
from shapely.geometry.polygon import orient

from layers._common import untyped

TILE_PX = 512  # plotly's map: world width in px at zoom 0
_MAP_TRACES = ("choroplethmap", "scattermap")
_RGBA = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)")


def parse_colour(c: str) -> tuple[float, float, float, float]:
    """Return (r, g, b, a) of '#rgb', '#rrggbb', 'rgb(…)' or 'rgba(…)'."""
    c = c.strip()
    if c.startswith("#"):
        h = c[1:]
        if len(h) == 3:
            h = "".join(ch * 2 for ch in h)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 1.0
    m = _RGBA.fullmatch(c)
    if not m:
        raise ValueError(f"unsupported colour {c!r}")
    return float(m[1]), float(m[2]), float(m[3]), float(m[4]) if m[4] is not None else 1.0


def rgba(c: tuple[float, float, float, float], opacity: float = 1.0) -> str:
    """Return an 'rgba(…)' string, the alpha multiplied by ``opacity``."""
    r, g, b, a = c
    return f"rgba({round(r)},{round(g)},{round(b)},{round(a * opacity, 4):g})"


def scale_colour(colorscale: list, z: float, zmin: float, zmax: float) -> tuple[float, float, float, float]:
    """Return the colour of ``z`` on a plotly colour scale (clamped, linear in RGBA as plotly.js does)."""
    f = 0.0 if zmax == zmin else min(1.0, max(0.0, (z - zmin) / (zmax - zmin)))
    stops = [(float(p), parse_colour(c)) for p, c in colorscale]
    for (p0, c0), (p1, c1) in zip(stops[:-1], stops[1:]):
        if f <= p1:
            w = 0.0 if p1 == p0 else (f - p0) / (p1 - p0)
            return tuple(a + (b - a) * w for a, b in zip(c0, c1))
    return stops[-1][1]


def _rings(geometry: dict) -> list[np.ndarray]:
    """Return the rings of a (multi)polygon, exteriors counter-clockwise and holes clockwise, so the
    SVG fill (nonzero or even-odd) leaves the holes open."""
    g = shape(geometry)
    polys = list(g.geoms) if g.geom_type == "MultiPolygon" else [g] if g.geom_type == "Polygon" else []
    out = []
    for p in polys:
        p = orient(p, sign=1.0)
        out.append(np.asarray(p.exterior.coords))
        out += [np.asarray(r.coords) for r in p.interiors]
    return out


def _per_location(value, n: int) -> list:
    """Return a per-location list of a scalar-or-array trace property."""
    if isinstance(value, (list, tuple, np.ndarray)) or isinstance(value, dict) and "bdata" in value:
        return list(untyped(value))
    return [value] * n


def choropleth_fills(trace: dict) -> list[dict]:
    """Return, per location of a ``choroplethmap`` trace, its fill colour, outline and rings.

    Locations whose ``z`` is unknown are not drawn (as the choropleth leaves them out).
    """
    feats = {f.get("id", (f.get("properties") or {}).get("id")): f for f in trace["geojson"]["features"]}
    locs = list(trace["locations"])
    z = _per_location(trace.get("z"), len(locs))
    marker = trace.get("marker") or {}
    opacity = float(marker.get("opacity", 1))
    line = marker.get("line") or {}
    widths = _per_location(line.get("width", 1), len(locs))
    line_colours = _per_location(line.get("color", "#444"), len(locs))
    known = [float(v) for v in z if v is not None and math.isfinite(float(v))]
    zmin = float(trace.get("zmin", min(known, default=0)))  # plotly's zauto: the data's range
    zmax = float(trace.get("zmax", max(known, default=1)))
    out = []
    for i, loc in enumerate(locs):
        v = z[i]
        if v is None or not math.isfinite(float(v)) or loc not in feats:
            continue
        fill = scale_colour(trace["colorscale"], float(v), zmin, zmax)
        w = float(widths[i] or 0)
        out.append({"location": loc, "z": float(v), "fillcolor": rgba(fill, opacity), "line_width": w,
                    "line_color": rgba(parse_colour(line_colours[i]), opacity) if w else None,
                    "rings": _rings(feats[loc]["geometry"])})
    return out


class _Canvas:
    """The image's lon/lat axes: ranges, pixels per degree, and SVG path text in data units."""

    def __init__(self, center: dict, zoom: float, px: tuple[int, int]):
        self.xrange, self.yrange = view_ranges(center, zoom, px)
        self.ratio = 1 / math.cos(math.radians(center["lat"]))  # y px per degree ÷ x px per degree
        self.ppd = px[0] / (self.xrange[1] - self.xrange[0])  # x px per degree
        # enough decimals that rounding moves nothing by more than 1/50 px (also at scale 4)
        self.nd = max(3, math.ceil(math.log10(self.ppd * self.ratio * 50)))

    def path(self, rings) -> str:
        """Return an SVG path of closed rings [(lon, lat), …] (absolute M/L/Z: what plotly shapes take)."""
        f = f"{{:.{self.nd}f}},{{:.{self.nd}f}}".format
        return "".join(["M" + "L".join(map(f, r[:, 0].tolist(), r[:, 1].tolist())) + "Z" for r in rings])

    def dots(self, lon, lat, diameter_px: float) -> str:
        """Return an SVG path of round dots (polygons of 8 to 16 sides) of ``diameter_px`` at the points."""
        a = np.linspace(0, 2 * np.pi, int(min(16, max(8, diameter_px))), endpoint=False)
        r = diameter_px / 2 / self.ppd
        xs = (np.asarray(lon, float)[:, None] + r * np.cos(a)).tolist()
        ys = (np.asarray(lat, float)[:, None] + r * np.sin(a) / self.ratio).tolist()
        f = f"{{:.{self.nd}f}},{{:.{self.nd}f}}".format
        return "".join(["M" + "L".join(map(f, x, y)) + "Z" for x, y in zip(xs, ys)])


def _choropleth_shapes(trace: dict, canvas: _Canvas) -> list[dict]:
    """One path shape per location (an enclave fills its neighbour's hole, so they are not merged)."""
    layer = (trace.get("meta") or {}).get("layer", trace.get("name", ""))
    return [{"type": "path", "xref": "x", "yref": "y", "layer": "below", "fillrule": "nonzero",
             "name": f"{layer}:{d['location']}", "path": canvas.path(d["rings"]), "fillcolor": d["fillcolor"],
             "line": {"width": d["line_width"], "color": d["line_color"] or "rgba(0,0,0,0)"}}
            for d in choropleth_fills(trace)]


#: A marker trace with more points than this, all of one size, is drawn as one path per colour
#: (thousands of SVG point elements cost plotly.js far more than a few long paths).
MANY_MARKERS = 200


def marker_colours(trace: dict) -> list[str]:
    """Return each point's marker colour: the colour itself, or its value on the marker's colour scale."""
    marker = trace.get("marker") or {}
    n = len(trace["lon"])
    c = _per_location(marker.get("color", "#1f77b4"), n)
    if n and not isinstance(c[0], str):
        vals = np.asarray(c, float)
        lo = float(marker.get("cmin", np.nanmin(vals)))
        hi = float(marker.get("cmax", np.nanmax(vals)))
        colour = {v: rgba(scale_colour(marker["colorscale"], v, lo, hi)) for v in set(vals.tolist())}
        return [colour[v] for v in vals.tolist()]
    return [str(x) for x in c]


def _scatter(trace: dict, canvas: _Canvas) -> tuple[list[dict], list[dict]]:
    """Return (traces, shapes) drawing a ``scattermap`` markers trace."""
    marker = dict(trace.get("marker") or {})
    opacity = float(marker.get("opacity", 1))
    if opacity == 0 or trace.get("mode", "markers") != "markers":
        return [], []  # hover-only trace: draws nothing
    size = marker.get("size", 6)
    if len(trace["lon"]) > MANY_MARKERS and isinstance(size, (int, float)):
        layer = (trace.get("meta") or {}).get("layer", trace.get("name", ""))
        cols = np.asarray(marker_colours(trace))
        lon, lat = np.asarray(trace["lon"], float), np.asarray(trace["lat"], float)
        shapes = []
        for c in dict.fromkeys(cols.tolist()):
            m = cols == c
            shapes.append({"type": "path", "xref": "x", "yref": "y", "layer": "below", "fillrule": "nonzero",
                           "name": f"{layer}:{c}", "path": canvas.dots(lon[m], lat[m], float(size)),
                           "fillcolor": rgba(parse_colour(c), opacity), "line": {"width": 0}})
        return [], shapes
    marker["line"] = {"width": 0}  # a scatter with per-point sizes would get plotly's bubble outline
    return [{"type": "scatter", "mode": "markers", "x": trace["lon"], "y": trace["lat"], "marker": marker,
             "hoverinfo": "skip", "showlegend": False, "cliponaxis": True,
             **{k: trace[k] for k in ("name", "uid", "meta", "text") if k in trace}}], []


def view_ranges(center: dict, zoom: float, px: tuple[int, int]) -> tuple[list, list]:
    """Return the lon and lat ranges a ``px`` (width, height) Web Mercator map shows at ``center``/``zoom``."""
    world = TILE_PX * 2 ** zoom
    half_lon = px[0] / 2 / world * 360
    ym = math.log(math.tan(math.pi / 4 + math.radians(center["lat"]) / 2))
    half_y = px[1] / 2 / world * 2 * math.pi

    def lat(y):
        return math.degrees(2 * math.atan(math.exp(y)) - math.pi / 2)

    return [center["lon"] - half_lon, center["lon"] + half_lon], [lat(ym - half_y), lat(ym + half_y)]


def background(style: dict, default: str) -> str:
    """Return the background colour of a MapLibre style."""
    for layer in style.get("layers", []) if isinstance(style, dict) else []:
        if layer.get("type") == "background":
            return layer.get("paint", {}).get("background-color", default)
    return default


def static_map_figure(fig: dict) -> dict:
    """Return the map figure ``fig`` (map traces, ``layout.map`` with centre and zoom, ``width``,
    ``height``, ``margin``) redrawn with no WebGL on hidden lon/lat axes: same view, colours and texts.

    Areas and dense dot layers become path shapes under the traces, in the layers' order; sparse
    marker layers (stations) stay ``scatter`` traces, so they are drawn above them.
    """
    lay = {k: v for k, v in fig["layout"].items() if k != "map"}
    m = fig["layout"]["map"]
    mg = lay.get("margin") or {}
    px = (lay["width"] - mg.get("l", 0) - mg.get("r", 0), lay["height"] - mg.get("t", 0) - mg.get("b", 0))
    canvas = _Canvas(m["center"], m["zoom"], px)
    data, shapes = [], list(lay.get("shapes") or [])
    for t in fig["data"]:
        if t.get("visible", True) is False:
            continue
        if t["type"] == "choroplethmap":
            shapes += _choropleth_shapes(t, canvas)
        elif t["type"] == "scattermap":
            tr, sh = _scatter(t, canvas)
            data += tr
            shapes += sh
        else:
            data.append(t)
    axis = {"visible": False, "fixedrange": True, "showgrid": False, "zeroline": False}
    lay.update(
        xaxis={**axis, "range": canvas.xrange, "domain": [0, 1], "constrain": "range"},
        yaxis={**axis, "range": canvas.yrange, "domain": [0, 1], "scaleanchor": "x", "scaleratio": canvas.ratio,
               "constrain": "range"},
        plot_bgcolor=background(m.get("style"), lay.get("paper_bgcolor", "#000")),
        shapes=shapes, hovermode=False, dragmode=False,
    )
    lay.pop("clickmode", None)
    lay.pop("uirevision", None)
    return {"data": data, "layout": lay}
