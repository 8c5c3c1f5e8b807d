"""The traffic domain without a store: hand-written frames in, KPI values, attention items and map
traces out; its reads, feed and city loader on small hand-made inputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dashboard.store.readmodel import Rollup
from dashboard.theme import STATUS, STATUS_COLOURS
from layers import DEFAULT_LAYERS, DOMAIN_PACKAGES, LAYER_BY_ID
from layers._common import untyped
from layers._domain import Frames, Query
from layers._layer import LayerParams
from layers.traffic import DOMAIN
from layers.traffic.feed import TrafficSim, feed
from layers.traffic.layer import CONGESTION_BANDS, CONGESTION_STATUS, STALE

NOW = 108_000  # a multiple of 300: the 1 h window starts on a bucket
KPI = {k.id: k for k in DOMAIN.kpis}


def rollup(buckets, n, sums) -> Rollup:
    s = np.asarray(sums, dtype=float)
    return Rollup(np.asarray(buckets, dtype=np.int64), np.asarray(n, dtype=np.int64), s, s.copy(), s.copy())


def roads(rows) -> pd.DataFrame:
    """A ``roads`` frame as ``latest`` gives it: (asset_id, district_id, speed_kmh, free_flow_kmh, incident, ts)."""
    cols = ["asset_id", "district_id", "speed_kmh", "free_flow_kmh", "incident", "ts"]
    df = pd.DataFrame(rows, columns=cols)
    return df.assign(name=df["asset_id"])


def frames(road_rows, history=None, **q) -> Frames:
    base = dict(tti=rollup([], [], []), speed=rollup([], [], []), congested=rollup([], [], []),
                incident=rollup([], [], []))
    return Frames(Query(now=NOW, window=q.pop("window", "1h"), **q), {"roads": roads(road_rows)}, {**base, **(history or {})})


CITY = [("a", "d1", 30.0, 60.0, 0.0, NOW - 100),
        ("b", "d1", 10.0, 80.0, 1.0, NOW - 50),
        ("c", "d2", np.nan, 60.0, 1.0, NOW)]  # no speed reading: counts for incidents only
HISTORY = dict(
    tti=rollup([NOW - 900, NOW - 600, NOW - 300], [2, 2, 2], [3, 4, 8]),
    speed=rollup([NOW - 300], [2], [50]),
    congested=rollup([NOW - 600, NOW - 300], [2, 2], [0, 1]),
    # from an hour before the window: a restated 0 (ignored), a start, then a start and an end, a start
    incident=rollup([NOW - 7200, NOW - 6900, NOW - 3600, NOW - 3000], [1, 1, 2, 1], [0, 1, 1, 1]),
)


def value(kpi_id: str, f: Frames):
    return KPI[kpi_id].evaluate(f, DOMAIN.period_s)


# ----------------------------------------------------------------------------- KPIs
def test_tti_is_the_mean_of_free_flow_over_speed_of_segments_with_a_speed():
    v = value("traffic.tti", frames(CITY, HISTORY))
    assert v.value == pytest.approx((60 / 30 + 80 / 10) / 2)  # c has no speed: left out
    assert v.spark_y == [1.5, 2.0, 4.0] and v.spark_x == [NOW - 900, NOW - 600, NOW - 300]
    assert v.delta == pytest.approx(5.0 - 1.5)
    assert v.as_of == NOW - 50 and not v.stale  # the newest speed reading, not c's incident
    assert (v.status, v.decimals, v.unit, v.label) == ("bad", 2, "×", "Travel-time idx")


def test_tti_counts_a_standstill_as_1_kmh():
    v = value("traffic.tti", frames([("a", "d1", 0.5, 60.0, 0.0, NOW)]))
    assert v.value == pytest.approx(60.0)


def test_mean_speed_and_its_status_lower_is_worse():
    v = value("traffic.mean_speed", frames(CITY, HISTORY))
    assert v.value == pytest.approx(20.0) and v.delta == pytest.approx(20.0 - 25.0) and v.status == "bad"
    fast = value("traffic.mean_speed", frames([("a", "d1", 55.0, 60.0, 0.0, NOW)]))
    slowish = value("traffic.mean_speed", frames([("a", "d1", 40.0, 60.0, 0.0, NOW)]))
    assert (fast.status, slowish.status) == ("good", "warn")


def test_congested_is_the_share_below_half_of_free_flow_in_percent():
    v = value("traffic.congested", frames(CITY, HISTORY))
    assert v.value == pytest.approx(50.0)  # b (10 of 80); a at exactly half is not congested
    assert v.spark_y == [0.0, 50.0] and v.delta == pytest.approx(50.0) and v.status == "bad"


def test_incidents_walk_the_rollup_from_an_hour_before_the_window():
    v = value("traffic.incidents", frames(CITY, HISTORY))
    assert v.value == 2.0  # b and c
    assert v.spark_x == [NOW - 3600, NOW - 3000] and v.spark_y == [1.0, 2.0]
    assert v.delta == 1.0 and v.note == "2 started in 1h" and v.status == "warn"
    assert v.as_of == NOW - 50  # as the other tiles: the newest speed reading
    assert KPI["traffic.incidents"].reaches(Query(now=NOW, window="1h")) == NOW - 7200


def test_city_thresholds_override_the_registry():
    f = frames(CITY, HISTORY, thresholds=(("traffic.tti", (6.0, 7.0)),))
    assert value("traffic.tti", f).status == "good"


@pytest.mark.parametrize("kpi_id", list(KPI))
def test_no_segments_and_no_history_is_unknown(kpi_id):
    v = value(kpi_id, frames([]))
    assert (v.value, v.delta, v.status, v.as_of, v.spark_x, v.note) == (None, None, "unknown", None, [], "")


def test_a_reading_older_than_three_periods_is_stale():
    v = value("traffic.mean_speed", frames([("a", "d1", 40.0, 60.0, 0.0, NOW - 181)]))
    assert v.stale and v.age_s == 181


def test_kpis_are_declared_as_before():
    assert [(k.id, k.label, k.unit, k.warn, k.bad, k.higher_is_worse, k.decimals) for k in DOMAIN.kpis] == [
        ("traffic.tti", "Travel-time idx", "×", 1.3, 1.6, True, 2),
        ("traffic.mean_speed", "Mean speed", "km/h", 50, 35, False, 0),
        ("traffic.congested", "Congested", "%", 10, 25, True, 1),
        ("traffic.incidents", "Incidents", "", 2, 5, True, 0)]
    assert all(k.definition and k.domain == "traffic" for k in DOMAIN.kpis)
    assert DOMAIN.period_s == 60 and DOMAIN.wall.headline == ("traffic.tti", "traffic.congested")


# ----------------------------------------------------------------------------- reads
class FakeReader:
    """Records what the domain asks of the store and answers with hand-made frames."""

    def __init__(self, q: Query):
        self.q, self.calls = q, []

    def latest(self, kind, metrics, attrs=(), max_age=None):
        self.calls.append(("latest", kind, tuple(metrics), tuple(attrs)))
        return roads([("a", "d1", 30.0, np.nan, 0.0, NOW), ("b", "d1", 20.0, 90.0, 0.0, NOW)])

    def rollup(self, metric, start=None, res=None):
        self.calls.append(("rollup", metric, start))
        return rollup([], [], [])


def test_latest_reads_segments_city_wide_and_defaults_free_flow_to_60():
    r = FakeReader(Query(now=NOW, window=None))
    w = DOMAIN.latest(r)["roads"]
    assert r.calls == [("latest", "road_segment", ("speed_kmh", "incident"), ("free_flow_kmh",))]
    assert w["free_flow_kmh"].tolist() == [60.0, 90.0]


def test_history_reads_the_incidents_from_an_hour_before_the_window():
    r = FakeReader(Query(now=NOW, window="24h"))
    h = DOMAIN.history(r)
    assert set(h) == {"tti", "speed", "congested", "incident"}
    assert ("rollup", "incident", NOW - 86_400 - 3600) in r.calls


def test_derived_series_match_the_kpis():
    d = {x.id: x for x in DOMAIN.derived}
    v, ff = np.array([30.0, 0.5, 10.0]), {"free_flow_kmh": np.array([60.0, 60.0, 80.0])}
    assert d["tti"].fn(v, ff).tolist() == [2.0, 60.0, 8.0]
    assert d["congested"].fn(v, ff).tolist() == [0.0, 1.0, 1.0]
    assert d["tti"].attrs == (("free_flow_kmh", 60.0),) and d["tti"].agg == d["congested"].agg == "mean"


# ----------------------------------------------------------------------------- map layer and attention
def static_frame() -> pd.DataFrame:
    s = pd.DataFrame({"id": ["a", "b", "c", "d"], "name": ["Ring", "Ring", "Avenue", "Lane"],
                      "district_id": ["d1", "d1", "d2", "d2"], "lon": [116.0, 116.1, 116.2, 116.3],
                      "lat": [39.9] * 4, "free_flow_kmh": [60.0] * 4, "direction": ["east", "west", "north", "south"]})
    # two dots on a, one on every other segment
    s.attrs["dots"] = (np.arange(5, dtype=float), np.zeros(5), np.array([0, 0, 1, 2, 3], dtype=np.int32))
    return s


LIVE = [("a", "d1", 12.0, 60.0, 1.0, NOW),       # 20 %: jammed, with an incident
        ("b", "d1", 24.0, 60.0, 0.0, NOW),       # 40 %: heavy
        ("c", "d2", 54.0, 60.0, 0.0, NOW),       # 90 %: free flow
        ("d", "d2", 6.0, 60.0, 0.0, NOW - 600)]  # jammed, but 10 min old: stale


def attention_of(district=None):
    f = frames(LIVE, district=district, window="24h")
    f.static = static_frame()
    return DOMAIN.attention(f)


def test_attention_jammed_is_an_alert_heavy_a_watch_stale_says_so():
    items = {i["place"]: i for i in attention_of()}
    assert set(items) == {"Ring · east", "Ring · west", "Lane · south"}
    a, b, d = items["Ring · east"], items["Ring · west"], items["Lane · south"]
    assert (a["level"], a["score"], a["magnitude"]) == ("bad", pytest.approx(0.2), 80.0)
    assert a["detail"] == "jammed · 12 km/h, 20% of free flow · incident" and a["district"] == "d1"
    assert (b["level"], b["score"], b["magnitude"]) == ("warn", pytest.approx(0.4), 60.0)
    assert b["detail"] == "heavy · 24 km/h, 40% of free flow"
    assert (d["level"], d["score"], d["detail"]) == ("stale", 600.0, "last value 10 min old")


def test_attention_of_a_district_has_only_its_segments():
    assert [i["place"] for i in attention_of("d2")] == ["Lane · south"]


def test_layer_draws_the_domains_roads_frame_band_by_band():
    layer = LAYER_BY_ID["traffic"]
    assert layer is DOMAIN.layer and layer.source == "roads" and not hasattr(layer, "query")
    from dashboard.snapshot import Snapshot

    live = roads(LIVE)
    assert Snapshot(Query(now=NOW, window=None), latest={"traffic": {"roads": live}}).layer_frame(DOMAIN) is live
    p = LayerParams(now=NOW)
    dots, hover = layer.traces(static_frame(), roads(LIVE), p)
    assert untyped(dots["marker"]["color"]).tolist() == [0, 0, 1, 3, STALE]  # jammed, heavy, free, stale
    custom = untyped(hover["customdata"])
    assert custom[:, 0].tolist() == [12, 24, 54, 6] and custom[:, 1].tolist() == [20, 40, 90, 10]
    assert custom[:, 2].tolist() == [0, 0, 0, 10]  # minutes old
    assert layer.values(static_frame(), roads(LIVE), p)[0]["marker"]["color"] == dots["marker"]["color"]


def test_layer_on_no_readings_is_no_data():
    layer = DOMAIN.layer
    dots, _ = layer.traces(static_frame(), roads([]), LayerParams(now=NOW))
    assert untyped(dots["marker"]["color"]).tolist() == [-1] * 5
    assert layer.worst(static_frame(), roads([]), now=NOW).empty


def test_congestion_bands_carry_the_status_colours():
    # a jammed road is an ALERT in the attention list and drawn in the alert colour; heavy is a watch
    assert CONGESTION_BANDS[0][3] == STATUS["bad"][0] and CONGESTION_BANDS[1][3] == STATUS["warn"][0]
    assert [b[3] for b in CONGESTION_BANDS] == [STATUS_COLOURS["dark"][CONGESTION_STATUS[b[1]]]
                                                for b in CONGESTION_BANDS]
    legend = dict(DOMAIN.layer.legend(LayerParams(now=NOW)))
    assert legend["Slow (50–75 %) / Free flow (> 75 %)"] == STATUS["good"][0] and "stale reading" in legend


def test_registered_first_and_on_by_default():
    assert DOMAIN_PACKAGES[0] == "traffic" and DOMAIN.default_on and "traffic" in DEFAULT_LAYERS
    assert {m.id: (m.unit, m.agg) for m in DOMAIN.metrics} == {
        "speed_kmh": ("km/h", "mean"), "flow_vph": ("veh/h", "sum"), "incident": ("", "sum")}
    (etype, (kind, attrs, names, *_)), = DOMAIN.ngsi
    assert (etype, kind, attrs["averageVehicleSpeed"], attrs["intensity"]) == \
        ("TrafficFlowObserved", "road_segment", "speed_kmh", "flow_vph")


# ----------------------------------------------------------------------------- feed and city file
SEGMENTS = pd.DataFrame({"id": ["s1", "s2", "s3"], "name": ["2nd Ring Road", "2nd Ring Road", "Avenue"],
                         "free_flow_kmh": [70.0, 70.0, 50.0], "length_m": [900, 900, 500], "lanes": [3, 3, 2],
                         "from_node": ["n1", "n2", "n2"], "to_node": ["n2", "n3", "n4"]})


def context(segments):
    from dashboard.feeds import FeedContext

    return FeedContext(None, 11, 60, "Asia/Shanghai",
                       lambda kind: segments if kind == "road_segment" else pd.DataFrame(), None, None)


def test_feed_needs_road_segments():
    assert feed(context(SEGMENTS.iloc[:0])) is None
    sim = feed(context(SEGMENTS))
    assert isinstance(sim, TrafficSim) and (sim.seed, sim.step, sim.timezone) == (11, 60, "Asia/Shanghai")
    assert sim.readings(np.array([], dtype=np.int64), 0, 0) is None


def test_feed_incident_rows_are_transitions_since_prev_or_the_full_state_after_a_gap():
    sim = feed(context(SEGMENTS))
    t0 = 1_764_900_000
    ticks = np.arange(t0 + 60, t0 + 2 * 86_400 + 1, 60, dtype=np.int64)
    r = sim.readings(ticks, t0, int(ticks[-1]), prev=t0)
    inc = r[r["metric"] == "incident"].sort_values(["asset", "ts"])
    assert len(inc) and not (inc.groupby("asset")["value"].diff() == 0).any()  # each row changes the state
    assert (r["metric"] == "speed_kmh").sum() == len(ticks) * 3 == (r["metric"] == "flow_vph").sum()
    # split at any tick, with the split as prev: the same rows
    split = pd.concat([sim.readings(ticks[:700], t0, int(ticks[699]), prev=t0),
                       sim.readings(ticks[700:], int(ticks[699]), int(ticks[-1]), prev=int(ticks[699]))])
    key = ["metric", "asset", "ts"]
    pd.testing.assert_frame_equal(r.sort_values(key).reset_index(drop=True), split.sort_values(key).reset_index(drop=True))
    full = sim.readings(ticks[:1], t0, int(ticks[0]), full_incidents=True)
    assert sorted(full.loc[full["metric"] == "incident", "asset"]) == ["s1", "s2", "s3"]


def test_city_assets_reads_the_roads_file(tmp_path):
    from dashboard.city import City

    line = {"type": "LineString", "coordinates": [[116.0, 39.9], [116.02, 39.9]]}
    feats = [{"type": "Feature", "geometry": line, "properties": {
        "id": "r-1", "name": "Avenue", "direction": "east", "length_m": 1700, "free_flow_kmh": 50,
        "lanes": 2, "from_node": 1, "to_node": 2}}]
    (tmp_path / "roads.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    city = City(folder=tmp_path, name="T", timezone="UTC", files={"roads": "roads.geojson"})
    rows = DOMAIN.city_assets(city, "the districts", lambda g, d: ["d9"] * len(g))
    assert len(rows) == 1
    r = rows[0]
    assert (r["id"], r["kind"], r["district_id"], r["lon"], r["lat"]) == ("r-1", "road_segment", "d9", 116.01, 39.9)
    assert r["attributes"] == {"direction": "east", "length_m": 1700, "free_flow_kmh": 50.0, "lanes": 2,
                               "from_node": "1", "to_node": "2"}
    assert json.loads(r["geometry"])["type"] == "LineString"
    assert DOMAIN.city_assets(City(folder=tmp_path, name="T", timezone="UTC"), None, None) == []
