"""The air-quality domain on hand-written frames: every KPI, the attention rule, the map layer,
its current-values read, city file and feed; no database."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dashboard.snapshot import Snapshot
from dashboard.store.readmodel import Rollup
from dashboard.theme import status_colour
from layers import DEFAULT_LAYERS, DOMAIN_BY_ID, LayerParams
from layers._common import STALE_COLOUR
from layers._domain import Frames, Query, scope
from layers.air_quality import DOMAIN, city_assets
from layers.air_quality import aqi as aqimod
from layers.air_quality import kpis as k

NOW = 1_736_942_400 + 1500  # 2025-01-15T12:25Z
H = 3600
#: Three stations: A and B in "n" (population 1000: weight 500 each), C in "s" (3000: weight 3000).
#: China HJ 633 sub-indices: PM2.5 115 → 150, 35 → 50, 150 → 200; NO₂ 200 → 100; PM10 50 → 50.
CONC = {"A": {"pm25": 115, "pm10": 50}, "B": {"pm25": 35, "no2": 200}, "C": {"pm25": 150}}
DISTRICT = {"A": "n", "B": "n", "C": "s"}
POP = pd.Series({"n": 1000.0, "s": 3000.0, "e": 500.0})


def readings(ts=None) -> pd.DataFrame:
    """Newest values per station, as ``latest_wide`` gives them (C's 4 h old unless ``ts`` says)."""
    ts = ts or {"A": NOW - 600, "B": NOW - 600, "C": NOW - 4 * H}
    rows = [{"asset_id": s, "name": f"Station {s}", "district_id": DISTRICT[s], "ts": ts[s],
             **{p: float(CONC[s].get(p, np.nan)) for p in k.POLLUTANTS}} for s in CONC]
    return pd.DataFrame(rows)


class FakeReader:
    """What ``latest`` reads, from hand frames: ``max_age`` drops nothing here (every value is recent
    enough), so both reads give the same stations."""

    def __init__(self, q: Query, frame: pd.DataFrame, directory=True):
        self.q, self.frame, self.directory = q, frame, directory
        self.asked = []

    def latest(self, kind, metrics, attrs=(), max_age=None):
        self.asked.append((kind, tuple(metrics), max_age))
        return self.frame.copy()

    def populations(self):
        return POP

    def read(self, fn, *args, district=True):
        assert not district  # station weights are city-wide
        if fn.__name__ == "asset_directory":
            return SimpleNamespace(district=np.array([DISTRICT[s] for s in CONC] + [None], dtype=object)) \
                if self.directory else None
        assert fn.__name__ == "asset_count_by_district"
        return {"n": 2, "s": 1}


def query(window="24h", district=None, std="cn", thresholds=()) -> Query:
    return Query(now=NOW, window=window, district=district, thresholds=thresholds,
                 options=(("aqi_standard", std),))


def roll(points: dict) -> Rollup:
    """A rollup from {bucket: (n, sum)}."""
    b = np.array(sorted(points), dtype=np.int64)
    n = np.array([points[x][0] for x in b], dtype=np.int64)
    s = np.array([points[x][1] for x in b], dtype=float)
    return Rollup(b, n, s, s / n, s / n)


def empty_roll() -> Rollup:
    return roll({})


H0, H1 = NOW // H * H - H, NOW // H * H
SPLIT = (NOW - 86_400) // H * H


def hand_history() -> dict:
    """Hourly AQI of two hours (C unknown in the first) and PM2.5: 40 the day before, 100 this day,
    and an older hour (outside both days) that must not count."""
    hourly = pd.DataFrame({"asset_id": ["A", "A", "B", "B", "C", "C"], "district_id": ["n", "n", "n", "n", "s", "s"],
                           "bucket": [H0, H1, H0, H1, H0, H1], "aqi": [120.0, 150, 80, 100, np.nan, 200]})
    pm25 = roll({SPLIT - 86_400 - H: (1, 10_000.0), SPLIT - 7200: (2, 100.0), SPLIT - 3600: (2, 60.0),
                 SPLIT + 3600: (3, 300.0)})
    series = {p: roll({H0: (2, 20.0), H1: (2, 40.0)}) for p in k.POLLUTANTS}
    series["pm25"] = pm25.since(NOW // H * H - 86_400)
    return {"aqi_hourly": hourly, "pm25_2d": pm25, "series": series}


def frames(q: Query, latest: dict | None = None, history: dict | None = None) -> Frames:
    latest = latest if latest is not None else k.latest(FakeReader(q.with_(window=None, district=None), readings()))
    f = Frames(q, {n: scope(v, q.district) for n, v in latest.items()}, history if history is not None else hand_history())
    f.static = pd.DataFrame({"id": list(CONC), "name": [f"Station {s}" for s in CONC],
                             "district_id": [DISTRICT[s] for s in CONC], "lon": [116.3, 116.4, 116.5],
                             "lat": [39.9, 40.0, 39.8]})
    return f


def values(f: Frames) -> dict:
    return {kpi.id: kpi.evaluate(f, DOMAIN.period_s) for kpi in DOMAIN.kpis}


# ---------------------------------------------------------------------------- the declaration
def test_domain_declares_what_the_rest_iterates():
    assert DOMAIN_BY_ID["air_quality"] is DOMAIN and DOMAIN.period_s == 3600 and DOMAIN.stale_after == 3 * H
    assert [x.id for x in DOMAIN.kpis] == ["air.aqi_worst", "air.aqi_weighted", "air.dominant", "air.over_limit",
                                          "air.pm25_24h"]
    assert all(x.definition for x in DOMAIN.kpis)
    assert {m.id for m in DOMAIN.metrics} == {*aqimod.POLLUTANTS, "temp_c"}
    assert DOMAIN.ingest_hooks[0][0] == ("pm25", "pm10", "so2", "no2", "co", "o3")
    assert DOMAIN.options == (("aqi_standard", "cn"),) and DOMAIN.default_on and "air_quality" in DEFAULT_LAYERS
    # the tile, the map and the attention list share one pair of thresholds
    worst = DOMAIN.kpis[0]
    assert (worst.warn, worst.bad) == k.AQI_THRESHOLDS
    assert DOMAIN.wall.headline == ("air.aqi_worst", "air.over_limit")


# ---------------------------------------------------------------------------- current values
def test_latest_indexes_the_stations_and_weights_them_by_population():
    r = FakeReader(query(window=None), readings())
    got = k.latest(r)
    st = got["stations"].set_index("asset_id")
    assert st["aqi"].to_dict() == {"A": 150.0, "B": 100.0, "C": 200.0}
    assert st["dominant"].to_dict() == {"A": "pm25", "B": "no2", "C": "pm25"}
    assert st["weight"].to_dict() == {"A": 500.0, "B": 500.0, "C": 3000.0}
    assert got["weights"] == {"n": 500.0, "s": 3000.0}
    # the KPIs' values drop what is 3 h older than the newest; the map's keep every station
    assert [a[2] for a in r.asked] == [k.MAX_AGE_S, None]
    assert list(got["readings"]["asset_id"]) == ["A", "B", "C"]
    # a store without the asset directory counts stations per district instead: the same weights
    assert k.latest(FakeReader(query(window=None), readings(), directory=False))["weights"] == got["weights"]


def test_latest_of_a_city_without_readings_is_empty_not_an_error():
    got = k.latest(FakeReader(query(window=None), pd.DataFrame(columns=["asset_id", "name", "district_id", "ts"])))
    assert got["stations"].empty and {"aqi", "dominant", "weight"} <= set(got["stations"].columns)


def test_an_unknown_standard_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown AQI standard 'eu'"):
        k.latest(FakeReader(query(window=None, std="eu"), readings()))


# ---------------------------------------------------------------------------- KPIs
def test_every_kpi_on_hand_frames():
    v = values(frames(query()))
    w = v["air.aqi_worst"]
    assert (w.value, w.delta, w.note, w.status) == (200.0, 80.0, "Station C · PM2.5", "bad")
    assert w.spark_x == [H0, H1] and w.spark_y == [120.0, 200.0] and w.as_of == NOW - 600
    wt = v["air.aqi_weighted"]
    assert wt.value == pytest.approx((150 * 500 + 100 * 500 + 200 * 3000) / 4000)  # 181.25
    assert wt.spark_y == [100.0, pytest.approx(181.25)] and wt.note == "3 stations" and wt.status == "bad"
    d = v["air.dominant"]
    assert (d.value, d.delta, d.status) == ("PM2.5", None, "good")
    assert d.note == "at 67% of stations · trend: PM2.5 µg/m³" and d.spark_x == list(hand_history()["series"]["pm25"].bucket)
    o = v["air.over_limit"]
    assert (o.value, o.delta, o.note, o.status) == (2.0, 1.0, "of 3 stations, AQI > 100", "warn")
    assert o.spark_y == [1.0, 2.0]
    p = v["air.pm25_24h"]
    assert (p.value, p.delta, p.status) == (100.0, 60.0, "bad")  # 40 the day before; the older hour is left out
    assert p.note == "mean of hourly station values" and p.delta_label == "vs previous 24 h"
    assert DOMAIN.kpis[4].reaches(query()) == NOW - 2 * 86_400 - H


def test_a_district_sees_its_stations_only():
    hist = hand_history()
    hist["aqi_hourly"] = hist["aqi_hourly"][hist["aqi_hourly"]["district_id"] == "n"]  # the reader's district
    v = values(frames(query(district="n"), history=hist))
    assert v["air.aqi_worst"].value == 150.0 and v["air.aqi_worst"].note == "Station A · PM2.5"
    assert v["air.aqi_weighted"].value == 125.0 and v["air.over_limit"].value == 1.0
    assert v["air.dominant"].value == "PM2.5" and v["air.dominant"].note.startswith("at 50% of stations")


def test_without_population_each_station_counts_once():
    latest = k.latest(FakeReader(query(window=None), readings()))
    latest["stations"] = latest["stations"].assign(weight=0.0)
    v = values(frames(query(), latest=latest))
    assert v["air.aqi_weighted"].value == 150.0  # the plain mean of 150, 100, 200
    assert v["air.dominant"].value == "PM2.5"  # two of three stations


def test_the_us_standard_changes_the_numbers():
    cn, us = values(frames(query())), values(frames(query(std="us")))
    assert us["air.aqi_worst"].value == float(aqimod.aqi({"pm25": 150}, "us")[0]) != cn["air.aqi_worst"].value


def test_city_thresholds_override_the_statuses():
    v = values(frames(query(thresholds=(("air.aqi_worst", (250, 300)),))))
    assert v["air.aqi_worst"].status == "good" and v["air.aqi_weighted"].status == "bad"


def test_every_kpi_is_unknown_without_data():
    empty = k.latest(FakeReader(query(window=None), pd.DataFrame(columns=["asset_id", "name", "district_id", "ts"])))
    hist = {"aqi_hourly": pd.DataFrame(columns=["asset_id", "district_id", "bucket", "aqi"]),
            "pm25_2d": empty_roll(), "series": {p: empty_roll() for p in k.POLLUTANTS}}
    for kv in values(frames(query(), latest=empty, history=hist)).values():
        assert kv.value is None and kv.status == "unknown" and kv.delta is None and not kv.stale, kv.id


def test_old_values_are_stale():
    v = values(frames(query().with_(now=NOW + 4 * H)))
    assert v["air.aqi_worst"].stale and v["air.aqi_worst"].age_s == 4 * H + 600


# ---------------------------------------------------------------------------- attention
def test_attention_lists_watches_alerts_and_silent_stations():
    got = DOMAIN.attention(frames(query()))
    assert [(i["level"], i["place"]) for i in got] == [("warn", "Station A"), ("stale", "Station C")]
    a, c = got
    assert a["score"] == pytest.approx((150 - 101) / (151 - 101)) and a["magnitude"] == 150
    assert a["detail"] == "AQI 150 ≥ 101 · Lightly polluted · PM2.5" and a["district"] == "n"
    assert c["score"] == 4 * H and c["detail"] == "last value 4 h old"


def test_attention_follows_the_city_thresholds_and_the_district():
    got = DOMAIN.attention(frames(query(thresholds=(("air.aqi_worst", (90, 140)),))))
    assert [(i["level"], i["place"], round(i["score"], 4)) for i in got if i["level"] != "stale"] == \
        [("bad", "Station A", round(10 / 160, 4)), ("warn", "Station B", 0.2)]
    assert [i["place"] for i in DOMAIN.attention(frames(query(district="s")))] == ["Station C"]


# ---------------------------------------------------------------------------- map layer
def test_layer_draws_the_domains_readings():
    layer = DOMAIN.layer
    f = frames(query())
    snap = Snapshot(query=query(window=None), latest={"air_quality": k.latest(FakeReader(query(window=None), readings()))})
    frame = snap.layer_frame(DOMAIN)
    assert list(frame["asset_id"]) == ["A", "B", "C"]
    v = layer.values(f.static, frame, LayerParams(now=NOW))[0]
    assert v["marker"]["color"] == [status_colour("warn"), status_colour("good"), STALE_COLOUR]
    assert v["marker"]["size"] == [pytest.approx(16 + 24 * 150 / 300), pytest.approx(16 + 24 * 100 / 300), 12]
    assert [c[0] for c in v["customdata"]] == [150, 100, 200] and "China HJ 633-2012" in v["hovertemplate"]
    worst = layer.worst(f.static, frame, n=3, now=NOW)
    assert list(worst["place"]) == ["Station A", "Station B", "Station C"] and list(worst["stale"]) == [False, False, True]
    # the city's thresholds colour the map as they colour the tile
    t = LayerParams(now=NOW, extra={"thresholds": {"air.aqi_worst": (90, 140)}})
    assert layer.values(f.static, frame, t)[0]["marker"]["color"][:2] == [status_colour("bad"), status_colour("warn")]


def test_layer_on_an_empty_frame_draws_stations_without_data():
    layer = DOMAIN.layer
    static = frames(query()).static
    tr = layer.traces(static, pd.DataFrame(), LayerParams(now=NOW, aqi_standard="us"))
    assert len(tr) == 1 and tr[0]["marker"]["color"] == [status_colour("unknown")] * 3
    assert layer.worst(static, pd.DataFrame(), now=NOW).empty
    assert [c for _, c in layer.legend(LayerParams(now=NOW))] == [status_colour(s) for s in ("good", "warn", "bad")]


# ---------------------------------------------------------------------------- city file and feed
def test_city_assets_from_the_stations_file(tmp_path):
    (tmp_path / "st.csv").write_text("id,name,category,lon,lat\nx1,Dongsi,urban,116.4,39.9\nx2,Huairou,suburban,116.6,40.3\n")
    city = SimpleNamespace(files={"stations": "st.csv"}, path=lambda key: tmp_path / "st.csv")
    rows = city_assets(city, "districts", lambda g, d: pd.Series(["dongcheng", "huairou"], index=g.index))
    assert [(r["id"], r["kind"], r["district_id"], r["attributes"]) for r in rows] == [
        ("aq-x1", "aq_station", "dongcheng", {"category": "urban", "station": "x1"}),
        ("aq-x2", "aq_station", "huairou", {"category": "suburban", "station": "x2"})]
    assert city_assets(SimpleNamespace(files={}), None, None) == []


def test_feed_replays_the_city_file_and_offers_its_temperature(tmp_path):
    from dashboard.feeds import FeedContext

    rows = ["station,ts,pm25,pm10,so2,no2,co,o3,temp_c",
            "Dongsi,2016-03-01 00:00,10,20,3,40,500,60,2.0", "Dongsi,2016-03-01 01:00,,22,3,41,510,61,4.0"]
    (tmp_path / "aq.csv").write_text("\n".join(rows) + "\n")
    city = SimpleNamespace(timezone="UTC", files={"air_quality": "aq.csv"}, path=lambda key: tmp_path / "aq.csv",
                           folder=tmp_path)
    ctx = FeedContext(city, 1, 5, "UTC", lambda kind: pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    replay = DOMAIN.feed(ctx)
    t0 = int(pd.Timestamp("2025-03-01 00:00", tz="UTC").timestamp())  # replays 1 March of the data year
    got = replay.readings(np.array([t0 + 5]), t0 - 1, t0 + H)
    assert len(got) == 7 + 6  # the missing PM2.5 of 01:00 is a gap, not a reading
    assert ctx.provided["city_temperature"](np.array([t0 + 1800]))[0] == pytest.approx(3.0)
    with pytest.raises(FileNotFoundError):
        DOMAIN.feed(FeedContext(SimpleNamespace(timezone="UTC", files={}, folder=tmp_path), 1, 5, "UTC",
                                lambda kind: pd.DataFrame(), pd.DataFrame(), pd.DataFrame()))


def test_pm25_24h_needs_no_pm25_trend_when_another_pollutant_leads_or_no_station_reports():
    """The reader keeps only the main pollutant's trend: PM2.5's 24 h mean and sparkline come from its
    two days (a district led by NO2, or with no station at all, raised KeyError 'pm25' before)."""
    hist = hand_history()
    pm25_24h = DOMAIN.kpis[4]
    hist["series"] = {"no2": hist["series"]["no2"]}
    p = pm25_24h.evaluate(frames(query(), history=hist), DOMAIN.period_s)
    assert (p.value, p.delta) == (100.0, 60.0) and p.spark_x == [SPLIT + 3600]
    hist["series"] = {}
    assert pm25_24h.evaluate(frames(query(), history=hist), DOMAIN.period_s).value == 100.0
