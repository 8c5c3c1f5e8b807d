"""The built-in feeds: air-quality replay, traffic/energy/service simulators, backfill and live loop."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, select

from dashboard.city import install_city, load_city
from dashboard.feeds import local_hours, uniform
from layers.air_quality.feed import AQ_METRICS, AirQualityReplay
from layers.energy.feed import EnergySim
from layers.satisfaction.feed import ServiceSim
from dashboard.feeds.simulator import Feeds, Simulator, backfill
from layers.traffic.feed import TrafficSim
from dashboard.store.schema import create_schema, make_engine, rejected, service_requests
from dashboard.store.services import ingest_service_requests

CITY_DIR = Path(__file__).resolve().parent.parent / "data" / "beijing"
TZ = "Asia/Shanghai"

pytestmark = pytest.mark.skipif(not (CITY_DIR / "city.toml").is_file(), reason="demo city data missing")


def at(text: str) -> int:
    """Return epoch seconds of a Beijing local time."""
    return int(pd.Timestamp(text, tz=TZ).timestamp())


#: A Wednesday noon: the end of the backfilled history.
END = at("2025-01-15 12:00")


@pytest.fixture(scope="module")
def city():
    return load_city(CITY_DIR)


@pytest.fixture(scope="module")
def store(tmp_path_factory, city):
    """A SQLite store with Beijing installed and one day of history ending at END."""
    path = tmp_path_factory.mktemp("feeds") / "store.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    install_city(engine, city)
    counts = backfill(engine, city, days=1, seed=42, end=END, progress=False)
    yield engine, counts
    engine.dispose()


@pytest.fixture(scope="module")
def feeds(store, city):
    return Feeds.from_store(store[0], city, seed=42, step=5)


@pytest.fixture(scope="module")
def replay(city):
    return AirQualityReplay(city)


@pytest.fixture(scope="module")
def districts_frame():
    return gpd.read_file(CITY_DIR / "districts.geojson")


@pytest.fixture(scope="module")
def categories_frame():
    return pd.read_csv(CITY_DIR / "service_categories.csv")


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_frames_whatever_the_chunks(feeds, store, city):
    engine = store[0]
    other = Feeds.from_store(engine, city, seed=42, step=5)
    ticks = np.arange(END + 300, END + 7200 + 1, 300)
    whole = feeds.traffic.frames(ticks, prev=END)
    again = other.traffic.frames(ticks, prev=END)
    pd.testing.assert_frame_equal(whole, again)
    split = pd.concat([feeds.traffic.frames(ticks[:7], prev=END),
                       feeds.traffic.frames(ticks[7:], prev=int(ticks[6]))], ignore_index=True)
    key = ["metric", "ts", "asset"]
    pd.testing.assert_frame_equal(whole.sort_values(key).reset_index(drop=True),
                                  split.sort_values(key).reset_index(drop=True))
    energy = pd.concat([other.energy.frames(ticks[:3]), other.energy.frames(ticks[3:])], ignore_index=True)
    pd.testing.assert_frame_equal(feeds.energy.frames(ticks).sort_values(key).reset_index(drop=True),
                                  energy.sort_values(key).reset_index(drop=True))
    day = feeds.satisfaction.frame(END - 86400, END, now=END)
    hourly = pd.concat([other.satisfaction.frame(END - 86400 + h * 3600, END - 86400 + (h + 1) * 3600, now=END)
                        for h in range(24)], ignore_index=True)
    pd.testing.assert_frame_equal(day, hourly)
    different = Feeds.from_store(engine, city, seed=7, step=5)
    assert not np.array_equal(different.traffic.state([END])["speed"], feeds.traffic.state([END])["speed"])


def test_hash_noise_does_not_touch_numpy_global_state():
    np.random.seed(1)
    before = np.random.random()
    np.random.seed(1)
    uniform(42, np.arange(1000), 5)
    assert np.random.random() == before
    assert np.array_equal(uniform(42, np.arange(10), 5), uniform(42, np.arange(10), 5))


# ----------------------------------------------------------------------------- air quality


def test_replay_equals_the_source_csv_and_gaps_stay_gaps(replay):
    src = pd.read_csv(CITY_DIR / "air_quality.csv.gz")
    # an hour in July 2025 replays 2016-07-10 14:00
    f = replay.frame(at("2025-07-10 13:30"), at("2025-07-10 14:00"))
    assert set(f["ts"]) == {at("2025-07-10 14:00")}
    want = src[src["ts"] == "2016-07-10 14:00"].melt(id_vars="station", value_vars=list(AQ_METRICS)).dropna()
    want = want.assign(asset="aq-" + want["station"]).set_index(["asset", "variable"])["value"].sort_index()
    got = f.set_index(["asset", "metric"])["value"].sort_index()
    got.index.names = want.index.names
    pd.testing.assert_series_equal(got, want, check_names=False)

    # a real gap (a January hour: replayed in 2026) produces no row, the other metrics stay
    gap = src[src["pm25"].isna() & src["pm10"].notna() & src["ts"].str.startswith("2017-01")].iloc[0]
    local = pd.Timestamp(gap["ts"]).replace(year=2026)
    h = int(local.tz_localize(TZ).timestamp())
    g = replay.frame(h - 1, h)
    mine = g[g["asset"] == f"aq-{gap['station']}"]
    assert "pm25" not in set(mine["metric"])
    assert mine.set_index("metric").loc["pm10", "value"] == gap["pm10"]


def test_replay_calendar_and_temperature(replay):
    assert len(local_hours(at("2025-03-01 00:00"), at("2025-03-02 00:00"), TZ)) == 24
    # 29 February replays 28 February 2017
    leap = replay.frame(at("2028-02-29 09:59"), at("2028-02-29 10:00"))
    ref = replay.frame(at("2026-02-28 09:59"), at("2026-02-28 10:00"))
    assert np.array_equal(leap["value"].to_numpy(), ref["value"].to_numpy()) and len(leap)
    h = at("2025-07-10 14:00")
    temps = replay.frame(h - 1, h).query("metric == 'temp_c'")["value"]
    assert replay.city_temperature([h])[0] == pytest.approx(temps.mean())
    mid = replay.city_temperature([h + 1800])[0]
    assert mid == pytest.approx((replay.city_temperature([h])[0] + replay.city_temperature([h + 3600])[0]) / 2)


# ----------------------------------------------------------------------------- traffic


def _inner_ratio(sim: TrafficSim, ts: int) -> float:
    st = sim.state([ts])
    inner = (sim.ring >= 2) & (sim.ring <= 4)
    return float((st["speed"][0] / sim.vf)[inner].mean())


def test_speed_bounds_and_daily_rhythm(feeds):
    sim = feeds.traffic
    ts = np.arange(at("2025-01-13 00:00"), at("2025-01-20 00:00"), 600)  # a whole week
    st = sim.state(ts)
    assert (st["speed"] <= sim.vf[None, :]).all() and (st["speed"] >= 3.0).all()
    assert (st["flow"] >= 0).all() and (st["flow"] <= 12_000).all()
    wed_peak, wed_night = _inner_ratio(sim, at("2025-01-15 08:00")), _inner_ratio(sim, at("2025-01-15 03:00"))
    assert 0.35 <= wed_peak <= 0.60 < 0.9 < wed_night
    assert wed_peak < _inner_ratio(sim, at("2025-01-15 13:00"))
    assert _inner_ratio(sim, at("2025-01-15 18:30")) < 0.65
    sat_peak = min(_inner_ratio(sim, at(f"2025-01-18 {h}:00")) for h in range(10, 19))
    assert sat_peak > wed_peak + 0.1  # the weekend hump is softer than a weekday peak


def test_incidents_slow_the_segment_and_its_neighbours(feeds):
    sim = feeds.traffic
    inc = sim.incidents(at("2025-01-13 00:00"), at("2025-01-20 00:00"))
    assert 50 < len(inc) < 1500
    active = [len(sim.incidents(t, t).query("start <= @t and end > @t"))
              for t in range(at("2025-01-15 09:00"), at("2025-01-15 19:00"), 600)]
    assert 0.5 <= np.mean(active) <= 3.5
    i = inc[(inc["end"] - inc["start"]) >= 30 * 60].iloc[0]
    seg, t = int(i["segment"]), int(i["start"]) + 300
    st = sim.state([t])
    assert st["incident"][0, seg]
    assert st["speed"][0, seg] <= 0.25 * sim.vf[seg] + 0.1
    nb = sim.neighbours(seg)
    assert len(nb) and (st["speed"][0, nb] <= 0.55 * sim.vf[nb] + 0.1).all()
    # incident rows only when the state changes, 1 on the way in and 0 on the way out
    on = sim.frame(int(i["start"]) + 5 - int(i["start"]) % 5)
    assert (on.query("metric == 'incident'").set_index("asset")["value"].get(sim.ids[seg]) == 1.0)
    end5 = int(i["end"]) + (-int(i["end"]) % 5)
    off = sim.frame(end5 if end5 > i["end"] else end5 + 5)
    if not ((inc["segment"] == seg) & (inc["start"] <= off["ts"].iloc[0]) & (inc["end"] > off["ts"].iloc[0])).any():
        assert off.query("metric == 'incident'").set_index("asset")["value"].get(sim.ids[seg]) == 0.0
    quiet = sim.frame(t + 5)
    assert sim.ids[seg] not in set(quiet.query("metric == 'incident'")["asset"])


# ----------------------------------------------------------------------------- energy


def test_energy_bounds_and_temperature_response(feeds, store):
    sim = feeds.energy
    ts = np.arange(at("2025-01-01 00:00"), at("2026-01-01 00:00"), 3 * 3600 + 600)
    st = sim.state(ts)
    ratio = st["load"] / sim.capacity[None, :]
    assert ratio.min() >= 0.1 - 1e-9 and ratio.max() <= 1.05 + 1e-9
    assert (st["renewable"] <= sim.renewable[None, :] + 1e-9).all()
    assert (st["renewable"] <= st["load"] + 1e-9).all() and st["renewable"].max() > 0
    solar_noon = sim.state([at("2025-06-15 12:30")])["renewable"].sum()
    assert solar_noon > sim.state([at("2025-06-15 01:30")])["renewable"].sum()

    def with_temp(c):
        return EnergySim(feeds_sub(store[0]), None, lambda t: np.full(len(t), c), seed=42, timezone=TZ)

    cold_evening = with_temp(-8.0).state([at("2025-01-15 19:00")])["load"].sum()
    mild_night = with_temp(16.0).state([at("2025-01-15 03:00")])["load"].sum()
    assert cold_evening > 1.4 * mild_night
    hot_day = with_temp(37.0).state([at("2025-07-15 15:00")])["load"].sum()
    assert hot_day > with_temp(20.0).state([at("2025-07-15 15:00")])["load"].sum()


def feeds_sub(engine):
    from dashboard.feeds.simulator import _assets_frame

    with engine.connect() as conn:
        return _assets_frame(conn, "substation")


# ----------------------------------------------------------------------------- services


def test_service_arrivals_follow_population_and_lateness_lowers_satisfaction(districts_frame, categories_frame):
    sim = ServiceSim(districts_frame, categories_frame, seed=42, timezone=TZ)
    f = sim.frame(at("2025-01-01 00:00"), at("2025-01-15 00:00"), now=at("2025-04-01 00:00"))
    pop = districts_frame.set_index("id")["population"]
    per_day = f.groupby("district").size().reindex(pop.index, fill_value=0) / 14
    assert per_day.sum() == pytest.approx(pop.sum() / 1e4, rel=0.1)
    assert np.corrcoef(per_day, pop)[0, 1] > 0.97
    hour = pd.to_datetime(f["opened_at"], unit="s", utc=True).dt.tz_convert(TZ).dt.hour
    assert (hour.between(9, 17)).mean() > 2 * (hour.between(0, 5)).mean()
    assert (f["status"] == "closed").all() and set(f["category"]) == set(categories_frame["id"])
    sla = f["category"].map(categories_frame.set_index("id")["sla_hours"]) * 3600
    late = (f["closed_at"].astype(float) - f["opened_at"]) / sla
    assert 0.72 < (late <= 1).mean() < 0.88
    sat = f["satisfaction"].astype(float)
    assert sat[late <= 0.5].mean() > 4.2 and sat[late > 2].mean() < 2.5
    assert set(sat.dropna().unique()) <= {1, 2, 3, 4, 5}
    # state cut at `now`; closures tell the rest
    t1 = at("2025-01-15 00:00")
    seen = sim.frame(t1 - 3600, t1, now=t1)
    still_open = seen[seen["status"] == "open"]
    assert len(still_open) and still_open["closed_at"].isna().all() and still_open["satisfaction"].isna().all()
    later = sim.closures(t1, t1 + 30 * 86400)
    assert set(still_open["id"]) <= set(later["id"])
    assert (later["closed_at"] > t1).all() and (later["status"] == "closed").all()


def _requests(engine):
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(service_requests)).mappings().all())


def test_service_request_validation_and_upsert(tmp_path, city):
    engine = make_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    create_schema(engine)
    install_city(engine, city)
    good = [
        {"id": "r1", "category": "waste", "district": "chaoyang", "opened_at": "2025-01-10T08:00:00+08:00"},
        {"id": "r2", "category": "water", "district": "", "lon": 116.40, "lat": 39.91,
         "opened_at": at("2025-01-10 09:00"), "closed_at": at("2025-01-10 12:00"), "status": "closed",
         "satisfaction": 4},
    ]
    bad = [
        {"id": "b1", "category": "unicorns", "district": "chaoyang", "opened_at": at("2025-01-10 09:00")},
        {"id": "b2", "category": "waste", "district": "chaoyang", "opened_at": at("2025-01-10 09:00"),
         "closed_at": at("2025-01-10 10:00"), "status": "closed", "satisfaction": 7},
        {"id": "b3", "category": "waste", "district": "chaoyang", "opened_at": at("2025-01-10 09:00"),
         "closed_at": at("2025-01-10 08:00"), "status": "closed"},
        {"id": "b4", "category": "waste", "district": "chaoyang", "opened_at": "yesterday"},
        {"id": "", "category": "waste", "district": "chaoyang", "opened_at": at("2025-01-10 09:00")},
        {"id": "b6", "category": "waste", "district": "atlantis", "opened_at": at("2025-01-10 09:00")},
        {"id": "b7", "category": "waste", "district": "chaoyang", "opened_at": at("2025-01-10 09:00"),
         "status": "closed"},
        {"id": "b8", "category": "waste", "district": "chaoyang", "opened_at": "2025-01-10 09:00"},
    ]
    r = ingest_service_requests(engine, pd.DataFrame(good + bad), source="test")
    assert (r.accepted, r.duplicates, r.rejected) == (2, 0, 8)
    with engine.connect() as conn:
        rows = conn.execute(select(rejected.c.source, rejected.c.raw, rejected.c.reason)).all()
    reasons = {json.loads(raw)["id"]: reason for _, raw, reason in rows}
    assert "unknown service category" in reasons["b1"]
    assert "satisfaction" in reasons["b2"] and "1 to 5" in reasons["b2"]
    assert "before opened_at" in reasons["b3"]
    assert "not an epoch time or ISO 8601" in reasons["b4"]
    assert "missing request id" in reasons[""]
    assert "unknown district" in reasons["b6"]
    assert "needs closed_at" in reasons["b7"]
    assert "no UTC offset" in reasons["b8"]
    assert {s for s, _, _ in rows} == {"test"}

    stored = _requests(engine).set_index("id")
    assert stored.loc["r1", "due_at"] == at("2025-01-10 08:00") + 24 * 3600  # SLA of waste
    assert stored.loc["r1", "status"] == "open"
    assert stored.loc["r2", "district_id"] == "dongcheng"  # located from lon/lat
    before = _requests(engine)
    again = ingest_service_requests(engine, pd.DataFrame(good), source="test")
    assert (again.accepted, again.duplicates, again.rejected) == (0, 2, 0)
    pd.testing.assert_frame_equal(before, _requests(engine))
    closure = dict(good[0], closed_at="2025-01-10T20:00:00+08:00", status="closed", satisfaction="5")
    upd = ingest_service_requests(engine, [closure], source="test")
    assert (upd.accepted, upd.duplicates) == (1, 0)
    row = _requests(engine).set_index("id").loc["r1"]
    assert (row["status"], row["closed_at"], row["satisfaction"]) == ("closed", at("2025-01-10 20:00"), 5)


# ----------------------------------------------------------------------------- backfill and live loop


def test_backfill_writes_history_latest_and_rollups(store):
    engine, counts = store
    assert counts["rejected"] == 0 and counts["chunks"] == 24
    assert counts["readings"] > 24 * 12 * 500 * 2 and counts["service_requests"] > 1500
    with engine.connect() as conn:
        q = conn.exec_driver_sql
        assert q("SELECT min(ts), max(ts) FROM readings WHERE metric = 'speed_kmh'").one() == (END - 86400 + 300, END)
        assert q("SELECT count(DISTINCT ts) FROM readings WHERE metric = 'pm25'").scalar() == 24
        assert q("SELECT count(*) FROM latest WHERE metric = 'speed_kmh' AND ts = ?", (END,)).scalar() > 500
        assert q("SELECT count(*) FROM latest WHERE metric = 'load_mw'").scalar() > 40
        assert q("SELECT count(*) FROM rollup_asset WHERE res = 3600").scalar() > 0
        assert q("SELECT count(*) FROM rollup_district WHERE district_id = '*' AND metric = 'tti'").scalar() >= 24
        assert q("SELECT count(*) FROM service_requests WHERE status = 'open'").scalar() > 0
        assert q("SELECT count(*) FROM service_requests WHERE closed_at > ?", (END,)).scalar() == 0
    again = backfill(engine, CITY_DIR, days=1 / 24, seed=42, end=END,
                     progress=False)
    assert again["readings"] == 0 and again["rejected"] == 0 and again["duplicates"] > 0


def test_simulator_tick_writes_fresh_readings_and_catches_up(store, city):
    engine = store[0]
    sim = Simulator(engine, city, seed=42, step=5)
    out = sim.tick(END + 7)
    assert out is not None and out["ticks"] == 1 and out["readings"] > 1000
    with engine.connect() as conn:
        q = conn.exec_driver_sql
        assert q("SELECT count(*) FROM latest WHERE metric = 'speed_kmh' AND ts = ?", (END + 5,)).scalar() > 500
        assert q("SELECT count(*) FROM latest WHERE metric = 'load_mw' AND ts = ?", (END + 5,)).scalar() > 40
    assert sim.tick(END + 9) == {"readings": 0, "service_requests": 0, "rejected": 0, "ticks": 0}
    # ten minutes missed: caught up at one-minute resolution, new hour of air quality included
    out = sim.tick(END + 605)
    assert out["ticks"] == 11
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(DISTINCT ts) FROM readings WHERE metric = 'speed_kmh' "
                                 "AND ts > ?", (END + 5,)).scalar()
    assert n == 11


def test_a_tick_with_the_database_gone_logs_and_carries_on(city, caplog):
    engine = create_engine("sqlite:////nonexistent-dir/panorama/store.sqlite")
    sim = Simulator(engine, city, seed=42, step=5)
    with caplog.at_level(logging.WARNING, logger="dashboard.feeds.simulator"):
        assert sim.tick(END) is None
        assert sim.tick(END + 5) is None
    assert sim.failures == 2 and "failed" in caplog.text
    stop = threading.Event()
    th = threading.Thread(target=sim.run, args=(stop, 0.05), daemon=True)
    th.start()
    threading.Event().wait(0.3)
    assert th.is_alive()
    stop.set()
    th.join(2)
    assert not th.is_alive() and sim.failures > 2


@pytest.mark.postgres
def test_backfill_and_tick_on_postgresql(pg_url, city):
    """The same feeds write through the same paths into PostgreSQL (in a schema of their own)."""
    import secrets

    from sqlalchemy import text

    schema = f"feeds_{secrets.token_hex(4)}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(pg_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        create_schema(engine)
        install_city(engine, city)
        counts = backfill(engine, city, days=2 / 24, seed=42, end=END, progress=False)
        assert counts["rejected"] == 0 and counts["readings"] > 2 * 12 * 500 * 2
        assert counts["service_requests"] > 0
        out = Simulator(engine, city, seed=42, step=5).tick(END + 65)
        assert out is not None and out["ticks"] == 2 and out["rejected"] == 0
        with engine.connect() as conn:
            assert conn.execute(text("SELECT max(ts) FROM latest WHERE metric = 'speed_kmh'")).scalar() == END + 65
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
