"""The map as a static image with no WebGL: map traces redrawn as SVG shapes on plain x/y axes.

The offline basemap is only a background colour (``theme.map_style``), so an image of the map needs
no MapLibre. :func:`static_map_figure` takes the live map figure (``views.map_figure``: the layers'
own ``traces()`` output, so the same values, colour scales, sizes and view) and draws

- ``choroplethmap`` → one filled path shape per district, its fill the trace's colour scale at its
  ``z`` (linear in RGBA, as plotly.js maps it) times the marker opacity, with the trace's outline;
- ``scattermap`` markers → for a dense layer of one marker size (the traffic dots) one path of
  round dots per run of consecutive dots of one colour, painted in the data's order as MapLibre
  does (thousands of SVG point elements are what cost plotly.js the time);
  otherwise one circle shape per marker, sized in pixels; the same colours (or colour-scale
  values), sizes (as MapLibre paints them, :data:`RIM_PX`) and opacity; hover-only traces (marker
  opacity 0) are left out;

on hidden axes x = longitude, y = the Web Mercator ordinate of the latitude in degrees (so
``scaleanchor`` with ``scaleratio = 1`` gives the map's projection exactly: every point lands on the
pixel it has on the map), over the same centre and zoom, on the map's background colour. Headless
Chromium draws this in a fraction of the time software WebGL takes.
"""
from __future__ import annotations

import math
import re

import numpy as np
from shapely.geometry import shape
from shapely.geometry.polygon import orient

from layers._common import untyped

TILE_PX = 512  # plotly's map: world width in px at zoom 0
#: MapLibre fades a circle's edge over the last pixel inside its radius: a marker of diameter d
#: looks d/2 - 0.5 px in radius (SVG antialiases across the edge instead).
RIM_PX = 0.5
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


def mercator_y(lat):
    """Return the Web Mercator ordinate of latitudes, in degrees (equal to the latitude at the equator;
    one unit of it spans as many pixels as one degree of longitude, as on the map)."""
    return np.degrees(np.log(np.tan(np.pi / 4 + np.radians(np.asarray(lat, float)) / 2)))


class _Canvas:
    """The image's axes (x = longitude, y = :func:`mercator_y` of latitude, both in degrees, one scale),
    and SVG path text in those units."""

    def __init__(self, center: dict, zoom: float, px: tuple[int, int]):
        self.xrange, self.yrange = view_ranges(center, zoom, px)
        self.ppd = px[0] / (self.xrange[1] - self.xrange[0])  # px per degree, both axes
        # enough decimals that rounding moves nothing by more than 1/50 px (also at scale 4)
        self.nd = max(3, math.ceil(math.log10(self.ppd * 50)))

    def path(self, rings) -> str:
        """Return an SVG path of closed rings [(lon, lat), …] (absolute M/L/Z: what plotly shapes take)."""
        f = f"{{:.{self.nd}f}},{{:.{self.nd}f}}".format
        return "".join(["M" + "L".join(map(f, r[:, 0].tolist(), mercator_y(r[:, 1]).tolist())) + "Z" for r in rings])

    def dots(self, lon, lat, diameter_px: float) -> str:
        """Return an SVG path of round dots at the points, as MapLibre draws markers of ``diameter_px``:
        polygons of 8 to 16 sides with the area of a circle of radius ``diameter_px / 2 - RIM_PX``."""
        n = int(min(16, max(8, diameter_px)))
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        r = max(RIM_PX, diameter_px / 2 - RIM_PX) * math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n))) / self.ppd
        xs = (np.asarray(lon, float)[:, None] + r * np.cos(a)).tolist()
        ys = (mercator_y(lat)[:, None] + r * np.sin(a)).tolist()
        f = f"{{:.{self.nd}f}},{{:.{self.nd}f}}".format
        return "".join(["M" + "L".join(map(f, x, y)) + "Z" for x, y in zip(xs, ys)])


def _choropleth_shapes(trace: dict, canvas: _Canvas) -> list[dict]:
    """One path shape per location (an enclave fills its neighbour's hole, so they are not merged)."""
    layer = (trace.get("meta") or {}).get("layer", trace.get("name", ""))
    return [{"type": "path", "xref": "x", "yref": "y", "layer": "below", "fillrule": "nonzero",
             "name": f"{layer}:{d['location']}", "path": canvas.path(d["rings"]), "fillcolor": d["fillcolor"],
             "line": {"width": d["line_width"], "color": d["line_color"] or "rgba(0,0,0,0)"}}
            for d in choropleth_fills(trace)]


#: A marker trace with more points than this, all of one size, is drawn as paths of many dots
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


