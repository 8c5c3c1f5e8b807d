"""Traffic: road segments' speed against their free-flow speed, congestion and incidents."""
from __future__ import annotations

import numpy as np

from layers._common import age_text
from layers._domain import AssetKind, Derived, Domain, Frames, Metric, WallText, scope
from layers._kpi import Kpi, excess, item
from layers.traffic import kpis as k
from layers.traffic.feed import feed
from layers.traffic.layer import CONGESTION_BANDS, TrafficLayer

ID = "traffic"
#: How far past its band's edge a segment is, for the attention list: (edge, full distance), in %
#: of free flow, lower is worse. Jammed from 25 % down to a standstill; heavy across its band.
JAMMED_EXCESS, HEAVY_EXCESS = (25.0, 25.0), (50.0, 25.0)


def city_assets(city, districts, assign) -> list[dict]:
    """Road segments of the city file ``roads`` (GeoJSON lines: id, name, direction, length_m,
    free_flow_kmh, lanes, from_node, to_node), each in the district ``assign`` gives it."""
    import json

    import geopandas as gpd
    from shapely.geometry import mapping

    if "roads" not in city.files:
        return []
    rd = gpd.read_file(city.path("roads"))
    rd["district"] = assign(rd, districts)
    rows = []
    for r in rd.itertuples():
        mid = r.geometry.interpolate(0.5, normalized=True)
        rows.append(dict(id=r.id, kind="road_segment", district_id=r.district, name=r.name,
                         lon=round(mid.x, 6), lat=round(mid.y, 6), geometry=json.dumps(mapping(r.geometry)),
                         attributes={"direction": r.direction, "length_m": int(r.length_m),
                                     "free_flow_kmh": float(r.free_flow_kmh), "lanes": int(r.lanes),
                                     "from_node": str(r.from_node), "to_node": str(r.to_node)}))
    return rows


def attention(f: Frames) -> list[dict]:
    """Jammed segments (an alert) and heavy ones (a watch), how far into their band; a segment whose
    reading is stale says so instead."""
    layer = DOMAIN.layer
    static = scope(f.static, f.q.district)
    w = layer.worst(static, f["roads"], n=len(static), now=f.q.now)
    jammed, heavy = CONGESTION_BANDS[0][2], CONGESTION_BANDS[1][2]
    out = []
    for r in w.itertuples(index=False):
        if r.stale:
            out.append(item("stale", ID, r.place, r.district, r.age_s, 0, f"last value {age_text(r.age_s)} old"))
            continue
        if r.band not in (jammed, heavy):
            continue
        pct = float(r[4])  # % of free flow
        level = "bad" if r.band == jammed else "warn"
        edge, full = JAMMED_EXCESS if level == "bad" else HEAVY_EXCESS
        out.append(item(level, ID, r.place, r.district, excess(pct, edge, full, -1), 100 - pct,
                        f"{'jammed' if level == 'bad' else 'heavy'} · {r.value:.0f} km/h, {pct:.0f}% of free flow"
                        + (" · incident" if r.incident else "")))
    return out


DOMAIN = Domain(
    id=ID, label="Traffic", period_s=60,
    kinds=(AssetKind("road_segment", "Road segment", "road segments",
                     (("free_flow_kmh", "free-flow speed, km/h"), ("length_m", "length, m"), ("lanes", "lanes"))),),
    metrics=(Metric("speed_kmh", "Speed", "km/h", "road_segment", 0, 200),
             Metric("flow_vph", "Flow", "veh/h", "road_segment", 0, 12_000, "sum"),
             Metric("incident", "Incident", "", "road_segment", 0, 1, "sum")),
    derived=(
        # travel-time index of a segment: free-flow travel time is 1, twice as long is 2
        Derived("tti", "speed_kmh", lambda v, a: a["free_flow_kmh"] / np.maximum(v, 1.0), "mean",
                (("free_flow_kmh", k.FREE_FLOW_KMH),)),
        # share of segments congested: speed below half of free-flow
        Derived("congested", "speed_kmh", lambda v, a: (v < 0.5 * a["free_flow_kmh"]).astype(float), "mean",
                (("free_flow_kmh", k.FREE_FLOW_KMH),)),
    ),
    latest=k.latest, history=k.history,
    kpis=(
        Kpi("traffic.tti", ID, "Travel-time idx", "×", k.tti, warn=1.3, bad=1.6, decimals=2,
            definition="Travel-time index: free-flow speed over current speed, averaged over road segments "
                       "(1 = free flow)"),
        Kpi("traffic.mean_speed", ID, "Mean speed", "km/h", k.mean_speed, warn=50, bad=35, higher_is_worse=False,
            definition="Mean current speed over the road segments with a reading"),
        Kpi("traffic.congested", ID, "Congested", "%", k.congested, warn=10, bad=25, decimals=1,
            definition="Share of road segments slower than half their free-flow speed"),
        Kpi("traffic.incidents", ID, "Incidents", "", k.incidents, warn=2, bad=5, reach=k.incident_reach,
            definition="Road segments with an active incident now"),
    ),
    layer=TrafficLayer(),
    default_on=True,
    wall=WallText(("traffic.tti", "traffic.congested"), "Traffic", "Traffic", "road congestion"),
    attention=attention,
    feed=feed,
    city_assets=city_assets,
    # an intensity is a count over dateObservedFrom … dateObservedTo: stored per hour
    ngsi=(("TrafficFlowObserved", ("road_segment", {"averageVehicleSpeed": "speed_kmh", "intensity": "flow_vph"},
                                   ("refRoadSegment", "refDevice"), "dateObservedFrom", ("flow_vph",))),),
)
