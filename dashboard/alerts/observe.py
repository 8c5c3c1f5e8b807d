"""What the alert engine sees, taken from what the screens already compute.

KPI values are the snapshots' :class:`~layers._kpi.KpiValue` (the 1 h window: "now" values, with the
screens' stale flag and the reason a value is unknown); asset values are the base snapshot's current
frames (the map's), a value older than three feed periods counting as unknown, as on the map; the
newest data age per domain and district is what ``/health`` reports (:func:`dashboard.live.newest`).
So an alert and the screen never disagree about a value or about its being stale.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.alerts.engine import AssetObs, KpiObs, Observations
from dashboard.snapshot import Snapshot
from layers import DOMAINS
from layers._common import age_text

#: The window whose KPI values rules test: the shortest, the values "now".
WINDOW = "1h"


def kpi_obs(k) -> KpiObs:
    """Return what a rule sees of one computed KPI (:class:`~layers._kpi.KpiValue`)."""
    if k.value is None:
        if k.no_assets or k.quiet:  # nothing there, or nothing scheduled now: nothing to alert on
            return KpiObs(None, "absent", k.no_assets or k.quiet)
        if k.note.startswith("could not compute"):
            return KpiObs(None, "error", k.note)
        return KpiObs(None, "nodata", k.note or "no data")
    if k.stale:
        return KpiObs(k.value, "nodata", f"stale: newest data {age_text(k.age_s)} old")
    return KpiObs(k.value)


def asset_obs(base: Snapshot, metrics=None) -> dict[str, AssetObs]:
    """Return the current value of each asset metric (of ``metrics``; default every one), from the base
    snapshot's frames: the first frame of its domain with the metric as a column; NaN when stale."""
    now = base.query.now
    out: dict[str, AssetObs] = {}
    for d in DOMAINS:
        frames = [f for f in (base.latest.get(d.id) or {}).values()
                  if isinstance(f, pd.DataFrame) and "asset_id" in f.columns]
        for m in (*d.metrics, *d.asset_values):
            if metrics is not None and m.id not in metrics:
                continue
            f = next((f for f in frames if m.id in f.columns), None)
            if f is None:
                continue
            v = pd.to_numeric(f[m.id], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            if "ts" in f.columns:
                ts = pd.to_numeric(f["ts"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                v = np.where(now - ts > d.stale_after, np.nan, v)  # NaN ts compares False: kept
            dist = f["district_id"].to_numpy(dtype=object) if "district_id" in f.columns else np.full(len(f), None)
            out[m.id] = AssetObs(f["asset_id"].to_numpy(dtype=object), dist, v)
    return out


def newest_ages(conn, now: float, districts) -> dict:
    """Return (domain id, district id or None) → seconds since its newest data (None: never), for the
    places where the domain has something to measure: assets of its kinds, or (a domain of records)
    any data in the city."""
    from dashboard.live import newest
    from dashboard.store import readmodel as rm

    out: dict = {}
    for d in DOMAINS:
        if d.kinds:
            per = {}
            for k in d.kinds:
                for dist, n in rm.asset_count_by_district(conn, k.id).items():
                    per[dist] = per.get(dist, 0) + n
            has_city = bool(per) or any(rm.asset_count(conn, k.id) for k in d.kinds)
        else:
            per, has_city = None, newest(conn, d) is not None
        if not has_city:
            continue
        for dist in (None, *districts):
            if dist is not None and per is not None and not per.get(dist):
                continue
            ts = newest(conn, d, dist)
            out[(d.id, dist)] = None if ts is None else max(0.0, now - ts)
    return out


def observe(base: Snapshot, snapshots: dict, ages: dict, districts, metrics=None) -> Observations:
    """Return the observations at the base snapshot's time: ``snapshots`` is {None: the city's, district
    id: that district's} (of :data:`WINDOW`), ``ages`` as :func:`newest_ages` returns."""
    kpis = {(k.id, dist): kpi_obs(k) for dist, s in snapshots.items() for k in s.kpis}
    failed = dict(base.failed)
    for s in snapshots.values():
        failed.update(s.failed)
    return Observations(now=base.query.now, districts=tuple(districts), kpis=kpis,
                        assets=asset_obs(base, metrics), ages=dict(ages), failed=failed)


def needs_of(rules, districts) -> tuple[dict, set]:
    """Return what ``rules`` read: {None (the city) or district id: ids of the domains whose KPIs its
    KPI rules test} and the metrics of the asset rules. The evaluator computes only these snapshots
    (each tick, in a worker that also serves screens): a rule set of one city-wide KPI costs one."""
    from dashboard.alerts.rules import CITY, EACH

    scopes: dict = {}
    for r in rules:
        if r.type != "kpi":
            continue
        for where in ((None,) if r.scope == CITY else tuple(districts) if r.scope == EACH else (r.scope,)):
            scopes.setdefault(where, set()).add(r.domain)
    return scopes, {r.target for r in rules if r.type == "asset"}


def observe_live(live, now: float | None = None, metrics=None, rules=None) -> Observations:
    """Return the observations of a :class:`dashboard.live.LiveData` at ``now`` (default: the clock): the
    same cached snapshots the screens read this refresh interval, plus the newest ages. With ``rules``,
    only the KPIs and asset metrics they test (:func:`needs_of`); else every KPI of the city and of
    each district."""
    base = live.base(now)
    ids = sorted(live.district_ids())
    if rules is None:
        snaps = {None: live.snapshot(WINDOW, None, now), **{d: live.snapshot(WINDOW, d, now) for d in ids}}
    else:
        scopes, metrics = needs_of(rules, ids)
        snaps = {where: live.snapshot(WINDOW, where, now, domains=tuple(sorted(doms)))
                 for where, doms in scopes.items()}
    ages = live.read(lambda conn: newest_ages(conn, base.query.now, ids))
    return observe(base, snaps, ages, ids, metrics)
