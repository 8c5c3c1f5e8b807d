"""Districts: outlines and names as the base; click a district to select it."""
from __future__ import annotations

import pandas as pd

from dashboard.theme import THEMES
from layers._layer import LayerParams
from layers._common import district_geometry, static_districts


def dim_colour(bg: str, alpha: float = 0.6) -> str:
    """Return the theme background ``bg`` ('#rrggbb') as a translucent veil over unselected districts."""
    r, g, b = (int(bg[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


class DistrictsLayer:
    """District outlines (transparent fill that catches clicks and hovers)."""

    id = "districts"
    name = "Districts"
    domain = None
    description = "District outlines and names; click one to filter every panel."

    def static(self, conn) -> pd.DataFrame:
        """Return the districts."""
        return static_districts(conn)

    def prepare(self, latest: dict) -> pd.DataFrame:
        """Return nothing: the base layer has no live values."""
        return pd.DataFrame(columns=["district_id"])

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return the outline widths (thicker for the selected district) and the fill: with a district
        selected, every other one is dimmed (z = 1)."""
        sel = params.district
        return [{"z": [0 if sel is None or i == sel else 1 for i in static["id"]],
                 "marker": {"line": {"width": [4 if i == sel else 1.2 for i in static["id"]]}}}]

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return one transparent choropleth with outlines."""
        t = THEMES.get(params.theme, THEMES["dark"])
        v = self.values(static, frame, params)[0]
        # the map puts the visible layers' values per district here (views.district_hover)
        pop = [f"population {int(p):,}" if pd.notna(p) else "population —" for p in static["population"]]
        return [{
            "type": "choroplethmap", "name": "Districts", "uid": "districts",
            # the names, drawn over the map by assets/district_labels.js (no glyphs offline)
            "meta": {"layer": self.id, "labels": self.labels(static)},
            "geojson": district_geometry(static, params), "locations": static["id"].tolist(), "featureidkey": "id",
            "z": v["z"], "zmin": 0, "zmax": 1, "colorscale": [[0, "rgba(0,0,0,0.01)"], [1, dim_colour(t["bg"])]],
            "showscale": False, "showlegend": False, "text": static["name"].tolist(), "customdata": pop,
            "marker": {"line": {"color": t["district_line"], "width": v["marker"]["line"]["width"]}},
            "hovertemplate": "<b>%{text}</b><br>%{customdata}<extra>District</extra>",
        }]

    @staticmethod
    def labels(static: pd.DataFrame) -> list[list]:
        """Return [name, lon, lat] of each district's label point, the most populous first (they
        keep their name where two would overlap)."""
        d = static.dropna(subset=["label_lon", "label_lat"])
        d = d.sort_values(["population", "id"], ascending=[False, True], na_position="last")
        return [[n, round(float(x), 5), round(float(y), 5)] for n, x, y in zip(d["name"], d["label_lon"], d["label_lat"])]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the outline colour."""
        return [("District boundary", THEMES.get(params.theme, THEMES["dark"])["district_line"])]

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, now: float | None = None,
              params: LayerParams | None = None) -> pd.DataFrame:
        """Return nothing: the base layer ranks no places."""
        return pd.DataFrame(columns=["place", "district", "value", "unit"])
