"""The read model against values computed here from the raw inputs; and no screen scans history.

Two days of hand-built readings for the small city go through the :class:`Ingestor`;
service requests are written straight into their table. Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import math
import random
import re
import statistics

import _store_helpers as h
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event, insert, select

from dashboard.store import readmodel as rm
from dashboard.store import service_reads
from dashboard.store.latest import _latest_wide_join
from dashboard.store.service_rollup import DAY as SVC_DAY
from dashboard.store import service_rollup
from dashboard.store.ingest import Ingestor
from dashboard.store.schema import service_requests
from _layers import layer_frame

T0 = 1_736_899_200  # 2025-01-15T00:00:00Z
END = T0 + 2 * 86_400  # the history covers [T0, END)
NOW = END
POLLUTANTS = ["pm25", "pm10", "so2", "no2", "co", "o3"]


def make_readings(seed: int = 3) -> list[tuple[str, str, int, float]]:
    """Return two days of readings: roads and substations every 15 min, stations hourly.

    Station ``s2`` falls silent 3 hours before the end; road ``r3`` never reports a flow.
    """
    rnd = random.Random(seed)
    rows = []
    for t in range(T0, END, 900):
        for a in ("r1", "r2", "r3"):
            rows.append((a, "speed_kmh", t, round(rnd.uniform(0.5, 95), 2)))
            if a != "r3":
                rows.append((a, "flow_vph", t, float(rnd.randrange(0, 3000))))
            if t % 3600 == 0:
                rows.append((a, "incident", t, float(rnd.random() < 0.1)))
        for a, cap in (("p1", 100), ("p2", 200)):
            rows.append((a, "load_mw", t, round(rnd.uniform(0.2, 0.95) * cap, 3)))
            rows.append((a, "renewable_mw", t, round(rnd.uniform(0, 10), 3)))
        if t % 3600 == 0:
            for a in ("s1", "s2"):
                if a == "s2" and t >= END - 3 * 3600:
                    continue
                for p in POLLUTANTS:
                    rows.append((a, p, t, round(rnd.uniform(1, 400), 1)))
    return rows


def make_requests(seed: int = 5) -> list[dict]:
    """Return service requests over the last ~100 days, some open, some unrated, some late."""
    rnd = random.Random(seed)
    sla = {"pothole": 48.0, "noise": 4.0}
    out = []
    for i in range(200):
        cat = rnd.choice(list(sla))
        dist = rnd.choice(["north", "south", "east"])
        opened = NOW - rnd.randrange(0, 100 * 86_400, 60)
        closed = None
        if rnd.random() < 0.75:
            closed = opened + rnd.randrange(600, 120 * 3600, 60)
        sat = None if closed is None or rnd.random() < 0.2 else rnd.randint(1, 5)
        out.append({"id": f"sr-{i}", "category_id": cat, "district_id": dist, "lon": 116.1, "lat": 40.0,
                    "description": "test", "opened_at": opened, "due_at": opened + int(sla[cat] * 3600),
                    "closed_at": closed, "status": "closed" if closed is not None else "open",
                    "satisfaction": sat})
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def city_data(request, tmp_path_factory, small_city_builder, expected_rollups):
    """The small city with two days of readings and the service requests, built once per engine.

    (Module scope: the tests below only read, and ingesting the history per test would be slow.)
    """
    from dashboard.store.schema import create_schema, drop_schema, make_engine

    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('readmodel') / 'store.sqlite'}")
    else:
        eng = request.getfixturevalue("_pg_store_engine")
        drop_schema(eng)
    create_schema(eng)
    small_city = small_city_builder(eng)
    rows = make_readings()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    ing = Ingestor(eng)
    for k in range(0, len(shuffled), len(shuffled) // 3 + 1):  # three batches, times mixed
        part = shuffled[k:k + len(shuffled) // 3 + 1]
        res = ing.ingest(pd.DataFrame(part, columns=["asset", "metric", "ts", "value"]), now=NOW)
        assert res.rejected == 0 and res.duplicates == 0
    reqs = make_requests()
    with eng.begin() as conn:
        conn.execute(insert(service_requests), reqs)
        service_rollup.rebuild(conn)  # written around the request ingest: fill the rollups
    ra, rd = expected_rollups(rows, small_city)
    yield {"engine": eng, "city": small_city, "rows": rows, "requests": reqs, "rollup_asset": ra,
           "rollup_district": rd}
    if request.param == "sqlite":
        eng.dispose()


def oracle_latest(rows, city, kind, metrics=None, district=None) -> dict:
    out = {}
    for a, m, t, v in rows:
        info = city["assets"][a]
        if info["kind"] != kind or (metrics and m not in metrics) or (district and info["district"] != district):
            continue
        if (a, m) not in out or t > out[(a, m)][0]:
            out[(a, m)] = (t, v)
    return out


# ---------------------------------------------------------------------------- latest
@pytest.mark.parametrize("kind,metrics,district", [
    ("road_segment", None, None),
    ("road_segment", ["speed_kmh"], "north"),
    ("aq_station", POLLUTANTS, None),
    ("substation", ["load_mw", "renewable_mw"], "south"),
    ("substation", None, "east"),
])
def test_latest_values(city_data, kind, metrics, district):
    rows, city = city_data["rows"], city_data["city"]
    with city_data["engine"].connect() as conn:
        df = h.latest_values(conn, kind, metrics, district)
    assert list(df.columns) == ["asset_id", "name", "district_id", "metric", "ts", "value"]
    got = {(r.asset_id, r.metric): (int(r.ts), float(r.value)) for r in df.itertuples()}
    assert got == oracle_latest(rows, city, kind, metrics, district)
    for r in df.itertuples():
        assert r.name == r.asset_id.upper() and r.district_id == city["assets"][r.asset_id]["district"]


def test_latest_wide(city_data):
    rows, city = city_data["rows"], city_data["city"]
    metrics = [*POLLUTANTS, "temp_c"]  # temp_c never reported: an all-NaN column
    with city_data["engine"].connect() as conn:
        w = rm.latest_wide(conn, "aq_station", metrics)
        empty = rm.latest_wide(conn, "aq_station", POLLUTANTS, district="east")
    exp = oracle_latest(rows, city, "aq_station", metrics)
    assert sorted(w["asset_id"]) == ["s1", "s2"]
    for r in w.to_dict("records"):
        a = r["asset_id"]
        assert r["district_id"] == city["assets"][a]["district"] and r["name"] == a.upper()
        for m in POLLUTANTS:
            assert r[m] == exp[(a, m)][1]
        assert math.isnan(r["temp_c"])
        assert r["ts"] == max(t for (aa, _), (t, _) in exp.items() if aa == a)
    # s2 went silent three hours before the end
    assert w.set_index("asset_id").loc["s2", "ts"] == END - 4 * 3600
    assert empty.empty and {"asset_id", "name", "district_id", "ts", *POLLUTANTS} <= set(empty.columns)


@pytest.mark.parametrize("kind,metrics,district,max_age,attrs", [
    ("road_segment", ["speed_kmh"], None, None, ()),
    ("road_segment", ["speed_kmh", "incident"], None, None, ("free_flow_kmh",)),
    ("road_segment", None, "north", None, ("free_flow_kmh", "lanes", "not_there")),
    ("aq_station", [*POLLUTANTS, "temp_c"], None, 3 * 3600, ()),
    ("aq_station", POLLUTANTS, "east", None, ()),
    ("substation", ["load_mw", "renewable_mw"], "south", None, ("capacity_mw",)),
    ("substation", None, None, 600, ()),
    ("no_such_kind", ["speed_kmh"], None, None, ()),
])
def test_latest_wide_from_the_directory_equals_the_join(city_data, kind, metrics, district, max_age, attrs):
    """The in-memory asset directory path gives exactly the frame of the plain join."""
    with city_data["engine"].connect() as conn:
        assert rm.asset_directory(conn, kind) is not None  # the store has the assets revision
        got = rm.latest_wide(conn, kind, metrics, district, max_age, attrs)
        exp = _latest_wide_join(conn, kind, metrics, district, max_age, attrs)
    assert list(got.columns) == list(exp.columns)
    if exp.empty:
        assert got.empty
    else:
        pd.testing.assert_frame_equal(got.reset_index(drop=True), exp.reset_index(drop=True), check_dtype=False)


def test_asset_directory_follows_changes_to_assets(city_data):
    """A rename, a new asset, a changed attribute and a deletion are seen by the next read."""
    from sqlalchemy import delete, update

    from dashboard.store.schema import assets, latest

    eng = city_data["engine"]
    with eng.connect() as conn:
        before = rm.latest_wide(conn, "road_segment", ["speed_kmh"], attrs=("free_flow_kmh",))
        assert rm.asset_directory(conn, "road_segment") is rm.asset_directory(conn, "road_segment")  # kept
    first = before["asset_id"].iloc[0]
    try:
        with eng.begin() as conn:
            pk, orig_name, orig_attrs = conn.execute(
                select(assets.c.pk, assets.c.name, assets.c.attributes).where(assets.c.id == first)).one()
            conn.execute(update(assets).where(assets.c.pk == pk).values(name="Renamed road", attributes={"free_flow_kmh": 33}))
            conn.execute(insert(assets).values(id="zz-new", kind="road_segment", district_id="north", name="New road",
                                               attributes={"free_flow_kmh": 44}))
            new_pk = conn.execute(select(assets.c.pk).where(assets.c.id == "zz-new")).scalar()
            conn.execute(insert(latest).values(asset_pk=new_pk, metric="speed_kmh", ts=NOW - 60, value=12.5))
        with eng.connect() as conn:
            w = rm.latest_wide(conn, "road_segment", ["speed_kmh"], attrs=("free_flow_kmh",)).set_index("asset_id")
        assert w.loc[first, "name"] == "Renamed road" and w.loc[first, "free_flow_kmh"] == 33
        assert w.loc["zz-new", "speed_kmh"] == 12.5 and w.loc["zz-new", "free_flow_kmh"] == 44
        with eng.begin() as conn:
            conn.execute(delete(latest).where(latest.c.asset_pk == new_pk))
            conn.execute(delete(assets).where(assets.c.pk == new_pk))
        with eng.connect() as conn:
            w = rm.latest_wide(conn, "road_segment", ["speed_kmh"], attrs=("free_flow_kmh",))
        assert "zz-new" not in set(w["asset_id"]) and len(w) == len(before)
    finally:
        with eng.begin() as conn:
            conn.execute(delete(latest).where(latest.c.asset_pk.in_(
                select(assets.c.pk).where(assets.c.id == "zz-new"))))
            conn.execute(delete(assets).where(assets.c.id == "zz-new"))
            conn.execute(update(assets).where(assets.c.id == first).values(name=orig_name, attributes=orig_attrs))


def test_newest_ts_and_asset_count(city_data):
    rows, city = city_data["rows"], city_data["city"]
    with city_data["engine"].connect() as conn:
        for kind in ("road_segment", "aq_station", "substation"):
            for district in (None, "north", "south", "east"):
                ts = [t for a, _, t, _ in rows if city["assets"][a]["kind"] == kind
                      and district in (None, city["assets"][a]["district"])]
                assert rm.newest_ts(conn, kind, district) == (max(ts) if ts else None), (kind, district)
                n = sum(1 for a in city["assets"].values() if a["kind"] == kind
                        and district in (None, a["district"]))
                assert rm.asset_count(conn, kind, district) == n
        assert rm.newest_ts(conn, "aq_station", "south") == END - 4 * 3600
        assert rm.asset_count(conn, "road_segment") == 3 and rm.asset_count(conn, "nothing") == 0


# ---------------------------------------------------------------------------- rollups
@pytest.mark.parametrize("res", [300, 3600])
@pytest.mark.parametrize("district", [None, "north"])
@pytest.mark.parametrize("metric", ["speed_kmh", "tti", "congested", "load_mw", "capacity_mw", "pm25"])
def test_district_series(city_data, metric, district, res):
    start, end = T0 + 5 * 3600 + 123, T0 + 31 * 3600  # start not on a bucket edge
    with city_data["engine"].connect() as conn:
        df = rm.district_series(conn, metric, start, end, res, district)
    key = district or "*"
    exp = sorted((k[3], v) for k, v in city_data["rollup_district"].items()
                 if k[0] == res and k[1] == key and k[2] == metric and start <= k[3] < end)
    assert list(df.columns) == ["bucket", "n", "sum", "min", "max", "mean"]
    assert df["bucket"].tolist() == [b for b, _ in exp]
    assert df["n"].tolist() == [v[0] for _, v in exp]
    np.testing.assert_allclose(df["sum"], [v[1] for _, v in exp], rtol=1e-9)
    np.testing.assert_allclose(df["min"], [v[2] for _, v in exp], rtol=1e-12)
    np.testing.assert_allclose(df["max"], [v[3] for _, v in exp], rtol=1e-12)
    np.testing.assert_allclose(df["mean"], [v[1] / v[0] for _, v in exp], rtol=1e-9)
    assert len(df) > 0


def test_district_series_raw_check(city_data):
    """One bucket recomputed straight from the raw rows (not through the oracle)."""
    rows = city_data["rows"]
    b = T0 + 10 * 3600
    speeds = [v for a, m, t, v in rows if m == "speed_kmh" and a in ("r1", "r2") and b <= t < b + 3600]
    with city_data["engine"].connect() as conn:
        df = rm.district_series(conn, "speed_kmh", b, b + 1, 3600, "north")
        load = rm.district_series(conn, "load_mw", b, b + 1, 3600)
        empty = rm.district_series(conn, "speed_kmh", b, b + 3600, 3600, "east")
    assert df.iloc[0]["n"] == len(speeds) == 8
    assert df.iloc[0]["mean"] == pytest.approx(sum(speeds) / len(speeds))
    assert df.iloc[0]["min"] == min(speeds) and df.iloc[0]["max"] == max(speeds)
    loads = [v for a, m, t, v in rows if m == "load_mw" and b <= t < b + 3600]
    assert load.iloc[0]["sum"] == pytest.approx(sum(loads))
    assert empty.empty


@pytest.mark.parametrize("res", [300, 3600])
@pytest.mark.parametrize("district", [None, "south"])
def test_asset_series(city_data, res, district):
    city = city_data["city"]
    start, end = T0 + 86_400 - 7200, T0 + 86_400 + 7200
    metrics = ["speed_kmh", "flow_vph"]
    with city_data["engine"].connect() as conn:
        df = rm.asset_series(conn, "road_segment", metrics, start, end, res, district)
    assert list(df.columns) == ["asset_id", "district_id", "metric", "bucket", "n", "sum", "min", "max", "mean"]
    got = {(r.asset_id, r.metric, int(r.bucket)): (int(r.n), r.sum, r.min, r.max, r.mean, r.district_id)
           for r in df.itertuples()}
    exp = {(k[1], k[2], k[3]): v for k, v in city_data["rollup_asset"].items()
           if k[0] == res and k[2] in metrics and start <= k[3] < end
           and district in (None, city["assets"][k[1]]["district"])}
    assert set(got) == set(exp) and exp
    for k, (n, s, lo, hi) in exp.items():
        g = got[k]
        assert g[0] == n and g[1] == pytest.approx(s) and g[2] == lo and g[3] == hi
        assert g[4] == pytest.approx(s / n) and g[5] == city["assets"][k[0]]["district"]
    # r3 reports no flow at all
    assert not any(a == "r3" and m == "flow_vph" for a, m, _ in got)


# ---------------------------------------------------------------------------- service requests
def _closed_in(reqs, start, end, district=None):
    return [r for r in reqs if r["closed_at"] is not None and start <= r["closed_at"] < end
            and district in (None, r["district_id"])]


@pytest.mark.parametrize("district", [None, "north", "east"])
@pytest.mark.parametrize("days", [7, 30, 60])
def test_service_closed_stats(city_data, district, days):
    reqs = city_data["requests"]
    start, end = NOW - days * 86_400, NOW + 1
    with city_data["engine"].connect() as conn:
        got = h.service_closed_stats(conn, start, end, district)
    closed = _closed_in(reqs, start, end, district)
    rated = [r["satisfaction"] for r in closed if r["satisfaction"] is not None]
    durations = [r["closed_at"] - r["opened_at"] for r in closed]
    assert got["n"] == len(closed)
    assert len(closed) > 0
    assert got["rated"] == len(rated)
    assert got["satisfied"] == sum(1 for s in rated if s >= 4)
    assert got["late"] == sum(1 for r in closed if r["closed_at"] > r["due_at"])
    assert got["satisfaction"] == (pytest.approx(sum(rated) / len(rated)) if rated else None)
    # the histogram median is within 1 % of the exact median (mean of the middle two)
    assert got["median_hours"] == pytest.approx(statistics.median(durations) / 3600, rel=0.01)


def test_service_closed_stats_empty(city_data):
    with city_data["engine"].connect() as conn:
        got = h.service_closed_stats(conn, NOW + 10 * 86_400, NOW + 11 * 86_400)
    assert got == {"n": 0, "satisfaction": None, "rated": 0, "satisfied": 0, "late": 0, "median_hours": None}


@pytest.mark.parametrize("district", [None, "south"])
def test_service_open_at(city_data, district):
    reqs = city_data["requests"]
    with city_data["engine"].connect() as conn:
        for t in (NOW, NOW - 86_400 - 3600, NOW - 20 * 86_400, NOW - 95 * 86_400):
            got = h.service_open_at(conn, t, district)
            open_ = [r for r in reqs if r["opened_at"] <= t
                     and (r["closed_at"] is None or r["closed_at"] > t) and district in (None, r["district_id"])]
            assert got == {"open": len(open_), "overdue": sum(1 for r in open_ if r["due_at"] < t)}, t
        assert h.service_open_at(conn, NOW, district)["open"] > 0


def test_service_open_at_counts_requests_of_any_age(city_data):
    """A request opened long ago and never closed is open until it closes (no look-back window)."""
    reqs = city_data["requests"]
    ever_open = [r for r in reqs if r["opened_at"] <= NOW and (r["closed_at"] is None or r["closed_at"] > NOW)]
    assert any(r["opened_at"] <= NOW - 90 * 86_400 for r in ever_open), "the data has requests open > 90 days"
    with city_data["engine"].connect() as conn:
        assert h.service_open_at(conn, NOW)["open"] == len(ever_open)
        assert h.service_open_at(conn, NOW)["overdue"] == sum(1 for r in ever_open if r["due_at"] < NOW)


@pytest.mark.parametrize("district", [None, "north", "south", "east"])
def test_service_opened_count(city_data, district):
    reqs = city_data["requests"]
    with city_data["engine"].connect() as conn:
        for start, end in ((NOW - 7 * 86_400, NOW + 1), (NOW - 40 * 86_400, NOW - 10 * 86_400), (0, NOW + 1)):
            exp = sum(1 for r in reqs if start <= r["opened_at"] < end and district in (None, r["district_id"]))
            assert h.service_opened_count(conn, start, end, district) == exp


@pytest.mark.parametrize("district", [None, "north"])
def test_service_window_end_day_from_the_rollup(city_data, monkeypatch, district):
    """With nothing closed at or after the window's end, its last UTC day comes from the rollups:
    the same statistics, daily series and per-district means as reading that day's requests."""
    reqs = city_data["requests"]
    end = max(r["closed_at"] for r in reqs if r["closed_at"] is not None) + 1  # the newest closure is inside
    assert end % SVC_DAY, "the test needs an end inside a day"
    eng = city_data["engine"]
    with eng.connect() as conn:
        days, edges = service_reads._svc_ranges(conn, end - 3 * SVC_DAY - 5000, end)
        assert edges and edges[-1][1] < end and days[1] > end  # the end edge is gone: read as a whole day
        got = [rm.service_window(conn, end - w, end, district) for w in (3 * SVC_DAY - 5000, 30 * SVC_DAY)]
        by_d = rm.service_by_district(conn, end - 30 * SVC_DAY, end)
        # every edge read raw
        monkeypatch.setattr(service_reads, "_svc_ranges", lambda c, a, b: service_reads._svc_split(a, b))
        exp = [rm.service_window(conn, end - w, end, district) for w in (3 * SVC_DAY - 5000, 30 * SVC_DAY)]
        exp_d = rm.service_by_district(conn, end - 30 * SVC_DAY, end)
        later = service_reads._svc_split(end - SVC_DAY, end + 1)  # and with a closure at the end: the edge stays
    for (gs, gd), (es, ed) in zip(got, exp):
        assert gs == es
        pd.testing.assert_frame_equal(gd, ed)
    pd.testing.assert_frame_equal(by_d.sort_values("district_id").reset_index(drop=True),  # rows in any order
                                  exp_d.sort_values("district_id").reset_index(drop=True))
    assert later[1]


