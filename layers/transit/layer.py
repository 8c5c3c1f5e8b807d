"""Public transport: buses at their latest position coloured by delay, over their lines drawn thin.

Two traces: the lines (one trace, the lines separated by gaps; sent once) and the buses. A
refresh sends only the buses' positions, status codes and hover numbers, as typed arrays: a
few KB for hundreds of buses. A bus that has not reported for :data:`IN_SERVICE_S` is out of
service (parked, or lost): not drawn; one whose position is older than the feed's stale age is grey.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.theme import STATUS_WORDS, THEMES, status_colour
from layers._common import STALE_COLOUR, Shared, aligned, fresh_first, freshness, typed, with_age
from layers._layer import LayerParams
from layers.transit.kpis import IN_SERVICE_S, LINE, ON_TIME_BAND, VEHICLE

#: More than this late (s) is an alert; between the on-time band's end and it, a watch (as is early).
VERY_LATE_S = 600.0
STALE, UNKNOWN = -2, -1  # status codes besides 0 on time, 1 watch, 2 alert
_CODES = [STALE_COLOUR, status_colour("unknown"), status_colour("good"), status_colour("warn"), status_colour("bad")]
_NO_NUMBER = -32768  # "unknown" in the hover's 2-byte integers


def delay_status(delay_s) -> np.ndarray:
    """Return each delay's status code: 0 on time, 1 early or late (watch), 2 very late (alert), -1 unknown."""
    d = np.asarray(delay_s, dtype=float)
    out = np.where(d > VERY_LATE_S, 2, np.where((d < ON_TIME_BAND[0]) | (d > ON_TIME_BAND[1]), 1, 0)).astype(np.int8)
    out[~np.isfinite(d)] = UNKNOWN
    return out


def _scale() -> list:
    n = len(_CODES)  # code k - 2 sits at k / (n - 1), inside slot k of n equal slots
    out = []
    for k, c in enumerate(_CODES):
        out += [[k / n, c], [(k + 1) / n, c]]
    return out


def build_static(lines: pd.DataFrame, vehicles: pd.DataFrame) -> pd.DataFrame:
    """Return the buses (id, name, district_id, line_no, line) with the lines in ``attrs``: ``paths``
    (lon, lat with NaN between lines) and ``lines`` (id, name, district_id, line_no, first_s,
    last_s, headway_s). ``lines`` and ``vehicles``: as :func:`assets_frame` (geometry a dict,
    attributes a dict)."""
    def attr(df, key, default=np.nan):
        return [float(a.get(key, default)) if isinstance(a, dict) and a.get(key) is not None else default
                for a in df["attributes"]] if len(df) else []

    lon, lat = [], []
    for g in lines["geometry"] if len(lines) else []:
        coords = g["coordinates"] if g and g.get("type") == "LineString" else []
        if len(coords) < 2:
            continue
        lon += [round(c[0], 5) for c in coords] + [np.nan]
        lat += [round(c[1], 5) for c in coords] + [np.nan]
    table = pd.DataFrame({"id": lines["id"].to_numpy(dtype=object) if len(lines) else [],
                          "name": lines["name"].to_numpy(dtype=object) if len(lines) else [],
                          "district_id": lines["district_id"].to_numpy(dtype=object) if len(lines) else [],
                          "line_no": attr(lines, "line_no"), "first_s": attr(lines, "first_s"),
                          "last_s": attr(lines, "last_s"), "headway_s": attr(lines, "headway_s")})
    line_no = np.asarray(attr(vehicles, "line_no"), dtype=float)
    names = dict(zip(table["line_no"], table["name"]))
    out = pd.DataFrame({"id": vehicles["id"].to_numpy(dtype=object) if len(vehicles) else [],
                        "name": vehicles["name"].to_numpy(dtype=object) if len(vehicles) else [],
                        "district_id": vehicles["district_id"].to_numpy(dtype=object) if len(vehicles) else [],
                        "line_no": line_no, "line": [names.get(x, "") for x in line_no]})
    out.attrs["paths"] = Shared((np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)))
    out.attrs["lines"] = Shared(table)
    return out


def lines_of(static: pd.DataFrame) -> pd.DataFrame:
    """Return the lines table of a static frame (empty when it has none)."""
    s = static.attrs.get("lines") if static is not None else None
    return s.value if s is not None else pd.DataFrame(columns=["id", "name", "district_id", "line_no", "first_s",
                                                              "last_s", "headway_s"])


