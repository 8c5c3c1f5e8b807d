"""The metrics a reading may carry: unit, physical range, asset kind, domain, aggregation.

A reading whose metric is not here, whose asset is of another kind, or whose value falls
outside ``[lo, hi]`` is rejected at ingest with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Domains and how often their feed reports (seconds). Data older than three periods is stale.
DOMAINS: dict[str, dict] = {
    "traffic": {"label": "Traffic", "asset_kind": "road_segment"},
    "air_quality": {"label": "Air quality", "asset_kind": "aq_station"},
    "energy": {"label": "Energy", "asset_kind": "substation"},
    "satisfaction": {"label": "Service satisfaction", "asset_kind": None},
}

#: Asset kinds and the domain they belong to.
ASSET_KINDS = {"road_segment": "traffic", "aq_station": "air_quality", "substation": "energy"}

#: Bucket widths of the rollups, in seconds.
ROLLUP_RESOLUTIONS = (300, 3600)

#: The district id under which city-wide rollups are stored.
CITY = "*"


@dataclass(frozen=True)
class Metric:
    """One measured quantity."""

    id: str
    label: str
    unit: str
    kind: str  # asset kind that may report it
    lo: float
    hi: float
    agg: str = "mean"  # how assets combine into a district: mean or sum


METRICS: dict[str, Metric] = {m.id: m for m in [
    Metric("speed_kmh", "Speed", "km/h", "road_segment", 0, 200),
    Metric("flow_vph", "Flow", "veh/h", "road_segment", 0, 12_000, "sum"),
    Metric("incident", "Incident", "", "road_segment", 0, 1, "sum"),
    Metric("pm25", "PM2.5", "µg/m³", "aq_station", 0, 2_000),
    Metric("pm10", "PM10", "µg/m³", "aq_station", 0, 3_000),
    Metric("so2", "SO₂", "µg/m³", "aq_station", 0, 3_000),
    Metric("no2", "NO₂", "µg/m³", "aq_station", 0, 2_000),
    Metric("co", "CO", "µg/m³", "aq_station", 0, 60_000),
    Metric("o3", "O₃", "µg/m³", "aq_station", 0, 1_500),
    Metric("temp_c", "Temperature", "°C", "aq_station", -50, 60),
    Metric("load_mw", "Load", "MW", "substation", 0, 10_000, "sum"),
    Metric("renewable_mw", "Renewable supply", "MW", "substation", 0, 10_000, "sum"),
]}

#: Derived per-district series kept in the district rollups, computed at ingest from a
#: reading and its asset's attributes: name -> (source metric, function(values, attrs)).
#: ``attrs`` is a dict of numpy arrays aligned with ``values``.
DERIVED = {
    # travel-time index of a segment: free-flow travel time is 1, twice as long is 2
    "tti": ("speed_kmh", lambda v, a: a["free_flow_kmh"] / np.maximum(v, 1.0)),
    # share of segments congested: speed below half of free-flow
    "congested": ("speed_kmh", lambda v, a: (v < 0.5 * a["free_flow_kmh"]).astype(float)),
    # share of capacity in use
    "capacity_mw": ("load_mw", lambda v, a: a["capacity_mw"]),
}
#: how each derived series combines across assets
DERIVED_AGG = {"tti": "mean", "congested": "mean", "capacity_mw": "sum"}

#: Asset attributes that derived series need, with a default when an asset lacks one.
DERIVED_ATTRS = {"free_flow_kmh": 60.0, "capacity_mw": np.nan}


def aggregation(metric: str) -> str:
    """Return ``mean`` or ``sum``: how a metric or derived series combines over assets."""
    if metric in METRICS:
        return METRICS[metric].agg
    return DERIVED_AGG[metric]