def test_service_by_district(city_data):
    reqs = city_data["requests"]
    start, end = NOW - 30 * 86_400, NOW + 1
    with city_data["engine"].connect() as conn:
        df = rm.service_by_district(conn, start, end)
    got = {r.district_id: (None if r.satisfaction is None else float(r.satisfaction), int(r.n))
           for r in df.itertuples()}
    exp = {}
    for d in ("north", "south", "east"):
        closed = _closed_in(reqs, start, end, d)
        if not closed:
            continue
        rated = [r["satisfaction"] for r in closed if r["satisfaction"] is not None]
        exp[d] = (sum(rated) / len(rated) if rated else None, len(rated))
    assert set(got) == set(exp)
    for d, (s, n) in exp.items():
        assert got[d][1] == n
        assert got[d][0] == (pytest.approx(s) if s is not None else None)


@pytest.mark.parametrize("district", [None, "north"])
def test_service_daily(city_data, district):
    reqs = city_data["requests"]
    start, end = NOW - 30 * 86_400, NOW + 1
    with city_data["engine"].connect() as conn:
        df = h.service_daily(conn, start, end, district)
    buckets: dict[int, list] = {}
    for r in _closed_in(reqs, start, end, district):
        buckets.setdefault(r["closed_at"] // 86_400 * 86_400, []).append(r["satisfaction"])
    assert df["bucket"].tolist() == sorted(buckets)
    for row in df.itertuples():
        sats = buckets[row.bucket]
        rated = [s for s in sats if s is not None]
        assert row.closed == len(sats) and row.rated == len(rated)
        satisfied = 0 if pd.isna(row.satisfied) else row.satisfied  # see test_service_daily_satisfied_zero
        assert satisfied == sum(1 for s in rated if s >= 4)
        if rated:
            assert row.satisfaction == pytest.approx(sum(rated) / len(rated))
        else:
            assert math.isnan(row.satisfaction)


def test_service_daily_satisfied_zero(city_data):
    reqs = city_data["requests"]
    start, end = NOW - 30 * 86_400, NOW + 1
    with city_data["engine"].connect() as conn:
        df = h.service_daily(conn, start, end)
    unrated_days = {r["closed_at"] // 86_400 * 86_400 for r in _closed_in(reqs, start, end)} - \
        {r["closed_at"] // 86_400 * 86_400 for r in _closed_in(reqs, start, end) if r["satisfaction"] is not None}
    rows = df[df["bucket"].isin(unrated_days) | (df["rated"] == 0)]
    assert len(rows) > 0, "test data should have a day with only unrated closures"
    assert rows["satisfied"].tolist() == [0] * len(rows)


# ---------------------------------------------------------------------------- screens never scan history
def test_screens_never_read_raw_history(city_data):
    from dashboard import kpis
    from layers import LAYERS

    eng = city_data["engine"]
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(eng, "before_cursor_execute", record)
    try:
        with eng.connect() as conn:
            for window in ("1h", "24h", "7d"):
                for district in (None, "north"):
                    values = kpis.compute_all(conn, NOW, window, district)
                    assert len(values) == len(kpis.KPIS)
            for layer in LAYERS:
                for district in (None, "north"):
                    layer_frame(conn, layer, NOW)
    finally:
        event.remove(eng, "before_cursor_execute", record)
    assert len(statements) > 50
    raw = [s for s in statements if re.search(r"\breadings\b", s, re.IGNORECASE)]
    assert raw == [], "a screen query read the raw readings table:\n" + "\n".join(raw[:3])


def test_history_detector_catches_a_raw_scan(city_data):
    """The listener used above does see a query on ``readings`` (the check is not vacuous)."""
    from sqlalchemy import text

    eng = city_data["engine"]
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(eng, "before_cursor_execute", record)
    try:
        with eng.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM readings")).scalar()
    finally:
        event.remove(eng, "before_cursor_execute", record)
    assert n == len(city_data["rows"])
    assert any(re.search(r"\breadings\b", s) for s in seen)
