"""KPIs on the small city with a handful of hand-built readings, checked against plain arithmetic."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import insert

from layers.air_quality import aqi as aqimod
from dashboard import kpis
from dashboard.store import service_rollup
from dashboard.store.ingest import Ingestor
from dashboard.store.schema import service_requests

T0 = 1_736_899_200  # 2025-01-15T00:00:00Z
NOW = T0 + 12 * 3600
H = 3600

#: Latest (and some older) readings. Free flow: r1 60, r2 80 (north), r3 50 (south).
READINGS = [
    ("r1", "speed_kmh", NOW - 600, 50.0), ("r1", "speed_kmh", NOW - 60, 20.0),  # latest 20: congested
    ("r2", "speed_kmh", NOW - 600, 30.0), ("r2", "speed_kmh", NOW - 60, 70.0),
    ("r3", "speed_kmh", NOW - 120, 40.0),
    ("r1", "incident", NOW - 60, 1.0), ("r2", "incident", NOW - 60, 0.0),
    ("p1", "load_mw", NOW - 900, 90.0), ("p1", "load_mw", NOW - 60, 60.0), ("p1", "renewable_mw", NOW - 60, 5.0),
    ("p2", "load_mw", NOW - 900, 20.0), ("p2", "load_mw", NOW - 60, 150.0), ("p2", "renewable_mw", NOW - 60, 10.0),
]
STATIONS = {  # station -> (ts, {pollutant: value}); older readings first
    "s1": [(NOW - 5400, {"pm25": 300, "pm10": 300, "no2": 10, "so2": 5, "co": 500, "o3": 20}),
           (NOW - 1800, {"pm25": 80, "pm10": 100, "no2": 40, "so2": 10, "co": 800, "o3": 60})],
    "s2": [(NOW - 1800, {"pm25": 160, "pm10": 120, "no2": 30, "so2": 8, "co": 900, "o3": 50})],
}
REQUESTS = [  # id, district, category (pothole 48 h, noise 4 h), opened, closed, satisfaction
    ("a", "north", "pothole", NOW - 10 * H, None, None),
    ("b", "north", "noise", NOW - 10 * H, None, None),
    ("c", "south", "noise", NOW - 48 * H, NOW - 24 * H, 5),
    ("d", "south", "pothole", NOW - 120 * H, None, None),
    ("e", "south", "noise", NOW - 1 * H, None, None),
    ("f", "north", "noise", NOW - 20 * H, NOW - 19 * H, 2),
]
SLA_H = {"pothole": 48, "noise": 4}


def all_rows():
    rows = list(READINGS)
    for st, obs in STATIONS.items():
        for t, vals in obs:
            rows += [(st, p, t, float(v)) for p, v in vals.items()]
    return rows


@pytest.fixture
def store(small_city):
    eng = small_city["engine"]
    res = Ingestor(eng).ingest([dict(zip(("asset", "metric", "ts", "value"), r)) for r in all_rows()], now=NOW)
    assert res.accepted == len(all_rows())
    with eng.begin() as conn:
        conn.execute(insert(service_requests), [
            {"id": i, "category_id": c, "district_id": d, "opened_at": o, "due_at": o + SLA_H[c] * H,
             "closed_at": cl, "status": "open" if cl is None else "closed", "satisfaction": s}
            for i, d, c, o, cl, s in REQUESTS])
        service_rollup.rebuild(conn)  # written around the request ingest: fill the rollups
    return small_city


def compute(engine, window="24h", district=None) -> dict:
    with engine.connect() as conn:
        return {k.id: k for k in kpis.compute_all(conn, NOW, window, district)}


def latest_of(asset, metric):
    return max((r for r in all_rows() if r[0] == asset and r[1] == metric), key=lambda r: r[2])[3]


def expected(district=None):
    ff = {"r1": 60.0, "r2": 80.0, "r3": 50.0}
    dist = {"r1": "north", "r2": "north", "r3": "south", "s1": "north", "s2": "south", "p1": "north", "p2": "south"}
    sel = lambda a: district in (None, dist[a])  # noqa: E731
    roads = [(ff[a], latest_of(a, "speed_kmh")) for a in ff if sel(a)]
    loads = [latest_of(p, "load_mw") for p in ("p1", "p2") if sel(p)]
    caps = [{"p1": 100.0, "p2": 200.0}[p] for p in ("p1", "p2") if sel(p)]
    aqis = [aqimod.aqi(STATIONS[s][-1][1], "cn")[0] for s in STATIONS if sel(s)]
    open_ = [r for r in REQUESTS if district in (None, r[1]) and r[3] <= NOW and (r[4] is None or r[4] > NOW)]
    return {
        "traffic.tti": sum(f / s for f, s in roads) / len(roads),
        "traffic.mean_speed": sum(s for _, s in roads) / len(roads),
        "traffic.congested": 100.0 * sum(1 for f, s in roads if s < 0.5 * f) / len(roads),
        "energy.load": sum(loads),
        "energy.capacity_share": 100.0 * sum(loads) / sum(caps),
        "air.aqi_worst": float(max(aqis)),
        "service.open": float(len(open_)),
        "service.overdue": float(sum(1 for r in open_ if r[3] + SLA_H[r[2]] * H < NOW)),
    }


@pytest.mark.parametrize("district", [None, "north", "south"])
def test_kpis_match_independent_values(store, district):
    got = compute(store["engine"], "24h", district)
    exp = expected(district)
    for kid, value in exp.items():
        assert got[kid].value == pytest.approx(value, rel=1e-9), kid
        assert got[kid].status in ("good", "warn", "bad"), kid


def test_kpi_numbers_by_hand(store):
    """The same values, worked out on paper for the whole city."""
    got = compute(store["engine"])
    assert got["traffic.tti"].value == pytest.approx((3 + 80 / 70 + 1.25) / 3)
    assert got["traffic.mean_speed"].value == pytest.approx(130 / 3)
    assert got["traffic.congested"].value == pytest.approx(100 / 3)
    assert got["traffic.incidents"].value == 1.0
    assert got["energy.load"].value == 210.0
    assert got["energy.capacity_share"].value == pytest.approx(70.0)
    assert got["energy.renewable_share"].value == pytest.approx(100 * 15 / 210)
    assert got["service.open"].value == 4.0 and got["service.overdue"].value == 2.0
    # the worst station is s2, dominated by PM2.5 160 µg/m³ -> IAQI 210 under HJ 633
    assert got["air.aqi_worst"].value == 210.0 and got["air.aqi_worst"].note.startswith("S2")
    # statuses from thresholds
    assert got["traffic.tti"].status == "bad"        # 1.80 >= 1.6
    assert got["traffic.congested"].status == "bad"  # 33 % >= 25
    assert got["energy.capacity_share"].status == "good"  # 70 < 75
    assert got["energy.load"].status == "good"       # status from the capacity share
    assert got["service.overdue"].status == "bad"    # 2 of 4 open = 50 % >= 25
    # ages: newest road reading 60 s old; not stale (3 feed periods = 180 s)
    assert got["traffic.tti"].as_of == NOW - 60 and got["traffic.tti"].age_s == 60.0
    assert got["traffic.tti"].stale is False
    assert got["air.aqi_worst"].as_of == NOW - 1800


def test_district_filter_changes_values(store):
    city, north = compute(store["engine"]), compute(store["engine"], district="north")
    assert north["energy.load"].value == 60.0 != city["energy.load"].value
    assert north["energy.capacity_share"].value == pytest.approx(60.0)
    assert north["traffic.tti"].value == pytest.approx((3 + 80 / 70) / 2)
    assert north["traffic.congested"].value == pytest.approx(50.0)
    assert north["air.aqi_worst"].value == float(aqimod.aqi(STATIONS["s1"][-1][1])[0])
    assert north["service.open"].value == 2.0 and north["service.overdue"].value == 1.0


def test_main_pollutant_without_population_counts_stations(small_city):
    """No district has a population: every station weighs 0, so the main pollutant is the most frequent one.

    Seven stations, the first (s1) led by PM10, four by PM2.5, two by NO₂: PM2.5 leads, at 4 of 7 stations.
    """
    from dashboard.store.schema import assets, districts

    eng = small_city["engine"]
    lead = {"s1": {"pm25": 10, "pm10": 400, "no2": 20}, "s2": {"pm25": 160, "pm10": 50, "no2": 20},
            **{f"s{i}": {"pm25": 150 + i, "pm10": 40, "no2": 20} for i in (3, 4, 5)},
            **{f"s{i}": {"pm25": 10, "pm10": 40, "no2": 900 + i} for i in (6, 7)}}
    with eng.begin() as conn:
        conn.execute(districts.update().values(population=None))
        conn.execute(insert(assets), [
            {"id": f"s{i}", "kind": "aq_station", "district_id": ("north", "south")[i % 2], "name": f"S{i}",
             "lon": 116.03, "lat": 40.15 - 0.2 * (i % 2), "attributes": {},
             "geometry": json.dumps({"type": "Point", "coordinates": [116.03, 40.15 - 0.2 * (i % 2)]})}
            for i in range(3, 8)])
    rows = [{"asset": s, "metric": p, "ts": NOW - 1800, "value": float(v)} for s, vals in lead.items()
            for p, v in vals.items()]
    assert Ingestor(eng).ingest(rows, now=NOW).accepted == len(rows)
    assert [aqimod.aqi(lead[f"s{i}"])[1] for i in range(1, 8)] == ["pm10"] + ["pm25"] * 4 + ["no2"] * 2
    got = compute(eng)["air.dominant"]
    assert got.value == "PM2.5" and got.note.startswith(f"at {round(100 * 4 / 7)}% of stations")


def test_no_data_is_unknown_never_zero(small_city):
    """An empty store: every KPI is None with status unknown."""
    with small_city["engine"].connect() as conn:
        values = kpis.compute_all(conn, NOW, "24h")
    assert len(values) == len(kpis.KPIS)
    for v in values:
        assert v.value is None, v.id
        assert v.status == "unknown", v.id
        assert v.formatted() == "—"
        assert v.as_json()["value"] is None


def test_district_without_assets_is_unknown(store):
    """District ``east`` has no assets and no requests: nothing there is 0."""
    got = compute(store["engine"], district="east")
    for kid in ("traffic.tti", "traffic.mean_speed", "traffic.congested", "traffic.incidents",
                "air.aqi_worst", "air.aqi_weighted", "air.dominant", "air.over_limit", "air.pm25_24h",
                "energy.load", "energy.capacity_share", "energy.renewable_share", "energy.consumption_today",
                "service.open", "service.overdue", "service.satisfaction", "service.median_close"):
        assert got[kid].value is None, kid
        assert got[kid].status == "unknown", kid


def test_one_domain_missing_is_unknown_others_known(small_city):
    eng = small_city["engine"]
    Ingestor(eng).ingest([{"asset": "r1", "metric": "speed_kmh", "ts": NOW - 30, "value": 45.0}], now=NOW)
    got = compute(eng)
    assert got["traffic.mean_speed"].value == 45.0 and got["traffic.mean_speed"].status == "warn"  # < 50
    assert got["energy.load"].value is None and got["energy.load"].status == "unknown"
    assert got["air.aqi_worst"].value is None and got["air.aqi_worst"].status == "unknown"


def test_as_json_fields(store):
    got = compute(store["engine"])
    j = got["traffic.tti"].as_json()
    assert set(j) == {"id", "domain", "label", "value", "unit", "delta", "delta_label", "status", "stale",
                      "data_age_s", "as_of", "note", "quiet"}
    assert j["id"] == "traffic.tti" and j["domain"] == "traffic" and j["unit"] == "×"
    assert j["value"] == round((3 + 80 / 70 + 1.25) / 3, 4)  # decimals 2 + 2
    assert j["as_of"] == datetime.fromtimestamp(NOW - 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert j["data_age_s"] == 60.0 and j["stale"] is False and j["status"] == "bad"
    assert j["delta_label"] == "vs 24h ago"
    import json

    for v in got.values():
        json.dumps(v.as_json(), allow_nan=False)  # strictly valid JSON for the API
        d = v.as_json()["delta"]
        assert d is None or math.isfinite(d)


@pytest.mark.parametrize("window", ["2h", "", "24H", None])
def test_unknown_window_raises(store, window):
    with store["engine"].connect() as conn:
        with pytest.raises(ValueError, match="unknown window"):
            kpis.compute_all(conn, NOW, window)


def _loads(start: int, end: int, p1: float, p2: float, hole: tuple[int, int] = (0, 0)) -> list[dict]:
    """Load readings of both substations every 5 minutes in [start, end), none in ``hole``."""
    return [{"asset": a, "metric": "load_mw", "ts": t, "value": v}
            for t in range(start, end, 300) if not hole[0] <= t < hole[1] for a, v in (("p1", p1), ("p2", p2))]


@pytest.mark.parametrize("today_hole, yesterday_hole, value, delta, note", [
    # 12 h at 150 MW today = 1,800 MWh; yesterday by this hour 12 h at 100 MW = 1,200 MWh
    ((0, 0), (0, 0), 1800.0, 600.0, "+50.0% vs yesterday by this hour"),
    # two hours missing yesterday: no comparison, rather than "+71.4 %"
    ((0, 0), (T0 - 86_400 + 2 * H, T0 - 86_400 + 4 * H), 1800.0, None,
     "yesterday incomplete (10.0 of 12.0 h): no comparison"),
    # an hour missing today: the sum is what was measured, said to be partial
    ((T0 + 5 * H, T0 + 6 * H), (0, 0), 1650.0, None, "partial: 11.0 of 12.0 h measured"),
])
def test_consumption_today_says_when_a_period_has_holes(small_city, today_hole, yesterday_hole, value, delta, note):
    """'Used today' sums today's load since midnight; a hole in either day is said, never compared."""
    rows = _loads(T0, NOW, 100.0, 50.0, today_hole) + _loads(T0 - 86_400, T0 - 86_400 + 12 * H, 60.0, 40.0,
                                                              yesterday_hole)
    assert Ingestor(small_city["engine"]).ingest(rows, now=NOW).accepted == len(rows)
    got = compute(small_city["engine"])["energy.consumption_today"]
    assert got.value == pytest.approx(value)
    assert got.delta == (None if delta is None else pytest.approx(delta))
    assert got.note == note