def _marker_shapes(trace: dict, canvas: _Canvas) -> list[dict]:
    """Return the shapes drawing a ``scattermap`` markers trace, in its colours, sizes and opacity."""
    marker = trace.get("marker") or {}
    opacity = float(marker.get("opacity", 1))
    if opacity == 0 or trace.get("mode", "markers") != "markers":
        return []  # hover-only trace: draws nothing
    layer = (trace.get("meta") or {}).get("layer", trace.get("name", ""))
    cols = marker_colours(trace)
    size = marker.get("size", 6)
    if len(cols) > MANY_MARKERS and isinstance(size, (int, float)):
        # dense dots: one path per run of consecutive dots of one colour, so that where dots overlap
        # the one drawn last is on top, as on the map (MapLibre paints them in data order)
        lon, lat = np.asarray(trace["lon"], float), np.asarray(trace["lat"], float)
        arr = np.asarray(cols)
        cuts = [0, *(np.flatnonzero(arr[1:] != arr[:-1]) + 1).tolist(), len(arr)]
        return [{"type": "path", "xref": "x", "yref": "y", "layer": "below", "fillrule": "nonzero",
                 "name": f"{layer}:{cols[a]}:{a}", "path": canvas.dots(lon[a:b], lat[a:b], float(size)),
                 "fillcolor": rgba(parse_colour(cols[a]), opacity), "line": {"width": 0}}
                for a, b in zip(cuts[:-1], cuts[1:])]
    sizes = _per_location(size, len(cols))  # a few markers: one circle each, sized in pixels
    return [{"type": "circle", "xref": "x", "yref": "y", "layer": "below", "xsizemode": "pixel",
             "ysizemode": "pixel", "xanchor": x, "yanchor": round(float(mercator_y(y)), 6), "x0": -r, "x1": r,
             "y0": -r, "y1": r, "name": f"{layer}:{i}", "fillcolor": rgba(parse_colour(c), opacity),
             "line": {"width": 0}}
            for i, (x, y, c, d) in enumerate(zip(trace["lon"], trace["lat"], cols, sizes))
            if x is not None and y is not None and d
            for r in [max(RIM_PX, float(d) / 2 - RIM_PX)]]


def view_ranges(center: dict, zoom: float, px: tuple[int, int]) -> tuple[list, list]:
    """Return the x (longitude) and y (:func:`mercator_y`) ranges a ``px`` (width, height) map shows
    at ``center`` and ``zoom`` (plotly's map: 512 px for 360° at zoom 0)."""
    deg_per_px = 360 / (TILE_PX * 2 ** zoom)
    cy = float(mercator_y(center["lat"]))
    hx, hy = px[0] / 2 * deg_per_px, px[1] / 2 * deg_per_px
    return [center["lon"] - hx, center["lon"] + hx], [cy - hy, cy + hy]


def background(style: dict, default: str) -> str:
    """Return the background colour of a MapLibre style."""
    for layer in style.get("layers", []) if isinstance(style, dict) else []:
        if layer.get("type") == "background":
            return layer.get("paint", {}).get("background-color", default)
    return default


#: District names on an image: size in px, and the share of it a capital letter is wide (a box
#: estimate for leaving out a name that would overlap one placed before it)
LABEL_PX, LABEL_EM = 12, 0.68


def _label_annotations(trace: dict, canvas: _Canvas, px: tuple[int, int], colour: str) -> list[dict]:
    """The names of ``meta.labels`` ([name, lon, lat], most important first) as annotations, as the live
    map shows them (assets/district_labels.js): inside the map, none over another."""
    out, taken = [], []
    for name, lon, lat in (trace.get("meta") or {}).get("labels") or []:
        x = (lon - canvas.xrange[0]) * canvas.ppd
        y = (canvas.yrange[1] - float(mercator_y(lat))) * canvas.ppd  # from the top
        w, h = LABEL_EM * LABEL_PX * len(name) + 4, 1.3 * LABEL_PX
        box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        if box[0] < 0 or box[1] < 0 or box[2] > px[0] or box[3] > px[1]:
            continue
        if any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in taken):
            continue
        taken.append(box)
        out.append({"text": str(name).upper(), "x": lon, "y": float(mercator_y(lat)), "xref": "x", "yref": "y",
                    "showarrow": False, "name": f"label:{name}", "opacity": 0.72,
                    "font": {"size": LABEL_PX, "color": colour}})
    return out


def static_map_figure(fig: dict) -> dict:
    """Return the map figure ``fig`` (map traces, ``layout.map`` with centre and zoom, ``width``,
    ``height``, ``margin``) redrawn with no WebGL on hidden x/y axes: same view, colours and texts, and
    the district names the live map draws over itself (as annotations).

    Every layer becomes layout shapes, in the layers' drawing order; other traces pass unchanged.
    """
    lay = {k: v for k, v in fig["layout"].items() if k != "map"}
    m = fig["layout"]["map"]
    mg = lay.get("margin") or {}
    px = (lay["width"] - mg.get("l", 0) - mg.get("r", 0), lay["height"] - mg.get("t", 0) - mg.get("b", 0))
    canvas = _Canvas(m["center"], m["zoom"], px)
    data, shapes, names = [], list(lay.get("shapes") or []), []
    colour = (lay.get("font") or {}).get("color", "#e8eef6")
    for t in fig["data"]:
        if t.get("visible", True) is False:
            continue
        if (t.get("meta") or {}).get("labels"):
            names += _label_annotations(t, canvas, px, colour)
        if t["type"] == "choroplethmap":
            shapes += _choropleth_shapes(t, canvas)
        elif t["type"] == "scattermap":
            # positions may come as typed arrays ({dtype, bdata}: the buses' live positions)
            t = {**t, "lon": _per_location(t.get("lon", []), 0), "lat": _per_location(t.get("lat", []), 0)}
            shapes += _marker_shapes(t, canvas)
        else:
            data.append(t)
    axis = {"visible": False, "fixedrange": True, "showgrid": False, "zeroline": False}
    lay.update(
        xaxis={**axis, "range": canvas.xrange, "domain": [0, 1], "constrain": "range"},
        yaxis={**axis, "range": canvas.yrange, "domain": [0, 1], "scaleanchor": "x", "scaleratio": 1,
               "constrain": "range"},
        plot_bgcolor=background(m.get("style"), lay.get("paper_bgcolor", "#000")),
        shapes=shapes, hovermode=False, dragmode=False,
        annotations=names + list(lay.get("annotations") or []),  # the panel's own texts over the names
    )
    lay.pop("clickmode", None)
    lay.pop("uirevision", None)
    return {"data": data, "layout": lay}
