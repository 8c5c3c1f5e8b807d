"""What the alert engine sees of the real demo city, per district: a district where a domain has
nothing to measure (Miyun has no road segment, eight districts no air-quality station) raises no
NoData alert, while a district whose sensors went silent still does; at night, when no bus runs, the
transit KPIs are quiet (no value, no NoData alert), while a silent transit feed still alerts.

The stores end at a fixed local hour (Beijing): what they hold does not depend on when the tests run."""
from __future__ import annotations

import shutil
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from _demo import BEIJING, build_demo_store, last_local
from sqlalchemy import delete, select, update

from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.observe import observe_live
from dashboard.alerts.rules import parse_rules
from dashboard.city import load_city
from dashboard.live import build_live
from dashboard.settings import Settings
from dashboard.store import readmodel as rm
from dashboard.store.schema import alerts, assets, latest, make_engine
from layers import DOMAINS

KPI_BY_ID = {k.id: k for d in DOMAINS for k in d.kpis}


def demo_store(tmp_path_factory, name: str, end: float):
    """(folder, the city, a minute after the last traffic tick written) of a one-hour demo store
    ending at ``end``."""
    folder = tmp_path_factory.mktemp(name)
    build_demo_store(folder, hours=1, end=end)
    city = load_city(BEIJING)
    live = build_live(Settings(database_url=f"sqlite:///{folder / 'demo.sqlite'}", background_refresh=False), city)
    end = float(live.base().latest["traffic"]["roads"]["ts"].max() + 60)
    return folder, city, end


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo city at 10:30 local time: every feed busy."""
    return demo_store(tmp_path_factory, "observe", last_local(10, 30))


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The demo city at 00:40 local time: the last bus ran before 23:00 (the feed still reports its
    lines' buses on duty: none)."""
    return demo_store(tmp_path_factory, "night", last_local(0, 40))


def copy_of(demo, tmp_path) -> str:
    """Return the URL of a copy of the demo store (a test may change it)."""
    shutil.copy(demo[0] / "demo.sqlite", tmp_path / "demo.sqlite")
    return f"sqlite:///{tmp_path / 'demo.sqlite'}"


def every_kpi_per_district(city):
    """The demo city's rules, plus one per district on every numeric KPI that never holds: only its
    NoData and Error alerts open."""
    extra = [{"id": f"each-{k}", "when": f"{k} > 1e12", "scope": "each district"}
             for d in DOMAINS for k in (x.id for x in d.kpis) if (KPI_BY_ID[k].report or ("",))[0] != "category"]
    return city.alert_rules + parse_rules(extra)


def tick(url, rules, city, end):
    """Evaluate ``rules`` once at ``end`` on the store at ``url`` from the screens' snapshots; return the
    open alerts by key, the observations and the asset counts {kind: {district: n}}."""
    live = build_live(Settings(database_url=url, background_refresh=False), city)
    seen = {}

    def observe(now):
        seen["obs"] = observe_live(live, now)
        return seen["obs"]

    engine = make_engine(url)
    Evaluator(engine, rules, None, observe, 60, worker="test").tick(end)
    with engine.connect() as conn:
        rows = {r.key: dict(r._mapping) for r in conn.execute(select(alerts))}
        counts = {k.id: rm.asset_count_by_district(conn, k.id) for d in DOMAINS for k in d.kinds}
    engine.dispose()
    return rows, seen["obs"], counts


def measured(rule, district, counts, obs) -> bool:
    """Return whether ``rule``'s domain has something to measure in ``district``: an asset of the kinds
    its KPI (or its domain) measures; a domain of records, some data there."""
    dom = next(d for d in DOMAINS if d.id == rule.domain)
    if not dom.kinds:
        return (dom.id, district) in obs.ages
    kinds = (KPI_BY_ID[rule.target].kinds if rule.type == "kpi" else ()) or tuple(k.id for k in dom.kinds)
    return any(counts.get(k, {}).get(district) for k in kinds)


def test_no_nodata_alert_where_the_domain_has_nothing_to_measure(demo, tmp_path):
    folder, city, end = demo
    rules = every_kpi_per_district(city)
    rows, obs, counts = tick(copy_of(demo, tmp_path), rules, city, end)
    assert not counts["road_segment"].get("miyun")  # the case: Miyun has no road segment …
    assert counts["aq_station"].get("haidian") and not counts["aq_station"].get("miyun")
    o = obs.kpis[("traffic.tti", "miyun")]
    assert (o.status, o.reason) == ("absent", "no road segments in this district")
    assert "tti-district|district:miyun" not in rows  # … so no "Heavy congestion (no data)" there
    assert obs.kpis[("traffic.tti", "haidian")].status == "ok"
    by_id = {r.id: r for r in rules}
    nodata = [r for r in rows.values() if r["state"] == "nodata"]
    wrong = [r["key"] for r in nodata if not measured(by_id[r["rule"]], r["district_id"], counts, obs)]
    assert wrong == []  # every open NoData alert is of a district with the domain's assets
    absent = {(k, d) for (k, d), o in obs.kpis.items() if o.status == "absent"}
    assert {d for k, d in absent if k == "air.aqi_worst"} == {d for d in obs.districts if not counts["aq_station"].get(d)}
    assert ("transit.in_service", "fengtai") in absent and ("transit.on_time", "fengtai") not in absent  # stops, no bus
    assert obs.kpis[("transit.on_time", "miyun")].reason == "no bus lines or bus stops or buses in this district"


