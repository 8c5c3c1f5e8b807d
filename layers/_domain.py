"""What a domain is: one folder ``layers/<domain>/`` whose ``DOMAIN`` declares everything of it.

A domain (traffic, air quality, parking, …) brings its metrics and units, the kinds of asset that
report them, its reads (SQL in, frames out), its KPIs (pure functions of those frames), its map
layer, its wall texts and attention rule, its feed for the demo city and its importer hints. The
rest of the product iterates :data:`layers.DOMAINS` and never names a domain.

No Dash, Flask or store imports here: this module is the contract, usable from anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

#: Windows a view may ask for (seconds) and the rollup resolution each reads.
WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
WINDOW_RES = {"1h": 300, "24h": 300, "7d": 3600}
#: A value older than this many of its feed's periods is stale.
STALE_PERIODS = 3


@dataclass(frozen=True)
class Metric:
    """One measured quantity: unit, physical range (a reading outside is rejected), asset kind, how
    assets combine into a district (``mean`` or ``sum``)."""

    id: str
    label: str
    unit: str
    kind: str
    lo: float
    hi: float
    agg: str = "mean"


@dataclass(frozen=True)
class Derived:
    """A per-district series computed at ingest from a reading and its asset's attributes.

    ``fn(values, attrs)`` gets the source metric's values and a dict of numpy arrays of the
    attributes named in ``attrs`` (name → default when an asset lacks it), aligned with them.
    """

    id: str
    source: str
    fn: Callable[[np.ndarray, dict], np.ndarray]
    agg: str = "mean"
    attrs: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class AssetKind:
    """A kind of asset a domain measures: ``plural`` words the "no … in this city" note; ``attrs``
    are the numeric attributes an import keeps (name → meaning)."""

    id: str
    label: str
    plural: str
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WallText:
    """What the wall says of a domain: ``headline`` KPI ids (always on the wall, the first one the
    tile's lead and its caption's age), the tile's ``title``, the attention list's ``short`` name,
    and ``what`` the map shows when the domain is in focus."""

    headline: tuple[str, ...]
    title: str
    short: str
    what: str


@dataclass(frozen=True)
class Query:
    """What a snapshot is for: a small frozen value, the one key of the snapshot cache.

    ``window`` None is the *base* snapshot (current values only, every window shares it);
    ``district`` None is the whole city. ``thresholds`` are the city's per-KPI overrides
    as ((kpi id, (warn, bad)), …); ``options`` the city's domain settings as ((key, value), …).
    """

    now: float
    window: str | None = "24h"
    district: str | None = None
    tz: str = "UTC"
    thresholds: tuple = ()
    options: tuple = ()

    def __post_init__(self):
        if self.window is not None and self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r} (choose {', '.join(WINDOWS)})")

    @property
    def span(self) -> int:
        return WINDOWS[self.window or "24h"]

    @property
    def res(self) -> int:
        return WINDOW_RES[self.window or "24h"]

    @property
    def start(self) -> int:
        return int(self.now) - self.span

    def threshold(self, kpi_id: str, default: tuple | None) -> tuple | None:
        """Return the city's (warn, bad) of ``kpi_id``, else ``default``."""
        return dict(self.thresholds).get(kpi_id, default)

    def option(self, key: str, default: Any = None) -> Any:
        """Return a city option (``aqi_standard``, …), else ``default``."""
        return dict(self.options).get(key, default)

    def with_(self, **kw) -> "Query":
        """Return a copy with fields replaced."""
        from dataclasses import replace

        return replace(self, **kw)


def scope_places(static, district: str | None):
    """Return a layer's static places in ``district``: by their ``district_id``, or, for a layer
    whose places are the districts themselves, by their ``id``."""
    if static is None:
        return static
    return scope(static, district, "district_id" if "district_id" in static.columns else "id")


def scope(frame, district: str | None, column: str = "district_id"):
    """Return the rows of ``frame`` in ``district`` (all of them for the whole city).

    The one place the district filter applies to a frame of places: before any top-N, any KPI,
    any attention item.
    """
    if district is None or frame is None or not isinstance(frame, pd.DataFrame) or column not in frame.columns:
        return frame
    mask = frame[column].to_numpy(dtype=object) == district
    out = frame[mask]
    for key, value in frame.attrs.items():  # per-row data kept beside the frame (a road's dots) follows its rows
        if hasattr(value, "rows"):
            out.attrs[key] = value.rows(mask)
    return out


