"""Map layers: one module per layer behind one small protocol, one registry.

Contract:
- ``id`` is permanent (saved in URLs, exports and configs); ``name`` is display only.
- ``static(conn)`` reads the geometry once (sent to the browser once);
  ``query(conn, params)`` reads the live values from the read model (never raw history);
- ``traces(static, frame, params)`` and ``values(static, frame, params)`` are pure: the first
  builds the full plotly traces, the second only the properties that change on a refresh
  (what a ``dash.Patch`` sends). Both work on an empty frame.
- ``legend(params)`` lists (label, colour); ``worst(static, frame, n)`` the worst places now.
No Dash or Flask imports here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd


@dataclass(frozen=True)
class LayerParams:
    """What a layer needs to know about the request."""

    now: float
    window: str = "24h"
    district: str | None = None
    aqi_standard: str = "cn"
    theme: str = "dark"
    extra: dict = field(default_factory=dict)


class Layer(Protocol):
    """One map layer."""

    id: str
    name: str
    domain: str | None
    description: str

    def static(self, conn) -> pd.DataFrame: ...

    def query(self, conn, params: LayerParams) -> pd.DataFrame: ...

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]: ...

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]: ...

    def legend(self, params: LayerParams) -> list[tuple[str, str]]: ...

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10) -> pd.DataFrame: ...


from layers.air_quality import AirQualityLayer  # noqa: E402
from layers.districts import DistrictsLayer  # noqa: E402
from layers.energy import EnergyLayer  # noqa: E402
from layers.satisfaction import SatisfactionLayer  # noqa: E402
from layers.traffic import TrafficLayer  # noqa: E402

#: Drawing order, bottom to top. Adding a layer = one module + one entry here.
LAYERS: list[Layer] = [EnergyLayer(), SatisfactionLayer(), DistrictsLayer(), TrafficLayer(), AirQualityLayer()]
LAYER_BY_ID: dict[str, Layer] = {layer.id: layer for layer in LAYERS}
#: What a view shows unless asked: the roads and stations over the district outlines. No area fill:
#: in the status colours an all-OK fill is the same green as free-flowing roads, which vanish on it;
#: an area layer is one tick away (and one at a time, see exclusive_areas).
DEFAULT_LAYERS = ["districts", "traffic", "air_quality"]


def exclusive_areas(ids: list[str]) -> list[str]:
    """Return ``ids`` with at most one area layer (a fill of the districts): the last one listed.

    Two fills on top of each other make a uniform wash, so choosing one area layer turns the other
    off (a checklist appends what was just ticked); point and line layers stack.
    """
    areas = [i for i in ids if getattr(LAYER_BY_ID[i], "area", False)]
    return [i for i in ids if i not in areas[:-1]]
