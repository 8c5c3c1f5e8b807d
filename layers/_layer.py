"""A map layer: the small protocol every domain's layer follows.

Contract:
- ``id`` is permanent (saved in URLs, exports and configs); ``name`` is display only.
- ``static(conn)`` reads the geometry once (sent to the browser once); the live values are the
  domain's current values (``DOMAIN.latest``), or ``prepare(latest)`` of them;
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
    #: Draw the places of ``district`` only (a viewer who may see some districts only), not the city.
    clip: bool = False


class Layer(Protocol):
    """One map layer."""

    id: str
    name: str
    domain: str | None
    description: str

    def static(self, conn) -> pd.DataFrame: ...

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]: ...

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]: ...

    def legend(self, params: LayerParams) -> list[tuple[str, str]]: ...

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10) -> pd.DataFrame: ...


