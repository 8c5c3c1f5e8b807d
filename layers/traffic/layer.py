"""Traffic: road segments coloured by congestion (speed ÷ free-flow speed) in named bands.

Each segment is drawn as a row of dots along its line (one trace for all segments), offset to
its side of the road so both directions show. A refresh sends only the dots' band numbers and
the hover values: a few KB, not the geometry.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from dashboard.theme import STATUS_COLOURS, status_colour
from layers._layer import LayerParams
from layers._common import STALE_COLOUR, aligned, fresh_first, freshness, typed, with_age

#: Congestion bands by speed ÷ free-flow speed and the status each stands for: jammed is an alert
#: and heavy a watch, as in the wall's "needs attention" list; slow and free flow are fine.
CONGESTION_STATUS = {"jammed": "bad", "heavy": "warn", "slow": "good", "free": "good"}
#: (upper bound of ratio, key, label, colour — its status's colour).
CONGESTION_BANDS = [
    (0.25, "jammed", "Jammed (< 25 %)", STATUS_COLOURS["dark"][CONGESTION_STATUS["jammed"]]),
    (0.50, "heavy", "Heavy (25–50 %)", STATUS_COLOURS["dark"][CONGESTION_STATUS["heavy"]]),
    (0.75, "slow", "Slow (50–75 %)", STATUS_COLOURS["dark"][CONGESTION_STATUS["slow"]]),
    (1.01, "free", "Free flow (> 75 %)", STATUS_COLOURS["dark"][CONGESTION_STATUS["free"]]),
]

DOT_SPACING_M = 600
SIDE_OFFSET_M = 160
_M_PER_DEG = 111_320.0
STALE = -2  # band number of a reading older than the feed's stale age


def band_index(ratio: np.ndarray) -> np.ndarray:
    """Return the congestion band of each speed ratio (0 = jammed … 3 = free flow; -1 unknown)."""
    edges = np.array([b[0] for b in CONGESTION_BANDS[:-1]])
    out = np.searchsorted(edges, np.asarray(ratio, dtype=float), side="right").astype(np.int8)
    out[~np.isfinite(ratio)] = -1
    return out


def _dots(coords: list, right_offset_m: float) -> list[tuple[float, float]]:
    """Return points every DOT_SPACING_M along a polyline, shifted to its right-hand side."""
    pts = []
    lat0 = math.radians(coords[0][1])
    kx = _M_PER_DEG * math.cos(lat0)
    for (x0, y0), (x1, y1) in zip(coords[:-1], coords[1:]):
        dx, dy = (x1 - x0) * kx, (y1 - y0) * _M_PER_DEG
        seg = math.hypot(dx, dy)
        if seg == 0:
            continue
        nx, ny = dy / seg, -dx / seg  # right-hand normal
        k = max(1, int(seg // DOT_SPACING_M))
        for i in range(k):
            f = (i + 0.5) / k
            pts.append((x0 + (x1 - x0) * f + nx * right_offset_m / kx,
                        y0 + (y1 - y0) * f + ny * right_offset_m / _M_PER_DEG))
    return pts


class Dots(NamedTuple):
    """The dots drawn along the segments: where, and the row of the segment each belongs to."""

    lon: np.ndarray
    lat: np.ndarray
    seg: np.ndarray

    def rows(self, mask) -> "Dots":
        """Return the dots of the segments ``mask`` keeps, pointing at their rows in the kept frame
        (a district's map draws its own roads only: :func:`layers._domain.scope`)."""
        mask = np.asarray(mask, dtype=bool)
        keep = mask[self.seg] if len(self.seg) else np.zeros(0, dtype=bool)
        row = np.cumsum(mask) - 1
        return Dots(self.lon[keep], self.lat[keep], row[self.seg[keep]].astype(np.int32))


class TrafficLayer:
    """Road segments coloured by congestion."""

    id = "traffic"
    name = "Traffic"
    domain = "traffic"
    description = "Road segments coloured by speed as a share of free-flow speed."
    source = "roads"  # draws the domain's current values of every segment (speed, incident)

    def static(self, conn) -> pd.DataFrame:
        """Return segments with their dots (lon, lat arrays) and midpoints."""
        from dashboard.store.readmodel import assets_frame

        a = assets_frame(conn, "road_segment")
        dots_lon, dots_lat, seg_of_dot = [], [], []
        for i, g in enumerate(a["geometry"]):
            coords = g["coordinates"] if g and g.get("type") == "LineString" else []
            pts = _dots(coords, SIDE_OFFSET_M) if len(coords) >= 2 else []
            dots_lon += [p[0] for p in pts]
            dots_lat += [p[1] for p in pts]
            seg_of_dot += [i] * len(pts)
        out = pd.DataFrame({
            "id": a["id"], "name": a["name"], "district_id": a["district_id"], "lon": a["lon"], "lat": a["lat"],
            "free_flow_kmh": [float(x.get("free_flow_kmh", 60)) for x in a["attributes"]],
            "direction": [x.get("direction", "") for x in a["attributes"]],
        })
        out.attrs["dots"] = Dots(np.round(np.array(dots_lon), 5), np.round(np.array(dots_lat), 5),
                                 np.array(seg_of_dot, dtype=np.int32))
        return out

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame, now: float | None = None):
        """Per segment: speed, ratio, band (-2 where the reading is stale at ``now``), time, incident, age."""
        v = aligned(static["id"], frame, "asset_id", ["speed_kmh", "ts", "incident"])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = v["speed_kmh"] / static["free_flow_kmh"].to_numpy(dtype=float)
        band = band_index(ratio)
        age, stale = freshness(v["ts"], now, self.domain)
        band[stale & (band >= 0)] = STALE
        return v["speed_kmh"], ratio, band, pd.Series(v["ts"], index=static.index), v["incident"], age

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return the dots' band numbers and the midpoints' hover values."""
        speed, ratio, band, ts, inc, age = self._state(static, frame, params.now)
        _, _, seg = static.attrs.get("dots", (np.array([]), np.array([]), np.array([], dtype=int)))
        # speed, % of free flow and the reading's age in minutes, two bytes each; 65535 marks "unknown"
        custom = np.full((len(speed), 3), 65535, dtype=np.uint16)
        ok = np.isfinite(speed) & np.isfinite(ratio)
        custom[ok, 0] = np.clip(np.round(speed[ok]), 0, 65534)
        custom[ok, 1] = np.clip(np.round(100 * ratio[ok]), 0, 65534)
        known = np.isfinite(age)
        custom[known, 2] = np.clip(np.round(age[known] / 60), 0, 65534)
        dot_colour = band[seg] if len(seg) else np.array([], dtype=np.int8)
        return [
            {"marker": {"color": typed(dot_colour, "i1")}},
            # the hover card takes the band's colour (as in the legend): a label per segment would
            # cost more bytes per refresh than every other value of the map together
            {"customdata": typed(custom, "u2"), "marker": {"color": typed(band, "i1")},
              "hovertemplate": "<b>%{text}</b><br>%{customdata[0]} km/h · %{customdata[1]}% of free flow"
                              "<br>reading %{customdata[2]} min old (grey: stale)<extra>Traffic</extra>"},
        ]

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return the dots trace and the invisible hover trace at segment midpoints."""
        lon, lat, _ = static.attrs.get("dots", (np.array([]), np.array([]), None))
        n = len(CONGESTION_BANDS)
        colours = [STALE_COLOUR, status_colour("unknown")] + [b[3] for b in CONGESTION_BANDS]  # -2 stale, -1 no data, 0 … n-1
        scale = []
        for k, c in enumerate(colours):  # stepwise: value k - 2 sits at k / (n + 2), inside slot k
            scale += [[k / (n + 2), c], [(k + 1) / (n + 2), c]]
        v = self.values(static, frame, params)
        dots = {
            "type": "scattermap", "mode": "markers", "name": "Traffic", "uid": "traffic-dots",
            "meta": {"layer": self.id}, "lon": lon.tolist(), "lat": lat.tolist(), "hoverinfo": "skip",
            "marker": {"size": 6, "color": v[0]["marker"]["color"], "colorscale": scale, "cmin": STALE, "cmax": n - 1,
                       "showscale": False},
            "showlegend": False,
        }
        hover = {
            "type": "scattermap", "mode": "markers", "name": "Traffic", "uid": "traffic-hover",
            "meta": {"layer": self.id}, "lon": static["lon"].round(5).tolist(), "lat": static["lat"].round(5).tolist(),
            "text": (static["name"] + " · " + static["direction"]).tolist(),
            "showlegend": False, **v[1],
            "marker": {**v[1]["marker"], "size": 12, "opacity": 0, "colorscale": scale, "cmin": STALE, "cmax": n - 1},
        }
        return [dots, hover]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the congestion bands, worst first, and the grey of a stale reading."""
        out: dict[str, list[str]] = {}  # bands of one status share its colour: one legend entry
        for b in CONGESTION_BANDS:
            out.setdefault(b[3], []).append(b[2])
        return [(" / ".join(labels), c) for c, labels in out.items()] + [("stale reading", STALE_COLOUR)]

    def district_hover(self, static: pd.DataFrame, frame: pd.DataFrame, params) -> tuple[str, dict]:
        """Return the districts' hover line of this layer: the mean speed as % of free flow of their
        segments with a current reading."""
        _, ratio, band, *_ = self._state(static, frame, params.now)
        d = pd.DataFrame({"district": static["district_id"], "ratio": np.where(band >= 0, ratio, np.nan)})
        g = d.dropna().groupby("district")["ratio"].agg(["mean", "size"])
        return "traffic speed", {i: f"{100 * m:.0f}% of free flow ({n} segments)"
                                 for i, m, n in zip(g.index, g["mean"], g["size"].astype(int))}

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, now: float | None = None,
              params=None) -> pd.DataFrame:
        """Return the slowest segments relative to free flow (stale ones, at ``now``, after every current one)."""
        speed, ratio, band, ts, inc, age = self._state(static, frame, now)
        labels = [b[2] for b in CONGESTION_BANDS]
        df = pd.DataFrame({"place": static["name"] + " · " + static["direction"], "district": static["district_id"],
                           "value": np.round(speed, 1), "unit": "km/h", "score": np.round(100 * ratio, 0),
                           "band": [labels[b] if b >= 0 else "stale" if b == STALE else "no data" for b in band],
                           "incident": np.where(inc == 1, "yes", "")})
        df = with_age(df, ts, age, band == STALE)
        df = fresh_first(df[np.isfinite(ratio)], "score", True, n)
        return df.rename(columns={"score": "% of free flow"})
