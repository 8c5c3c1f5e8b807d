"""Domains and their map layers: one package per domain (``layers/<domain>/``), one registry line each.

A domain package's ``DOMAIN`` (a :class:`~layers._domain.Domain`) declares everything of it: its
metrics, asset kinds, reads, KPIs, map layer, wall texts, attention rule, demo feed and importer
hints. Everything else in the product iterates :data:`DOMAINS`. ``districts`` is the base map
(the outlines every domain is placed on), not a domain. No Dash or Flask imports here.
"""
from __future__ import annotations

import importlib
import os

from layers._domain import Domain, Query  # noqa: F401 - the registry's public names
from layers._layer import Layer, LayerParams  # noqa: F401

#: The domains, in the order screens list them. Adding a domain = one package + one line here.
DOMAIN_PACKAGES = [
    "traffic",
    "air_quality",
    "energy",
    "satisfaction",
    "parking",
    "transit",
]

#: ``PANORAMA_WITHOUT=parking,transit``: leave those domains out (a city without them), as if their
#: registry line were removed.
_WITHOUT = {x.strip() for x in os.environ.get("PANORAMA_WITHOUT", "").split(",") if x.strip()}

DOMAINS: list[Domain] = [importlib.import_module(f"layers.{p}").DOMAIN for p in DOMAIN_PACKAGES if p not in _WITHOUT]
DOMAIN_BY_ID: dict[str, Domain] = {d.id: d for d in DOMAINS}
assert len(DOMAIN_BY_ID) == len(DOMAINS), "domain ids must be unique"

from layers.districts import DistrictsLayer  # noqa: E402

#: The base layer: district outlines and names.
DISTRICTS = DistrictsLayer()
#: Drawing order, bottom to top: area fills, the district outlines, then lines and points.
LAYERS: list[Layer] = ([d.layer for d in DOMAINS if d.layer is not None and getattr(d.layer, "area", False)]
                       + [DISTRICTS]
                       + [d.layer for d in DOMAINS if d.layer is not None and not getattr(d.layer, "area", False)])
LAYER_BY_ID: dict[str, Layer] = {layer.id: layer for layer in LAYERS}
#: What a view shows unless asked: the district outlines and the layers their domains turn on. No
#: area fill: in the status colours an all-OK fill is the same green as free-flowing roads, which
#: vanish on it; an area layer is one tick away (and one at a time, see exclusive_areas).
DEFAULT_LAYERS = [DISTRICTS.id] + [d.layer.id for d in DOMAINS if d.layer is not None and d.default_on]


def domain_of_layer(layer_id: str) -> Domain | None:
    """Return the domain whose map layer is ``layer_id`` (None for the base layer)."""
    return next((d for d in DOMAINS if d.layer is not None and d.layer.id == layer_id), None)


def exclusive_areas(ids: list[str]) -> list[str]:
    """Return ``ids`` with at most one area layer (a fill of the districts): the last one listed.

    Two fills on top of each other make a uniform wash, so choosing one area layer turns the other
    off (a checklist appends what was just ticked); point and line layers stack.
    """
    areas = [i for i in ids if getattr(LAYER_BY_ID[i], "area", False)]
    return [i for i in ids if i not in areas[:-1]]


def left_out() -> list[Domain]:
    """Return the declarations of the domains ``PANORAMA_WITHOUT`` leaves out: a city file may still
    name their KPIs (the same file serves the city with and without them)."""
    return [importlib.import_module(f"layers.{p}").DOMAIN for p in DOMAIN_PACKAGES if p in _WITHOUT]
