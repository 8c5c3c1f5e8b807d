"""Air quality's reads and KPIs: AQI now (worst and population-weighted), main pollutant, stations
over the limit, PM2.5 over 24 h. The AQI follows the city's standard (option ``aqi_standard``)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from dashboard.theme import threshold_status
from layers._domain import Frames, Query
from layers._kpi import change, delta_vs_start, nan_none, newest, plural
from layers.air_quality import aqi as aqimod

KIND = "aq_station"
POLLUTANTS = list(aqimod.POLLUTANTS)
LABEL = {"pm25": "PM2.5", "pm10": "PM10", "so2": "SO₂", "no2": "NO₂", "co": "CO", "o3": "O₃"}
#: A value older than this before the newest one read is not "now" (a station that stopped reporting).
MAX_AGE_S = 3 * 3600
#: AQI (warn, bad) of the "AQI worst" KPI, and of a station's colour on the map and its attention
#: level when the city sets none: one pair, so a station and the tile agree on a value's status.
AQI_THRESHOLDS = (101, 151)
_STATION_COLUMNS = ["asset_id", "name", "district_id", "ts", "aqi", "dominant", *POLLUTANTS, "weight"]
_TREND_COLUMNS = ["bucket", "worst", "weighted", "over"]


def standard(q: Query) -> str:
    """Return the city's AQI standard (cn: China HJ 633-2012, us: US EPA)."""
    return q.option("aqi_standard", "cn")


def aqi_status(aqi, thresholds: tuple[float, float] | None = None) -> str:
    """Return the status of an AQI value by the AQI KPI's thresholds: good, warn, bad or unknown.

    The standards' six bands map onto it: good and moderate are good, the next band (101–150) a
    watch, everything from 151 up an alert.
    """
    warn, bad = thresholds or AQI_THRESHOLDS
    return threshold_status(aqi, warn, bad)


# ---------------------------------------------------------------------------- reads
def latest(r) -> dict:
    """Current values of every station, city-wide: ``stations`` (values within 3 h of the newest,
    with AQI, dominant pollutant and population weight), ``readings`` (every station's newest values,
    however old: the map shows an old one as stale) and ``weights`` (district → station weight)."""
    weights = station_weights(r)
    w = r.latest(KIND, POLLUTANTS, max_age=MAX_AGE_S)
    if w.empty:
        st = pd.DataFrame(columns=_STATION_COLUMNS)
    else:
        a, dom = aqimod.aqi_frame(w[POLLUTANTS], standard(r.q))
        st = w.assign(aqi=np.asarray(a, dtype=float), dominant=list(dom),
                      weight=weights_of(weights, w["district_id"], np.nan))
    return {"stations": st, "readings": r.latest(KIND, POLLUTANTS), "weights": weights}


def station_weights(r) -> dict:
    """Return the population weight of a station per district: its population / its stations."""
    from dashboard.store import readmodel as rm

    pop = r.populations()
    directory = r.read(rm.asset_directory, KIND, district=False)
    if directory is None:
        per = r.read(rm.asset_count_by_district, KIND, district=False)
    else:
        per = {k: n for k, n in Counter(directory.district.tolist()).items() if k is not None}
    return {k: float(pop.get(k, 0) or 0) / n for k, n in per.items()}


def weights_of(weights: dict, district_ids, missing: float) -> np.ndarray:
    """Return the station weight of each district id (``missing`` where a district has none)."""
    codes, uniq = pd.factorize(pd.Series(district_ids, dtype=object))  # few districts: map those, not every row
    per = np.array([weights.get(u, missing) for u in uniq] + [missing], dtype=float)
    return per[codes]  # code -1 (no district) takes the last entry


def history(r) -> dict:
    """The window's hourly AQI of every station-hour (``aqi_hourly``) and the hourly pollutant series
    of the district (or city); PM2.5 from two days back, for its 24 h mean and the one before."""
    from dashboard.store import readmodel as rm

    q = r.q
    start = q.start // 3600 * 3600
    split = pm25_split(q)
    # the wider range first: one read of PM2.5 serves its trend, this 24 h and the previous 24 h
    pm25 = r.rollup("pm25", start=min(q.start, split - 86_400), res=3600)
    # the main pollutant's trend: which one it is comes from the current values of the district
    dom = main_pollutant(_known_of((getattr(r, "current", None) or {}).get("stations")))
    series = {dom: r.rollup(dom, start=q.start, res=3600)} if dom else {}
    return {"aqi_hourly": r.read(rm.station_aqi_series, KIND, start, int(q.now) + 1, standard(q)),
            "pm25_2d": pm25, "series": series}


def pm25_split(q: Query) -> int:
    """Return the hour that starts the last 24 h of the PM2.5 KPI."""
    return (int(q.now) - 86_400) // 3600 * 3600


def pm25_reach(q: Query) -> int:
    """The oldest time the PM2.5 KPI reads: the previous 24 h, from its hour."""
    return int(q.now) - 2 * 86_400 - 3600


# ---------------------------------------------------------------------------- KPIs
def _known(f: Frames) -> pd.DataFrame:
    """The stations whose AQI is known."""
    return _known_of(f["stations"])


def _known_of(st: pd.DataFrame | None) -> pd.DataFrame | None:
    if st is None or not len(st):
        return st
    return st[np.isfinite(st["aqi"].to_numpy(dtype=float))]


