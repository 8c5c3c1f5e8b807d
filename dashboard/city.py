"""A city is a folder with a ``city.toml`` naming its files; load one into the store."""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
from shapely.geometry import mapping
from sqlalchemy import Engine, delete, insert, select

from dashboard.store.schema import assets, districts, meta, service_categories


@dataclass
class City:
    """What a city folder declares."""

    folder: Path
    name: str
    timezone: str
    aqi_standard: str = "cn"
    files: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, tuple[float, float]]:
        """Return the city's KPI thresholds: ``[thresholds]`` "kpi.id" = { warn = …, bad = … }."""
        from dashboard.kpis import KPI_BY_ID

        out = {}
        for kid, t in (self.config.get("thresholds") or {}).items():
            if kid not in KPI_BY_ID:
                raise ValueError(f"{self.folder / 'city.toml'}: [thresholds] names unknown KPI {kid!r}")
            if not isinstance(t, dict) or not {"warn", "bad"} <= set(t):
                raise ValueError(f"{self.folder / 'city.toml'}: [thresholds] {kid!r} needs {{ warn = …, bad = … }}")
            out[kid] = (float(t["warn"]), float(t["bad"]))
        return out

    @property
    def kpi_ids(self) -> list[str]:
        """Return the KPIs the city shows (``[kpis] show = [...]``; default every KPI), in registry order."""
        from dashboard.kpis import KPIS

        show = (self.config.get("kpis") or {}).get("show")
        if not show:
            return [k.id for k in KPIS]
        unknown = sorted(set(show) - {k.id for k in KPIS})
        if unknown:
            raise ValueError(f"{self.folder / 'city.toml'}: [kpis] show names unknown KPI(s) {', '.join(unknown)}")
        return [k.id for k in KPIS if k.id in show]

    @property
    def map_view(self) -> dict:
        """Return the city's ``[map]`` section, checked: ``center = [lon, lat]`` with ``zoom``, and/or
        ``bounds = [west, south, east, north]`` (the view the screens fit); {} when absent."""
        m = self.config.get("map") or {}
        where = f"{self.folder / 'city.toml'}: [map]"
        if not isinstance(m, dict):
            raise ValueError(f"{where} must be a table")
        unknown = sorted(set(m) - {"center", "zoom", "bounds"})
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {', '.join(unknown)} (use center, zoom, bounds)")

        def numbers(key, n):
            v = m[key]
            if not (isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                  and math.isfinite(x) for x in v)):
                raise ValueError(f"{where} {key} must be a list of {n} numbers")
            return [float(x) for x in v]

        out: dict = {}
        if "center" in m or "zoom" in m:
            if not {"center", "zoom"} <= set(m):
                raise ValueError(f"{where} center and zoom go together")
            lon, lat = numbers("center", 2)
            z = m["zoom"]
            if isinstance(z, bool) or not isinstance(z, (int, float)) or not 0 <= z <= 22:
                raise ValueError(f"{where} zoom must be a number from 0 to 22")
            if not (-180 <= lon <= 180 and -85 <= lat <= 85):
                raise ValueError(f"{where} center must be [longitude, latitude] inside [-180, 180] × [-85, 85]")
            out.update(center={"lon": lon, "lat": lat}, zoom=float(z))
        if "bounds" in m:
            w, s, e, n = numbers("bounds", 4)
            if not (-180 <= w < e <= 180 and -85 <= s < n <= 85):
                raise ValueError(f"{where} bounds must be [west, south, east, north] with west < east, south < north")
            out["bounds"] = {"lon": [w, e], "lat": [s, n]}
        return out

    @property
    def alert_rules(self) -> list:
        """Return the city's alert rules (``[[alert]]`` tables, see :mod:`dashboard.alerts.rules`), checked
        against the registry and, when its districts file is GeoJSON, its district ids; a bad rule is
        a one-line :class:`~dashboard.alerts.rules.RuleError` naming the rule and the field."""
        from dashboard.alerts.rules import parse_rules

        return parse_rules(self.config.get("alert"), str(self.folder / "city.toml"), self.district_ids())

    @property
    def alerting(self):
        """Return the city's ``[alerting]`` table (auto-resolve, escalation, teams; see
        :mod:`dashboard.alerts.config`), checked; a mistake is a one-line ``RuleError``."""
        from dashboard.alerts.config import parse_alerting

        return parse_alerting(self.config.get("alerting"), str(self.folder / "city.toml"))

    @property
    def incidents(self):
        """Return the city's incident types, grouping rules and team members (``[[incident_type]]``,
        ``[[incident_rule]]``, ``[teams]``; see :mod:`dashboard.incidents.config`), checked; a mistake is a
        one-line ``RuleError``."""
        from dashboard.incidents.config import parse_incidents

        return parse_incidents(self.config, str(self.folder / "city.toml"), self.alerting)

    @property
    def notify_channels(self) -> list:
        """Return the city's notification channels (``[[notify]]`` tables, see
        :mod:`dashboard.alerts.outbox`), checked against its rules and districts; a bad channel is a
        one-line :class:`~dashboard.alerts.outbox.NotifyError`."""
        from dashboard.alerts.outbox import parse_channels

        return parse_channels(self.config.get("notify"), str(self.folder / "city.toml"),
                              {r.id for r in self.alert_rules}, self.district_ids())

    def district_ids(self) -> set[str] | None:
        """Return the ids of the districts file when it is GeoJSON (read without geometry), else None."""
        name = self.files.get("districts", "")
        if not name.lower().endswith((".geojson", ".json")) or not (self.folder / name).is_file():
            return None
        with open(self.folder / name, "rb") as fh:
            features = json.load(fh).get("features") or []
        ids = [(f.get("properties") or {}).get("id") for f in features]
        return None if not ids or None in ids else {str(i) for i in ids}  # ids named at import: unknown here

    def path(self, key: str) -> Path:
        """Return the path of the file the city names under ``key``."""
        if key not in self.files:
            raise KeyError(f"{self.folder / 'city.toml'}: no file named for {key!r} under [files]")
        return self.folder / self.files[key]