def _insert_requests(engine, rows):
    """Write (id, district, category, opened, closed, satisfaction) requests and fill the rollups."""
    with engine.begin() as conn:
        conn.execute(insert(service_requests), [
            {"id": i, "category_id": c, "district_id": d, "opened_at": o, "due_at": o + SLA_H[c] * H,
             "closed_at": cl, "status": "open" if cl is None else "closed", "satisfaction": s}
            for i, d, c, o, cl, s in rows])
        service_rollup.rebuild(conn)


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_requests_open_since_long_ago_count_as_open_and_overdue(small_city, window):
    """A store whose requests were opened months ago and are still open: they are open (and past
    their SLA) now; no window hides them."""
    D = 86_400
    _insert_requests(small_city["engine"], [
        ("old1", "north", "pothole", NOW - 200 * D, None, None),      # open since last summer
        ("old2", "south", "noise", NOW - 95 * D, None, None),
        ("old3", "south", "noise", NOW - 95 * D, NOW - 94 * D, 4),    # closed long ago: not open
        ("new", "north", "pothole", NOW - 2 * H, None, None),          # open, within its SLA
    ])
    got = compute(small_city["engine"], window)
    assert got["service.open"].value == 3.0
    assert got["service.overdue"].value == 2.0 and got["service.overdue"].status == "bad"  # 2 of 3 past SLA
    # the old ones throughout the sparkline ("new" joins 2 h ago)
    assert got["service.open"].spark_y[-1] == 3 and min(got["service.open"].spark_y) == (3 if window == "1h" else 2)
    assert "open until closed, any age" in got["service.open"].note
    assert "any age" in got["service.overdue"].note
    north = compute(small_city["engine"], window, "north")
    assert north["service.open"].value == 2.0 and north["service.overdue"].value == 1.0


def test_median_close_is_within_one_percent(small_city):
    """One request closed after 7 h 30 min: the median time to close is 7.50 h (a 15-minute
    histogram said 7.625 h); the note states the resolution."""
    _insert_requests(small_city["engine"], [("m1", "north", "pothole", NOW - 20 * H, NOW - 20 * H + 27_000, 4)])
    got = compute(small_city["engine"])["service.median_close"]
    assert got.value == pytest.approx(7.5, rel=0.01)
    assert "median ±1 %" in got.note


@pytest.mark.parametrize("durations_h", [
    [7.5, 7.5, 7.5],
    [0.25, 7.5, 100.0, 2.0],            # even count: the mean of the middle two, 4.75 h
    [1 / 3600, 30 / 3600, 59 / 3600],   # seconds
])
def test_median_close_matches_the_exact_median(small_city, durations_h):
    rows = [(f"m{i}", "south", "noise", NOW - 200 * H, NOW - 200 * H + round(d * H), None)
            for i, d in enumerate(durations_h)]
    _insert_requests(small_city["engine"], rows)
    got = compute(small_city["engine"])["service.median_close"]
    exact = float(np.median([round(d * H) for d in durations_h])) / H
    assert got.value == pytest.approx(exact, rel=0.01)