class TransitLayer:
    """Buses coloured by delay, over their lines."""

    id = "transit"
    name = "Buses"
    domain = "transit"
    description = "Buses at their latest position coloured by delay against the timetable, over their lines."

    def static(self, conn) -> pd.DataFrame:
        """Return the buses and the lines' geometry."""
        from dashboard.store.readmodel import assets_frame

        return build_static(assets_frame(conn, LINE), assets_frame(conn, VEHICLE))

    def prepare(self, latest: dict) -> pd.DataFrame:
        """Return the buses' latest positions and delays (from the domain's current values)."""
        v = latest.get("vehicles") if latest else None
        return v if v is not None else pd.DataFrame(columns=["asset_id", "veh_lon", "veh_lat", "veh_delay_s", "ts"])

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame | None, now: float | None) -> dict:
        """Per bus: position (NaN when out of service), delay, status code, reading time, age, stale."""
        v = aligned(static["id"], frame, "asset_id", ["veh_lon", "veh_lat", "veh_delay_s", "ts"])
        age, stale = freshness(v["ts"], now, self.domain)
        with np.errstate(invalid="ignore"):
            gone = np.isfinite(age) & (age > IN_SERVICE_S)
        shown = np.isfinite(v["veh_lon"]) & np.isfinite(v["veh_lat"]) & ~gone
        code = delay_status(v["veh_delay_s"])
        code[stale] = STALE
        return {"lon": np.where(shown, v["veh_lon"], np.nan), "lat": np.where(shown, v["veh_lat"], np.nan),
                "delay": v["veh_delay_s"], "code": code, "ts": v["ts"], "age": age, "stale": stale & shown,
                "shown": shown}

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return nothing for the lines; the buses' positions, status codes and hover numbers."""
        s = self._state(static, frame, params.now)
        # delay in whole minutes (signed) and the position's age in seconds, two bytes each
        custom = np.full((len(s["code"]), 2), _NO_NUMBER, dtype=np.int16)
        d, a = s["delay"], s["age"]
        ok = np.isfinite(d)
        custom[ok, 0] = np.clip(np.round(d[ok] / 60), -32767, 32767)
        ok = np.isfinite(a)
        custom[ok, 1] = np.clip(np.round(a[ok]), 0, 32767)
        return [{}, {"lon": typed(s["lon"], "f4"), "lat": typed(s["lat"], "f4"),
                     "marker": {"color": typed(s["code"], "i1")}, "customdata": typed(custom, "i2")}]

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return the lines (one thin trace) and the buses (one marker trace)."""
        paths = static.attrs.get("paths")
        lon, lat = paths.value if paths is not None else (np.array([]), np.array([]))
        v = self.values(static, frame, params)
        theme = THEMES.get(params.theme, THEMES["dark"])
        lines = {
            "type": "scattermap", "mode": "lines", "name": "Bus lines", "uid": "transit-lines",
            "meta": {"layer": self.id}, "lon": [None if not np.isfinite(x) else x for x in lon.tolist()],
            "lat": [None if not np.isfinite(x) else x for x in lat.tolist()],
            "line": {"width": 1.5, "color": theme["muted"]}, "opacity": 0.55, "hoverinfo": "skip",
            "showlegend": False,
        }
        buses = {
            "type": "scattermap", "mode": "markers", "name": "Buses", "uid": "transit-buses",
            "meta": {"layer": self.id}, "text": (static["name"].astype(str)).tolist(), "showlegend": False,
            "hovertemplate": "<b>%{text}</b><br>%{customdata[0]:+d} min against the timetable"
                             "<br>position %{customdata[1]} s old (grey: stale)<extra>Buses</extra>",
            **v[1],
            "marker": {**v[1]["marker"], "size": 9, "opacity": 0.95, "colorscale": _scale(), "cmin": STALE,
                       "cmax": 2, "showscale": False},
        }
        return [lines, buses]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the delay statuses and the grey of a stale position."""
        early, late = -ON_TIME_BAND[0] / 60, ON_TIME_BAND[1] / 60
        return [(f"on time ({early:g} min early – {late:g} min late) {STATUS_WORDS['good']}", status_colour("good")),
                (f"{late:g}–{VERY_LATE_S / 60:g} min late or over {early:g} min early {STATUS_WORDS['warn']}",
                 status_colour("warn")),
                (f"over {VERY_LATE_S / 60:g} min late {STATUS_WORDS['bad']}", status_colour("bad")),
                ("stale position", STALE_COLOUR)]

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, now: float | None = None,
              params: LayerParams | None = None) -> pd.DataFrame:
        """Return the buses in service most behind their timetable (stale ones, at ``now``, after every current one)."""
        s = self._state(static, frame, now)
        words = {0: "on time", 2: "very late"}
        band = ["stale" if st else "no data" if c == UNKNOWN else
                ("early" if d < ON_TIME_BAND[0] else "late") if c == 1 else words.get(int(c), "")
                for c, d, st in zip(s["code"], s["delay"], s["stale"])]
        df = pd.DataFrame({"place": static["name"].to_numpy(dtype=object),
                           "district": static["district_id"].to_numpy(dtype=object),
                           "value": np.round(s["delay"] / 60, 1), "unit": "min late",
                           "line": static["line"].to_numpy(dtype=object), "band": band})
        df = with_age(df, s["ts"], s["age"], s["stale"])
        keep = s["shown"] & np.isfinite(s["delay"])
        return fresh_first(df[keep], "value", False, n)
