"""Helpers shared by the layers: time labels, district geometry as GeoJSON, hover text."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
from shapely.geometry import mapping, shape

#: Simplification tolerance for district outlines drawn on the map (degrees, ≈ 50 m).
SIMPLIFY_DEG = 0.0005


def hhmm(ts, tz=None) -> str:
    """Return a reading time as 'YYYY-MM-DD HH:MM' in ``tz`` (UTC when unknown), or '—'."""
    if ts is None or pd.isna(ts):
        return "—"
    dt = datetime.fromtimestamp(int(ts), timezone.utc)
    if tz is not None:
        dt = dt.astimezone(tz)
    return dt.strftime("%Y-%m-%d %H:%M")


def districts_geojson(static: pd.DataFrame) -> dict:
    """Return the districts as a FeatureCollection keyed by ``id``, simplified for the screen."""
    feats = []
    for r in static.itertuples():
        g = shape(r.geometry).simplify(SIMPLIFY_DEG, preserve_topology=True)
        feats.append({"type": "Feature", "id": r.id, "properties": {"name": r.name},
                      "geometry": _round(mapping(g))})
    return {"type": "FeatureCollection", "features": feats}


def _round(geom: dict, nd: int = 5) -> dict:
    def rnd(c):
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
            return [round(c[0], nd), round(c[1], nd)]
        return [rnd(x) for x in c]

    return {"type": geom["type"], "coordinates": rnd(geom["coordinates"])}


def static_districts(conn) -> pd.DataFrame:
    """Read the districts (id, name, population, geometry) for a choropleth layer."""
    from dashboard.store.readmodel import districts_frame

    return districts_frame(conn)[["id", "name", "population", "area_km2", "label_lon", "label_lat", "geometry"]]
