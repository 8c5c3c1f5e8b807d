"""Live data for the screens: KPI and layer snapshots per time bucket, through the shared cache.

A screen's request costs a cache read; one computation per refresh interval serves every viewer.
"""
from __future__ import annotations

import logging
import time
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from dashboard.cache import BucketCache
from dashboard.kpis import compute_all
from dashboard.settings import Settings
from dashboard.store import readmodel as rm
from layers import LAYER_BY_ID, LAYERS, LayerParams

log = logging.getLogger("panorama.live")


class StoreUnavailable(RuntimeError):
    """The store cannot be reached right now."""


class LiveData:
    """Snapshots of KPIs and layer values, cached per refresh bucket."""

    def __init__(self, settings: Settings, engine: Engine, cache: BucketCache):
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self._static: dict[str, object] = {}
        self._districts = None
        self._meta = None
        self.stale_since: float | None = None  # first failed refresh of the current outage

    # --------------------------------------------------------------- time
    def bucket(self, now: float | None = None) -> int:
        """Return the current refresh bucket number."""
        return int((time.time() if now is None else now) // self.settings.refresh_seconds)

    def _run(self, fn):
        try:
            with self.engine.connect() as conn:
                return fn(conn)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc).splitlines()[0]) from exc

    # --------------------------------------------------------------- reference data (once)
    def meta(self) -> dict:
        """Return city facts (name, timezone), read once."""
        if self._meta is None:
            self._meta = self._run(rm.city_meta)
        return self._meta

    def tz(self) -> ZoneInfo:
        """Return the city's timezone."""
        return ZoneInfo(self.meta().get("timezone", "UTC"))

    def districts(self):
        """Return the districts frame, read once."""
        if self._districts is None:
            self._districts = self._run(rm.districts_frame)
        return self._districts

    def district_ids(self) -> set[str]:
        """Return the valid district ids."""
        return set(self.districts()["id"])

    def static(self, layer_id: str):
        """Return a layer's static geometry, read once per process."""
        if layer_id not in self._static:
            layer = LAYER_BY_ID[layer_id]
            self._static[layer_id] = self._run(layer.static)
        return self._static[layer_id]

    def params(self, now: float, window: str = "24h", district: str | None = None, theme: str = "dark") -> LayerParams:
        """Return layer parameters for a request."""
        return LayerParams(now=now, window=window, district=district, aqi_standard=self.settings.aqi_standard,
                           theme=theme, extra={"tz": self.tz()})

    # --------------------------------------------------------------- snapshots
    def kpis(self, window: str, district: str | None, now: float | None = None):
        """Return every KPI for the window and district, computed once per bucket."""
        b = self.bucket(now)
        t = time.time() if now is None else now
        key = f"kpis:{self.settings.aqi_standard}:{window}:{district or '*'}"
        return self.cache.compute_once(key, b, lambda: self._run(
            lambda c: compute_all(c, t, window, district, self.settings.aqi_standard)))

    def layer_frames(self, now: float | None = None) -> dict:
        """Return each layer's live frame, computed once per bucket."""
        b = self.bucket(now)
        t = time.time() if now is None else now
        p = self.params(t)

        def compute(conn):
            return {"now": t, **{layer.id: layer.query(conn, p) for layer in LAYERS}}

        return self.cache.compute_once("layers", b, lambda: self._run(compute))

    def health(self) -> dict:
        """Return the store's reachability and the newest data age per domain."""
        now = time.time()
        out = {"store": "ok", "cache": "ok" if self.cache.healthy else "degraded", "domains": {}}
        try:
            def q(conn):
                conn.execute(text("SELECT 1"))
                ages = {}
                for dom, kind in (("traffic", "road_segment"), ("air_quality", "aq_station"), ("energy", "substation")):
                    ts = rm.newest_ts(conn, kind)
                    ages[dom] = None if ts is None else round(now - ts, 1)
                ts = rm.service_newest_ts(conn)
                ages["satisfaction"] = None if ts is None else round(now - ts, 1)
                return ages
            out["domains"] = self._run(q)
        except StoreUnavailable as exc:
            out["store"] = f"unreachable: {exc}"
        return out
