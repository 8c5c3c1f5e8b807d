"""Energy: substations' load against their rated capacity, renewable supply, energy used today."""
from __future__ import annotations

import numpy as np

from layers._domain import AssetKind, Derived, Domain, Frames, Metric, WallText, scope
from layers._kpi import Kpi, excess, item
from layers._common import age_text
from layers.energy import kpis as k
from layers.energy.feed import feed
from layers.energy.layer import EnergyLayer

ID = "energy"
#: Share of rated capacity above which a district counts as near its capacity (a watch), and an alert.
NEAR_CAPACITY, FULL = 85.0, 90.0


def city_assets(city, districts, assign) -> list[dict]:
    """Substations of the city file ``substations`` (CSV: id, name, district, lon, lat, capacity_mw,
    renewable_capacity_mw)."""
    import json

    import pandas as pd

    if "substations" not in city.files:
        return []
    ss = pd.read_csv(city.path("substations"))
    return [dict(id=r.id, kind="substation", district_id=r.district, name=r.name, lon=float(r.lon), lat=float(r.lat),
                 geometry=json.dumps({"type": "Point", "coordinates": [float(r.lon), float(r.lat)]}),
                 attributes={"capacity_mw": float(r.capacity_mw),
                             "renewable_capacity_mw": float(r.renewable_capacity_mw)})
            for r in ss.itertuples()]


def attention(f: Frames) -> list[dict]:
    """Districts near or over their rated capacity (watch from 85 %, alert from 90 %; how far past:
    from 85 to 90 for a watch, 90 to 110 for an alert); a district whose reading is stale says so."""
    layer = DOMAIN.layer
    w = layer.worst(scope(f.static, f.q.district, "id"), layer.prepare(f), n=len(f.static), now=f.q.now)
    out = []
    for r in w.itertuples(index=False):
        if r.stale:
            out.append(item("stale", ID, r.place, r.district, r.age_s, 0, f"last value {age_text(r.age_s)} old"))
            continue
        share = float(r[4])
        if share > NEAR_CAPACITY:
            level = "bad" if share >= FULL else "warn"
            score = excess(share, FULL, 20.0) if level == "bad" else excess(share, NEAR_CAPACITY, 5.0)
            out.append(item(level, ID, r.place, r.district, score, share,
                            f"{share:.0f}% of capacity · {r.value:,.0f} MW"))
    return out


DOMAIN = Domain(
    id=ID, label="Energy", period_s=60,
    kinds=(AssetKind("substation", "Substation", "substations",
                     (("capacity_mw", "rated capacity, MW"), ("renewable_capacity_mw", "renewable capacity, MW"))),),
    metrics=(Metric("load_mw", "Load", "MW", "substation", 0, 10_000, "sum"),
             Metric("renewable_mw", "Renewable supply", "MW", "substation", 0, 10_000, "sum")),
    # the rated capacity of the substations reporting, summed per district: the share's denominator
    derived=(Derived("capacity_mw", "load_mw", lambda v, a: a["capacity_mw"], "sum", (("capacity_mw", np.nan),)),),
    latest=k.latest, history=k.history,
    kpis=(
        Kpi("energy.load", ID, "Load now", "MW", k.load_now, warn=75, bad=90,
            status_from=lambda f, v: None if v is None else k.capacity_share(f)[0],
            definition="Total load on all substations now; status from the share of their rated capacity"),
        Kpi("energy.capacity_share", ID, "Of capacity", "%", k.capacity_share, warn=75, bad=90, decimals=1,
            definition="Total substation load as a share of their rated capacity"),
        Kpi("energy.consumption_today", ID, "Used today", "MWh", k.consumption_today,
            delta_label="vs yesterday by this hour", reach=k.yesterday_midnight,
            definition="Energy used since midnight (city time), whatever the window",
            report=("total", "energy.load", "Energy used in period", "MWh")),
        Kpi("energy.renewable_share", ID, "Renewables", "%", k.renewable_share, warn=5, bad=2,
            higher_is_worse=False, decimals=1,
            definition="Renewable supply as a share of the total load now"),
    ),
    layer=EnergyLayer(),
    wall=WallText(("energy.capacity_share", "energy.load"), "Energy", "Energy", "load vs capacity by district"),
    attention=attention,
    feed=feed,
    city_assets=city_assets,
    movers=(("load_mw", "Substation load", "MW", 1, None),),
)