def test_a_district_whose_sensors_went_silent_still_raises_nodata(demo, tmp_path):
    folder, city, end = demo
    url = copy_of(demo, tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:
        roads = rm.asset_count_by_district(conn, "road_segment")
        stopped, never = sorted((d for d in roads if roads[d]), key=lambda d: (roads[d], d))[:2]

        def pks(district):
            return select(assets.c.pk).where(assets.c.kind == "road_segment", assets.c.district_id == district)

        conn.execute(update(latest).where(latest.c.asset_pk.in_(pks(stopped))).values(ts=latest.c.ts - 7200))
        conn.execute(delete(latest).where(latest.c.asset_pk.in_(pks(never))))
    engine.dispose()
    rows, obs, counts = tick(url, city.alert_rules, city, end)
    for d in (stopped, never):
        assert obs.kpis[("traffic.tti", d)].status == "nodata"
        assert rows[f"tti-district|district:{d}"]["state"] == "nodata"  # Heavy congestion (no data)
        assert rows[f"nodata-traffic|district:{d}"]["state"] == "firing"
    assert obs.kpis[("traffic.tti", stopped)].reason.startswith("stale")
    assert "tti-district|district:miyun" not in rows
    assert not [k for k, r in rows.items() if r["state"] == "nodata" and r["district_id"] not in (stopped, never)]


def test_at_night_the_transit_kpis_are_quiet_not_no_data(night, tmp_path):
    folder, city, end = night
    rows, obs, counts = tick(copy_of(night, tmp_path), city.alert_rules, city, end)
    for k, d in ((k, d) for k in ("transit.on_time", "transit.mean_delay", "transit.regularity")
                 for d in (None, "haidian", "fengtai")):
        o = obs.kpis[(k, d)]
        assert (o.status, o.value, o.reason) == ("absent", None, "no bus service now"), (k, d)
    assert obs.kpis[("transit.in_service", None)].value == 0  # a count: nothing running is a value
    assert obs.kpis[("traffic.tti", None)].status == "ok"  # the night is quiet for buses only
    assert not [k for k in rows if k.startswith(("transit-on-time", "nodata-transit"))]
    live = build_live(Settings(database_url=copy_of(night, tmp_path), background_refresh=False), city)
    k = next(k for k in live.snapshot("1h", None, end).kpis if k.id == "transit.on_time")
    assert (k.value, k.quiet, k.stale) == (None, "no bus service now", False)  # the screens: not STALE


def test_at_night_a_silent_transit_feed_still_alerts(night, tmp_path):
    folder, city, end = night
    url = copy_of(night, tmp_path)
    engine = make_engine(url)
    with engine.begin() as conn:  # the feed stopped two hours ago
        transit = select(assets.c.pk).where(assets.c.kind.in_(("transit_line", "transit_stop", "transit_vehicle")))
        conn.execute(update(latest).where(latest.c.asset_pk.in_(transit)).values(ts=latest.c.ts - 7200))
    engine.dispose()
    rows, obs, counts = tick(url, city.alert_rules, city, end)
    assert rows["nodata-transit|city"]["state"] == "firing"  # one feed for the city: one alert
    assert obs.kpis[("transit.in_service", None)].status == "nodata"  # its lines went silent


@pytest.mark.parametrize(("hhmm", "first", "last", "expected"), [
    ("10:00", 5 * 3600, 23 * 3600, True),
    ("23:20", 5 * 3600, 23 * 3600, True),  # the last arrival was 20 min ago
    ("23:40", 5 * 3600, 23 * 3600, False),
    ("00:10", 5 * 3600, 23 * 3600, False),
    ("00:10", 5 * 3600, 86_000, True),  # 23:53: within the 30 min reaching back over midnight
    ("05:10", 5 * 3600, 23 * 3600, True),
    ("04:50", 5 * 3600, 23 * 3600, False),
    ("04:50", float("nan"), 23 * 3600, None),  # no stop says when it is served: unknown
])
def test_scheduled_recently(hhmm, first, last, expected):
    from layers.transit.kpis import scheduled_recently
    h, m = map(int, hhmm.split(":"))
    now = datetime(2026, 12, 6, h, m, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    stops = pd.DataFrame({"first_s": [first, first], "last_s": [last, last]})
    assert scheduled_recently(stops, now, "Asia/Shanghai") is expected
