"""Alerts that fire on a demo store, for the screens' tests: the evaluator run once on hand-made
observations (a TTI over its threshold in a district and city-wide, a station's AQI, car parks full),
so the alert rows and their events are the real ones."""
from __future__ import annotations

import time

from sqlalchemy import select

from dashboard.alerts.engine import AssetObs, KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import parse_rules
from dashboard.store.schema import assets, districts, make_engine

RULES = [
    {"id": "tti-hot", "when": "traffic.tti > 1.6", "scope": "each district", "severity": "critical",
     "summary": "Heavy congestion"},
    {"id": "aqi-hot", "when": "any aq_station aqi > 200", "per": "asset", "severity": "warning",
     "summary": "Very unhealthy air"},
    {"id": "full", "when": "parking.full >= 25", "severity": "info", "summary": "Car parks filling up"},
]


def station(engine) -> tuple[str, str, str]:
    """Return (id, name, district id) of the first air-quality station with a place."""
    with engine.connect() as c:
        r = c.execute(select(assets.c.id, assets.c.name, assets.c.district_id)
                      .where(assets.c.kind == "aq_station", assets.c.lon.is_not(None), assets.c.district_id.is_not(None))
                      .order_by(assets.c.id)).first()
    return r.id, r.name, r.district_id


def fire(url: str, hot: dict[str, float], now: float | None = None, aqi: float = 260.0, tick: float = 60) -> dict:
    """Evaluate the rules once at ``now`` with the TTI of each district in ``hot`` over its threshold
    (the others at 1.0), one station's AQI at ``aqi`` and the car parks 30 % full; return what fired."""
    engine = make_engine(url)
    with engine.connect() as c:
        ids = tuple(r.id for r in c.execute(select(districts.c.id).order_by(districts.c.id)))
    sid, name, sd = station(engine)
    rules = parse_rules([dict(r) for r in RULES], districts=set(ids))

    def feed(t):
        kpis = {("traffic.tti", d): KpiObs(hot.get(d, 1.0)) for d in ids}
        kpis[("parking.full", None)] = KpiObs(30.0)
        return Observations(now=t, districts=ids, kpis=kpis, assets={"aqi": AssetObs([sid], [sd], [aqi])})

    now = time.time() if now is None else now
    Evaluator(engine, rules, None, feed, tick, worker="test").tick(now)
    engine.dispose()
    return {"station": (sid, name, sd), "districts": ids}
