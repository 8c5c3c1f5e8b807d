"""Air quality: monitoring stations coloured by AQI band of the configured standard, sized by AQI."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard import aqi as aqimod
from dashboard.theme import AQI_COLOURS
from layers import LayerParams
from layers._common import STALE_COLOUR, age_text, aligned, fresh_first, freshness, hhmm, with_age

POLLUTANTS = ["pm25", "pm10", "so2", "no2", "co", "o3"]
LABEL = {"pm25": "PM2.5", "pm10": "PM10", "so2": "SO₂", "no2": "NO₂", "co": "CO", "o3": "O₃"}
NO_DATA = "#5c6775"


def marker_size(aqi_values: np.ndarray) -> np.ndarray:
    """Return marker diameters in px: 16 at AQI 0 growing to 40 at 300 and above; 12 when unknown."""
    a = np.asarray(aqi_values, dtype=float)
    return np.where(np.isfinite(a), 16 + 24 * np.clip(a, 0, 300) / 300, 12).round(1)


def english(label: str) -> str:
    """Return a band label without its Chinese name in parentheses (wall fonts may lack CJK glyphs)."""
    return label.split(" (")[0]


class AirQualityLayer:
    """Stations coloured by AQI band."""

    id = "air_quality"
    name = "Air quality"
    domain = "air_quality"
    description = "Monitoring stations coloured by AQI band, sized by AQI."

    def static(self, conn) -> pd.DataFrame:
        """Return the stations."""
        from dashboard.store.readmodel import assets_frame

        return assets_frame(conn, "aq_station")[["id", "name", "district_id", "lon", "lat"]]

    def query(self, conn, params: LayerParams) -> pd.DataFrame:
        """Return the latest pollutant values per station (wide)."""
        from dashboard.store.readmodel import latest_wide

        return latest_wide(conn, "aq_station", POLLUTANTS)

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame, std: str, now: float | None = None) -> pd.DataFrame:
        """Per station: pollutants, AQI, band and colour; a reading older than the feed's stale age
        (at ``now``) keeps its AQI but is drawn and labelled "stale", never as a current band."""
        v = aligned(static["id"], frame, "asset_id", [*POLLUTANTS, "ts"])
        w = pd.DataFrame({"id": static["id"].to_numpy(), "name": static["name"].to_numpy(), **v})
        a, dom = aqimod.aqi_frame(w[POLLUTANTS], std)
        w["aqi"] = np.asarray(a, dtype=float)
        w["dominant"] = list(dom)
        w["age_s"], w["stale"] = freshness(w["ts"], now, self.domain)
        bands = [aqimod.band(x, std) if np.isfinite(x) else None for x in w["aqi"]]
        w["band"] = ["stale" if old and b else english(b.label) if b else "no data"
                     for b, old in zip(bands, w["stale"])]
        w["colour"] = [STALE_COLOUR if old and b else AQI_COLOURS[b.key] if b else NO_DATA
                       for b, old in zip(bands, w["stale"])]
        return w

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return marker colours and sizes and the hover values."""
        w = self._state(static, frame, params.aqi_standard, params.now)
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
            "meta": {"layer": self.id}, "lon": static["lon"].tolist(), "lat": static["lat"].tolist(),
            "text": static["name"].tolist(), "showlegend": False,
            **v, "marker": {**v["marker"], "opacity": 0.95},
        }]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the AQI bands of the configured standard."""
        return [(f"{b.lo:g}–{b.hi:g} {english(b.label)}", AQI_COLOURS[b.key])
                for b in aqimod.BANDS[params.aqi_standard]]

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, std: str = "cn",
              now: float | None = None) -> pd.DataFrame:
        """Return the stations with the highest AQI (stale ones, at ``now``, after every current one)."""
        w = self._state(static, frame, std, now)
        df = pd.DataFrame({"place": w["name"], "district": static["district_id"].to_numpy(), "value": w["aqi"],
                           "unit": "AQI", "band": w["band"], "dominant": w["dominant"].map(LABEL)})
        df = with_age(df, w["ts"], w["age_s"], w["stale"])
        return fresh_first(df[np.isfinite(df["value"])], "value", False, n)
