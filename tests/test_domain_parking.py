"""The parking domain on its own: hand-written frames in, KPIs, map values and attention items out
(no database); the feed's determinism and daily pattern; the generated Beijing file."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from dashboard.feeds import FeedContext
from dashboard.store.readmodel import Rollup
from layers import DEFAULT_LAYERS, DOMAIN_BY_ID, LAYER_BY_ID, LayerParams
from layers._common import STALE_COLOUR, untyped
from layers._domain import Frames, Query
from layers.parking import DOMAIN, attention, city_assets
from layers.parking import kpis as k
from layers.parking.feed import PERIOD_S, ParkingSim, feed
from layers.parking.layer import STALE, UNKNOWN, ParkingLayer

REPO = Path(__file__).resolve().parents[1]
BEIJING = REPO / "data" / "beijing"
NOW = 1_700_000_000  # 2023-11-14 22:13:20 UTC
KPI = {x.id: x for x in DOMAIN.kpis}


# ---------------------------------------------------------------------------- hand-written frames
def cars(rows) -> pd.DataFrame:
    """Car parks as ``latest`` gives them: rows of (id, district, free, spaces, age)."""
    return pd.DataFrame({"asset_id": [r[0] for r in rows], "name": [f"Car park {r[0]}" for r in rows],
                         "district_id": [r[1] for r in rows],
                         "ts": np.array([NOW - r[4] for r in rows], dtype=np.int64),
                         "parking_free": np.array([r[2] for r in rows], dtype=float),
                         "spaces": np.array([r[3] for r in rows], dtype=float)})


def zones(rows) -> pd.DataFrame:
    z = cars(rows).rename(columns={"parking_free": "zone_free"})
    return z.assign(name=[f"Zone {r[0]}" for r in rows])


def roll(buckets=(), sums=(), n=None) -> Rollup:
    b = np.asarray(buckets, dtype=np.int64)
    s = np.asarray(sums, dtype=float)
    n = np.asarray(n if n is not None else [1] * len(b), dtype=np.int64)
    return Rollup(b, n, s, s.copy(), s.copy())


B0, B1 = NOW - 86_400 + 100, NOW - 200  # two buckets of the window


def history(**over) -> dict:
    """A window of two buckets: occupancy 50 % then 75 %; 0 then 1 of 2 car parks full."""
    h = {"parking_capacity": roll([B0, B1], [300, 300]), "parking_occupied": roll([B0, B1], [150, 225]),
         "zone_capacity": roll([B0, B1], [100, 100]), "zone_occupied": roll([B0, B1], [50, 75]),
         "parking_full": roll([B0, B1], [0, 1], n=[2, 2]),
         "districts": pd.DataFrame({"district_id": ["d1", "d1", "d1", "d1"], "metric": ["parking_capacity",
                                    "parking_occupied", "parking_capacity", "parking_occupied"],
                                    "bucket": [B0, B0, B1, B1], "n": [1, 1, 1, 1], "sum": [100.0, 50, 100, 90]}),
         "n_car_parks": 2, "n_zones": 1}
    h.update(over)
    return h


CARS = [("a", "d1", 2, 100, 30), ("b", "d1", 100, 200, 30), ("c", "d2", 10, 100, 30)]
ZONES = [("z", "d2", 0, 20, 60)]


def frames(car_rows=CARS, zone_rows=ZONES, now=NOW, district=None, **hist) -> Frames:
    latest = {"car_parks": cars(car_rows), "zones": zones(zone_rows)}
    if district:
        latest = {n: v[v["district_id"] == district] for n, v in latest.items()}
    return Frames(Query(now=now, district=district), latest, history(**hist))


def value(kpi_id: str, f: Frames):
    return KPI[kpi_id].evaluate(f, DOMAIN.period_s)


# ---------------------------------------------------------------------------- KPIs
def test_occupancy_is_occupied_over_capacity_of_everything_reporting():
    v = value("parking.occupancy", frames())
    assert v.value == pytest.approx(100 * (98 + 100 + 90 + 20) / 420)
    assert v.status == "good" and v.as_of == NOW - 30 and not v.stale
    assert v.spark_y == pytest.approx([50.0, 75.0]) and v.spark_x == [B0, B1]
    assert v.delta == pytest.approx(v.value - 50.0)
    assert "420 spaces" in v.note


def test_occupancy_status_follows_the_thresholds_and_the_citys_overrides():
    full = [("a", "d1", 4, 100, 30)]
    assert value("parking.occupancy", frames(full, [])).status == "bad"
    assert value("parking.occupancy", frames([("a", "d1", 10, 100, 30)], [])).status == "warn"
    f = frames([("a", "d1", 10, 100, 30)], [])
    f.q = f.q.with_(thresholds=(("parking.occupancy", (95, 99)),))
    assert value("parking.occupancy", f).status == "good"


def test_full_counts_car_parks_at_95_percent_and_takes_status_from_their_share():
    v = value("parking.full", frames())
    assert v.value == 1  # a (98 %); the full zone is not a car park, c is at 90 %
    assert v.status == "bad"  # 1 of 3 car parks: 33 % ≥ 25 %
    assert v.spark_y == pytest.approx([0.0, 1.0])  # mean of 0/1 × 2 car parks
    assert v.delta == pytest.approx(1.0)
    ten = [("a", "d1", 5, 100, 30)] + [(f"x{i}", "d1", 50, 100, 30) for i in range(9)]
    exactly = value("parking.full", frames(ten, []))
    assert exactly.value == 1 and exactly.status == "warn"  # 95 % is full; 1 of 10 = 10 %


def test_free_spaces_sum_and_share_status():
    v = value("parking.free", frames())
    assert v.value == 112 and v.status == "good"
    # per bucket: each kind's (capacity − occupied) ÷ readings × its assets
    assert v.spark_y == pytest.approx([150 * 2 + 50 * 1, 75 * 2 + 25 * 1])
    assert value("parking.free", frames([("a", "d1", 4, 100, 30)], [])).status == "bad"
    assert value("parking.free", frames([("a", "d1", 10, 100, 30)], [])).status == "warn"


def test_search_pressure_is_the_mean_of_the_districts_index():
    v = value("parking.pressure", frames())
    d1, d2 = 1 / (1 - 198 / 300), 1 / (1 - 110 / 120)
    assert v.value == pytest.approx((d1 + d2) / 2)
    assert v.status == "warn"  # 7.5: above 6.7 (85 %), below 20 (95 %)
    assert "highest d2 12.0" in v.note
    assert v.spark_y == pytest.approx([2.0, 10.0])  # d1 at 50 % then 90 %
    assert value("parking.pressure", frames(district="d1")).value == pytest.approx(d1)


def test_search_pressure_is_capped_when_nothing_is_free():
    assert k.search_pressure([100, 0, 50], [100, 0, 100]) == pytest.approx([100.0, np.nan, 2.0], nan_ok=True)
    v = value("parking.pressure", frames([("a", "d1", 0, 100, 30)], []))
    assert v.value == 100.0 and v.status == "bad"


def test_nothing_reporting_is_unknown_not_zero():
    empty = history(**{n: roll() for n in ("parking_capacity", "parking_occupied", "zone_capacity", "zone_occupied",
                                           "parking_full")}, districts=pd.DataFrame(
        columns=["district_id", "metric", "bucket", "n", "sum"]), n_car_parks=0, n_zones=0)
    f = Frames(Query(now=NOW), {"car_parks": cars([]), "zones": zones([])}, empty)
    for kid in KPI:
        v = value(kid, f)
        assert v.value is None and v.status == "unknown" and v.as_of is None, kid
        assert v.spark_y == [] and v.delta is None, kid


def test_old_readings_are_stale_with_their_age():
    v = value("parking.occupancy", frames(now=NOW + 1000))
    assert v.stale and v.age_s == pytest.approx(1030)
    assert v.value is not None  # the last known value, flagged


def test_a_silent_car_park_and_an_impossible_reading_do_not_count():
    rows = CARS + [("gone", "d1", 0, 500, 30 + 10 * PERIOD_S), ("odd", "d1", 300, 100, 30)]
    v = value("parking.occupancy", frames(rows))
    assert v.value == pytest.approx(100 * 308 / 420)
    assert "2 not counted" in v.note


def test_kpis_are_declared_with_permanent_ids_and_definitions():
    assert [x.id for x in DOMAIN.kpis] == ["parking.occupancy", "parking.full", "parking.free", "parking.pressure"]
    assert all(x.definition and x.warn is not None for x in DOMAIN.kpis)
    assert "1 ÷ (1 − occupancy)" in KPI["parking.pressure"].definition
    assert k.PRESSURE_THRESHOLDS == (6.7, 20.0)


# ---------------------------------------------------------------------------- derived series and metrics
def test_derived_series_skip_impossible_readings():
    free = np.array([0.0, 5.0, 50.0, 120.0, 10.0])
    attrs = {"spaces": np.array([100.0, 100.0, 100.0, 100.0, np.nan])}
    assert k.derived_capacity(free, attrs) == pytest.approx([100, 100, 100, np.nan, np.nan], nan_ok=True)
    assert k.derived_occupied(free, attrs) == pytest.approx([100, 95, 50, np.nan, np.nan], nan_ok=True)
    assert k.derived_full(free, attrs) == pytest.approx([1, 1, 0, np.nan, np.nan], nan_ok=True)


def test_metric_ranges_and_registry():
    m = {x.id: x for x in DOMAIN.metrics}
    assert (m["parking_free"].kind, m["parking_free"].lo, m["parking_free"].hi) == ("car_park", 0, 20_000)
    assert (m["zone_free"].kind, m["zone_free"].lo, m["zone_free"].hi) == ("parking_zone", 0, 2_000)
    assert all(x.agg == "sum" and x.unit == "spaces" for x in m.values())
    assert {x.source for x in DOMAIN.derived} <= set(m)
    kinds = set(DOMAIN.kind_ids)
    for etype, (kind, attrs, _) in DOMAIN.ngsi:
        assert kind in kinds and set(attrs.values()) <= set(m) and m[next(iter(attrs.values()))].kind == kind, etype
    assert DOMAIN_BY_ID["parking"] is DOMAIN and LAYER_BY_ID["parking"] is DOMAIN.layer
    assert not DOMAIN.default_on and "parking" not in DEFAULT_LAYERS
    assert set(DOMAIN.wall.headline) <= set(KPI)
    assert DOMAIN.stale_after == 3 * PERIOD_S


def test_the_generated_file_fits_the_metric_ranges():
    cp = pd.read_csv(BEIJING / "car_parks.csv")
    hi = {"car_park": 20_000, "parking_zone": 2_000}
    assert (cp["capacity"] > 0).all() and (cp["capacity"] <= cp["kind"].map(hi)).all()


# ---------------------------------------------------------------------------- map layer
def static(rows=(("a", "car_park", 100), ("b", "car_park", 200), ("c", "car_park", 100), ("z", "parking_zone", 20),
                 ("new", "car_park", 50))) -> pd.DataFrame:
    return pd.DataFrame({"id": [r[0] for r in rows], "name": [f"P {r[0]}" for r in rows], "kind": [r[1] for r in rows],
                         "district_id": ["d1"] * len(rows), "lon": np.linspace(116.3, 116.5, len(rows)),
                         "lat": [39.9] * len(rows), "spaces": [float(r[2]) for r in rows]})


PARAMS = LayerParams(now=NOW)


def test_layer_colours_each_circle_by_occupancy_status():
    layer = ParkingLayer()
    st = static()
    frame = layer.prepare({"car_parks": cars(CARS[:2] + [("c", "d2", 10, 100, 1000)]), "zones": zones(ZONES)})
    v = layer.values(st, frame, PARAMS)
    assert len(v) == 2
    # a 98 % bad, b 50 % good, c stale (1000 s > 180 s), new never reported; the zone 100 % bad
    assert untyped(v[0]["marker"]["color"]).tolist() == [2, 0, STALE, UNKNOWN]
    assert untyped(v[1]["marker"]["color"]).tolist() == [2]
    custom = untyped(v[0]["customdata"])
    assert custom[0].tolist() == [2, 100, 98, 0] and custom[2][3] == 17  # c: 1000 s ≈ 17 min old
    assert custom[3].tolist() == [65535, 50, 65535, 65535]
    tr = layer.traces(st, frame, PARAMS)
    assert [t["uid"] for t in tr] == ["parking-car-parks", "parking-zones"]
    assert len(tr[0]["lon"]) == 4 and tr[0]["marker"]["cmin"] == STALE
    assert tr[0]["marker"]["colorscale"][0][1] == STALE_COLOUR
    assert tr[0]["marker"]["size"][1] > tr[0]["marker"]["size"][0]  # larger car park, larger circle


def test_layer_warn_colour_and_city_thresholds():
    layer = ParkingLayer()
    frame = layer.prepare({"car_parks": cars([("a", "d1", 10, 100, 30)])})
    assert untyped(layer.values(static(), frame, PARAMS)[0]["marker"]["color"])[0] == 1
    p = LayerParams(now=NOW, extra={"thresholds": {"parking.occupancy": (92, 99)}})
    assert untyped(layer.values(static(), frame, p)[0]["marker"]["color"])[0] == 0
    assert layer.legend(p)[0][0].startswith("< 92")


def test_layer_values_are_small():
    n = 2000
    st = static(tuple((f"p{i}", "car_park", 100 + i % 50) for i in range(n)))
    frame = pd.DataFrame({"asset_id": st["id"], "free": np.arange(n) % 100, "ts": np.full(n, NOW - 10)})
    import json

    size = len(json.dumps(ParkingLayer().values(st, frame, PARAMS)))
    assert size < 30 * n  # base64 bytes, not JSON lists of strings


def test_layer_works_on_empty_frames():
    layer = ParkingLayer()
    empty = layer.prepare({})
    assert list(empty.columns) == ["asset_id", "free", "ts"] and not len(empty)
    v = layer.values(static(), empty, PARAMS)
    assert set(untyped(v[0]["marker"]["color"]).tolist()) == {UNKNOWN}
    assert layer.worst(static(), empty, now=NOW).empty
    nothing = static(())
    assert [len(t["lon"]) for t in layer.traces(nothing, empty, PARAMS)] == [0, 0]
    assert layer.legend(PARAMS)[-1] == ("stale reading", STALE_COLOUR)


def test_worst_is_fullest_first_and_stale_after_current():
    layer = ParkingLayer()
    frame = layer.prepare({"car_parks": cars([("a", "d1", 2, 100, 30), ("b", "d1", 100, 200, 30),
                                              ("c", "d1", 0, 100, 5000)]), "zones": zones(ZONES)})
    w = layer.worst(static(), frame, n=10, now=NOW)
    assert w["place"].tolist() == ["P z", "P a", "P b", "P c"]
    assert w["stale"].tolist() == [False, False, False, True] and w["band"].tolist()[-1] == "stale"
    assert w["value"].tolist()[:3] == [100.0, 98.0, 50.0]
    assert layer.worst(static(), frame, n=2, now=NOW)["place"].tolist() == ["P z", "P a"]
    lenient = LayerParams(now=NOW, extra={"thresholds": {"parking.occupancy": (98, 100)}})
    assert layer.worst(static(), frame, now=NOW, params=lenient)["band"].tolist() == ["alert", "watch", "ok", "stale"]


def test_district_hover_is_the_occupancy_of_current_readings():
    layer = ParkingLayer()
    st = static().assign(district_id=["d1", "d1", "d2", "d2", "d2"])
    frame = layer.prepare({"car_parks": cars([("a", "d1", 2, 100, 30), ("b", "d1", 100, 200, 30),
                                              ("c", "d2", 0, 100, 5000)]), "zones": zones([("z", "d2", 5, 20, 30)])})
    name, per = layer.district_hover(st, frame, PARAMS)
    assert name == "parking" and per == {"d1": "66% occupied (102 free)", "d2": "75% occupied (5 free)"}
    assert layer.district_hover(st, layer.prepare({}), PARAMS)[1] == {}


# ---------------------------------------------------------------------------- attention
START = (NOW - k.FULL_FOR_S) // k.RECENT_RES * k.RECENT_RES


def recent(rows) -> pd.DataFrame:
    """asset_series rows: (asset, district, bucket, max free)."""
    return pd.DataFrame({"asset_id": [r[0] for r in rows], "district_id": [r[1] for r in rows],
                         "metric": "parking_free", "bucket": [r[2] for r in rows], "n": 5,
                         "sum": [5.0 * r[3] for r in rows], "min": [float(r[3]) for r in rows],
                         "max": [float(r[3]) for r in rows]})


def every_bucket(asset, district, free, skip=()):
    return [(asset, district, b, free) for b in range(START, NOW + 1, k.RECENT_RES) if b not in skip]


def attention_frames(car_rows, recent_rows, district=None) -> Frames:
    latest = {"car_parks": cars(car_rows), "zones": zones([]), "recent": recent(recent_rows)}
    if district:
        latest = {n: v[v["district_id"] == district] for n, v in latest.items()}
    return Frames(Query(now=NOW, district=district), latest, {})


def test_full_for_30_min_is_an_alert_just_full_a_watch():
    rows = [("long", "d1", 2, 100, 30), ("just", "d1", 3, 200, 30), ("gap", "d2", 1, 100, 30),
            ("fine", "d2", 50, 100, 30), ("late", "d2", 0, 100, 30)]
    rec = (every_bucket("long", "d1", 5) + every_bucket("just", "d1", 10)
           + [("just", "d1", START, 60)]  # 30 min ago it still had room
           + every_bucket("gap", "d2", 1, skip=(START + 600,)) + every_bucket("fine", "d2", 50)
           + every_bucket("late", "d2", 0, skip=(START,)))  # full, but only for 25 min so far
    items = {i["place"]: i for i in attention(attention_frames(rows, rec))}
    assert set(items) == {"Car park long", "Car park just", "Car park gap", "Car park late"}
    assert items["Car park long"]["level"] == "bad" and "full 30+ min" in items["Car park long"]["detail"]
    assert {items[p]["level"] for p in ("Car park just", "Car park gap", "Car park late")} == {"warn"}
    assert items["Car park long"]["score"] == pytest.approx(0.6)  # 98 %: 3 of the 5 points past 95 %
    assert items["Car park late"]["score"] == 1.0 and items["Car park late"]["magnitude"] == 100.0
    assert items["Car park gap"]["district"] == "d2"


def test_stale_car_park_is_a_stale_item_and_district_scope_applies():
    rows = [("old", "d1", 0, 100, 900), ("now", "d2", 1, 100, 30)]
    rec = every_bucket("old", "d1", 0) + every_bucket("now", "d2", 1)
    items = attention(attention_frames(rows, rec))
    old = next(i for i in items if i["place"] == "Car park old")
    assert old["level"] == "stale" and old["score"] == 900 and "15 min" in old["detail"]
    d2 = attention(attention_frames(rows, rec, district="d2"))
    assert [(i["place"], i["level"]) for i in d2] == [("Car park now", "bad")]
    assert attention(attention_frames([], [])) == []


# ---------------------------------------------------------------------------- feed
def sim_assets(business=(1.0, 0.0)) -> dict:
    return {"car_park": pd.DataFrame({"id": [f"cp{i}" for i in range(len(business))], "name": "x", "district": "d1",
                                      "spaces": 200.0, "business": list(business)}),
            "parking_zone": pd.DataFrame({"id": ["z1"], "name": "z", "district": "d1", "spaces": [30.0]})}


def local(day: str, hour: int) -> int:
    return int(pd.Timestamp(f"{day} {hour:02d}:00", tz="Asia/Shanghai").timestamp())


def test_feed_is_a_pure_function_of_seed_asset_and_time():
    a, b = ParkingSim(sim_assets(), seed=7), ParkingSim(sim_assets(), seed=7)
    t0 = local("2024-03-05", 8)
    one = a.readings(None, t0, t0 + 3600)
    assert one.equals(b.readings(None, t0, t0 + 3600))
    # chunks never double or skip a reading, whatever the ticks given
    parts = pd.concat([a.readings(np.array([t0 + 1234]), t0, t0 + 1234),
                       a.readings(np.array([t0 + 3600]), t0 + 1234, t0 + 3600)], ignore_index=True)
    assert parts.equals(one)
    assert len(one) == 60 * 3 and set(one["ts"] % PERIOD_S) == {0}
    assert set(one["metric"]) == {"parking_free", "zone_free"}
    assert ((one["value"] >= 0) & (one["value"] <= np.where(one["asset"] == "z1", 30, 200))).all()
    assert not ParkingSim(sim_assets(), seed=8).readings(None, t0, t0 + 3600).equals(one)
    # a coarse simulator step (a backfill) reads at that step
    assert len(ParkingSim(sim_assets(), seed=7, step=300).readings(None, t0, t0 + 3600)) == 12 * 3


def test_feed_daily_pattern_business_by_day_homes_by_night_weekends_differ():
    s = ParkingSim(sim_assets(business=(1.0, 0.0)), seed=3)
    tue_noon, tue_night = local("2024-03-05", 11), local("2024-03-05", 3)
    sat_noon = local("2024-03-09", 11)
    occ = s.occupancy([tue_noon, tue_night, sat_noon])  # (time, asset): business, residential, zone
    assert occ[0, 0] > 0.8 and occ[1, 0] < 0.3  # offices full at work time, empty at night
    assert occ[1, 1] > 0.75 and occ[0, 1] < 0.55  # homes the other way round
    assert occ[2, 0] < occ[0, 0] - 0.2  # fewer at work on a Saturday
    # over a working day the business car park peaks in the day
    day = np.arange(local("2024-03-05", 0), local("2024-03-06", 0), 600)
    hours = ((day - day[0]) // 3600)[np.argmax(s.occupancy(day)[:, 0])]
    assert 9 <= hours <= 17


def test_feed_needs_car_parks_or_zones_and_their_capacity():
    def ctx(frames):
        return FeedContext(None, 1, 5, "Asia/Shanghai", lambda kind: frames.get(kind, pd.DataFrame()), None, None)

    assert feed(ctx({})) is None
    assert feed(ctx({"car_park": pd.DataFrame(columns=["id", "name", "district", "spaces"])})) is None
    f = feed(ctx(sim_assets()))
    assert isinstance(f, ParkingSim) and f.n == 3 and f.every == PERIOD_S
    with pytest.raises(ValueError, match="spaces"):
        ParkingSim({"car_park": pd.DataFrame({"id": ["x"], "name": ["x"]})})


# ---------------------------------------------------------------------------- city data
def test_city_assets_of_the_generated_beijing_file():
    from dashboard.city import _districts_frame, assign_districts, load_city

    city = load_city(BEIJING)
    dist = _districts_frame(city)
    rows = city_assets(city, dist, assign_districts)
    import json

    ids = {f["properties"]["id"] for f in json.loads((BEIJING / "districts.geojson").read_text())["features"]}
    df = pd.DataFrame(rows)
    assert len(df) == 460 and df["id"].is_unique
    assert set(df["kind"]) == {"car_park", "parking_zone"} and (df["kind"] == "car_park").sum() == 320
    assert set(df["district_id"]) == ids  # every district has some, and only real districts
    # each point lies in the district its generator placed it in
    assert (df["district_id"] == df["id"].str.split("-").str[1]).all()
    assert all(a["spaces"] > 0 and 0 <= a["business"] <= 1 for a in df["attributes"])
    centre = df[df["district_id"].isin(["dongcheng", "xicheng"])]
    assert len(centre) / 92.3 > 3 * len(df[df["district_id"] == "yanqing"]) / 1994.6  # denser in the centre (per km²)


def test_the_beijing_file_is_what_the_generator_writes(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("build_parking", REPO / "scripts" / "build_parking.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.build_car_parks(json.loads((BEIJING / "districts.geojson").read_text())["features"])
    mod.write(rows, tmp_path / "car_parks.csv")
    assert (tmp_path / "car_parks.csv").read_bytes() == (BEIJING / "car_parks.csv").read_bytes()


def test_city_assets_rejects_a_bad_file(tmp_path):
    class City:
        files: ClassVar[dict] = {"car_parks": "cp.csv"}

        def path(self, key):
            return tmp_path / self.files[key]

    def assign(g, d):
        return pd.Series(["d1"] * len(g), index=g.index)

    p = tmp_path / "cp.csv"
    p.write_text("id,name,kind,lon,lat,capacity\na,A,car_park,116.4,39.9,100\nb,B,garage,116.4,39.9,50\n")
    with pytest.raises(ValueError, match="line 3: kind 'garage'"):
        city_assets(City(), None, assign)
    p.write_text("id,name,kind,lon,lat\na,A,car_park,116.4,39.9\n")
    with pytest.raises(ValueError, match="missing column.*capacity"):
        city_assets(City(), None, assign)
    p.write_text("id,name,kind,lon,lat,capacity\na,A,car_park,116.4,39.9,0\n")
    with pytest.raises(ValueError, match="line 2: capacity '0' is not a positive number"):
        city_assets(City(), None, assign)
    p.write_text("id,name,kind,lon,lat,capacity\na,A,car_park,east,39.9,10\n")
    with pytest.raises(ValueError, match="lon 'east' is not a number"):
        city_assets(City(), None, assign)
    p.write_text("id,name,kind,lon,lat,capacity\na,A,car_park,116.4,39.9,10\na,B,car_park,116.4,39.9,10\n")
    with pytest.raises(ValueError, match="id 'a' appears twice"):
        city_assets(City(), None, assign)
    p.write_text("id,name,kind,lon,lat,capacity,business\na,A,car_park,116.4,39.9,10,2\n")
    with pytest.raises(ValueError, match="business '2' is not a number from 0 to 1"):
        city_assets(City(), None, assign)
    p.write_text("id,name,kind,lon,lat,capacity\na,A,car_park,116.4,39.9,10\nb,B,parking_zone,116.5,39.9,8\n")
    rows = city_assets(City(), None, assign)
    assert [(r["id"], r["kind"], r["district_id"], r["attributes"]) for r in rows] == [
        ("a", "car_park", "d1", {"spaces": 10.0}), ("b", "parking_zone", "d1", {"spaces": 8.0})]

    class NoFile(City):
        files: ClassVar[dict] = {}

    assert city_assets(NoFile(), None, assign) == []


# ---------------------------------------------------------------------------- one snapshot from a real store
def test_snapshot_reads_and_computes_parking_from_a_sqlite_store(tmp_path):
    """The reads (latest values, 30-minute per-asset series, rollups, per-district rollups) on a real
    store, rows written by hand (the ingest of the other domains is not converted yet)."""
    import json

    from sqlalchemy import insert

    from dashboard.snapshot import compute
    from dashboard.store.migrate import upgrade
    from dashboard.store.schema import (
        assets,
        districts,
        latest,
        make_engine,
        rollup_asset,
        rollup_district,
    )

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    square = json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]})
    now = NOW // 300 * 300 + 100
    buckets = list(range((now - k.FULL_FOR_S) // 300 * 300, now + 1, 300))
    with engine.begin() as c:
        c.execute(insert(districts), [{"id": d, "name": d.upper(), "geometry": square} for d in ("d1", "d2")])
        c.execute(insert(assets), [
            {"pk": pk, "id": i, "kind": kind, "district_id": d, "name": i.upper(), "lon": .1, "lat": .1,
             "attributes": {"spaces": n}}
            for pk, i, kind, d, n in ((1, "a", "car_park", "d1", 100), (2, "b", "car_park", "d2", 200),
                                      (3, "z", "parking_zone", "d2", 20))])
        c.execute(insert(latest), [{"asset_pk": pk, "metric": m, "ts": now - 30, "value": v} for pk, m, v in
                                   ((1, "parking_free", 2), (2, "parking_free", 100), (3, "zone_free", 5))])
        c.execute(insert(rollup_asset), [{"res": 300, "asset_pk": p, "metric": "parking_free", "bucket": b, "n": 5,
                                          "sum": 5 * v, "min": v, "max": v}
                                         for b in buckets for p, v in ((1, 2.0), (2, 100.0))])
        series = {"parking_capacity": 300.0, "parking_occupied": 198.0, "zone_capacity": 20.0, "zone_occupied": 15.0}
        by_district = (("d1", "parking_capacity", 100.0), ("d1", "parking_occupied", 98.0),
                       ("d2", "parking_capacity", 200.0), ("d2", "parking_occupied", 100.0),
                       ("d2", "zone_capacity", 20.0), ("d2", "zone_occupied", 15.0))
        c.execute(insert(rollup_district),
                  [{"res": 300, "district_id": "*", "metric": m, "bucket": b, "n": 2, "sum": v, "min": 0, "max": v}
                   for b in buckets for m, v in series.items()]
                  + [{"res": 300, "district_id": d, "metric": m, "bucket": b, "n": 1, "sum": v, "min": 0, "max": v}
                     for b in buckets for d, m, v in by_district])
    with engine.connect() as conn:
        snap = compute(conn, now=now, window="24h", tz="Asia/Shanghai", domains=[DOMAIN])
        d2 = compute(conn, now=now, window="24h", district="d2", tz="Asia/Shanghai", domains=[DOMAIN])
    assert snap.failed == {} and snap.counts == {"car_park": 2, "parking_zone": 1}
    occ = snap.kpi("parking.occupancy")
    assert occ.value == pytest.approx(100 * 213 / 320) and occ.spark_y[-1] == pytest.approx(100 * 213 / 320)
    assert snap.kpi("parking.full").value == 1 and snap.kpi("parking.free").value == 107
    assert snap.kpi("parking.pressure").value == pytest.approx((1 / 0.02 + 1 / (1 - 115 / 220)) / 2)
    assert [(i["place"], i["level"]) for i in snap.attention] == [("A", "bad")]  # full for 30 min
    assert d2.kpi("parking.pressure").value == pytest.approx(1 / (1 - 115 / 220)) and d2.attention == []
    frame = snap.layer_frame(DOMAIN)
    assert sorted(frame["asset_id"]) == ["a", "b", "z"]


def test_the_demo_city_feeds_ingests_and_shows_parking(tmp_path):
    """Beijing end to end: the feed's readings pass the ingest's checks, the derived series are kept,
    and the snapshot's KPIs, attention and map agree with each other."""
    from _demo import build_demo_store
    from sqlalchemy import text

    from dashboard.snapshot import compute
    from dashboard.store.schema import make_engine

    end = 1_709_613_000  # Tuesday 2024-03-05 12:30 in Beijing: offices full
    engine = make_engine(build_demo_store(tmp_path, hours=1, end=end))
    with engine.connect() as conn:
        n = dict(conn.execute(text("SELECT metric, count(*) FROM readings "
                                   "WHERE metric IN ('parking_free', 'zone_free') GROUP BY metric")).all())
        assert n == {"parking_free": 320 * 12, "zone_free": 140 * 12}  # every 5 min for an hour, none rejected
        snap = compute(conn, now=end + 30, window="1h", tz="Asia/Shanghai", domains=[DOMAIN])
        static_ = DOMAIN.layer.static(conn)
    engine.dispose()
    assert snap.failed == {}
    frame = snap.layer_frame(DOMAIN)
    w = DOMAIN.layer.worst(static_, frame, len(static_), now=end + 30)
    assert len(w) == 460 and not w["stale"].any()
    occ = snap.kpi("parking.occupancy")
    assert occ.value == pytest.approx(100 * (1 - w["free"].sum() / w["spaces"].sum()))
    assert occ.spark_y[-1] == pytest.approx(occ.value)  # the newest bucket holds only the newest reading
    full = w[(w["kind"] == "car_park") & (w["value"] >= 95)]
    assert snap.kpi("parking.full").value == len(full) > 0
    assert snap.kpi("parking.free").value == w["free"].sum()
    assert all(k.value is not None and not k.stale for k in snap.kpis)
    items = [i for i in snap.attention if i["domain"] == "parking"]
    assert sorted(i["place"] for i in items) == sorted(full["place"])
    assert {i["level"] for i in items} <= {"bad", "warn"}