class Frames(dict):
    """One domain's frames in one snapshot: its current values (scoped to the district) and its
    history for the window, by name; ``q`` is the snapshot's query. KPIs read nothing else."""

    def __init__(self, q: Query, *parts: dict):
        super().__init__()
        for p in parts:
            self.update(p or {})
        self.q = q
        self._static = None  # the domain layer's static frame (city-wide), or a function giving it
        self._memo: dict = {}
        #: the domain's current frames city-wide (None: these ones, a city-wide snapshot's): a feed that
        #: serves the whole city tells from them whether it is alive in a district with no report
        self.city: dict | None = None

    @property
    def static(self):
        """The domain layer's static frame (city-wide; None without a layer), read when first asked for."""
        if callable(self._static):
            self._static = self._static()
        return self._static

    @static.setter
    def static(self, value) -> None:
        self._static = value

    def memo(self, key, fn):
        """Compute ``fn()`` once for these frames (a value two KPIs share)."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]


@dataclass(frozen=True)
class Domain:
    """Everything of one domain. Only ``id``, ``label`` and ``period_s`` are required.

    - ``latest(reader)`` → {name: frame}: the current values of its places, city-wide (one read per
      refresh, shared by every window and district; the map draws them).
    - ``history(reader)`` → {name: frame}: what its KPIs need of the window and district (rollups, …).
    - ``kpis``: :class:`layers._kpi.Kpi` computed from :class:`Frames` (the two above, scoped).
    - ``layer``: the map layer (see :mod:`layers`), drawn from ``latest``.
    - ``attention(frames, static)`` → items of the wall's "needs attention" list (see :mod:`layers._kpi`).
    - ``feed(context)`` → the demo city's simulated feed, or None (see :mod:`dashboard.feeds`).
    - ``newest(conn, district)`` → the newest data time (health, reports); default: the newest
      reading of its asset kinds.
    - ``ngsi``: ((NGSI entity type, (asset kind, {NGSI attribute: metric}, (attributes naming the
      asset, …))), …): the entity types ``/ngsi-ld/notify`` and ``panorama import ngsi`` accept.
    - ``city_assets(city, districts, assign)`` → rows of the ``assets`` table from the city folder's
      files (``city.files``): ``assign(geodataframe, districts)`` gives each feature's district.
    - ``records``: a domain whose data are records of its own rather than readings (service
      requests) names the object that stores and reads them (see the satisfaction domain).
    - ``ingest_hooks``: ((metric ids, hook(conn, asset pks, ts)), …) run in the ingest's transaction
      after readings of those metrics are stored (air quality keeps its hourly AQI so).
    - ``movers``: ((metric, label, unit, decimals, higher is worse or None), …): district series a
      report compares between periods ("what changed", its map).
    - ``options``: city.toml settings the domain reads through ``Query.option`` (name → default).
    - ``asset_values``: per-asset values it computes from readings into a frame of ``latest`` (a
      station's AQI), not stored: alert rules test them like metrics (a column of that name).
    """

    id: str
    label: str
    period_s: int
    kinds: tuple[AssetKind, ...] = ()
    metrics: tuple[Metric, ...] = ()
    derived: tuple[Derived, ...] = ()
    latest: Callable | None = None
    history: Callable | None = None
    kpis: tuple = ()
    layer: Any = None
    default_on: bool = False
    wall: WallText | None = None
    attention: Callable | None = None
    feed: Callable | None = None
    newest: Callable | None = None
    ngsi: tuple = ()
    city_assets: Callable | None = None
    records: Any = None
    ingest_hooks: tuple = ()
    movers: tuple = ()
    options: tuple[tuple[str, Any], ...] = ()
    asset_values: tuple[Metric, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def stale_after(self) -> float:
        """Seconds after which a value of this domain's feed is stale."""
        return float(self.period_s * STALE_PERIODS)

    @property
    def kind_ids(self) -> tuple[str, ...]:
        return tuple(k.id for k in self.kinds)
