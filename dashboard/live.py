"""Live data for the screens: KPI and layer snapshots per time bucket, through the shared cache.

A screen's request costs a cache read; one computation per refresh interval serves every viewer.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from dashboard.cache import BucketCache
from dashboard.city import City
from dashboard.kpis import KPIS, compute_all
from dashboard.settings import Settings
from dashboard.store import readmodel as rm
from layers import LAYER_BY_ID, LAYERS, LayerParams

log = logging.getLogger("panorama.live")


#: The asset kind each asset-based domain measures, and its words for "no … in this city".
ASSET_KINDS = {"traffic": "road_segment", "air_quality": "aq_station", "energy": "substation"}
ASSET_WORDS = {"traffic": "road segments", "air_quality": "stations", "energy": "substations"}


class StoreUnavailable(RuntimeError):
    """The store cannot be reached right now."""


class LiveData:
    """Snapshots of KPIs and layer values, cached per refresh bucket."""

    def __init__(self, settings: Settings, engine: Engine, cache: BucketCache, city: City | None = None):
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.thresholds = city.thresholds if city else {}
        self.kpi_ids = city.kpi_ids if city else [k.id for k in KPIS]
        self.map_config = city.map_view if city else {}
        self._bounds: dict = {}
        self._asset_counts: dict | None = None
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

    def asset_counts(self) -> dict[str, int]:
        """Return how many assets each asset-based domain has in the city (read once)."""
        if self._asset_counts is None:
            self._asset_counts = self._run(
                lambda c: {dom: rm.asset_count(c, kind) for dom, kind in ASSET_KINDS.items()})
        return self._asset_counts

    def no_assets(self, domain: str) -> str:
        """Return "no stations in this city" when ``domain`` has no assets at all, else ""."""
        if domain not in ASSET_KINDS or self.asset_counts()[domain]:
            return ""
        return f"no {ASSET_WORDS[domain]} in this city"

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
        return LayerParams(now=now, window=window, district=district, aqi_standard=self.settings.aqi_standard,
                           theme=theme, extra=extra)

    # --------------------------------------------------------------- snapshots
    def cached(self, key: str, fn, now: float | None = None):
        """Return ``fn()`` for the current bucket, computed once; keep it warm while screens ask for it.

        ``fn`` reads the clock itself. Keys asked for in the last minute are recomputed by a
        background refresher as each bucket starts, so screens find them ready (a cache hit).
        """
        if now is None and self.settings.background_refresh:
            with self._recent_lock:
                self._recent[key] = (fn, time.time())
            self._ensure_refresher()
        return self.cache.compute_once(key, self.bucket(now), lambda: self._shared(fn))

    @staticmethod
    def _shared(fn):
        """Run ``fn`` with the read model's shared reads: a refresh's layers and KPIs fetch once."""
        with rm.shared_reads():
            return fn()

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
                todo = list(self._recent.items())
            if not todo:
                self._refresher = None
                return
            with rm.shared_reads():  # every key of this bucket reads the latest values once
                for key, (fn, _) in todo:
                    try:
                        self.cache.compute_once(key, self.bucket(), fn)
                    except Exception as exc:  # noqa: BLE001 - screens get the error themselves; keep refreshing
                        log.debug("background refresh of %s failed: %s", key, exc)

    def kpis(self, window: str, district: str | None, now: float | None = None):
        """Return every KPI for the window and district, computed once per bucket."""
        key = f"kpis:{self.settings.aqi_standard}:{window}:{district or '*'}"
        values = self.cached(key, lambda: self._run(lambda c: compute_all(
            c, time.time() if now is None else now, window, district, self.settings.aqi_standard,
            thresholds=self.thresholds)), now)
        # a domain with no assets at all says so (its notes such as "0 stations" would only repeat it)
        return [replace(k, no_assets=self.no_assets(k.domain), note="") if self.no_assets(k.domain) else k
                for k in values]

    def layer_frames(self, now: float | None = None) -> dict:
        """Return each layer's live frame, computed once per bucket."""
        def compute(conn):
            t = time.time() if now is None else now
            p = self.params(t)
            return {"now": t, **{layer.id: layer.query(conn, p) for layer in LAYERS}}

        return self.cached("layers", lambda: self._run(compute), now)

    def health(self) -> dict:
        """Return the store's reachability and the newest data age per domain."""
        now = time.time()
        out = {"store": "ok", "cache": "ok" if self.cache.healthy else "degraded", "domains": {},
               "worker": {"pid": os.getpid(), "computations": self.cache.computations}}
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

    def attention(self, district: str | None = None, now: float | None = None) -> list[dict]:
        """Return the wall's "needs attention" list for ``district``, computed once per bucket."""
        def compute():
            t = time.time() if now is None else now
            frames = self.layer_frames(now)
            overdue = self._run(lambda c: rm.service_open_list(c, int(t), district, limit=2000))
            statics = {lid: self.static(lid) for lid in ("traffic", "air_quality", "energy")}
            return attention_items(statics, frames, overdue, t, district, self.settings.aqi_standard,
                                   self.thresholds.get("air.aqi_worst"))

        return self.cached(f"attention:{self.settings.aqi_standard}:{district or '*'}", compute, now)


