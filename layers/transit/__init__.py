"""Public transport: buses against their timetable, the stops they serve, the lines they run.

Asset kinds: ``transit_line`` (LineString; its timetable numbers as attributes), ``transit_stop``
(one per line, direction and stop: the arrivals of that line there) and ``transit_vehicle``
(a bus of one line; its position changes, so it is a reading). Seeded on Chengdu's real-time
bus arrivals: an arrival is a reading on the stop it reached.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from layers._common import age_text
from layers._domain import AssetKind, Derived, Domain, Frames, Metric, WallText, scope
from layers._kpi import Kpi, excess, item
from layers.transit import kpis as k
from layers.transit.feed import feed
from layers.transit.layer import TransitLayer, lines_of
from layers.transit.timetable import Plan

ID = "transit"
#: A stop whose newest arrival is older than this while its line runs has "no bus" (s); twice it, an alert.
NO_BUS_S = 1200
#: Bunching: a stop's newest arrival (of the last 15 min) came less than a quarter of the scheduled
#: headway after the bus before; at 2 such stops of a line it is a watch, at 6 an alert.
BUNCH_RATIO, BUNCH_RECENT_S, BUNCH_WATCH, BUNCH_ALERT = 0.25, 900, 2, 6
#: A line is expected to report from this long after its first departure (its first buses
#: leave their termini, some a little late) to its last arrival.
START_GRACE_S = 600


# ---------------------------------------------------------------------------- city files
def city_assets(city, districts, assign) -> list[dict]:
    """Lines of the city file ``transit_lines`` (GeoJSON LineStrings: id, name, line_no, speed_kmh,
    layover_s, vehicles, terminus_a, terminus_b, optional length_m, first_h, last_h), their stops
    of ``transit_stops`` (CSV: id, line, seq, name, lon, lat, dist_m — metres from terminus A),
    one stop asset per direction, and ``vehicles`` buses per line."""
    import json

    import geopandas as gpd
    from shapely.geometry import mapping

    if "transit_lines" not in city.files:
        return []
    lines = gpd.read_file(city.path("transit_lines"))
    need = {"id", "name", "line_no", "speed_kmh", "layover_s", "vehicles", "terminus_a", "terminus_b"}
    missing = sorted(need - set(lines.columns))
    if missing:
        raise ValueError(f"{city.path('transit_lines')}: lines lack {', '.join(missing)}")
    if lines["id"].duplicated().any():
        raise ValueError(f"{city.path('transit_lines')}: duplicate line ids {sorted(lines['id'][lines['id'].duplicated()])}")
    if not (lines.geometry.geom_type == "LineString").all():
        raise ValueError(f"{city.path('transit_lines')}: every line must be a LineString")
    if lines.crs is not None and lines.crs.to_epsg() != 4326:
        lines = lines.to_crs(4326)
    lines["district"] = assign(lines, districts)
    if "length_m" not in lines.columns or lines["length_m"].isna().any():
        lines["length_m"] = lines.to_crs(lines.estimate_utm_crs()).length.round(0)
    rows: list[dict] = []
    plans, by_id = {}, {}
    for r in lines.itertuples():
        attrs = {"line_no": float(r.line_no), "length_m": float(r.length_m), "speed_kmh": float(r.speed_kmh),
                 "layover_s": float(r.layover_s), "vehicles": int(r.vehicles)}
        for h in ("first_h", "last_h"):
            if h in lines.columns and pd.notna(getattr(r, h)):
                attrs[h] = float(getattr(r, h))
        plan = plans[r.id] = Plan.of(attrs)
        first, last = plan.service_window()
        coords = [[round(x, 5), round(y, 5)] for x, y in r.geometry.coords]
        mid = r.geometry.interpolate(0.5, normalized=True)
        by_id[r.id] = r
        rows.append(dict(id=r.id, kind=k.LINE, district_id=r.district, name=r.name, lon=round(mid.x, 6),
                         lat=round(mid.y, 6), geometry=json.dumps(mapping(r.geometry)),
                         attributes={**attrs, "headway_s": round(plan.headway_s, 1), "first_s": first, "last_s": last,
                                     "terminus_a": r.terminus_a, "terminus_b": r.terminus_b, "path": coords}))
        a, b = coords[0]
        for v in range(plan.vehicles):
            rows.append(dict(id=f"{r.id}-v{v + 1:02d}", kind=k.VEHICLE, district_id=r.district,
                             name=f"{r.name} bus {v + 1:02d}", lon=a, lat=b,
                             geometry=json.dumps({"type": "Point", "coordinates": [a, b]}),
                             attributes={"line": r.id, "line_no": float(r.line_no), "slot": v}))
    if "transit_stops" not in city.files:
        return rows
    st = pd.read_csv(city.path("transit_stops"))
    missing = sorted({"id", "line", "seq", "name", "lon", "lat", "dist_m"} - set(st.columns))
    if missing:
        raise ValueError(f"{city.path('transit_stops')}: stops lack {', '.join(missing)}")
    unknown = sorted(set(st["line"].astype(str)) - set(by_id))
    if unknown:
        raise ValueError(f"{city.path('transit_stops')}: stops name unknown line(s) {', '.join(unknown[:5])}")
    g = gpd.GeoDataFrame(st, geometry=gpd.points_from_xy(st.lon, st.lat), crs=4326)
    g["district"] = assign(g, districts)
    for r in g.itertuples():
        line, plan = by_id[r.line], plans[r.line]
        if not 0 <= r.dist_m <= plan.length_m + 1:
            raise ValueError(f"stop {r.id}: dist_m {r.dist_m} is not on its line (0 … {plan.length_m:.0f} m)")
        for d, towards in ((0, line.terminus_b), (1, line.terminus_a)):
            along = r.dist_m if d == 0 else plan.length_m - r.dist_m
            first, last = plan.stop_window(min(max(along, 0.0), plan.length_m) / plan.length_m * plan.run_s, d)
            rows.append(dict(id=f"{r.id}-{'ab'[d]}", kind=k.STOP, district_id=r.district,
                             name=f"{r.name} ({line.name} to {towards})", lon=float(r.lon), lat=float(r.lat),
                             geometry=json.dumps({"type": "Point", "coordinates": [float(r.lon), float(r.lat)]}),
                             attributes={"line": r.line, "line_no": float(line.line_no), "direction": d,
                                         "seq": int(r.seq), "dist_m": float(r.dist_m), "stop": r.id,
                                         "first_s": first, "last_s": last}))
    return rows


# ---------------------------------------------------------------------------- attention
def _within(sod: float, lo, hi) -> np.ndarray:
    """Return where ``lo <= sod <= hi``; an unknown bound does not limit."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return (~np.isfinite(lo) | (sod >= lo)) & (~np.isfinite(hi) | (sod <= hi))


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if df is None or col not in df.columns:
        return np.full(0 if df is None else len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def attention(f: Frames) -> list[dict]:
    """Lines running bunched, stops waiting 20 min or more for a bus while their line runs, and
    lines expected to run whose buses have gone silent (stale: then nothing else is said of them)."""
    q = f.q
    now, sod = float(q.now), k.local_second(q.now, q.tz)
    lines = scope(lines_of(f.static), q.district)
    veh, stops = f["vehicles"], f["stops"]
    v_line, v_ts = _num(veh, "line_no"), _num(veh, "ts")
    s_line, s_ts, s_ratio = _num(stops, "line_no"), _num(stops, "ts"), _num(stops, "headway_ratio")
    s_first, s_last = _num(stops, "first_s"), _num(stops, "last_s")
    stale_after = DOMAIN.stale_after
    out = []
    for ln in lines.itertuples(index=False):
        if not _within(sod, ln.first_s + START_GRACE_S, ln.last_s):
            continue  # outside its service hours: silence and empty stops are normal
        mine = v_line == ln.line_no
        if not mine.any() or not np.isfinite(v_ts[mine]).any():
            continue  # never reported: nothing known to say
        age = now - float(np.nanmax(v_ts[mine]))
        if age > stale_after:
            out.append(item("stale", ID, ln.name, ln.district_id, age, 0, f"buses last reported {age_text(age)} ago"))
            continue
        at = s_line == ln.line_no
        with np.errstate(invalid="ignore"):
            bunched = at & (s_ts >= now - BUNCH_RECENT_S) & (s_ratio < BUNCH_RATIO)
        b = int(bunched.sum())
        if b >= BUNCH_WATCH:
            level = "bad" if b >= BUNCH_ALERT else "warn"
            score = excess(b, BUNCH_ALERT, 10) if level == "bad" else excess(b, BUNCH_WATCH, BUNCH_ALERT - BUNCH_WATCH)
            out.append(item(level, ID, ln.name, ln.district_id, score, b,
                            f"bunching: buses under a quarter headway apart at {b} stops in the last 15 min"))
        gap = now - s_ts
        with np.errstate(invalid="ignore"):
            waiting = at & (gap > NO_BUS_S) & _within(sod, s_first + NO_BUS_S, s_last)
        for i in np.flatnonzero(waiting):
            g = float(gap[i])
            level = "bad" if g >= 2 * NO_BUS_S else "warn"
            score = excess(g, 2 * NO_BUS_S, 2 * NO_BUS_S) if level == "bad" else excess(g, NO_BUS_S, NO_BUS_S)
            out.append(item(level, ID, stops["name"].iloc[i], stops["district_id"].iloc[i], score, g / 60,
                            f"no bus for {g / 60:.0f} min"))
    return out


DOMAIN = Domain(
    id=ID, label="Public transport", period_s=30,
    kinds=(AssetKind(k.LINE, "Bus line", "bus lines",
                     (("line_no", "line number"), ("length_m", "length, m"), ("speed_kmh", "scheduled speed, km/h"),
                      ("vehicles", "buses"), ("headway_s", "peak headway, s"))),
           AssetKind(k.STOP, "Bus stop", "bus stops",
                     (("line_no", "line number"), ("direction", "0: to terminus B, 1: to A"),
                      ("first_s", "first scheduled arrival, s after midnight"),
                      ("last_s", "last scheduled arrival, s after midnight"))),
           AssetKind(k.VEHICLE, "Bus", "buses", (("line_no", "line number"), ("slot", "place in the timetable")))),
    metrics=(Metric("veh_lon", "Bus longitude", "°", k.VEHICLE, -180, 180),
             Metric("veh_lat", "Bus latitude", "°", k.VEHICLE, -90, 90),
             Metric("veh_delay_s", "Bus delay", "s", k.VEHICLE, -3600, 14_400),
             Metric("arrival_delay_s", "Arrival delay", "s", k.STOP, -3600, 14_400),
             Metric("headway_s", "Headway", "s", k.STOP, 0, 14_400),
             Metric("headway_ratio", "Headway ÷ scheduled", "×", k.STOP, 0, 50),
             Metric("vehicles_running", "Buses on duty", "buses", k.LINE, 0, 1000, "sum")),
    derived=(Derived("transit_on_time", "arrival_delay_s", k.on_time),
             Derived("transit_headway_regular", "headway_ratio", k.regular)),
    latest=k.latest, history=k.history,
    kpis=(
        Kpi("transit.on_time", ID, "On time", "%", k.on_time_share, warn=80, bad=65, higher_is_worse=False,
            decimals=1, kinds=(k.STOP,),
            definition="Share of bus arrivals in the last 30 min from 1 min early to 5 min late"),
        Kpi("transit.mean_delay", ID, "Mean delay", "min", k.mean_delay, warn=2, bad=4, decimals=1, kinds=(k.STOP,),
            definition="Mean delay of bus arrivals against the timetable in the last 30 min (early counts negative)"),
        Kpi("transit.regularity", ID, "Regular headways", "%", k.regularity, warn=80, bad=65, higher_is_worse=False,
            decimals=1, kinds=(k.STOP,),
            definition="Share of headways in the last 30 min (time since the line's previous bus at the stop) "
                       "within ±50 % of the scheduled headway"),
        Kpi("transit.in_service", ID, "Buses in service", "", k.in_service, kinds=(k.LINE, k.VEHICLE),
            definition="Buses that reported their position in the last 5 min"),
    ),
    layer=TransitLayer(),
    default_on=False,
    wall=WallText(("transit.on_time", "transit.in_service"), "Transit", "Transit",
                  "buses coloured by delay"),
    attention=attention,
    feed=feed,
    city_assets=city_assets,
    movers=(("arrival_delay_s", "Bus arrival delay", "s", 0, True),),
)
