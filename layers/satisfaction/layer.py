"""Service satisfaction: districts coloured by the mean satisfaction (1–5) of the last 30 days (the
domain's ``by_district`` frame)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.theme import status_legend, status_scale
from layers._common import aligned, district_geometry, kpi_thresholds, static_districts
from layers._layer import LayerParams
from layers.satisfaction.kpis import SATISFACTION_THRESHOLDS


def _thresholds(params: LayerParams) -> tuple[float, float]:
    return kpi_thresholds(params, "service.satisfaction", SATISFACTION_THRESHOLDS)  # the "Satisfaction" tile's


class SatisfactionLayer:
    """Districts coloured by citizen satisfaction."""

    id = "satisfaction"
    area = True  # fills the districts: one area layer at a time (see layers.exclusive_areas)
    name = "Service satisfaction"
    domain = "satisfaction"
    description = "Districts coloured by the mean satisfaction score (1–5) of requests closed in the last 30 days."
    source = "by_district"  # the domain's current frame it draws: mean score and rated closures per district

    def static(self, conn) -> pd.DataFrame:
        """Return the districts."""
        return static_districts(conn)

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
        v = aligned(static["id"], frame, "district_id", ["satisfaction", "n"])
        return pd.DataFrame({"id": static["id"].to_numpy(), "name": static["name"].to_numpy(),
                             "satisfaction": v["satisfaction"], "n": np.nan_to_num(v["n"]).astype(int)})

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return the mean score per district and hover values."""
        s = self._state(static, frame)
        z = [None if not np.isfinite(v) else round(float(v), 2) for v in s["satisfaction"]]
        return [{"z": z, "customdata": [[int(n)] for n in s["n"]]}]

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return one choropleth of the districts."""
        v = self.values(static, frame, params)[0]
        return [{
            "type": "choroplethmap", "name": "Satisfaction", "uid": "satisfaction", "meta": {"layer": self.id},
            "geojson": district_geometry(static, params), "locations": static["id"].tolist(), "featureidkey": "id",
            "text": static["name"].tolist(), "zmin": 1, "zmax": 5,
            "colorscale": status_scale(*_thresholds(params), 1, 5, higher_is_worse=False),
            "marker": {"opacity": 0.6, "line": {"width": 0}}, "showscale": False, "showlegend": False,
            "hovertemplate": "<b>%{text}</b><br>satisfaction %{z:.2f} / 5<br>%{customdata[0]} rated closures, "
                             "last 30 days<extra>Satisfaction</extra>",
            **v,
        }]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the score's statuses (the "Satisfaction" KPI's thresholds) and their colours."""
        return status_legend(*_thresholds(params), " / 5", higher_is_worse=False)

    def district_hover(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> tuple[str, dict]:
        """Return the districts' hover line of this layer: the mean score and how many rated it."""
        s = self._state(static, frame)
        return "satisfaction", {r.id: f"{r.satisfaction:.2f} / 5 ({r.n:,} rated)"
                                for r in s.itertuples() if np.isfinite(r.satisfaction)}

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, now: float | None = None,
              params: LayerParams | None = None) -> pd.DataFrame:
        """Return the districts with the lowest satisfaction."""
        s = self._state(static, frame)
        df = pd.DataFrame({"place": s["name"], "district": s["id"], "value": s["satisfaction"].round(2),
                           "unit": "/ 5", "rated closures": s["n"]})
        return df[np.isfinite(df["value"])].sort_values("value").head(n)