# --------------------------------------------------------------- the wall's "needs attention" list
#: Share of rated capacity above which a district counts as near its energy capacity.
NEAR_CAPACITY = 85.0
_LEVEL_RANK = {"bad": 2, "warn": 1}
#: How far past its threshold an item is, made comparable between domains: the distance from the
#: level's threshold, divided by the domain's "full" distance (past which every item is as urgent),
#: clipped to 0–1. Per domain and level: (threshold, full distance, direction: +1 higher is worse).
#: Traffic: % of free flow (jammed < 25, heavy < 50; 0 km/h is the worst). Energy: % of capacity
#: (alert from 90 to 110, watch across 85–90). Service: overdue requests in the district (alert
#: from 5 to 100). Air is set in attention_items from the AQI KPI's thresholds: alert from its
#: threshold to 300 (hazardous), watch across its band.
EXCESS = {
    ("traffic", "bad"): (25.0, 25.0, -1), ("traffic", "warn"): (50.0, 25.0, -1),
    ("energy", "bad"): (90.0, 20.0, 1), ("energy", "warn"): (NEAR_CAPACITY, 5.0, 1),
    ("satisfaction", "bad"): (5.0, 95.0, 1), ("satisfaction", "warn"): (0.0, 5.0, 1),
}


def excess(domain: str, level: str, value: float, spec: tuple | None = None) -> float:
    """Return how far ``value`` is past the threshold of ``level`` in ``domain`` (or ``spec``, a
    (threshold, full distance, direction) of its own), 0 (just past) – 1 (far past)."""
    thr, full, sign = spec or EXCESS[(domain, level)]
    return float(min(1.0, max(0.0, sign * (float(value) - thr) / full)))


def attention_order(item: dict) -> tuple:
    """Sort key of a "needs attention" item: alerts before watches, then the farthest past its
    threshold (``score``, comparable between domains), then the larger raw amount (``magnitude``)."""
    return -_LEVEL_RANK[item["level"]], -item["score"], -item.get("magnitude", 0.0), item["place"]


def visible_attention(items: list[dict], rows: int) -> tuple[list[dict], list[dict]]:
    """Return the ``rows`` items a screen shows and the rest, from ``items`` in :func:`attention_order`.

    The top item of every domain that has one comes first, most severe first (a polluted station
    never hides behind a screenful of overdue requests, also on a screen where fewer rows fit than
    asked for: the list is cut from the bottom); the other places follow by severity.
    """
    if rows <= 0:
        return [], list(items)
    leaders = []
    for i in items:
        if i["domain"] not in {x["domain"] for x in leaders}:
            leaders.append(i)
    lead = {id(i) for i in leaders}
    order = leaders + [i for i in items if id(i) not in lead]
    return order[:rows], order[rows:]


