"""One refresh of the screens: every read once, then every domain's pure transforms.

A :class:`Snapshot` answers one :class:`~layers._domain.Query` — (time bucket, window, district).
The *base* snapshot (window None, whole city) holds each domain's current values city-wide, read
once per refresh; every other snapshot starts from the base of its bucket, scopes those values to
its district (:func:`layers._domain.scope`, the one place the district filter applies to places),
reads what its KPIs need of the window (the :class:`Reader`, the one place the district enters
SQL), then computes KPIs and the attention list without touching the store.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from dashboard.store import STORE_OUTAGES
from dashboard.store import readmodel as rm
from layers import DOMAINS, Domain
from layers._domain import Frames, Query, scope
from layers._kpi import LEVEL_RANK, KpiValue

log = logging.getLogger("panorama.snapshot")


class Reader:
    """What a domain's reads get: the connection and the query, and memoised reads.

    ``latest`` reads current values city-wide (the base snapshot); ``rollup`` a district's (or the
    city's) series from the window's start to now; ``read`` any store function with the district.
    Reads of the same thing within one snapshot happen once.
    """

    def __init__(self, conn: Connection, q: Query):
        self.conn, self.q = conn, q
        self.current: dict = {}  # in a domain's history: its current values, scoped to the district
        self._memo: dict = {}

    @property
    def district(self) -> str | None:
        return self.q.district

    def _once(self, key, fn):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def latest(self, kind: str, metrics: list[str], attrs: tuple[str, ...] = (),
               max_age: int | None = None) -> pd.DataFrame:
        """Return the latest value of ``metrics`` per asset of ``kind``, city-wide (see :func:`rm.latest_wide`)."""
        return self._once(("latest", kind, tuple(metrics), tuple(attrs), max_age),
                          lambda: rm.latest_wide(self.conn, kind, list(metrics), None, max_age=max_age, attrs=attrs))

    def rollup(self, metric: str, start: int | None = None, res: int | None = None) -> rm.Rollup:
        """Return the district's (or city's) rollup of ``metric`` from ``start`` (default: the window's) to now.

        A range inside one already read (to the same end) is a slice of it: one query per metric and
        resolution when the widest range is asked for first.
        """
        res = res or self.q.res
        lo = (self.q.start if start is None else int(start)) // res * res
        have = self._memo.get(("rollup", metric, res))
        if have is not None and have[0] <= lo:
            return have[1].since(lo) if have[0] < lo else have[1]
        r = rm.district_rollup(self.conn, metric, lo, int(self.q.now) + 1, res, self.district)
        self._memo[("rollup", metric, res)] = (lo, r)
        return r

    def read(self, fn, *args, district: bool = True):
        """Return ``fn(conn, *args[, district])`` once per snapshot (``district``: pass the query's)."""
        extra = (self.district,) if district else ()
        return self._once(("read", fn, args, district), lambda: fn(self.conn, *args, *extra))

    def asset_count(self, kind: str, district: str | None = None) -> int:
        return self._once(("count", kind, district), lambda: rm.asset_count(self.conn, kind, district))

    def populations(self) -> pd.Series:
        return self._once(("pop",), lambda: rm.district_populations(self.conn))


@dataclass
class Snapshot:
    """What the screens show for one query: current values city-wide (``latest``, by domain), KPIs
    and the "needs attention" list of the district, and which domains have nothing to measure."""

    query: Query
    latest: dict = field(default_factory=dict)
    kpis: list = field(default_factory=list)
    attention: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # assets per kind, city-wide
    failed: dict = field(default_factory=dict)  # domain id -> why its numbers are unknown

    def kpi(self, kpi_id: str) -> KpiValue | None:
        return next((k for k in self.kpis if k.id == kpi_id), None)

    def layer_frame(self, domain: Domain):
        """Return the frame ``domain``'s map layer draws (city-wide), or None."""
        layer = domain.layer
        if layer is None:
            return None
        mine = self.latest.get(domain.id) or {}
        prepare = getattr(layer, "prepare", None)
        if prepare is not None:
            return prepare(mine)
        return mine.get(getattr(layer, "source", None) or next(iter(mine), None)) if mine else None

    def layer_frames(self) -> dict:
        """Return {layer id: frame} of every domain's layer."""
        return {d.layer.id: self.layer_frame(d) for d in DOMAINS if d.layer is not None}


def no_assets(domain: Domain, counts: dict, kpi=None, where: str = "this city") -> str:
    """Return "no stations in this city" when ``domain`` measures assets and the place has none
    (``counts``: assets per kind there, ``where`` what it is); of ``kpi``: of the kinds it measures."""
    kinds = [k for k in domain.kinds if kpi is None or not kpi.kinds or k.id in kpi.kinds]
    if not kinds or any(counts.get(k.id, 0) for k in kinds):
        return ""
    return f"no {' or '.join(k.plural for k in kinds)} in {where}"


def build_base(conn: Connection, q: Query, domains: list[Domain] | None = None) -> Snapshot:
    """Return the base snapshot of ``q``'s time: every domain's current values, city-wide."""
    q = q.with_(window=None, district=None)
    r = Reader(conn, q)
    snap = Snapshot(query=q)
    for d in domains if domains is not None else DOMAINS:
        for k in d.kinds:
            snap.counts[k.id] = r.asset_count(k.id)
        if d.latest is None:
            continue
        try:
            snap.latest[d.id] = d.latest(r)
        except STORE_OUTAGES + (SQLAlchemyError,):
            raise
        except Exception as exc:  # noqa: BLE001 - one domain's content never blanks the others
            log.exception("reading %s failed", d.id)
            snap.failed[d.id] = f"{type(exc).__name__}: {exc}"
    return snap


def build(conn: Connection, q: Query, base: Snapshot, domains: list[Domain] | None = None,
          static=None, attention: bool = True) -> Snapshot:
    """Return the snapshot of ``q`` (a window; a district or the city) from its bucket's ``base``.

    ``static(domain)``: its layer's static frame (read once per process by the app); by default
    read here. ``attention``: also compute the "needs attention" list (it reads only current
    values: the app computes it on its own, for the screens that show it, see :func:`attention_of`).
    """
    r = Reader(conn, q)
    if static is None:
        def static(d: Domain):
            return d.layer.static(conn) if d.layer is not None else None
    domains = domains if domains is not None else DOMAINS
    snap = Snapshot(query=q, latest=base.latest, counts=base.counts, failed=dict(base.failed))
    fill = rm.history_fill(conn)
    for d in domains:
        scoped = _scoped(base, d, q.district)
        why = snap.failed.get(d.id)
        history = {}
        if why is None and d.history is not None:
            r.current = scoped  # its current values, scoped: what its history reads may depend on
            try:
                history = d.history(r)
            except STORE_OUTAGES + (SQLAlchemyError,):
                raise
            except Exception as exc:  # noqa: BLE001
                log.exception("reading the history of %s failed", d.id)
                why = snap.failed[d.id] = f"{type(exc).__name__}: {exc}"
        f = Frames(q, scoped, history)
        f.city = base.latest.get(d.id) or {}
        f.static = (lambda d=d: static(d)) if d.layer is not None else None  # read only if a rule needs it
        places = [(base.counts, "this city")]
        if q.district is not None:
            places.append(({k.id: r.asset_count(k.id, q.district) for k in d.kinds}, "this district"))
        for k in d.kpis:
            v = _evaluate(k, f, d, why)
            # a KPI with nothing to measure in the city or the district says so (notes such as "0
            # stations" would only repeat it): not "no data", which would say its sensors are silent
            empty = next((e for counts, where in places  # the domain's whole line first, if it has nothing there
                          if (e := no_assets(d, counts, None, where) or no_assets(d, counts, k, where))), "")
            if empty:
                v.no_assets, v.note = empty, ""
            if fill and k.reaches(q) < fill["to"]:  # older days still being written: say so
                v.loading = f"{'history incomplete' if fill['failed'] else 'history loading'} ({fill['percent']} %)"
            snap.kpis.append(v)
    if attention:
        snap.attention = attention_of(base, q, static, domains)
    return snap


def _scoped(base: Snapshot, d: Domain, district: str | None) -> dict:
    """Return ``d``'s current values from ``base``, scoped to ``district``."""
    return {k: scope(v, district) for k, v in (base.latest.get(d.id) or {}).items()}


def attention_of(base: Snapshot, q: Query, static, domains: list[Domain] | None = None) -> list[dict]:
    """Return the "needs attention" list of ``q``'s district (or the city): every domain's rule on its
    current values (the base snapshot's, scoped), alerts and watches by how far past their threshold,
    then the stale places, most recently silent first. No reads but the layers' static frames."""
    items: list[dict] = []
    stale: list[dict] = []
    for d in domains if domains is not None else DOMAINS:
        if d.attention is None or d.id in base.failed:
            continue
        f = Frames(q, _scoped(base, d, q.district))
        f.static = (lambda d=d: static(d)) if d.layer is not None else None
        try:
            for i in d.attention(f):
                (stale if i["level"] == "stale" else items).append(i)
        except Exception:  # noqa: BLE001 - the others' items still show
            log.exception("attention of %s failed", d.id)
    stale.sort(key=lambda i: i["score"])  # the most recently silent first
    items.sort(key=attention_order)
    return [i for i in items + stale if q.district is None or i["district"] == q.district]


def _evaluate(k, f: Frames, d: Domain, why: str | None) -> KpiValue:
    """Return ``k`` computed from ``f``; unknown, with the reason, when its domain or it fails."""
    if why is None:
        try:
            return k.evaluate(f, d.period_s)
        except Exception as exc:  # noqa: BLE001 - one KPI's failure leaves the others
            log.exception("KPI %s failed", k.id)
            why = f"{type(exc).__name__}: {exc}"
    return KpiValue(id=k.id, domain=k.domain, label=k.label, unit=k.unit, value=None, delta=None,
                    delta_label=k.delta_label.format(window=f.q.window), status="unknown", as_of=None,
                    age_s=None, stale=False, note=f"could not compute: {why}"[:200], decimals=k.decimals)


def attention_order(i: dict) -> tuple:
    """Sort key of a "needs attention" item: alerts before watches, then the farthest past its
    threshold (``score``, comparable between domains), then the larger raw amount (``magnitude``)."""
    return -LEVEL_RANK[i["level"]], -i["score"], -i.get("magnitude", 0.0), i["place"]


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


def make_query(now: float, window: str | None = "24h", district: str | None = None, tz: str = "UTC",
               thresholds: dict | None = None, options: dict | None = None) -> Query:
    """Return the :class:`Query` of these parameters (thresholds and options frozen, in key order)."""
    return Query(now=float(now), window=window, district=district, tz=tz,
                 thresholds=tuple(sorted((k, tuple(v)) for k, v in (thresholds or {}).items())),
                 options=tuple(sorted((options or {}).items())))


def compute(conn: Connection, now: float | None = None, window: str = "24h", district: str | None = None,
            tz: str | None = None, thresholds: dict | None = None, options: dict | None = None,
            domains: list[Domain] | None = None) -> Snapshot:
    """Return one snapshot straight from the store, no cache (tests, reports, the CLI)."""
    now = time.time() if now is None else float(now)
    if tz is None:
        tz = rm.city_meta(conn).get("timezone", "UTC")
    q = make_query(now, window, district, tz, thresholds, options)
    return build(conn, q, build_base(conn, q, domains), domains)


__all__ = ["Reader", "Snapshot", "attention_of", "attention_order", "build", "build_base", "compute", "make_query",
           "no_assets", "visible_attention"]
