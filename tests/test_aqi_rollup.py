"""The hourly station AQI derived at ingest (``aqi_hourly``) equals the AQI of the hourly rollups.

Random pollutant readings (missing pollutants, hours filled in late and out of order, re-sent
duplicates) go through the :class:`Ingestor` in shuffled batches. Then ``aqi_hourly`` must equal a
rebuild from the rollups and the AQI of the hourly means of the raw readings, and the air KPIs'
trends must equal the trends computed the previous way (rollups pivoted and indexed at read time).
Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from dashboard.snapshot import Reader, compute, make_query
from dashboard.store import readmodel as rm
from dashboard.store.ingest import Ingestor
from dashboard.store.schema import aqi_hourly
from layers._domain import Frames, scope
from layers.air_quality import DOMAIN
from layers.air_quality import aqi as aqimod
from layers.air_quality import kpis as air
from layers.air_quality import rollup as aqi_rollup

T0 = 1_736_899_200  # 2025-01-15T00:00:00Z
NOW = T0 + 30 * 3600 + 1500
POLLUTANTS = list(aqimod.POLLUTANTS)


def _readings(seed: int = 7) -> list[tuple]:
    rnd = random.Random(seed)
    rows = []
    for t in range(T0, NOW, 600):
        for st in ("s1", "s2"):
            if st == "s2" and T0 + 10 * 3600 <= t < T0 + 13 * 3600:
                continue  # a gap
            for p in POLLUTANTS:
                if rnd.random() < 0.15:
                    continue  # a missing pollutant now and then
                hi = {"co": 20_000, "so2": 900}.get(p, 500)
                rows.append((st, p, t, round(rnd.uniform(0, hi), 1)))
    return rows


@pytest.fixture
def air_store(small_city):
    eng = small_city["engine"]
    rows = _readings()
    rnd = random.Random(3)
    live, late = rows[: len(rows) * 2 // 3], rows[len(rows) * 2 // 3:]
    rnd.shuffle(late)  # the last third arrives out of order, interleaved with re-sent rows
    ing = Ingestor(eng)
    frame = lambda rs: pd.DataFrame(rs, columns=["asset", "metric", "ts", "value"])  # noqa: E731
    for k in range(0, len(live), 400):
        assert ing.ingest(frame(live[k:k + 400]), now=NOW).rejected == 0
    for k in range(0, len(late), 250):
        res = ing.ingest(frame(late[k:k + 250] + rnd.sample(live, 20)), now=NOW)
        assert res.rejected == 0 and res.duplicates == 20
    return {"engine": eng, "rows": rows, "city": small_city}


def _table(conn) -> dict:
    return {(r.standard, r.bucket, r.asset_pk): r.aqi for r in conn.execute(select(aqi_hourly)).all()}


def test_station_hours_equal_the_aqi_of_hourly_means(air_store):
    eng, city = air_store["engine"], air_store["city"]
    sums: dict = {}
    for a, p, t, v in air_store["rows"]:
        k = (city["assets"][a]["pk"], t // 3600 * 3600)
        s = sums.setdefault(k, {}).setdefault(p, [0.0, 0])
        s[0] += v
        s[1] += 1
    with eng.connect() as conn:
        got = _table(conn)
    assert len(got) == 2 * len(sums)
    for (pk, b), per in sums.items():
        for std in aqimod.STANDARDS:
            exp = aqimod.aqi({p: s[0] / s[1] for p, s in per.items()}, std)[0]
            assert got[(std, b, pk)] == pytest.approx(exp, abs=1e-9), (std, b, pk)


def test_equal_to_a_rebuild(air_store):
    with air_store["engine"].begin() as conn:
        kept = _table(conn)
        assert aqi_rollup.rebuild(conn, chunk_hours=7) == len(kept) // 2
        assert _table(conn) == kept


def _trend_from_rollups(conn, q, weights: dict) -> pd.DataFrame:
    """The air KPIs' trend as computed before ``aqi_hourly``: rollups pivoted and indexed per read."""
    std = air.standard(q)
    start = q.start // 3600 * 3600
    s = rm.asset_series(conn, "aq_station", POLLUTANTS, start, int(q.now) + 1, 3600, q.district)
    w = s.set_index(["asset_id", "district_id", "bucket", "metric"])["mean"].unstack("metric").reset_index()
    w.columns.name = None
    for p in POLLUTANTS:
        if p not in w.columns:
            w[p] = np.nan
    a, _ = aqimod.aqi_frame(w[POLLUTANTS], std)
    w["aqi"] = np.asarray(a, dtype=float)
    w["weight"] = w["district_id"].map(weights).fillna(1.0)
    w = w[np.isfinite(w["aqi"])]
    g = w.groupby("bucket")
    w = w.sort_values("bucket", kind="stable")
    b, a, wt = w["bucket"].to_numpy(), w["aqi"].to_numpy(dtype=float), w["weight"].to_numpy(dtype=float)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[starts[1:], len(b)]
    weighted = [np.average(a[i:j], weights=wt[i:j]) if wt[i:j].sum() > 0 else a[i:j].mean()
                for i, j in zip(starts, ends)]
    return pd.DataFrame({
        "worst": g["aqi"].max(),
        "weighted": pd.Series(weighted, index=pd.Index(b[starts], name="bucket"), dtype=float),
        "over": (w["aqi"] > aqimod.limit(std)).groupby(w["bucket"]).sum().astype(float),
    }).reset_index()


@pytest.mark.parametrize("std", aqimod.STANDARDS)
@pytest.mark.parametrize("window,district", [("24h", None), ("7d", None), ("24h", "south"), ("1h", "north")])
def test_kpi_trend_equals_the_read_time_aqi(air_store, std, window, district):
    q = make_query(NOW, window, district, options={"aqi_standard": std})
    with air_store["engine"].connect() as conn:
        base = air.latest(Reader(conn, q.with_(window=None, district=None)))
        f = Frames(q, {k: scope(v, district) for k, v in base.items()}, air.history(Reader(conn, q)))
        got, want = air.trend(f), _trend_from_rollups(conn, q, base["weights"])
        assert len(want) > 0
        # the same values; the weighted mean is summed in another order (last bits may differ)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
        snap = compute(conn, NOW, window, district, options={"aqi_standard": std}, domains=[DOMAIN])
    assert snap.kpi("air.aqi_worst").value is not None


def test_an_older_store_gets_its_hourly_aqi_filled(air_store):
    """create_schema on a store made before aqi_hourly existed fills it from the rollups."""
    from sqlalchemy import inspect

    from dashboard.store.schema import create_schema

    eng = air_store["engine"]
    from dashboard.store.migrate import downgrade

    with eng.begin() as conn:
        kept = _table(conn)
    downgrade(eng, "0001")  # the schema of release 0.1, without aqi_hourly
    assert "aqi_hourly" not in inspect(eng).get_table_names()
    create_schema(eng)
    with eng.connect() as conn:
        assert _table(conn) == kept