def attention_items(statics: dict, frames: dict, overdue, now: float, district: str | None = None,
                    aqi_standard: str = "cn", aqi_thresholds: tuple[float, float] | None = None) -> list[dict]:
    """Return everything in a bad band now, most severe first (pure: frames in, dicts out).

    Each item: ``level`` (bad | warn), ``domain``, ``place``, ``district`` (id), ``detail``,
    ``score`` (0–1, how far past the level's threshold, normalised per domain by :data:`EXCESS` so
    domains compare) and ``magnitude`` (the raw amount, to break ties); sorted by
    :func:`attention_order`. An AQI's level is its status by the AQI KPI's thresholds (as the tile
    and the map). A value older than its feed's stale age is never an alert: it comes last, as
    ``level`` "stale" (score: its age in s).
    """
    from dashboard.theme import AQI_STATUS_THRESHOLDS, CONGESTION_BANDS, aqi_status
    from layers._common import age_text

    items: list[dict] = []
    tr = LAYER_BY_ID["traffic"]
    stale: list[dict] = []

    def current(w, domain):
        """The rows of ``w`` whose values are current; stale ones are noted as stale sensors."""
        for r in w[w["stale"]].itertuples(index=False):
            stale.append({"level": "stale", "domain": domain, "place": r.place, "district": r.district,
                          "score": float(r.age_s), "detail": f"last value {age_text(r.age_s)} old"})
        return w[~w["stale"]]

    def add(level, domain, place, dist, score, magnitude, detail):
        items.append({"level": level, "domain": domain, "place": str(place), "district": dist,
                      "score": score, "magnitude": float(magnitude), "detail": detail})

    w = current(tr.worst(statics["traffic"], frames.get("traffic"), n=len(statics["traffic"]), now=now), "traffic")
    jammed, heavy = CONGESTION_BANDS[0][2], CONGESTION_BANDS[1][2]
    for r in w.itertuples(index=False):
        if r.band not in (jammed, heavy):
            continue
        pct = float(r[4])  # % of free flow
        level = "bad" if r.band == jammed else "warn"
        add(level, "traffic", r.place, r.district, excess("traffic", level, pct), 100 - pct,
            f"{'jammed' if r.band == jammed else 'heavy'} · {r.value:.0f} km/h, {pct:.0f}% of free flow"
            + (" · incident" if r.incident else ""))
    aq = LAYER_BY_ID["air_quality"]
    w = current(aq.worst(statics["air_quality"], frames.get("air_quality"), n=len(statics["air_quality"]),
                         std=aqi_standard, now=now), "air_quality")
    warn, bad = aqi_thresholds or AQI_STATUS_THRESHOLDS
    for r in w.itertuples(index=False):
        level = aqi_status(r.value, (warn, bad))
        if level in _LEVEL_RANK:
            thr = warn if level == "warn" else bad
            # past the threshold, over the level's span: watch across its band, alert up to 300 (hazardous)
            score = excess("air_quality", level, r.value, (thr, (bad - warn) if level == "warn" else max(300 - bad, 1), 1))
            add(level, "air_quality", r.place, r.district, score, r.value,
                f"AQI {r.value:.0f} ≥ {thr:g} · {r.band} · {r.dominant}")
    en = LAYER_BY_ID["energy"]
    w = current(en.worst(statics["energy"], frames.get("energy"), n=len(statics["energy"]), now=now), "energy")
    for r in w.itertuples(index=False):
        share = float(r[4])
        if share > NEAR_CAPACITY:
            level = "bad" if share >= 90 else "warn"
            add(level, "energy", r.place, r.district, excess("energy", level, share), share,
                f"{share:.0f}% of capacity · {r.value:,.0f} MW")
    if overdue is not None and len(overdue):
        late = overdue[overdue["due_at"] < now]  # open until it closes, however old (as the KPIs count)
        names = dict(zip(statics["energy"]["id"], statics["energy"]["name"]))
        for dist, g in late.groupby("district_id"):
            past = float(now - g["due_at"].min())  # seconds the oldest is past its SLA
            n = len(g)
            level = "bad" if n >= 5 or past > 86_400 else "warn"
            # ranks by how many are overdue; the oldest one's age breaks ties
            add(level, "satisfaction", names.get(dist, dist), dist, excess("satisfaction", level, n),
                n + min(past, 1e9) / 1e9,
                f"{n} overdue request{'s' if n != 1 else ''} · oldest {age_text(past)} past SLA")
    stale.sort(key=lambda i: i["score"])  # the most recently silent first
    items.sort(key=attention_order)
    items += stale
    if district:
        items = [i for i in items if i["district"] == district]
    return items