def test_ngsi_off_and_on_street_parking_entities_become_free_space_readings():
    """FIWARE's OffStreetParking / OnStreetParking (dataModel.Parking; hand-written after the published
    model, no example of it in the project): ``availableSpotNumber`` is the free spaces."""
    from dashboard.importers import ImportReport
    from dashboard.importers.ngsi import parse_entities

    def entity(etype, eid, free):
        return {"id": f"urn:ngsi-ld:{etype}:{eid}", "type": etype,
                "availableSpotNumber": {"type": "Property", "value": free, "observedAt": "2024-03-05T04:30:00Z"},
                "totalSpotNumber": {"type": "Property", "value": 200},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [116.4, 39.9]}}}

    body = [entity("OffStreetParking", "hz-1", 121), entity("OnStreetParking", "hz-2", 7),
            entity("OffStreetParking", "hz-3", "lots")]
    found, rows, bad = parse_entities("x", body, "Asia/Shanghai", ImportReport("ngsi", "x"))
    assert [(a["id"], a["kind"]) for a in found] == [("hz-1", "car_park"), ("hz-2", "parking_zone"),
                                                     ("hz-3", "car_park")]
    assert rows[["asset", "metric", "value"]].to_dict("records") == [
        {"asset": "hz-1", "metric": "parking_free", "value": 121.0},
        {"asset": "hz-2", "metric": "zone_free", "value": 7.0}]
    assert len(bad) == 1 and "availableSpotNumber 'lots' is not a number" in bad[0][2]
