"""Live data for the screens: one snapshot per (time bucket, window, district), through the shared cache.

A screen's request costs a cache read; one computation per refresh interval serves every viewer.
A snapshot (:mod:`dashboard.snapshot`) reads everything a refresh needs once and runs every
domain's pure transforms on it; the base snapshot of a bucket (current values, city-wide) is
shared by every window and district. :func:`build_live` wires this for the app, ``panorama
export`` and ``panorama report`` alike.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from dashboard import snapshot as snap
from dashboard.cache import BucketCache
from dashboard.city import City
from dashboard.kpis import KPIS
from dashboard.settings import Settings
from dashboard.store import readmodel as rm
from layers import DOMAINS, LAYER_BY_ID, LayerParams, Query

log = logging.getLogger("panorama.live")


def build_live(settings: Settings | None = None, city: City | None = None, engine: Engine | None = None,
               cache: BucketCache | None = None) -> "LiveData":
    """Return the live data of ``settings``' store and ``city`` (default: the configured city folder,
    if any): the app, ``panorama export`` and ``panorama report`` all come through here, so they
    apply the same city thresholds, options and map view. ``cache``: default a private in-memory one."""
    from dashboard.settings import get_settings

    settings = settings or get_settings()
    if city is None:
        city = configured_city(settings)
    if city is not None and "aqi_standard" not in settings.model_fields_set:
        settings = settings.model_copy(update={"aqi_standard": city.aqi_standard})  # the city's, unless set
    if engine is None:
        from dashboard.store.migrate import readonly_engine

        engine = readonly_engine(settings.resolved_read_database_url)
    if cache is None:
        from flask import Flask
        from flask_caching import Cache

        from dashboard.cache import cache_config

        c = Cache()
        c.init_app(Flask("panorama-live"), config=cache_config("simple://", default_timeout=settings.refresh_seconds * 6))
        cache = BucketCache(c, ttl=settings.refresh_seconds * 6)
    return LiveData(settings, engine, cache, city)


def configured_city(settings: Settings) -> City | None:
    """Return the city folder ``settings`` name (or the embedded default's), or None when there is none."""
    from dashboard.city import load_city

    try:
        return load_city(settings.city_dir)
    except FileNotFoundError:
        return None


class StoreUnavailable(RuntimeError):
    """The store cannot be reached right now."""


class LiveData:
    """Snapshots of KPIs, layer values and the attention list, cached per refresh bucket."""

    def __init__(self, settings: Settings, engine: Engine, cache: BucketCache, city: City | None = None):
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.city = city
        self.thresholds = city.thresholds if city else {}
        self.kpi_ids = city.kpi_ids if city else [k.id for k in KPIS]
        self.map_config = city.map_view if city else {}
        self._bounds: dict = {}
        self._static: dict[str, object] = {}
        self._districts = None
        self._meta = None
        self.stale_since: float | None = None  # first failed refresh of the current outage
        self._recent: dict[str, tuple] = {}  # key -> (compute function, last asked for)
        self._recent_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()
        self._writer: Engine | None = None

    def writer(self) -> Engine:
        """Return an engine that may write (the store's URL), made on first use."""
        if self._writer is None:
            from dashboard.store import make_engine

            self._writer = make_engine(self.settings.resolved_database_url)
        return self._writer

    def forget_connections(self) -> None:
        """Drop pooled connections without closing them (after a fork: the parent still owns them)."""
        self.engine.dispose(close=False)
        if self._writer is not None:
            self._writer.dispose(close=False)

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

    def read(self, fn):
        """Return ``fn(conn)`` on a read connection (:class:`StoreUnavailable` when the store is down)."""
        return self._run(fn)

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

    def bounds(self, district: str | None = None) -> dict | None:
        """Return ``{"lon": [w, e], "lat": [s, n]}`` around the districts (or one district), or None."""
        key = district or "*"
        if key not in self._bounds:
            from shapely.geometry import shape

            d = self.districts()
            if district:
                d = d[d["id"] == district]
            boxes = [shape(g).bounds for g in d["geometry"] if g]
            self._bounds[key] = None if not boxes else {
                "lon": [min(b[0] for b in boxes), max(b[2] for b in boxes)],
                "lat": [min(b[1] for b in boxes), max(b[3] for b in boxes)]}
        return self._bounds[key]

    def no_assets(self, domain: str) -> str:
        """Return "no stations in this city" when ``domain`` has no assets at all, else ""."""
        from layers import DOMAIN_BY_ID

        return snap.no_assets(DOMAIN_BY_ID[domain], self.base().counts)

    def static(self, layer_id: str):
        """Return a layer's static geometry, read once per process."""
        if layer_id not in self._static:
            layer = LAYER_BY_ID[layer_id]
            self._static[layer_id] = self._run(layer.static)
        return self._static[layer_id]

    def params(self, now: float, window: str = "24h", district: str | None = None, theme: str = "dark",
               geojson_url: str | None = None) -> LayerParams:
        """Return layer parameters for a request (``geojson_url``: district shapes by URL, not inline)."""
        extra = {"tz": self.tz()}
        if self.thresholds:  # the map colours a value by the status its KPI tile gives it
            extra["thresholds"] = dict(self.thresholds)
        if geojson_url:
            extra["geojson_url"] = geojson_url
        from dashboard.access import scope

        return LayerParams(now=now, window=window, district=district, aqi_standard=self.settings.aqi_standard,
                           theme=theme, extra=extra, clip=district is not None and scope() is not None)

    def query(self, window: str | None, district: str | None, now: float | None = None) -> Query:
        """Return the snapshot query of ``window`` and ``district`` at ``now`` (default: the clock)."""
        return snap.make_query(time.time() if now is None else now, window, district,
                               self.meta().get("timezone", "UTC"), self.thresholds,
                               {"aqi_standard": self.settings.aqi_standard})

    # --------------------------------------------------------------- snapshots
    def cached(self, key: str, fn, now: float | None = None):
        """Return ``fn()`` for the current bucket, computed once; keep it warm while screens ask for it.

        ``fn`` reads the clock itself. Keys asked for in the last minute are recomputed by a
        background refresher as each bucket starts, so screens find them ready (a cache hit).
        """
        if now is None and self.settings.background_refresh:
            from dashboard.access import bound

            fn = bound(fn)  # recomputed later for the same principal (a scoped viewer's clipped map)
            with self._recent_lock:
                self._recent[key] = (fn, time.time())
            self._ensure_refresher()
        return self.cache.compute_once(key, self.bucket(now), fn)

    def stop(self) -> None:
        """Stop the background refresher (it also stops by itself a minute after the last request)."""
        self._stop.set()

    def _ensure_refresher(self) -> None:
        if self._stop.is_set():
            return
        if self._refresher is None or not self._refresher.is_alive():
            self._refresher = threading.Thread(target=self._refresh_loop, name="panorama-refresher", daemon=True)
            self._refresher.start()

    def _refresh_loop(self) -> None:
        """Recompute the recently asked-for keys at the start of every bucket; stop when nobody asks."""
        step = self.settings.refresh_seconds
        idle = max(60.0, 3 * step)
        while not self._stop.wait(step - time.time() % step + 0.01):  # just after the bucket turns over
            now = time.time()
            with self._recent_lock:
                for key in [k for k, (_, seen) in self._recent.items() if now - seen > idle]:
                    del self._recent[key]
                todo = sorted(self._recent.items(), key=lambda kv: not kv[0].startswith("snapshot:"))
            if not todo:
                self._refresher = None
                return
            for key, (fn, _) in todo:  # snapshots first: the screens' answers are built from them
                try:
                    self.cache.compute_once(key, self.bucket(), fn)
                except Exception as exc:  # noqa: BLE001 - screens get the error themselves; keep refreshing
                    log.debug("background refresh of %s failed: %s", key, exc)

    @staticmethod
    def key(q: Query) -> str:
        """Return the cache key of ``q``'s snapshot: every field but the time (the bucket is the time)."""
        return "snapshot:" + repr((q.window, q.district, q.tz, q.thresholds, q.options))

    def base(self, now: float | None = None) -> snap.Snapshot:
        """Return the base snapshot of the bucket: every domain's current values, city-wide."""
        def compute():
            return self._run(lambda c: snap.build_base(c, self.query(None, None, now)))

        return self.cached(self.key(self.query(None, None, now)), compute, now)

    def snapshot(self, window: str, district: str | None = None, now: float | None = None,
                 domains: tuple[str, ...] | None = None) -> snap.Snapshot:
        """Return the snapshot of ``window`` and ``district`` for the bucket, computed once; with
        ``domains`` (ids), only those domains' KPIs (what the alert rules read)."""
        only = None if domains is None else [d for d in DOMAINS if d.id in domains]

        def compute():
            q = self.query(window, district, now)
            base = self.base(now)
            return self._run(lambda c: snap.build(c, q, base, domains=only, static=self._domain_static,
                                                  attention=False))

        key = self.key(self.query(window, district, now))
        return self.cached(key if only is None else f"{key}:{','.join(d.id for d in only)}", compute, now)

    def _domain_static(self, domain):
        return self.static(domain.layer.id) if domain.layer is not None else None

    def kpis(self, window: str, district: str | None, now: float | None = None):
        """Return every KPI for the window and district, computed once per bucket."""
        return self.snapshot(window, district, now).kpis

    def layer_frames(self, now: float | None = None) -> dict:
        """Return each layer's live frame (city-wide), computed once per bucket, and ``now``."""
        base = self.base(now)
        return {"now": base.query.now, **base.layer_frames()}

    def attention(self, district: str | None = None, now: float | None = None) -> list[dict]:
        """Return the wall's "needs attention" list for ``district``, computed once per bucket from the
        bucket's current values (the base snapshot): only the screens that show it pay for it."""
        def compute():
            return snap.attention_of(self.base(now), self.query(None, district, now), self._domain_static)

        return self.cached("attention:" + self.key(self.query(None, district, now)), compute, now)

    def health(self) -> dict:
        """Return the store's reachability and the newest data age per domain."""
        now = time.time()
        out = {"store": "ok", "cache": "ok" if self.cache.healthy else "degraded", "domains": {},
               "worker": {"pid": os.getpid(), "computations": self.cache.computations}}
        try:
            def q(conn):
                conn.execute(text("SELECT 1"))
                ages = {}
                for d in DOMAINS:
                    ts = newest(conn, d)
                    ages[d.id] = None if ts is None else round(now - ts, 1)
                return ages
            out["domains"] = self._run(q)
        except StoreUnavailable as exc:
            out["store"] = f"unreachable: {exc}"
        return out


def newest(conn, domain, district: str | None = None) -> int | None:
    """Return the time of ``domain``'s newest data (in ``district``), None when it has none."""
    if domain.newest is not None:
        return domain.newest(conn, district)
    times = [rm.newest_ts(conn, k.id, district) for k in domain.kinds]
    times = [t for t in times if t is not None]
    return max(times) if times else None


#: Re-exported for the screens: the attention list's order and cut (see :mod:`dashboard.snapshot`).
attention_order = snap.attention_order
visible_attention = snap.visible_attention
