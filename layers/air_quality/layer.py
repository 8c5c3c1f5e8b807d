"""Air quality: monitoring stations coloured by the status of their AQI (the AQI KPI's thresholds, as
the tiles), labelled with the configured standard's band, sized by AQI."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.theme import STATUS_WORDS, status_colour
from layers._common import (STALE_COLOUR, age_text, aligned, fresh_first, freshness, hhmm, kpi_thresholds,
                            with_age)
from layers._layer import LayerParams
from layers.air_quality import aqi as aqimod
from layers.air_quality.kpis import AQI_THRESHOLDS, KIND, LABEL, POLLUTANTS, aqi_status

NO_DATA = status_colour("unknown")


def marker_size(aqi_values: np.ndarray) -> np.ndarray:
    """Return marker diameters in px: 16 at AQI 0 growing to 40 at 300 and above; 12 when unknown."""
    a = np.asarray(aqi_values, dtype=float)
    return np.where(np.isfinite(a), 16 + 24 * np.clip(a, 0, 300) / 300, 12).round(1)


def english(label: str) -> str:
    """Return a band label without its Chinese name in parentheses (wall fonts may lack CJK glyphs)."""
    return label.split(" (")[0]


class AirQualityLayer:
    """Stations coloured by the status of their AQI."""

    id = "air_quality"
    name = "Air quality"
    domain = "air_quality"
    description = "Monitoring stations coloured by AQI status (OK / watch / alert), sized by AQI."
    #: the domain's current values it draws: every station's newest values, however old (shown stale)
    source = "readings"

    def static(self, conn) -> pd.DataFrame:
        """Return the stations."""
        from dashboard.store.readmodel import assets_frame

        return assets_frame(conn, KIND)[["id", "name", "district_id", "lon", "lat"]]

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame, std: str, now: float | None = None,
               thresholds: tuple[float, float] | None = None) -> pd.DataFrame:
        """Per station: pollutants, AQI, band, status and colour; a reading older than the feed's stale
        age (at ``now``) keeps its AQI but is drawn and labelled "stale", never as a current band.

        The colour is the status colour the AQI KPI's ``thresholds`` give the value (the tile's)."""
        v = aligned(static["id"], frame, "asset_id", [*POLLUTANTS, "ts"])
        w = pd.DataFrame({"id": static["id"].to_numpy(), "name": static["name"].to_numpy(), **v})
        a, dom = aqimod.aqi_frame(w[POLLUTANTS], std)
        w["aqi"] = np.asarray(a, dtype=float)
        w["dominant"] = list(dom)
        w["age_s"], w["stale"] = freshness(w["ts"], now, self.domain)
        bands = [aqimod.band(x, std) if np.isfinite(x) else None for x in w["aqi"]]
        w["band"] = ["stale" if old and b else english(b.label) if b else "no data"
                     for b, old in zip(bands, w["stale"])]
        w["status"] = ["stale" if old and b else aqi_status(x, thresholds) if b else "unknown"
                       for x, b, old in zip(w["aqi"], bands, w["stale"])]
        w["colour"] = [STALE_COLOUR if s == "stale" else status_colour(s) for s in w["status"]]
        return w

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return marker colours and sizes and the hover values."""
        w = self._state(static, frame, params.aqi_standard, params.now,
                        kpi_thresholds(params, "air.aqi_worst", AQI_THRESHOLDS))
        tz = params.extra.get("tz")
        custom = [[None if not np.isfinite(a) else int(a), LABEL.get(d, "—"), b,
                   None if not np.isfinite(p) else round(p),
                   hhmm(t, tz) + (f" · STALE, {age_text(g)} old" if old else "")]
                  for a, d, b, p, t, g, old in zip(w["aqi"].tolist(), w["dominant"].tolist(), w["band"].tolist(),
                                                   w["pm25"].tolist(), w["ts"].tolist(), w["age_s"].tolist(),
                                                   w["stale"].tolist())]
        std = "China HJ 633-2012" if params.aqi_standard == "cn" else "US EPA"
        return [{
            "marker": {"color": w["colour"].tolist(),
                       "size": np.where(w["stale"], 12, marker_size(w["aqi"])).tolist()},
            "customdata": custom,
            "hovertemplate": "<b>%{text}</b><br>AQI %{customdata[0]} (" + std + ") · %{customdata[2]}"
                             "<br>dominant %{customdata[1]} · PM2.5 %{customdata[3]} µg/m³"
                             "<br>reading %{customdata[4]}<extra>Air quality</extra>",
        }]

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return one marker trace for all stations."""
        v = self.values(static, frame, params)[0]
        return [{
            "type": "scattermap", "mode": "markers", "name": "Air quality", "uid": "air-quality",
            # names_on_wall: the wall writes the stations' names beside their dots (assets/district_labels.js)
            "meta": {"layer": self.id, "names_on_wall": True}, "lon": static["lon"].tolist(), "lat": static["lat"].tolist(),
            "text": static["name"].tolist(), "showlegend": False,
            **v, "marker": {**v["marker"], "opacity": 0.95},
        }]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the AQI ranges of each status (the AQI KPI's thresholds) with the standard's band names."""
        warn, bad = kpi_thresholds(params, "air.aqi_worst", AQI_THRESHOLDS)
        bands = aqimod.BANDS[params.aqi_standard]
        out = []
        for st, lo, hi in (("good", 0, warn), ("warn", warn, bad), ("bad", bad, float("inf"))):
            names = [english(b.label) for b in bands if lo <= b.lo < hi or b.lo < lo <= b.hi]
            rng = f"{lo:g}–{hi - 1:g}" if hi != float("inf") else f"{lo:g}+"
            what = f"{names[0]} and worse" if st == "bad" and len(names) > 1 else ", ".join(names)
            out.append((f"{rng} {STATUS_WORDS[st]} ({what})" if what else f"{rng} {STATUS_WORDS[st]}",
                        status_colour(st)))
        return out

    def district_hover(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> tuple[str, dict]:
        """Return the districts' hover line of this layer: the worst current AQI and its station."""
        from html import escape

        w = self._state(static, frame, params.aqi_standard, params.now)
        w = w.assign(district=static["district_id"].to_numpy())
        w = w[np.isfinite(w["aqi"]) & ~w["stale"].astype(bool)].sort_values("aqi", ascending=False)
        return "worst AQI", {r.district: f"{r.aqi:.0f} at {escape(str(r.name))}"
                             for r in w.drop_duplicates("district").itertuples()}

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, std: str = "cn",
              now: float | None = None, params: LayerParams | None = None) -> pd.DataFrame:
        """Return the stations with the highest AQI (stale ones, at ``now``, after every current one)."""
        if params is not None:
            std = params.aqi_standard
        w = self._state(static, frame, std, now)
        df = pd.DataFrame({"place": w["name"], "district": static["district_id"].to_numpy(), "value": w["aqi"],
                           "unit": "AQI", "band": w["band"], "dominant": w["dominant"].map(LABEL)})
        df = with_age(df, w["ts"], w["age_s"], w["stale"])
        return fresh_first(df[np.isfinite(df["value"])], "value", False, n)