def load_city(folder: Path) -> City:
    """Read ``city.toml`` from ``folder``."""
    cfg_path = Path(folder) / "city.toml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no city.toml in {folder}: a city is a folder with a city.toml")
    with open(cfg_path, "rb") as fh:
        cfg = tomllib.load(fh)
    for key in ("name", "timezone"):
        if key not in cfg:
            raise ValueError(f"{cfg_path}: missing {key!r}")
    return City(folder=Path(folder), name=cfg["name"], timezone=cfg["timezone"],
                aqi_standard=cfg.get("aqi_standard", "cn"), files=dict(cfg.get("files", {})), config=cfg)


def assign_districts(points: gpd.GeoDataFrame, dist: gpd.GeoDataFrame) -> pd.Series:
    """Return the district id of each geometry (lines by their midpoint), or None outside all."""
    geoms = points.geometry
    reps = geoms.apply(lambda g: g.interpolate(0.5, normalized=True) if g.geom_type.endswith("LineString") else g)
    pts = gpd.GeoDataFrame(geometry=reps, crs=points.crs)
    joined = gpd.sjoin(pts, dist[["id", "geometry"]], how="left", predicate="within")
    joined = joined[~joined.index.duplicated(keep="first")]
    out = joined["id"].reindex(points.index)
    # points on a border or a hair outside (schematic data): nearest district
    miss = out.isna()
    if miss.any():
        near = gpd.sjoin_nearest(pts[miss].to_crs(3857), dist[["id", "geometry"]].to_crs(3857),
                                 how="left", max_distance=2_000)
        near = near[~near.index.duplicated(keep="first")]
        out[miss] = near["id"]
    return out.astype(object).where(out.notna(), None)


def _districts_frame(city: City) -> gpd.GeoDataFrame:
    dist = gpd.read_file(city.path("districts"))
    if dist.crs is not None and dist.crs.to_epsg() != 4326:
        dist = dist.to_crs(4326)
    return dist


def city_assets(city: City, dist: gpd.GeoDataFrame) -> list[dict]:
    """Return every asset of the city as rows for the ``assets`` table: each domain reads its own
    files of the city folder (``Domain.city_assets``)."""
    from layers import DOMAINS

    rows: list[dict] = []
    for d in DOMAINS:
        if d.city_assets is not None:
            rows += d.city_assets(city, dist, assign_districts)
    return rows


def install_city(engine: Engine, city: City) -> dict[str, int]:
    """Write the city's districts, assets and service categories into the store (replacing them)."""
    dist = _districts_frame(city)
    asset_rows = city_assets(city, dist)
    cats = pd.read_csv(city.path("service_categories")) if "service_categories" in city.files else None
    with engine.begin() as conn:
        existing = {r.id for r in conn.execute(select(assets.c.id))}
        conn.execute(delete(districts).where(districts.c.id.notin_(list(dist["id"]))))
        for r in dist.itertuples():
            row = dict(id=r.id, name=r.name, name_local=getattr(r, "name_local", None),
                       population=int(r.population) if pd.notna(getattr(r, "population", None)) else None,
                       area_km2=float(r.area_km2) if pd.notna(getattr(r, "area_km2", None)) else None,
                       label_lon=float(getattr(r, "label_lon", r.geometry.representative_point().x)),
                       label_lat=float(getattr(r, "label_lat", r.geometry.representative_point().y)),
                       geometry=json.dumps(mapping(r.geometry)))
            if conn.execute(select(districts.c.id).where(districts.c.id == r.id)).first():
                conn.execute(districts.update().where(districts.c.id == r.id).values(**row))
            else:
                conn.execute(insert(districts).values(**row))
        new = [a for a in asset_rows if a["id"] not in existing]
        for a in asset_rows:
            if a["id"] in existing:
                conn.execute(assets.update().where(assets.c.id == a["id"]).values(**a))
        if new:
            conn.execute(insert(assets), new)
        if cats is not None:
            conn.execute(delete(service_categories))
            conn.execute(insert(service_categories), cats[["id", "name", "sla_hours"]].to_dict("records"))
        conn.execute(delete(meta).where(meta.c.key.in_(["city", "timezone"])))
        conn.execute(insert(meta), [{"key": "city", "value": city.name}, {"key": "timezone", "value": city.timezone}])
    return {"districts": len(dist), "assets": len(asset_rows), "categories": 0 if cats is None else len(cats)}
