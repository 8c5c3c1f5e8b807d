"""Public transport: KPIs, layer and attention on hand-written frames (no database), the feed's
determinism and physics, and the Beijing files through ``city_assets``."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from dashboard.feeds import FeedContext
from dashboard.store.readmodel import Rollup
from layers import DOMAIN_BY_ID
from layers._common import STALE_COLOUR, untyped
from layers._domain import Frames, Query
from layers._layer import LayerParams
from layers.transit import attention, city_assets, kpis as k
from layers.transit.feed import TransitSim, feed
from layers.transit.layer import STALE, build_static
from layers.transit.timetable import Plan, plan_vehicles

ROOT = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"
D = DOMAIN_BY_ID["transit"]
KPI = {x.id: x for x in D.kpis}


def local(day: int, hour: float) -> int:
    """Epoch seconds of 2024-05-<day> at ``hour`` local time (a Wednesday when day is 15)."""
    h, m = int(hour), int(round((hour % 1) * 60))
    return int(datetime(2024, 5, day, h, m, tzinfo=ZoneInfo(TZ)).timestamp())


NOW = local(15, 10)


def rollup(buckets, n, sm) -> Rollup:
    n, sm = np.asarray(n, dtype=float), np.asarray(sm, dtype=float)
    return Rollup(np.asarray(buckets, dtype=np.int64), n.astype(np.int64), sm, sm / np.maximum(n, 1), sm / np.maximum(n, 1))


EMPTY = rollup([], [], [])


def frames(now=NOW, vehicles=None, stops=None, lines=None, **history) -> Frames:
    q = Query(now=now, window="24h", tz=TZ)
    latest = {"vehicles": vehicles if vehicles is not None else pd.DataFrame(columns=["asset_id", "district_id", "ts", "veh_lon", "veh_lat", "veh_delay_s", "line_no"]),
              "stops": stops if stops is not None else pd.DataFrame(columns=["asset_id", "name", "district_id", "ts", "arrival_delay_s", "headway_s", "headway_ratio", "line_no", "first_s", "last_s"]),
              "lines": lines if lines is not None else pd.DataFrame(columns=["asset_id", "district_id", "ts", "vehicles_running"])}
    hist = {name: EMPTY for name in k.SERIES} | {f"{n}_recent": EMPTY for n in k.RECENT}
    hist |= {"n_lines": 0, "n_vehicles": 0}
    hist.update(history)
    return Frames(q, latest, hist)


# ---------------------------------------------------------------------------- KPIs
def test_on_time_share_is_the_share_of_recent_arrivals_in_the_band_with_trend_and_delta():
    stops = pd.DataFrame({"asset_id": ["a", "b"], "district_id": ["x", "x"], "ts": [NOW - 30, NOW - 200]})
    f = frames(stops=stops, on_time_recent=rollup([NOW - 600, NOW - 300], [10, 10], [8, 9]),
               on_time=rollup([NOW - 86_000, NOW - 300], [10, 20], [5, 18]))
    v = KPI["transit.on_time"].evaluate(f, D.period_s)
    assert v.value == pytest.approx(85.0)
    assert v.spark_y == pytest.approx([50.0, 90.0])
    assert v.delta == pytest.approx(35.0)
    assert v.as_of == NOW - 30 and not v.stale
    assert v.status == "good" and "20 arrivals" in v.note
    low = KPI["transit.on_time"].evaluate(frames(stops=stops, on_time_recent=rollup([NOW], [10], [6])), D.period_s)
    assert low.value == pytest.approx(60.0) and low.status == "bad"  # lower is worse: 60 % < 65 %


def test_the_derived_series_count_an_arrival_on_time_from_one_minute_early_to_five_late():
    assert k.on_time([-61, -60, 0, 300, 301]).tolist() == [0, 1, 1, 1, 0]
    assert k.regular([0.49, 0.5, 1.0, 1.5, 1.51]).tolist() == [0, 1, 1, 1, 0]


def test_mean_delay_is_in_minutes_over_recent_arrivals():
    stops = pd.DataFrame({"asset_id": ["a"], "district_id": ["x"], "ts": [NOW - 10]})
    f = frames(stops=stops, delay_recent=rollup([NOW - 300, NOW], [4, 6], [4 * 60, 6 * 360]),
               delay=rollup([NOW - 3600, NOW], [4, 6], [4 * 60, 6 * 360]))
    v = KPI["transit.mean_delay"].evaluate(f, D.period_s)
    assert v.value == pytest.approx((240 + 2160) / 10 / 60)
    assert v.value == pytest.approx(4.0) and v.status == "bad"  # a threshold itself takes the worse status
    assert v.spark_y == pytest.approx([1.0, 6.0]) and v.delta == pytest.approx(3.0)


def test_regularity_is_the_share_of_headways_within_half_of_scheduled():
    stops = pd.DataFrame({"asset_id": ["a"], "district_id": ["x"], "ts": [NOW - 10]})
    f = frames(stops=stops, regular_recent=rollup([NOW], [20], [15]), regular=rollup([NOW], [20], [15]))
    v = KPI["transit.regularity"].evaluate(f, D.period_s)
    assert v.value == pytest.approx(75.0) and v.status == "warn" and "20 headways" in v.note


def test_in_service_counts_buses_that_reported_in_the_last_five_minutes():
    veh = pd.DataFrame({"asset_id": ["b1", "b2", "b3", "b4"], "district_id": ["x"] * 4,
                        "ts": [NOW - 10, NOW - 299, NOW - 301, NOW - 20],
                        "veh_lon": [116.4, 116.4, 116.4, np.nan], "veh_lat": [39.9] * 4, "veh_delay_s": [0] * 4})
    f = frames(vehicles=veh, running=rollup([NOW - 3600, NOW], [24, 24], [24, 36]), n_lines=2, n_vehicles=30)
    v = KPI["transit.in_service"].evaluate(f, D.period_s)
    assert v.value == 2.0
    assert v.spark_y == pytest.approx([2.0, 3.0]) and v.delta == pytest.approx(0.0)
    assert v.note == "of 30 buses" and v.as_of == NOW - 10


def test_kpis_are_unknown_without_data_never_zero():
    for kpi in D.kpis:
        v = kpi.evaluate(frames(), D.period_s)
        assert v.value is None and v.status == "unknown" and not v.stale, kpi.id


def test_in_service_at_night_is_zero_when_the_lines_still_report():
    lines = pd.DataFrame({"asset_id": ["bus-1"], "district_id": ["x"], "ts": [NOW - 5], "vehicles_running": [0]})
    veh = pd.DataFrame({"asset_id": ["b1"], "district_id": ["x"], "ts": [NOW - 5 * 3600], "veh_lon": [116.4],
                        "veh_lat": [39.9], "veh_delay_s": [10]})
    v = KPI["transit.in_service"].evaluate(frames(vehicles=veh, lines=lines), D.period_s)
    assert v.value == 0.0 and not v.stale


# ---------------------------------------------------------------------------- layer
def hand_static():
    lines = pd.DataFrame({"id": ["bus-12", "bus-5"], "name": ["Line 12", "Line 5"], "district_id": ["xicheng", "dongcheng"],
                          "geometry": [{"type": "LineString", "coordinates": [[116.35, 39.92], [116.40, 39.92]]},
                                       {"type": "LineString", "coordinates": [[116.37, 39.95], [116.37, 39.90], [116.38, 39.89]]}],
                          "attributes": [{"line_no": 12, "first_s": 18000, "last_s": 82800, "headway_s": 360},
                                         {"line_no": 5, "first_s": 18000, "last_s": 82800, "headway_s": 300}]})
    veh = pd.DataFrame({"id": ["bus-12-v01", "bus-12-v02", "bus-5-v01", "bus-5-v02"],
                        "name": ["Line 12 bus 01", "Line 12 bus 02", "Line 5 bus 01", "Line 5 bus 02"],
                        "district_id": ["xicheng", "xicheng", "dongcheng", "dongcheng"],
                        "attributes": [{"line_no": 12}, {"line_no": 12}, {"line_no": 5}, {"line_no": 5}]})
    return build_static(lines, veh)


def hand_vehicles():
    return pd.DataFrame({"asset_id": ["bus-12-v01", "bus-12-v02", "bus-5-v01", "bus-5-v02"],
                         "district_id": ["xicheng", "xicheng", "dongcheng", "dongcheng"],
                         "ts": [NOW - 5, NOW - 10, NOW - 200, NOW - 3600],
                         "veh_lon": [116.36, 116.38, 116.37, 116.37], "veh_lat": [39.92, 39.92, 39.93, 39.91],
                         "veh_delay_s": [30, 700, 900, 100], "line_no": [12, 12, 5, 5]})


def test_layer_traces_values_and_legend():
    layer, static = D.layer, hand_static()
    p = LayerParams(now=NOW)
    tr = layer.traces(static, hand_vehicles(), p)
    assert [t["uid"] for t in tr] == ["transit-lines", "transit-buses"]
    assert tr[0]["lon"] == [116.35, 116.40, None, 116.37, 116.37, 116.38, None]
    vals = layer.values(static, hand_vehicles(), p)
    assert len(vals) == len(tr) and vals[0] == {}
    code = untyped(vals[1]["marker"]["color"]).tolist()
    # on time, very late, stale (200 s > 90 s), out of service (an hour: not drawn)
    assert code[:3] == [0, 2, STALE]
    lon = untyped(vals[1]["lon"])
    assert np.isfinite(lon[:3]).all() and np.isnan(lon[3])
    custom = untyped(vals[1]["customdata"]).reshape(-1, 2)
    assert custom[1].tolist() == [12, 10]  # 700 s ≈ 12 min late, 10 s old
    legend = layer.legend(p)
    assert legend[-1] == ("stale position", STALE_COLOUR) and len(legend) == 4
    assert "5 min late" in legend[0][0]


def test_layer_works_on_an_empty_frame_and_without_lines():
    layer, p = D.layer, LayerParams(now=NOW)
    empty = layer.prepare({})
    static = hand_static()
    assert len(layer.traces(static, empty, p)) == 2
    assert untyped(layer.values(static, empty, p)[1]["marker"]["color"]).tolist() == [-1] * 4
    assert layer.worst(static, empty, 5, now=NOW).empty
    none = build_static(pd.DataFrame(columns=["id", "name", "district_id", "geometry", "attributes"]),
                        pd.DataFrame(columns=["id", "name", "district_id", "attributes"]))
    tr = layer.traces(none, empty, p)
    assert tr[0]["lon"] == [] and layer.worst(none, empty, now=NOW).empty


def test_worst_lists_the_most_delayed_first_and_stale_after():
    w = D.layer.worst(hand_static(), hand_vehicles(), 10, now=NOW)
    assert w["place"].tolist() == ["Line 12 bus 02", "Line 12 bus 01", "Line 5 bus 01"]
    assert w["stale"].tolist() == [False, False, True] and w["band"].tolist() == ["very late", "on time", "stale"]
    assert w["line"].iloc[0] == "Line 12" and w["value"].iloc[0] == pytest.approx(11.7)


# ---------------------------------------------------------------------------- attention
def stops_frame(rows):
    df = pd.DataFrame(rows, columns=["asset_id", "name", "district_id", "ts", "headway_ratio", "line_no", "first_s", "last_s"])
    df["arrival_delay_s"] = 0.0
    return df


def attention_frames(vehicles, stops, now=NOW):
    f = frames(now=now, vehicles=vehicles, stops=stops)
    f.static = hand_static()
    return f


def test_bunching_names_the_line():
    stops = stops_frame([(f"s{i}", f"Stop {i}", "xicheng", NOW - 60 * i, 0.1, 12, 18000, 82800) for i in range(3)]
                        + [("t0", "Other", "dongcheng", NOW - 60, 1.0, 5, 18000, 82800)])
    items = attention(attention_frames(hand_vehicles().iloc[:3].assign(ts=NOW - 5), stops))
    bunch = [i for i in items if "bunching" in i["detail"]]
    assert [i["place"] for i in bunch] == ["Line 12"] and bunch[0]["level"] == "warn"
    assert bunch[0]["magnitude"] == 3 and 0 < bunch[0]["score"] <= 1


def test_a_stop_without_a_bus_for_20_min_is_named_while_its_line_runs():
    stops = stops_frame([("s1", "Xidan (Line 12 to Qingnianlu)", "xicheng", NOW - 25 * 60, 1.0, 12, 18000, 82800),
                         ("s2", "Xisi (Line 12 to Qingnianlu)", "xicheng", NOW - 50 * 60, 1.0, 12, 18000, 82800),
                         ("s3", "Fine", "xicheng", NOW - 5 * 60, 1.0, 12, 18000, 82800),
                         ("s4", "Not yet served", "xicheng", NOW - 50 * 60, 1.0, 12, NOW_SOD + 600, 82800)])
    items = attention(attention_frames(hand_vehicles().assign(ts=NOW - 5), stops))
    waits = {i["place"]: i for i in items if i["detail"].startswith("no bus")}
    assert set(waits) == {"Xidan (Line 12 to Qingnianlu)", "Xisi (Line 12 to Qingnianlu)"}
    assert waits["Xidan (Line 12 to Qingnianlu)"]["level"] == "warn"
    assert waits["Xisi (Line 12 to Qingnianlu)"]["level"] == "bad"
    assert waits["Xidan (Line 12 to Qingnianlu)"]["detail"] == "no bus for 25 min"


NOW_SOD = 10 * 3600


def test_a_silent_line_is_stale_and_nothing_else_is_said_of_it():
    stops = stops_frame([("s1", "Xidan", "xicheng", NOW - 50 * 60, 0.1, 12, 18000, 82800),
                         ("s2", "Xisi", "xicheng", NOW - 50 * 60, 0.1, 12, 18000, 82800)])
    veh = hand_vehicles().assign(ts=[NOW - 600, NOW - 700, NOW - 5, NOW - 5])
    items = attention(attention_frames(veh, stops))
    mine = [i for i in items if i["place"] in ("Line 12", "Xidan", "Xisi")]
    assert [(i["level"], i["place"]) for i in mine] == [("stale", "Line 12")]
    assert mine[0]["score"] == 600 and "10 min" in mine[0]["detail"]


def test_nothing_is_expected_outside_service_hours():
    night = local(15, 2)
    stops = stops_frame([("s1", "Xidan", "xicheng", night - 4 * 3600, 0.1, 12, 18000, 82800)])
    veh = hand_vehicles().assign(ts=night - 4 * 3600)
    assert attention(attention_frames(veh, stops, now=night)) == []


# ---------------------------------------------------------------------------- feed
@pytest.fixture(scope="module")
def beijing():
    from dashboard.city import _districts_frame, assign_districts, load_city

    city = load_city(ROOT / "data" / "beijing")
    dist = _districts_frame(city)
    return city, dist, city_assets(city, dist, assign_districts)


def kind_frame(rows, kind):
    sub = [r for r in rows if r["kind"] == kind]
    return pd.DataFrame([{"id": r["id"], "name": r["name"], "district": r["district_id"], **r["attributes"]} for r in sub])


@pytest.fixture(scope="module")
def sim(beijing):
    rows = beijing[2]
    return TransitSim(kind_frame(rows, "transit_line"), kind_frame(rows, "transit_stop"),
                      kind_frame(rows, "transit_vehicle"), seed=7, timezone=TZ)


def run(sim, t0, t1, step=300):
    ticks = np.arange((t0 // step + 1) * step, t1 + 1, step, dtype=np.int64)
    r = sim.readings(ticks, t0, t1, prev=t0)
    return r.sort_values(["metric", "asset", "ts"]).reset_index(drop=True)


def test_feed_is_deterministic_and_chunking_independent(sim, beijing):
    t0 = local(15, 7.5)
    whole = run(sim, t0, t0 + 7200)
    again = TransitSim(sim_frames := kind_frame(beijing[2], "transit_line"), kind_frame(beijing[2], "transit_stop"),
                       kind_frame(beijing[2], "transit_vehicle"), seed=7, timezone=TZ)
    pd.testing.assert_frame_equal(whole, run(again, t0, t0 + 7200))
    parts = pd.concat([run(sim, t0, t0 + 1000), run(sim, t0 + 1000, t0 + 3600), run(sim, t0 + 3600, t0 + 7200)])
    whole_arr = whole[whole["metric"].isin(["arrival_delay_s", "headway_s", "headway_ratio"])]
    part_arr = parts[parts["metric"].isin(["arrival_delay_s", "headway_s", "headway_ratio"])]
    pd.testing.assert_frame_equal(whole_arr.reset_index(drop=True),
                                  part_arr.sort_values(["metric", "asset", "ts"]).reset_index(drop=True))
    assert len(whole_arr) > 1000
    other = TransitSim(sim_frames, kind_frame(beijing[2], "transit_stop"), kind_frame(beijing[2], "transit_vehicle"),
                       seed=8, timezone=TZ)
    assert not run(other, t0, t0 + 3600)["value"].equals(run(sim, t0, t0 + 3600)["value"])


def test_a_day_has_one_reading_per_asset_metric_and_second(sim):
    """Two bunched buses can reach a stop in the same second: the store keeps one reading per second."""
    r = run(sim, local(15, 0), local(16, 0))
    assert len(r) > 100_000 and not r.duplicated(["asset", "metric", "ts"]).any()


def test_buses_stay_on_their_line(sim, beijing):
    from shapely.geometry import LineString, Point

    lines = {r["id"]: LineString(json.loads(r["geometry"])["coordinates"]) for r in beijing[2] if r["kind"] == "transit_line"}
    line_of = {r["id"]: r["attributes"]["line"] for r in beijing[2] if r["kind"] == "transit_vehicle"}
    r = run(sim, local(15, 8), local(15, 9), step=60)
    pos = r[r["metric"] == "veh_lon"].merge(r[r["metric"] == "veh_lat"], on=["asset", "ts"])
    assert len(pos) > 5000
    off = [lines[line_of[a]].distance(Point(x, y)) for a, x, y in zip(pos["asset"], pos["value_x"], pos["value_y"])]
    assert max(off) < 2e-5  # degrees: about 2 m, the rounding of a position


def test_arrivals_happen_where_a_bus_of_the_line_is(sim, beijing):
    stops = {r["id"]: r for r in beijing[2] if r["kind"] == "transit_stop"}
    # the first trips of the morning, the evening peak (bunching) and the last trips
    r = pd.concat([run(sim, local(15, h), local(15, h + 0.5)) for h in (5, 17.5, 22.5)])
    arr = r[r["metric"] == "arrival_delay_s"].sample(400, random_state=1)
    from layers.transit.feed import _Clock

    by_id = {ln.id: ln for ln in sim.lines}
    worst = 0.0
    for a, ts in zip(arr["asset"], arr["ts"]):
        s = stops[a]
        ln = by_id[s["attributes"]["line"]]
        st = sim.vehicles_at(ln, np.array([ts]), _Clock(TZ, ts, ts))
        on = st["on"][0]
        d = np.hypot((st["lon"][0][on] - s["lon"]) * 85_000, (st["lat"][0][on] - s["lat"]) * 111_000)
        worst = max(worst, d.min())
    assert worst < 15, worst  # metres: the bus moved for at most the second its time is floored by


def test_no_service_at_night(sim):
    r = run(sim, local(15, 0.5), local(15, 4.9))
    assert set(r["metric"]) == {"vehicles_running"} and (r["value"] == 0).all()


def test_peak_delays_exceed_off_peak(sim):
    def mean_delay(h0):
        r = run(sim, local(15, h0), local(15, h0 + 1))
        return r[r["metric"] == "arrival_delay_s"]["value"].mean()

    assert mean_delay(8) > mean_delay(11) + 60 and mean_delay(18) > mean_delay(14) + 60


def test_headways_follow_the_timetable_and_sometimes_bunch(sim):
    r = run(sim, local(15, 7), local(15, 10))
    ratio = r[r["metric"] == "headway_ratio"]["value"]
    assert 0.9 < ratio.median() < 1.1
    assert (ratio < 0.25).sum() > 0  # bunching happens, now and then


def test_feed_needs_lines():
    ctx = FeedContext(None, 1, 5, TZ, lambda kind: pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    assert feed(ctx) is None


# ---------------------------------------------------------------------------- city files and timetable
def test_city_assets_from_the_beijing_files(beijing):
    city, dist, rows = beijing
    kinds = pd.Series([r["kind"] for r in rows]).value_counts().to_dict()
    assert kinds["transit_line"] == 12 and kinds["transit_stop"] == 2 * 273
    assert {r["district_id"] for r in rows} <= set(dist["id"]) and all(r["district_id"] for r in rows)
    lines = [r for r in rows if r["kind"] == "transit_line"]
    assert kinds["transit_vehicle"] == sum(r["attributes"]["vehicles"] for r in lines)
    assert all(5 * 3600 <= r["attributes"]["first_s"] < r["attributes"]["last_s"] <= 23 * 3600
               for r in rows if r["kind"] in ("transit_line", "transit_stop"))
    assert all(r["attributes"]["headway_s"] <= 390 for r in lines)
    assert len({r["id"] for r in rows}) == len(rows)


def test_city_assets_rejects_stops_of_unknown_lines(tmp_path, beijing):
    from dashboard.city import assign_districts, load_city

    for name in ("city.toml", "districts.geojson", "transit_lines.geojson"):
        (tmp_path / name).write_bytes((ROOT / "data" / "beijing" / name).read_bytes())
    (tmp_path / "transit_stops.csv").write_text("id,line,seq,name,lon,lat,dist_m\nx,bus-999,1,X,116.4,39.9,0\n")
    with pytest.raises(ValueError, match="unknown line"):
        city_assets(load_city(tmp_path), beijing[1], assign_districts)


def test_timetable_runs_no_trip_outside_service_hours_and_rejects_bad_lines():
    p = Plan(12_000, 15, 300, plan_vehicles(12_000, 15, 300))
    j = p.slots()
    for d in (0, 1):
        dep = p.departure(j[p.runs(j, d)], d)
        assert dep.min() >= 5 * 3600 and (dep + p.run_s).max() <= 23 * 3600
    assert p.headway_s <= 390 and p.vehicles % 6 == 0
    with pytest.raises(ValueError):
        Plan(0, 15, 300, 6)
    with pytest.raises(KeyError, match="vehicles"):
        Plan.of({"length_m": 1000, "speed_kmh": 15, "layover_s": 300})
