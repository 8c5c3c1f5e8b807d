"""The metrics a reading may carry, gathered from the domains: unit, physical range, asset kind, aggregation.

A reading whose metric is not here, whose asset is of another kind, or whose value falls
outside ``[lo, hi]`` is rejected at ingest with the reason. Each domain declares its own
(``layers/<domain>/``); this module only gathers them.
"""
from __future__ import annotations

from layers import DOMAINS
from layers._domain import Metric

__all__ = ["Metric", "METRICS", "ASSET_VALUES", "ASSET_KINDS", "DERIVED", "DERIVED_AGG", "DERIVED_ATTRS", "ROLLUP_RESOLUTIONS",
           "CITY", "aggregation"]

#: Asset kinds and the domain they belong to.
ASSET_KINDS: dict[str, str] = {k.id: d.id for d in DOMAINS for k in d.kinds}

#: Bucket widths of the rollups, in seconds.
ROLLUP_RESOLUTIONS = (300, 3600)

#: The district id under which city-wide rollups are stored.
CITY = "*"

METRICS: dict[str, Metric] = {m.id: m for d in DOMAINS for m in d.metrics}
#: What an asset's alert rule may test: its metrics and the values its domain computes from them
#: (``Domain.asset_values``, a station's AQI), by id.
ASSET_VALUES: dict[str, Metric] = {**METRICS, **{m.id: m for d in DOMAINS for m in d.asset_values}}

#: Derived per-district series kept in the district rollups, computed at ingest from a
#: reading and its asset's attributes: name -> (source metric, function(values, attrs)).
#: ``attrs`` is a dict of numpy arrays aligned with ``values``.
DERIVED = {x.id: (x.source, x.fn) for d in DOMAINS for x in d.derived}
#: how each derived series combines across assets
DERIVED_AGG = {x.id: x.agg for d in DOMAINS for x in d.derived}
#: Asset attributes that derived series need, with a default when an asset lacks one.
DERIVED_ATTRS = {a: default for d in DOMAINS for x in d.derived for a, default in x.attrs}

assert len(METRICS) == sum(len(d.metrics) for d in DOMAINS), "metric ids must be unique across domains"
assert len(ASSET_VALUES) == len(METRICS) + sum(len(d.asset_values) for d in DOMAINS), "asset value ids must be unique"


def aggregation(metric: str) -> str:
    """Return ``mean`` or ``sum``: how a metric or derived series combines over assets."""
    if metric in METRICS:
        return METRICS[metric].agg
    return DERIVED_AGG[metric]