def main_pollutant(st: pd.DataFrame | None) -> str | None:
    """Return the pollutant dominant at the most of the stations ``st`` (AQI known), weighted by
    population; without any population data (every weight 0 or NaN) each station counts once."""
    if st is None or not len(st):
        return None
    totals: dict = {}
    for p, wt in zip(st["dominant"].tolist(), st["weight"].tolist()):  # a hundred stations: plain Python
        totals[p] = totals.get(p, 0.0) + (0.0 if wt != wt else wt)  # NaN weight counts 0, as sum() does
    if not sum(totals.values()) > 0:
        totals = dict(Counter(st["dominant"].tolist()))
    return max(totals, key=lambda p: totals[p])  # the first of the heaviest, as a stable descending sort


def trend(f: Frames) -> pd.DataFrame:
    """Return per hour of the window: the worst and the population-weighted AQI and the stations over
    the limit (computed once per frames)."""
    return f.memo("trend", lambda: _trend(f["aqi_hourly"], f["weights"], standard(f.q)))


def _trend(w: pd.DataFrame, weights: dict, std: str) -> pd.DataFrame:
    if w.empty:
        return pd.DataFrame(columns=_TREND_COLUMNS)
    a = w["aqi"].to_numpy(dtype=float)
    wt = weights_of(weights, w["district_id"], 1.0)
    b = w["bucket"].to_numpy(dtype=np.int64)
    ok = np.isfinite(a)
    a, wt, b = a[ok], wt[ok], b[ok]
    if not len(a):
        return pd.DataFrame(columns=_TREND_COLUMNS)
    # per hour, in numpy: the worst station, the population-weighted mean (the plain mean where no
    # station has a weight) and the stations over the limit
    buckets, code = np.unique(b, return_inverse=True)
    worst = np.full(len(buckets), -np.inf)
    np.maximum.at(worst, code, a)
    wsum = np.bincount(code, weights=wt, minlength=len(buckets))
    mean = np.bincount(code, weights=a, minlength=len(buckets)) / np.bincount(code, minlength=len(buckets))
    weighted = np.where(wsum > 0, np.bincount(code, weights=wt * a, minlength=len(buckets))
                        / np.where(wsum > 0, wsum, 1.0), mean)
    over = np.bincount(code, weights=(a > aqimod.limit(std)).astype(float), minlength=len(buckets))
    return pd.DataFrame({"bucket": buckets, "worst": worst, "weighted": weighted, "over": over})


def aqi_worst(f: Frames):
    st = _known(f)
    v = nan_none(st["aqi"].max()) if len(st) else None
    t = trend(f)
    note = ""
    if v is not None:
        row = st.loc[st["aqi"].idxmax()]
        note = f"{row['name']} · {LABEL.get(row['dominant'], row['dominant'])}"
    return v, delta_vs_start(v, t["bucket"], t["worst"].to_numpy()), t["bucket"], t["worst"], newest(st), note


def aqi_weighted(f: Frames):
    st = _known(f)
    v = None
    if len(st):
        w = st["weight"].fillna(0).to_numpy()
        v = float(np.average(st["aqi"], weights=w)) if w.sum() > 0 else float(st["aqi"].mean())
    t = trend(f)
    return v, delta_vs_start(v, t.bucket, t["weighted"].to_numpy()), t.bucket, t["weighted"], newest(st), \
        plural(len(st), "station")


def dominant(f: Frames):
    st = _known(f)
    if not len(st):
        return None, None, [], [], None, ""
    dom = main_pollutant(st)
    s = f["series"][dom]
    share = int(round(100 * (st["dominant"] == dom).mean()))
    return LABEL.get(dom, dom), None, s.bucket, s["mean"], newest(st), \
        f"at {share}% of stations · trend: {LABEL.get(dom, dom)} µg/m³" if len(trend(f)) else ""


def over_limit(f: Frames):
    st = _known(f)
    lim = aqimod.limit(standard(f.q))
    v = float((st["aqi"] > lim).sum()) if len(st) else None
    t = trend(f)
    return v, delta_vs_start(v, t.bucket, t["over"].to_numpy()), t.bucket, t["over"], newest(st), \
        f"of {plural(len(st), 'station')}, AQI > {lim}"


def pm25_24h(f: Frames):
    q = f.q
    split = pm25_split(q)
    both = f["pm25_2d"]
    cur, prev = both.since(split), both.since(split - 86_400).before(split)
    v = float(cur.sum.sum() / cur.n.sum()) if cur.n.sum() else None
    p = float(prev.sum.sum() / prev.n.sum()) if prev.n.sum() else None
    s = both.since(q.start // 3600 * 3600)  # the window of the two days read (the main pollutant may be another)
    return v, change(v, p), s.bucket, s.mean, newest(f["stations"]), "mean of hourly station values"


def dominant_over(conn, lo: int, hi: int, district, std: str) -> tuple[str | None, int, int]:
    """Over a report's period: the pollutant whose hourly city (district) mean has the highest
    sub-index most often in [lo, hi) — (label, hours it led, hours with data)."""
    from dashboard.store import readmodel as rm

    hours = np.arange(lo // 3600 * 3600, hi, 3600)
    if not len(hours):
        return None, 0, 0
    sub = np.full((len(POLLUTANTS), len(hours)), np.nan)
    for i, pol in enumerate(POLLUTANTS):
        r = rm.district_rollup(conn, pol, int(hours[0]), int(hi), 3600, district)
        sub[i] = aqimod.iaqi_array(pol, r.at("mean", hours), std)
    known = np.isfinite(sub).any(axis=0)
    if not known.any():
        return None, 0, 0
    lead = np.nanargmax(np.where(np.isfinite(sub[:, known]), sub[:, known], -1), axis=0)
    counts = np.bincount(lead, minlength=len(POLLUTANTS))
    top = int(np.argmax(counts))
    pol = POLLUTANTS[top]
    return LABEL.get(pol, pol), int(counts[top]), int(known.sum())
