"""Parking: how full the car parks and on-street zones are, and how hard a space is to find.

Seeded by Hangzhou's city-wide parking guidance (every public car park reports its free spaces
about once a minute to one system, which signs and apps show). Sensors report free spaces; each
asset's ``spaces`` attribute (its capacity) turns them into occupancy.
"""
from __future__ import annotations

import numpy as np

from layers._common import age_text
from layers._domain import AssetKind, Derived, Domain, Frames, Metric, WallText, scope
from layers._kpi import Kpi, excess, item
from layers.parking import kpis as k
from layers.parking.feed import PERIOD_S, feed
from layers.parking.layer import ParkingLayer

ID = "parking"
#: Asset kinds of the city file's ``kind`` column.
CITY_KINDS = (k.CAR_PARK, k.ZONE)


def city_assets(city, districts, assign) -> list[dict]:
    """Car parks and on-street zones of the city file ``car_parks`` (CSV: id, name, kind — car_park or
    parking_zone —, lon, lat, capacity in spaces, optional business 0–1), each in the district
    its point lies in."""
    import json

    import geopandas as gpd
    import pandas as pd

    if "car_parks" not in city.files:
        return []
    path = city.path("car_parks")
    cp = pd.read_csv(path, dtype={"id": str, "name": str, "kind": str})
    missing = {"id", "name", "kind", "lon", "lat", "capacity"} - set(cp.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    bad = ~cp["kind"].isin(CITY_KINDS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: line {i + 2}: kind {cp['kind'].iloc[i]!r} is not one of {', '.join(CITY_KINDS)}")
    for col in ("lon", "lat", "capacity"):
        v = pd.to_numeric(cp[col], errors="coerce")
        wrong = ~np.isfinite(v.to_numpy(dtype=float)) | ((v <= 0).to_numpy() if col == "capacity" else False)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise ValueError(f"{path}: line {i + 2}: {col} {str(cp[col].iloc[i])!r} is not a "
                             f"{'positive number' if col == 'capacity' else 'number'}")
        cp[col] = v.astype(float)
    if "business" in cp.columns:  # optional: empty is unknown
        b = pd.to_numeric(cp["business"], errors="coerce")
        wrong = (cp["business"].notna() & ~b.between(0, 1)).to_numpy()
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise ValueError(f"{path}: line {i + 2}: business {str(cp['business'].iloc[i])!r} "
                             "is not a number from 0 to 1")
        cp["business"] = b.astype(float)
    if cp["id"].duplicated().any():
        raise ValueError(f"{path}: id {cp.loc[cp['id'].duplicated(), 'id'].iloc[0]!r} appears twice")
    g = gpd.GeoDataFrame(cp, geometry=gpd.points_from_xy(cp.lon, cp.lat), crs=4326)
    dist = assign(g, districts)
    has_business = "business" in cp.columns
    rows = []
    for r, d in zip(cp.itertuples(index=False), dist):
        attrs = {"spaces": float(r.capacity)}
        if has_business and np.isfinite(float(r.business)):
            attrs["business"] = float(r.business)
        rows.append({"id": r.id, "kind": r.kind, "district_id": d, "name": r.name, "lon": r.lon, "lat": r.lat,
                     "geometry": json.dumps({"type": "Point", "coordinates": [r.lon, r.lat]}), "attributes": attrs})
    return rows


def attention(f: Frames) -> list[dict]:
    """Car parks (off-street: the ones guidance sends drivers to) that are full: an alert when full
    (≥ 95 %) for the last 30 minutes, a watch when just full; how far past: from 95 to 100 %. A car
    park whose reading is stale says so."""
    cars = f["car_parks"]
    if cars is None or not len(cars):
        return []
    spaces = cars.set_index("asset_id")["spaces"]
    long_full = k.full_for(scope(f.get("recent"), f.q.district), spaces, f.q.now)
    occ = k.occupancy(cars[k.FREE[k.CAR_PARK]], cars["spaces"])
    age = np.maximum(0.0, f.q.now - cars["ts"].to_numpy(dtype=float))
    stale = age > DOMAIN.stale_after
    out = []
    for r, o, a, old in zip(cars.itertuples(index=False), occ, age, stale):
        free = getattr(r, k.FREE[k.CAR_PARK])
        if old:
            out.append(item("stale", ID, r.name, r.district_id, a, 0, f"last reading {age_text(a)} old"))
        elif np.isfinite(o) and o >= k.FULL:
            level = "bad" if bool(long_full.get(r.asset_id, False)) else "warn"
            out.append(item(level, ID, r.name, r.district_id, excess(o, k.FULL, 100 - k.FULL), o,
                            f"{'full 30+ min' if level == 'bad' else 'full'} · {o:.0f}% · "
                            f"{free:,.0f} of {r.spaces:,.0f} free"))
    return out


DOMAIN = Domain(
    id=ID, label="Parking", period_s=PERIOD_S,
    kinds=(AssetKind(k.CAR_PARK, "Car park", "car parks",
                     (("spaces", "capacity, parking spaces"), ("business", "office/commercial use, 0–1"))),
           AssetKind(k.ZONE, "On-street zone", "on-street parking zones",
                     (("spaces", "capacity, parking spaces"), ("business", "office/commercial use, 0–1")))),
    # free spaces, as guidance signs show them; the largest car parks in China have ~10,000 spaces
    metrics=(Metric(k.FREE[k.CAR_PARK], "Free spaces (car park)", "spaces", k.CAR_PARK, 0, 20_000, "sum"),
             Metric(k.FREE[k.ZONE], "Free spaces (on-street zone)", "spaces", k.ZONE, 0, 2_000, "sum")),
    # per district: capacity and occupied spaces of the valid readings (occupancy's two sums) and
    # whether a car park is full (a 0/1 mean: × car parks = how many are full)
    derived=(Derived("parking_capacity", k.FREE[k.CAR_PARK], k.derived_capacity, "sum", (("spaces", np.nan),)),
             Derived("parking_occupied", k.FREE[k.CAR_PARK], k.derived_occupied, "sum", (("spaces", np.nan),)),
             Derived("parking_full", k.FREE[k.CAR_PARK], k.derived_full, "mean", (("spaces", np.nan),)),
             Derived("zone_capacity", k.FREE[k.ZONE], k.derived_capacity, "sum", (("spaces", np.nan),)),
             Derived("zone_occupied", k.FREE[k.ZONE], k.derived_occupied, "sum", (("spaces", np.nan),))),
    latest=k.latest, history=k.history,
    kpis=(
        Kpi("parking.occupancy", ID, "Occupancy", "%", k.occupancy_now, warn=k.OCC_THRESHOLDS[0],
            bad=k.OCC_THRESHOLDS[1], decimals=1,
            definition="Occupied spaces as a share of the capacity of the car parks and on-street zones reporting"),
        Kpi("parking.full", ID, "Car parks full", "", k.full_count, warn=10, bad=25, status_from=k.full_share,
            kinds=(k.CAR_PARK,),
            definition="Off-street car parks at 95 % occupancy or more now; status from their share of those "
                       "reporting (watch from 10 %, alert from 25 %)"),
        Kpi("parking.free", ID, "Free spaces", "spaces", k.free_now, warn=15, bad=5, higher_is_worse=False,
            status_from=k.free_share,
            definition="Free spaces in the car parks and on-street zones reporting; status from their share "
                       "of capacity (watch below 15 %, alert below 5 %)"),
        Kpi("parking.pressure", ID, "Search pressure", "", k.pressure_now, warn=k.PRESSURE_THRESHOLDS[0],
            bad=k.PRESSURE_THRESHOLDS[1], decimals=1,
            definition="Mean over districts of 1 ÷ (1 − occupancy), occupancy = occupied ÷ capacity of the "
                       "district's car parks and zones: the spaces a driver checks on average to find a free "
                       "one (1 empty, 6.7 at 85 %, 20 at 95 %, at most 100)"),
    ),
    layer=ParkingLayer(),
    default_on=False,
    wall=WallText(("parking.occupancy", "parking.full"), "Parking", "Parking", "car parks and zones by occupancy"),
    attention=attention,
    feed=feed,
    ngsi=(("OffStreetParking", (k.CAR_PARK, {"availableSpotNumber": k.FREE[k.CAR_PARK]}, ())),
          ("OnStreetParking", (k.ZONE, {"availableSpotNumber": k.FREE[k.ZONE]}, ()))),
    city_assets=city_assets,
)
