"""Helpers shared by the layers: time labels, district geometry as GeoJSON, hover text."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from shapely.geometry import mapping, shape

from dashboard.theme import status_colour

#: Simplification tolerance for district outlines drawn on the map (degrees, ≈ 50 m).
SIMPLIFY_DEG = 0.0008


def aligned(keys, frame: pd.DataFrame | None, key: str, columns: list[str]) -> dict[str, np.ndarray]:
    """Return ``frame``'s numeric ``columns`` in the order of ``keys`` (matched on ``frame[key]``), NaN
    where a key has no row or a column is missing: a left join without pandas' merge machinery."""
    keys = np.asarray(keys, dtype=object)
    if frame is None or not len(frame):
        return {c: np.full(len(keys), np.nan) for c in columns}
    pos = pd.Index(frame[key].to_numpy(dtype=object)).get_indexer(keys)
    hit, at = pos >= 0, np.maximum(pos, 0)
    out = {}
    for c in columns:
        if c not in frame.columns:
            out[c] = np.full(len(keys), np.nan)
            continue
        col = frame[c]
        v = col.to_numpy(dtype=float) if col.dtype.kind in "fiu" else \
            pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out[c] = np.where(hit, v[at], np.nan)
    return out


#: Colour of a value too old to count as current (the feed's stale age passed): grey, as "no data", lighter.
STALE_COLOUR = status_colour("stale")


def kpi_thresholds(params, kpi_id: str, default: tuple[float, float]) -> tuple[float, float]:
    """Return KPI ``kpi_id``'s (warn, bad): the city's (``params.extra["thresholds"]``), else ``default``
    (the registry's), so that the map colours a value by the status its KPI tile gives it."""
    return tuple((params.extra.get("thresholds") or {}).get(kpi_id) or default)


def stale_after(domain: str) -> float:
    """Return the age in seconds beyond which a value of ``domain``'s feed is stale (as the KPI cards)."""
    from layers import DOMAIN_BY_ID

    return DOMAIN_BY_ID[domain].stale_after


def freshness(ts, now: float | None, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """Return each value's age in seconds (NaN when unknown) and whether it is stale at ``now``.

    Without ``now`` nothing is stale (ages unknown).
    """
    ts = np.asarray(ts, dtype=float)
    if now is None:
        return np.full(len(ts), np.nan), np.zeros(len(ts), dtype=bool)
    age = np.maximum(0.0, float(now) - ts)
    with np.errstate(invalid="ignore"):
        return age, np.isfinite(age) & (age > stale_after(domain))


def with_age(df: pd.DataFrame, ts, age, stale) -> pd.DataFrame:
    """Return ``df`` with ``as_of`` (UTC ISO time of the value), ``age_s`` and ``stale`` columns."""
    iso = [None if not np.isfinite(t) else datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
           for t in np.asarray(ts, dtype=float)]
    return df.assign(as_of=iso, age_s=np.round(np.asarray(age, dtype=float), 0), stale=np.asarray(stale, dtype=bool))


def fresh_first(df: pd.DataFrame, by: str, ascending: bool, n: int) -> pd.DataFrame:
    """Return the ``n`` first rows of ``df``: current values first (sorted ``by``), stale ones after."""
    return df.sort_values(["stale", by], ascending=[True, ascending], kind="stable").head(n)


def age_text(seconds) -> str:
    """Return a data age as '12 s', '4 min', '3 h', '2 d' ('no data' when unknown)."""
    if seconds is None or not np.isfinite(seconds):
        return "no data"
    s = max(0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 172_800:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} d"


def hhmm(ts, tz=None) -> str:
    """Return a reading time as 'YYYY-MM-DD HH:MM' in ``tz`` (UTC when unknown), or '—'."""
    if ts is None or pd.isna(ts):
        return "—"
    dt = datetime.fromtimestamp(int(ts), timezone.utc)
    if tz is not None:
        dt = dt.astimezone(tz)
    return dt.strftime("%Y-%m-%d %H:%M")


class Shared:
    """Read-only data cached in ``DataFrame.attrs`` that every copy of the frame shares.

    pandas deep-copies ``attrs`` into each frame or column derived from a frame (``static["id"]``,
    a merge, …): for the districts' GeoJSON that copying cost more than building the rest of the map.
    A (deep) copy of a ``Shared`` is the same object.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class Derived(Shared):
    """A :class:`Shared` cache computed from the frame's rows: a frame of fewer rows (one district's,
    :func:`layers._domain.scope`) does not inherit it."""

    __slots__ = ()

    def rows(self, mask) -> None:
        return None


def districts_geojson(static: pd.DataFrame) -> dict:
    """Return the districts as a FeatureCollection keyed by ``id``, simplified for the screen (cached)."""
    if static.attrs.get("geojson") is not None:
        return static.attrs["geojson"].value
    feats = []
    for r in static.itertuples():
        g = shape(r.geometry).simplify(SIMPLIFY_DEG, preserve_topology=True)
        feats.append({"type": "Feature", "id": r.id, "properties": {"name": r.name},
                      "geometry": _round(mapping(g), 4)})
    static.attrs["geojson"] = Derived({"type": "FeatureCollection", "features": feats})
    return static.attrs["geojson"].value


def district_geometry(static: pd.DataFrame, params) -> dict | str:
    """Return what a choropleth's ``geojson`` should be: the page's shared URL (fetched once by the
    browser) when the page gives one, else the GeoJSON itself (exports, embeds)."""
    return params.extra.get("geojson_url") or districts_geojson(static)


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


def typed(values, dtype: str = "i1") -> dict:
    """Return ``values`` as a plotly typed-array spec (base64 bytes): a few KB instead of a JSON list.

    plotly.js decodes ``{"dtype", "bdata", "shape"}`` wherever it takes a data array.
    """
    a = np.ascontiguousarray(np.asarray(values), dtype=np.dtype(dtype))
    spec = {"dtype": dtype, "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ",".join(str(n) for n in a.shape)
    return spec


def untyped(values) -> np.ndarray:
    """Return a numpy array from a list or a typed-array spec (the inverse of :func:`typed`)."""
    if isinstance(values, dict) and "bdata" in values:
        a = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        if "shape" in values:
            a = a.reshape([int(n) for n in str(values["shape"]).split(",")])
        return a
    return np.asarray(values)
