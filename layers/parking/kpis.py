"""Parking's reads and KPIs: occupancy, car parks full, free spaces, search pressure by district.

Sensors report *free* spaces (what guidance signs show and FIWARE's ``availableSpotNumber`` carries);
occupancy is derived from each asset's ``spaces`` (capacity). A reading with more free spaces than
the asset has, or of an asset without a capacity, counts nowhere (the derived series skip it too).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from layers._domain import Frames
from layers._kpi import delta_vs_start, newest, plural

CAR_PARK, ZONE = "car_park", "parking_zone"
#: The free-spaces metric of each kind (a metric belongs to one asset kind).
FREE = {CAR_PARK: "parking_free", ZONE: "zone_free"}
#: Occupancy (%) at and above which a car park is full.
FULL = 95.0
#: Occupancy (%) thresholds of the occupancy KPI and the map: Shoup's 85 % (drivers start cruising
#: for a space) and full.
OCC_THRESHOLDS = (85.0, FULL)
#: Search pressure is capped here (a district with no free space at all).
PRESSURE_CAP = 100.0
#: Pressure thresholds: the index at 85 % and at 95 % occupancy.
PRESSURE_THRESHOLDS = (round(1 / (1 - OCC_THRESHOLDS[0] / 100), 1), round(1 / (1 - FULL / 100), 1))
#: "Full for 30 minutes": how far back the attention rule looks, in 5-minute buckets.
FULL_FOR_S, RECENT_RES = 1800, 300
#: Derived district series: (capacity, occupied) of each kind.
SERIES = {CAR_PARK: ("parking_capacity", "parking_occupied"), ZONE: ("zone_capacity", "zone_occupied")}


# ---------------------------------------------------------------------------- occupancy of readings
def valid(free, spaces) -> np.ndarray:
    """Return where a free-spaces reading can be read against its capacity (0 ≤ free ≤ spaces, spaces > 0)."""
    free, spaces = np.asarray(free, dtype=float), np.asarray(spaces, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(free) & np.isfinite(spaces) & (spaces > 0) & (free >= 0) & (free <= spaces)


def occupancy(free, spaces) -> np.ndarray:
    """Return occupancy in % (NaN where the reading is not :func:`valid`)."""
    free, spaces = np.asarray(free, dtype=float), np.asarray(spaces, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid(free, spaces), 100.0 * (spaces - free) / spaces, np.nan)


def derived_capacity(free, attrs) -> np.ndarray:
    """Capacity of each valid reading's asset (the occupancy's denominator), NaN otherwise."""
    return np.where(valid(free, attrs["spaces"]), attrs["spaces"], np.nan)


def derived_occupied(free, attrs) -> np.ndarray:
    """Occupied spaces of each valid reading, NaN otherwise."""
    return np.where(valid(free, attrs["spaces"]), np.asarray(attrs["spaces"], dtype=float) - free, np.nan)


def derived_full(free, attrs) -> np.ndarray:
    """1 where a valid reading shows the car park full (≥ 95 %), 0 where not, NaN otherwise."""
    occ = occupancy(free, attrs["spaces"])
    return np.where(np.isfinite(occ), (occ >= FULL).astype(float), np.nan)


def search_pressure(occupied, spaces) -> np.ndarray:
    """Return 1 ÷ (1 − occupied/spaces), capped at 100: the spaces a driver checks, on average, to find
    a free one when spaces are free at random (NaN where ``spaces`` is not positive)."""
    occupied, spaces = np.asarray(occupied, dtype=float), np.asarray(spaces, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        free_share = np.where(spaces > 0, 1.0 - occupied / spaces, np.nan)
        return np.where(np.isfinite(free_share),
                        np.minimum(PRESSURE_CAP, 1.0 / np.maximum(free_share, 1.0 / PRESSURE_CAP)), np.nan)


# ---------------------------------------------------------------------------- reads
def latest(r) -> dict:
    """Current free spaces of every car park and zone with its capacity, and the car parks' last 30
    minutes per 5-minute bucket (the "full for 30 min" rule)."""
    from dashboard.store.readmodel import asset_series

    now = int(r.q.now)
    start = (now - FULL_FOR_S) // RECENT_RES * RECENT_RES
    return {"car_parks": r.latest(CAR_PARK, [FREE[CAR_PARK]], attrs=("spaces",)),
            "zones": r.latest(ZONE, [FREE[ZONE]], attrs=("spaces",)),
            "recent": r.read(asset_series, CAR_PARK, (FREE[CAR_PARK],), start, now + 1, RECENT_RES)}


def district_rollups(conn, metrics, start: int, end: int, res: int, step: int | None = None,
                     districts: tuple = (), district: str | None = None) -> pd.DataFrame:
    """Return the per-district rollups (district_id, metric, bucket, n, sum) of ``metrics`` in
    [start, end) of ``districts`` (or only ``district``); with ``step``, only the buckets on
    multiples of it (a sparkline's points, not every bucket of the window)."""
    from dashboard.store.drivers import fetch

    ms = list(metrics)
    ds = [district] if district else list(districts)
    if not ds:
        return pd.DataFrame(columns=["district_id", "metric", "bucket", "n", "sum"])
    # districts and metrics named: index probes, not a scan of every district's rollups
    sql = (f"SELECT district_id, metric, bucket, n, sum FROM rollup_district WHERE res = ? "
           f"AND district_id IN ({', '.join('?' * len(ds))}) AND metric IN ({', '.join('?' * len(ms))}) "
           "AND bucket >= ? AND bucket < ?")
    params = [int(res), *ds, *ms, int(start), int(end)]
    if step:
        sql += f" AND bucket {'%' if conn.dialect.name == 'sqlite' else '%%'} ? = 0"  # psycopg: % is doubled
        params.append(int(step))
    rows = fetch(conn, sql, tuple(params))
    return pd.DataFrame([tuple(x) for x in rows], columns=["district_id", "metric", "bucket", "n", "sum"])


def history(r) -> dict:
    """The window's series of the district (or city), per-district series for the pressure, and the
    number of car parks and zones (a summed total is the mean × assets)."""
    q = r.q
    out = {s: r.rollup(s) for pair in SERIES.values() for s in pair}
    out["parking_full"] = r.rollup("parking_full")
    # the pressure's trend, per district: hourly, about 24 points over the window (a card's sparkline
    # shows 16), not every bucket of every district
    step = max(3600, q.span // 24 // 3600 * 3600)
    out["districts"] = r.read(district_rollups, tuple(s for pair in SERIES.values() for s in pair),
                              q.start // step * step, int(q.now) + 1, 3600, step, tuple(r.populations().index))
    out["n_car_parks"] = r.asset_count(CAR_PARK, q.district)
    out["n_zones"] = r.asset_count(ZONE, q.district)
    return out


# ---------------------------------------------------------------------------- current values
def current(f: Frames) -> pd.DataFrame:
    """Return the car parks' and zones' readings that count now: valid, and not silent for longer than
    the feed's stale age before the newest one (a silent asset's old value is not today's).

    Columns: asset_id, kind, district_id, free, spaces, occupied, occupancy, ts.
    """
    return f.memo("current", lambda: _current(f))


def _current(f: Frames) -> pd.DataFrame:
    from layers import DOMAIN_BY_ID

    parts = []
    for kind, key in ((CAR_PARK, "car_parks"), (ZONE, "zones")):
        w = f.get(key)
        if w is None or not len(w):
            continue
        free, spaces = w[FREE[kind]].to_numpy(dtype=float), w["spaces"].to_numpy(dtype=float)
        parts.append(pd.DataFrame({"asset_id": w["asset_id"].to_numpy(dtype=object), "kind": kind,
                                   "district_id": w["district_id"].to_numpy(dtype=object), "free": free,
                                   "spaces": spaces, "ts": w["ts"].to_numpy(dtype=np.int64),
                                   "ok": valid(free, spaces)}))
    cols = ["asset_id", "kind", "district_id", "free", "spaces", "occupied", "occupancy", "ts"]
    if not parts:
        return pd.DataFrame(columns=cols)
    c = pd.concat(parts, ignore_index=True)
    reported = c[np.isfinite(c["free"])]
    if not len(reported):
        return pd.DataFrame(columns=cols)
    as_of = int(reported["ts"].max())
    keep = c["ok"] & (c["ts"] >= as_of - DOMAIN_BY_ID["parking"].stale_after)
    c = c[keep].copy()
    c["occupied"] = c["spaces"] - c["free"]
    c["occupancy"] = occupancy(c["free"], c["spaces"])
    return c[cols].reset_index(drop=True)


def _as_of(f: Frames) -> int | None:
    """The newest reading of the car parks and zones in scope."""
    ts = [t for t in (newest(f.get(k)) for k in ("car_parks", "zones")) if t is not None]
    return max(ts) if ts else None


def _left_out(f: Frames) -> str:
    """Say how many assets report but do not count (silent, or a reading above their capacity)."""
    n = sum(int(np.isfinite(f[k][FREE[kind]].to_numpy(dtype=float)).sum())
            for kind, k in ((CAR_PARK, "car_parks"), (ZONE, "zones")) if f.get(k) is not None and len(f[k]))
    gone = n - len(current(f))
    return f" · {gone} not counted (silent or above capacity)" if gone > 0 else ""


# ---------------------------------------------------------------------------- series
def _sum_at(series: list, buckets: np.ndarray) -> np.ndarray:
    """Return the sum of rollups' ``sum`` at ``buckets``, NaN where none of them has the bucket."""
    vals = np.array([s.at("sum", buckets) for s in series]) if series else np.full((1, len(buckets)), np.nan)
    out = np.nansum(vals, axis=0)
    return np.where(np.isfinite(vals).any(axis=0), out, np.nan)


def _buckets(f: Frames, names: list[str]) -> np.ndarray:
    return np.unique(np.concatenate([np.asarray(f[n].bucket, dtype=np.int64) for n in names])) if names else \
        np.array([], dtype=np.int64)


def _occupancy_series(f: Frames):
    caps = [SERIES[k][0] for k in SERIES]
    occs = [SERIES[k][1] for k in SERIES]
    xs = _buckets(f, caps)
    cap, occ = _sum_at([f[c] for c in caps], xs), _sum_at([f[o] for o in occs], xs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return xs, np.where(cap > 0, 100 * occ / cap, np.nan)


# ---------------------------------------------------------------------------- KPIs
def occupancy_now(f: Frames):
    """Occupied spaces as a share of the capacity of the car parks and zones reporting."""
    c = current(f)
    cap = float(c["spaces"].sum()) if len(c) else 0.0
    v = float(100 * c["occupied"].sum() / cap) if cap else None
    xs, ys = _occupancy_series(f)
    note = f"of {cap:,.0f} spaces" + _left_out(f) if cap else ""
    return v, delta_vs_start(v, xs, ys), xs, ys, _as_of(f), note


def full_count(f: Frames):
    """Car parks (off-street) full now; the trend is the mean of the 0/1 full series × car parks."""
    c = current(f)
    cp = c[c["kind"] == CAR_PARK]
    v = int((cp["occupancy"] >= FULL).sum()) if len(cp) else None
    s = f["parking_full"]
    ys = s.mean * f["n_car_parks"]
    note = f"of {plural(len(cp), 'car park')} reporting" if len(cp) else ""
    return v, delta_vs_start(v, s.bucket, ys), s.bucket, ys, _as_of(f), note


def full_share(f: Frames, value) -> float | None:
    """The share (%) of reporting car parks that are full: the full count's status."""
    c = current(f)
    n = int((c["kind"] == CAR_PARK).sum()) if len(c) else 0
    return None if value is None or not n else 100.0 * float(value) / n


def free_now(f: Frames):
    """Free spaces in the car parks and zones reporting; the trend: each kind's mean free spaces per
    valid reading × its assets."""
    c = current(f)
    v = float(c["free"].sum()) if len(c) else None
    caps = [SERIES[k][0] for k in SERIES]
    xs = _buckets(f, caps)
    parts = []
    for kind, n in ((CAR_PARK, f["n_car_parks"]), (ZONE, f["n_zones"])):
        cap, occ = f[SERIES[kind][0]], f[SERIES[kind][1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            per = (cap.at("sum", xs) - occ.at("sum", xs)) / cap.at("n", xs)
        parts.append(per * n)
    arr = np.array(parts) if parts else np.full((1, len(xs)), np.nan)
    ys = np.where(np.isfinite(arr).any(axis=0), np.nansum(arr, axis=0), np.nan) if len(xs) else np.array([])
    note = f"{100 - 100 * c['occupied'].sum() / c['spaces'].sum():.0f}% of capacity" if len(c) else ""
    return v, delta_vs_start(v, xs, ys), xs, ys, _as_of(f), note


def free_share(f: Frames, value) -> float | None:
    """Free spaces as a share (%) of the capacity reporting: the free spaces' status."""
    c = current(f)
    cap = float(c["spaces"].sum()) if len(c) else 0.0
    return None if value is None or not cap else 100.0 * float(value) / cap


def pressure_now(f: Frames):
    """Mean over districts of each district's search pressure (see :func:`search_pressure`)."""
    c = current(f)
    c = c[c["district_id"].notna()] if len(c) else c
    if not len(c):
        v, note = None, ""
    else:
        g = c.groupby("district_id", sort=True)[["occupied", "spaces"]].sum()
        p = pd.Series(search_pressure(g["occupied"], g["spaces"]), index=g.index).dropna()
        v = float(p.mean()) if len(p) else None
        note = "" if not len(p) or f.q.district else \
            f"{plural(len(p), 'district')} · highest {p.idxmax()} {p.max():.1f}"
    xs, ys = _pressure_series(f)
    return v, delta_vs_start(v, xs, ys), xs, ys, _as_of(f), note


def _pressure_series(f: Frames):
    d = f.get("districts")
    empty = np.array([], dtype=np.int64), np.array([], dtype=float)
    if d is None or not len(d):
        return empty
    role = {s: i for pair in SERIES.values() for i, s in enumerate(pair)}  # capacity 0, occupied 1
    r = d["metric"].map(role).to_numpy(dtype=float)
    ok = np.isfinite(r)
    if not ok.any():
        return empty
    bucket = d["bucket"].to_numpy(dtype=np.int64)[ok]
    total = d["sum"].to_numpy(dtype=float)[ok]
    r = r[ok]
    # per (bucket, district): capacity and occupied spaces summed over car parks and zones (numpy,
    # not a pivot table: this runs on every refresh)
    keys, code = np.unique(np.stack([bucket, pd.factorize(d["district_id"].to_numpy(dtype=object)[ok])[0]]),
                           axis=1, return_inverse=True)
    code = code.ravel()
    n = keys.shape[1]
    cap = np.bincount(code, weights=np.where(r == 0, total, 0.0), minlength=n)
    occ = np.bincount(code, weights=np.where(r == 1, total, 0.0), minlength=n)
    both = (np.bincount(code, weights=(r == 0), minlength=n) > 0) & (np.bincount(code, weights=(r == 1), minlength=n) > 0)
    p = np.where(both, search_pressure(occ, cap), np.nan)
    good = np.isfinite(p)
    if not good.any():
        return empty
    buckets, bcode = np.unique(keys[0][good], return_inverse=True)
    mean = np.bincount(bcode, weights=p[good]) / np.bincount(bcode)
    return buckets.astype(np.int64), mean


# ---------------------------------------------------------------------------- the attention rule
def full_for(recent: pd.DataFrame, spaces: pd.Series, now: float) -> pd.Series:
    """Return, per car park of ``recent`` (asset_series rows of ``parking_free``), whether it was full
    (≥ 95 %) for the last 30 minutes: every 5-minute bucket from the one holding now − 30 min to the
    newest has readings, and in each even its most free spaces (the bucket's max) make ≥ 95 %.

    ``spaces``: capacity by asset id.
    """
    if recent is None or not len(recent):
        return pd.Series(dtype=bool)
    start = (int(now) - FULL_FOR_S) // RECENT_RES * RECENT_RES
    r = recent[(recent["bucket"] >= start) & (recent["n"] > 0)]
    if not len(r):
        return pd.Series(dtype=bool)
    cap = r["asset_id"].map(spaces).to_numpy(dtype=float)
    full = occupancy(r["max"].to_numpy(dtype=float), cap) >= FULL
    g = pd.DataFrame({"asset_id": r["asset_id"].to_numpy(), "bucket": r["bucket"].to_numpy(dtype=np.int64),
                      "full": full}).groupby("asset_id")
    agg = g.agg(first=("bucket", "min"), last=("bucket", "max"), n=("bucket", "nunique"), full=("full", "all"))
    whole = (agg["first"] == start) & (agg["n"] == (agg["last"] - agg["first"]) // RECENT_RES + 1)
    return whole & agg["full"]
