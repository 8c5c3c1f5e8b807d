"""Parking: car parks and on-street zones as circles coloured by the status of their occupancy (the
occupancy KPI's thresholds, as the tile), sized by capacity; a stale reading is grey.

A refresh sends only each circle's status number and its hover values (typed arrays, a few KB).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.theme import STATUS_WORDS, status_colour, status_legend
from layers._common import (
    STALE_COLOUR,
    aligned,
    fresh_first,
    freshness,
    kpi_thresholds,
    typed,
    with_age,
)
from layers._layer import LayerParams
from layers.parking.kpis import CAR_PARK, FREE, OCC_THRESHOLDS, ZONE, occupancy

STALE, UNKNOWN = -2, -1  # status numbers besides 0 good, 1 warn, 2 bad
_STATUS = ("good", "warn", "bad")
#: Colours of status numbers -2 … 2, in order (a stepped colour scale).
_COLOURS = [STALE_COLOUR, status_colour("unknown")] + [status_colour(s) for s in _STATUS]
_SCALE = [x for k, c in enumerate(_COLOURS) for x in ([k / 5, c], [(k + 1) / 5, c])]
#: The two traces: (kind, uid, label, smallest and largest circle in px).
TRACES = ((CAR_PARK, "parking-car-parks", "Car park", 7, 22), (ZONE, "parking-zones", "On-street zone", 4, 7))
#: 65535 in the hover values marks "unknown".
NA = 65535


def _thresholds(params: LayerParams) -> tuple[float, float]:
    return kpi_thresholds(params, "parking.occupancy", OCC_THRESHOLDS)


def status_number(occ: np.ndarray, stale: np.ndarray, warn: float, bad: float) -> np.ndarray:
    """Return 0 good / 1 warn / 2 bad of each occupancy (a threshold itself takes the worse status),
    -1 when unknown, -2 when the reading is stale."""
    occ = np.asarray(occ, dtype=float)
    out = np.full(len(occ), UNKNOWN, dtype=np.int8)
    known = np.isfinite(occ)
    out[known] = (occ[known] >= warn).astype(np.int8) + (occ[known] >= bad).astype(np.int8)
    out[known & np.asarray(stale, dtype=bool)] = STALE
    return out


class ParkingLayer:
    """Car parks and on-street zones coloured by occupancy."""

    id = "parking"
    name = "Parking"
    domain = "parking"
    description = "Car parks and on-street zones coloured by occupancy (OK / watch / full), sized by capacity."

    def static(self, conn) -> pd.DataFrame:
        """Return the car parks and zones: id, name, kind, district, position and capacity."""
        from dashboard.store.readmodel import assets_frame

        parts = []
        for kind in (CAR_PARK, ZONE):
            a = assets_frame(conn, kind)
            parts.append(pd.DataFrame({
                "id": a["id"].to_numpy(dtype=object), "name": a["name"].to_numpy(dtype=object), "kind": kind,
                "district_id": a["district_id"].to_numpy(dtype=object),
                "lon": a["lon"].to_numpy(dtype=float), "lat": a["lat"].to_numpy(dtype=float),
                "spaces": [float((x or {}).get("spaces", np.nan)) for x in a["attributes"]]}))
        return pd.concat(parts, ignore_index=True)

    def prepare(self, latest: dict) -> pd.DataFrame:
        """Return free spaces and reading time per asset (car parks and zones) from the current values."""
        parts = [pd.DataFrame({"asset_id": w["asset_id"].to_numpy(dtype=object),
                               "free": w[FREE[kind]].to_numpy(dtype=float), "ts": w["ts"].to_numpy(dtype=np.int64)})
                 for kind, key in ((CAR_PARK, "car_parks"), (ZONE, "zones"))
                 if (w := latest.get(key)) is not None and len(w)]
        if not parts:
            return pd.DataFrame({"asset_id": pd.Series(dtype=object), "free": pd.Series(dtype=float),
                                 "ts": pd.Series(dtype=np.int64)})
        return pd.concat(parts, ignore_index=True)

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame, now: float | None,
               thresholds: tuple[float, float] = OCC_THRESHOLDS) -> pd.DataFrame:
        """Per asset of ``static``: free spaces, occupancy, age, stale (at ``now``) and status number."""
        v = aligned(static["id"], frame, "asset_id", ["free", "ts"])
        spaces = static["spaces"].to_numpy(dtype=float)
        occ = occupancy(v["free"], spaces)
        age, stale = freshness(v["ts"], now, self.domain)
        return pd.DataFrame({"free": v["free"], "spaces": spaces, "occupancy": occ, "ts": v["ts"], "age_s": age,
                             "stale": stale, "status": status_number(occ, stale, *thresholds)}, index=static.index)

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return, per trace, the status numbers and hover values (free, capacity, occupancy %, age in min)."""
        s = self._state(static, frame, params.now, _thresholds(params))
        out = []
        for kind, _, label, _, _ in TRACES:
            k = s[static["kind"].to_numpy() == kind]
            custom = np.full((len(k), 4), NA, dtype=np.uint16)
            for j, col, scale in ((0, "free", 1), (1, "spaces", 1), (2, "occupancy", 1), (3, "age_s", 1 / 60)):
                x = k[col].to_numpy(dtype=float) * scale
                ok = np.isfinite(x)
                custom[ok, j] = np.clip(np.round(x[ok]), 0, NA - 1)
            out.append({"marker": {"color": typed(k["status"].to_numpy(), "i1")},
                        "customdata": typed(custom, "u2"),
                        "hovertemplate": "<b>%{text}</b><br>%{customdata[2]}% occupied · %{customdata[0]} of "
                                         "%{customdata[1]} spaces free<br>reading %{customdata[3]} min old "
                                         f"(grey: stale)<extra>{label}</extra>"})
        return out

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return one circle trace of the car parks and one of the zones."""
        v = self.values(static, frame, params)
        out = []
        for (kind, uid, label, lo, hi), vals in zip(TRACES, v):
            k = static[static["kind"].to_numpy() == kind]
            sp = np.sqrt(np.nan_to_num(k["spaces"].to_numpy(dtype=float), nan=0.0))
            top = sp.max() if len(sp) and sp.max() > 0 else 1.0
            out.append({
                "type": "scattermap", "mode": "markers", "name": label, "uid": uid, "meta": {"layer": self.id},
                "lon": k["lon"].round(5).tolist(), "lat": k["lat"].round(5).tolist(), "text": k["name"].tolist(),
                "showlegend": False, **vals,
                "marker": {**vals["marker"], "size": np.round(lo + (hi - lo) * sp / top, 1).tolist(),
                           "opacity": 0.9, "colorscale": _SCALE, "cmin": STALE, "cmax": 2, "showscale": False},
            })
        return out

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the occupancy statuses (the occupancy KPI's thresholds) and the grey of a stale reading."""
        return status_legend(*_thresholds(params), " % occupied") + [("stale reading", STALE_COLOUR)]

    def district_hover(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> tuple[str, dict]:
        """Return the districts' hover line of this layer: occupancy of their current readings."""
        s = self._state(static, frame, params.now)
        ok = np.isfinite(s["occupancy"].to_numpy()) & ~s["stale"].to_numpy()
        g = pd.DataFrame({"district": static["district_id"].to_numpy()[ok], "spaces": s["spaces"].to_numpy()[ok],
                          "free": s["free"].to_numpy()[ok]}).groupby("district")[["spaces", "free"]].sum()
        return "parking", {d: f"{100 * (1 - r.free / r.spaces):.0f}% occupied ({r.free:,.0f} free)"
                           for d, r in g.iterrows() if r.spaces > 0}

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, now: float | None = None,
              params: LayerParams | None = None) -> pd.DataFrame:
        """Return the fullest car parks and zones (stale ones, at ``now``, after every current one);
        ``band``: the status the occupancy KPI's thresholds (the city's, from ``params``) give."""
        s = self._state(static, frame, now, _thresholds(params) if params is not None else OCC_THRESHOLDS)
        words = {STALE: "stale", UNKNOWN: STATUS_WORDS["unknown"].lower(),
                 **{i: STATUS_WORDS[w].lower() for i, w in enumerate(_STATUS)}}
        df = pd.DataFrame({"place": static["name"], "district": static["district_id"], "kind": static["kind"],
                           "value": s["occupancy"].round(1), "unit": "%", "free": s["free"], "spaces": s["spaces"],
                           "band": s["status"].map(words)})
        df = with_age(df, s["ts"], s["age_s"], s["stale"])
        return fresh_first(df[np.isfinite(df["value"])], "value", False, n)
