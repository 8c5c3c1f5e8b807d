"""The validated write path: what is stored, what is rejected and why, and the derived tables.

Every expectation is computed here from the raw rows, independently of the product code.
Runs on SQLite and PostgreSQL (the ``engine`` fixture).
"""
from __future__ import annotations

import json
import math
import random
import time
from datetime import datetime, timezone

import pandas as pd
import pytest
from sqlalchemy import func, inspect, select

from dashboard.store.ingest import Ingestor
from dashboard.store.schema import assets, latest, readings, rejected, rollup_asset, rollup_district

#: 2025-01-15T00:00:00Z, the start of the hand-made history.
T0 = 1_736_899_200
#: "now" for the future-timestamp check.
NOW = T0 + 3 * 86_400


def iso(t: int, offset_h: int = 0) -> str:
    """Return ``t`` as ISO 8601 text with a UTC offset of ``offset_h`` hours."""
    from datetime import timedelta

    return datetime.fromtimestamp(t, timezone(timedelta(hours=offset_h))).isoformat()


def stored(engine) -> dict:
    """Return the readings table as {(asset_id, metric, ts): value}."""
    with engine.connect() as conn:
        rows = conn.execute(select(assets.c.id, readings.c.metric, readings.c.ts, readings.c.value)
                            .join(assets, assets.c.pk == readings.c.asset_pk)).all()
    return {(a, m, t): v for a, m, t, v in rows}


def latest_table(engine) -> dict:
    """Return the latest table as {(asset_id, metric): (ts, value)}."""
    with engine.connect() as conn:
        rows = conn.execute(select(assets.c.id, latest.c.metric, latest.c.ts, latest.c.value)
                            .join(assets, assets.c.pk == latest.c.asset_pk)).all()
    return {(a, m): (t, v) for a, m, t, v in rows}


def rollups(engine) -> tuple[dict, dict]:
    """Return (asset rollups keyed by asset id, district rollups) as {key: [n, sum, min, max]}."""
    with engine.connect() as conn:
        ra = conn.execute(select(rollup_asset.c.res, assets.c.id, rollup_asset.c.metric, rollup_asset.c.bucket,
                                 rollup_asset.c.n, rollup_asset.c.sum, rollup_asset.c.min, rollup_asset.c.max)
                          .join(assets, assets.c.pk == rollup_asset.c.asset_pk)).all()
        rd = conn.execute(select(rollup_district)).all()
    return ({(r[0], r[1], r[2], r[3]): [r[4], r[5], r[6], r[7]] for r in ra},
            {(r[0], r[1], r[2], r[3]): [r[4], r[5], r[6], r[7]] for r in rd})


def rejected_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(rejected).order_by(rejected.c.id)).all()


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def assert_rollups_match(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected), (
        f"missing {sorted(set(expected) - set(actual))[:5]}, extra {sorted(set(actual) - set(expected))[:5]}")
    for key, (n, s, lo, hi) in expected.items():
        got = actual[key]
        assert got[0] == n, key
        assert got[1] == pytest.approx(s, rel=1e-9, abs=1e-9), key
        assert got[2] == pytest.approx(lo, rel=1e-12, abs=1e-12), key
        assert got[3] == pytest.approx(hi, rel=1e-12, abs=1e-12), key


# ---------------------------------------------------------------------------- accepted rows
def test_accepted_rows_are_stored(small_city):
    eng = small_city["engine"]
    rows = [
        {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0), "value": 42.5},
        {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0 + 60, 8), "value": 0},  # +08:00 offset, lower bound
        {"asset": "r2", "metric": "speed_kmh", "ts": "2025-01-15T00:00:00Z", "value": 200},  # upper bound
        {"asset": "r2", "metric": "flow_vph", "ts": T0 + 120, "value": 1200},  # epoch seconds
        {"asset": " s1 ", "metric": " pm25 ", "ts": iso(T0, -5), "value": 2000},  # padded, -05:00
        {"asset": "p1", "metric": "load_mw", "ts": str(T0 + 300), "value": "81.25"},  # numbers as text
        {"asset": "p2", "metric": "load_mw", "ts": iso(NOW + 300), "value": 1 / 3},  # at the future limit
    ]
    res = Ingestor(eng).ingest(rows, source="unit", now=NOW)
    assert (res.accepted, res.duplicates, res.rejected) == (7, 0, 0)
    assert res.reasons == []
    assert stored(eng) == {
        ("r1", "speed_kmh", T0): 42.5,
        ("r1", "speed_kmh", T0 + 60): 0.0,
        ("r2", "speed_kmh", T0): 200.0,
        ("r2", "flow_vph", T0 + 120): 1200.0,
        ("s1", "pm25", T0): 2000.0,
        ("p1", "load_mw", T0 + 300): 81.25,
        ("p2", "load_mw", NOW + 300): 1 / 3,  # stored exactly (no float text round-off)
    }
    assert count(eng, rejected) == 0


# ---------------------------------------------------------------------------- rejections
BAD = [
    # (line, raw row, expected reason fragment)
    (2, {"asset": "nowhere", "metric": "speed_kmh", "ts": iso(T0), "value": "40"}, "unknown asset 'nowhere'"),
    (3, {"asset": "r1", "metric": "humidity", "ts": iso(T0), "value": "40"}, "unknown metric 'humidity'"),
    (4, {"asset": "s1", "metric": "speed_kmh", "ts": iso(T0), "value": "40"},
     "metric 'speed_kmh' does not apply to a aq_station asset"),
    (5, {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0), "value": "fast"}, "is not a finite number"),
    (6, {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0 + 60), "value": "nan"}, "is not a finite number"),
    (7, {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0 + 120), "value": "inf"}, "is not a finite number"),
    (8, {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0 + 180), "value": ""}, "is not a finite number"),
    (9, {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0 + 240), "value": "-5"}, "outside the physical range"),
    (10, {"asset": "s1", "metric": "pm25", "ts": iso(T0), "value": "2000.5"}, "outside the physical range"),
    (11, {"asset": "r1", "metric": "speed_kmh", "ts": "2025-01-15T10:00:00", "value": "40"}, "has no UTC offset"),
    (12, {"asset": "r1", "metric": "speed_kmh", "ts": "yesterday", "value": "40"}, "is not ISO 8601"),
    (13, {"asset": "r1", "metric": "speed_kmh", "ts": "2025-13-45T00:00:00Z", "value": "40"}, "is not ISO 8601"),
    (14, {"asset": "r1", "metric": "speed_kmh", "ts": "", "value": "40"}, "is not ISO 8601"),
    (15, {"asset": "r1", "metric": "speed_kmh", "ts": iso(NOW + 301), "value": "40"}, "is in the future"),
    (16, {"asset": "r1", "metric": "speed_kmh", "ts": iso(NOW + 86_400, 8), "value": "40"}, "is in the future"),
]


def test_each_rejection_reason_is_kept_with_raw_input_and_line(small_city):
    eng = small_city["engine"]
    good = {"asset": "r2", "metric": "speed_kmh", "ts": iso(T0), "value": "55"}
    frame = pd.DataFrame([{**raw, "line": line} for line, raw, _ in BAD] + [{**good, "line": 99}])
    res = Ingestor(eng).ingest(frame, source="upload.csv", now=NOW)
    assert (res.accepted, res.duplicates, res.rejected) == (1, 0, len(BAD))
    assert stored(eng) == {("r2", "speed_kmh", T0): 55.0}
    by_line = {r.line: r for r in rejected_rows(eng)}
    assert sorted(by_line) == [line for line, _, _ in BAD]
    for line, raw, fragment in BAD:
        r = by_line[line]
        assert fragment in r.reason, (line, r.reason)
        assert json.loads(r.raw) == raw, line
        assert r.source == "upload.csv"
        assert abs(r.received_at - datetime.now(timezone.utc).timestamp()) < 600
    # the result lists the first reasons with their lines
    assert [(line, frag in reason) for (line, reason), (_, _, frag) in zip(res.reasons, BAD)] == \
        [(line, True) for line, _, _ in BAD]
    # the physical-range message names value, unit and range
    assert by_line[9].reason == "value -5 km/h outside the physical range [0, 200] of speed_kmh"
    assert by_line[10].reason == "value 2000.5 µg/m³ outside the physical range [0, 2000] of pm25"


def test_rejections_without_line_column_have_no_line(small_city):
    eng = small_city["engine"]
    res = Ingestor(eng).ingest([{"asset": "r1", "metric": "pm25", "ts": iso(T0), "value": 3}], now=NOW)
    assert res.rejected == 1 and res.reasons == [(None, "metric 'pm25' does not apply to a road_segment asset")]
    (r,) = rejected_rows(eng)
    assert r.line is None and r.source == "api"
    assert json.loads(r.raw) == {"asset": "r1", "metric": "pm25", "ts": iso(T0), "value": 3}


def test_date_without_time_or_offset_is_rejected(small_city):
    eng = small_city["engine"]
    res = Ingestor(eng).ingest([{"asset": "r1", "metric": "speed_kmh", "ts": "2025-01-15", "value": 40}], now=NOW)
    assert res.rejected == 1
    assert "has no UTC offset" in res.reasons[0][1]


def test_missing_column_is_an_error_not_a_rejection(small_city):
    eng = small_city["engine"]
    with pytest.raises(ValueError, match="missing \\['value'\\]"):
        Ingestor(eng).ingest([{"asset": "r1", "metric": "speed_kmh", "ts": T0}], now=NOW)
    assert count(eng, readings) == 0 and count(eng, rejected) == 0


def test_sql_lookalike_ids_are_rejected_verbatim_and_tables_intact(small_city):
    eng = small_city["engine"]
    Ingestor(eng).ingest([{"asset": "r1", "metric": "speed_kmh", "ts": T0, "value": 30}], now=NOW)
    evil = "x'); DROP TABLE readings;--"
    evil_metric = "speed_kmh'; DELETE FROM latest; --"
    evil_ts = "2025-01-15T00:00:00Z'); DELETE FROM readings;--"
    res = Ingestor(eng).ingest([
        {"asset": evil, "metric": "speed_kmh", "ts": T0 + 60, "value": 30},
        {"asset": "r1", "metric": evil_metric, "ts": T0 + 60, "value": 30},
        {"asset": "r1", "metric": "speed_kmh", "ts": evil_ts, "value": 30},
        {"asset": 'r1"; --', "metric": "speed_kmh", "ts": T0 + 60, "value": "1); DELETE FROM assets;--"},
    ], source="a'); DROP TABLE rejected;--", now=NOW)
    assert (res.accepted, res.rejected) == (0, 4)
    rows = rejected_rows(eng)
    assert json.loads(rows[0].raw)["asset"] == evil and rows[0].reason == f"unknown asset {evil!r}"
    assert json.loads(rows[1].raw)["metric"] == evil_metric and "unknown metric" in rows[1].reason
    assert json.loads(rows[2].raw)["ts"] == evil_ts and rows[2].reason.startswith("timestamp ")
    assert "unknown asset" in rows[3].reason
    assert all(r.source == "a'); DROP TABLE rejected;--" for r in rows)
    names = set(inspect(eng).get_table_names())
    assert {"readings", "latest", "assets", "rejected", "rollup_asset", "rollup_district"} <= names
    assert stored(eng) == {("r1", "speed_kmh", T0): 30.0}
    assert count(eng, assets) == 7
    assert latest_table(eng) == {("r1", "speed_kmh"): (T0, 30.0)}


# ---------------------------------------------------------------------------- idempotence
def _batch(seed: int, n: int = 40) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for k in range(n):
        t = T0 + 60 * k
        out += [
            {"asset": "r1", "metric": "speed_kmh", "ts": t, "value": round(rnd.uniform(5, 90), 3)},
            {"asset": "r3", "metric": "speed_kmh", "ts": t, "value": rnd.uniform(5, 60)},  # full-precision floats
            {"asset": "p1", "metric": "load_mw", "ts": t, "value": rnd.uniform(10, 90)},
            {"asset": "s2", "metric": "pm25", "ts": t, "value": rnd.uniform(0, 300)},
        ]
    return out


def test_identical_reingest_is_duplicates_and_changes_nothing(small_city):
    eng = small_city["engine"]
    rows = _batch(1)
    first = Ingestor(eng).ingest(rows, now=NOW)
    assert (first.accepted, first.duplicates, first.rejected) == (len(rows), 0, 0)
    before = (stored(eng), latest_table(eng), rollups(eng), count(eng, rejected))
    again = Ingestor(eng).ingest(rows, now=NOW)
    assert (again.accepted, again.duplicates, again.rejected) == (0, len(rows), 0)
    # also when the values arrive as text (a CSV replay)
    as_text = [{**r, "ts": iso(r["ts"]), "value": repr(r["value"])} for r in rows]
    text = Ingestor(eng).ingest(as_text, now=NOW)
    assert (text.accepted, text.duplicates, text.rejected) == (0, len(rows), 0)
    assert (stored(eng), latest_table(eng), rollups(eng), count(eng, rejected)) == before


def test_conflicting_value_for_stored_reading_is_rejected(small_city):
    eng = small_city["engine"]
    ing = Ingestor(eng)
    ing.ingest([{"asset": "r1", "metric": "speed_kmh", "ts": T0, "value": 50},
                {"asset": "r1", "metric": "speed_kmh", "ts": T0 + 600, "value": 20}], now=NOW)
    before = (latest_table(eng), rollups(eng))
    res = ing.ingest([{"asset": "r1", "metric": "speed_kmh", "ts": iso(T0), "value": 51, "line": 7},
                      {"asset": "r1", "metric": "speed_kmh", "ts": T0 + 600, "value": 20, "line": 8},
                      {"asset": "r1", "metric": "speed_kmh", "ts": T0 + 300, "value": 35, "line": 9}], now=NOW)
    assert (res.accepted, res.duplicates, res.rejected) == (1, 1, 1)
    (r,) = rejected_rows(eng)
    assert r.line == 7
    assert r.reason == "conflicts with the stored reading at that time (stored 50, got 51)"
    assert json.loads(r.raw) == {"asset": "r1", "metric": "speed_kmh", "ts": iso(T0), "value": 51}
    assert stored(eng) == {("r1", "speed_kmh", T0): 50.0, ("r1", "speed_kmh", T0 + 600): 20.0,
                           ("r1", "speed_kmh", T0 + 300): 35.0}
    assert latest_table(eng) == before[0]
    _, expected = rollups(eng)
    assert expected[(3600, "north", "speed_kmh", T0)] == [3, 105.0, 20.0, 50.0]


def test_in_batch_duplicates_counted_once(small_city):
    eng = small_city["engine"]
    row = {"asset": "r2", "metric": "speed_kmh", "ts": T0, "value": 44.0}
    res = Ingestor(eng).ingest([row, dict(row), {**row, "ts": iso(T0)}], now=NOW)
    assert (res.accepted, res.duplicates, res.rejected) == (1, 2, 0)
    assert stored(eng) == {("r2", "speed_kmh", T0): 44.0}
    _, d = rollups(eng)
    assert d[(300, "north", "speed_kmh", T0)] == [1, 44.0, 44.0, 44.0]
    # a conflicting repeat inside one input: the first wins, the second is rejected
    res = Ingestor(eng).ingest([{**row, "ts": T0 + 60, "value": 10.0, "line": 2},
                                {**row, "ts": T0 + 60, "value": 11.0, "line": 3}], now=NOW)
    assert (res.accepted, res.duplicates, res.rejected) == (1, 0, 1)
    assert res.reasons == [(3, "conflicts with another reading of the same asset, metric and time in this input")]
    assert stored(eng)[("r2", "speed_kmh", T0 + 60)] == 10.0


def test_latest_keeps_newest_even_when_older_arrives_later(small_city):
    eng = small_city["engine"]
    ing = Ingestor(eng)
    ing.ingest([{"asset": "r1", "metric": "speed_kmh", "ts": T0 + 600, "value": 61}], now=NOW)
    ing.ingest([{"asset": "r1", "metric": "speed_kmh", "ts": T0, "value": 11}], now=NOW)
    # in one batch, newest first
    ing.ingest([{"asset": "p1", "metric": "load_mw", "ts": T0 + 900, "value": 9},
                {"asset": "p1", "metric": "load_mw", "ts": T0 + 300, "value": 3},
                {"asset": "p1", "metric": "renewable_mw", "ts": T0 + 300, "value": 1}], now=NOW)
    assert latest_table(eng) == {("r1", "speed_kmh"): (T0 + 600, 61.0), ("p1", "load_mw"): (T0 + 900, 9.0),
                                 ("p1", "renewable_mw"): (T0 + 300, 1.0)}
    ing.ingest([{"asset": "r1", "metric": "speed_kmh", "ts": T0 + 1200, "value": 70}], now=NOW)
    assert latest_table(eng)[("r1", "speed_kmh")] == (T0 + 1200, 70.0)


# ---------------------------------------------------------------------------- rollups
def test_rollups_equal_independent_computation(small_city, expected_rollups):
    eng = small_city["engine"]
    rnd = random.Random(7)
    ids = {"road_segment": ["r1", "r2", "r3"], "aq_station": ["s1", "s2"], "substation": ["p1", "p2"]}
    metrics = {"road_segment": ["speed_kmh", "flow_vph", "incident"], "aq_station": ["pm25", "no2"],
               "substation": ["load_mw", "renewable_mw"]}
    every: dict[tuple, float] = {}

    def value(metric):
        if metric == "incident":
            return float(rnd.random() < 0.2)
        if metric == "speed_kmh":  # some congested, some below 1 km/h (tti clamps the speed at 1)
            return rnd.choice([0.0, 0.5, rnd.uniform(1, 25), rnd.uniform(25, 100)])
        return round(rnd.uniform(0, 500), 2)

    ing = Ingestor(eng)
    # several batches, in shuffled time order, hitting the same 5-minute and hourly buckets
    for batch in range(4):
        rows = []
        for _ in range(120):
            kind = rnd.choice(list(ids))
            a, m = rnd.choice(ids[kind]), rnd.choice(metrics[kind])
            t = T0 + rnd.randrange(0, 3 * 3600, 20)
            if (a, m, t) in every or any((r["asset"], r["metric"], r["ts"]) == (a, m, t) for r in rows):
                continue
            rows.append({"asset": a, "metric": m, "ts": t, "value": value(m)})
        if batch == 3:  # a replayed slice of an earlier batch: duplicates, not double counts
            replay = [{"asset": a, "metric": m, "ts": t, "value": v} for (a, m, t), v in list(every.items())[:30]]
            rows += replay
        res = ing.ingest(rows, now=NOW)
        assert res.rejected == 0
        for r in rows:
            every[(r["asset"], r["metric"], r["ts"])] = r["value"]
        exp_a, exp_d = expected_rollups([(a, m, t, v) for (a, m, t), v in every.items()], small_city)
        act_a, act_d = rollups(eng)
        assert_rollups_match(act_a, exp_a)
        assert_rollups_match(act_d, exp_d)
    assert stored(eng) == every
    # spot checks of the oracle's own semantics
    assert any(k[1] == "*" and k[2] == "tti" for k in exp_d)
    assert any(k[2] == "capacity_mw" for k in exp_d)
    assert not any(k[2] in ("tti", "congested", "capacity_mw") for k in act_a)
    assert not any(k[1] == "east" for k in act_d)


def test_ingest_many_pipelined_equals_independent_computation(small_city, expected_rollups):
    """Batches validated in a worker while the previous one is written: same store as computed by hand."""
    eng = small_city["engine"]
    rnd = random.Random(11)
    series = [("r1", "speed_kmh"), ("r2", "flow_vph"), ("s1", "pm25"), ("p1", "load_mw")]
    every: dict[tuple, float] = {}
    batches = []
    for b in range(5):
        rows = []
        for a, m in series:
            for k in range(30):  # overlapping times across batches: shared 5-minute and hourly buckets
                t = T0 + rnd.randrange(0, 2 * 3600, 20)
                if (a, m, t) in every:
                    continue
                every[(a, m, t)] = round(rnd.uniform(0, 150), 2)
                rows.append({"asset": a, "metric": m, "ts": iso(t), "value": every[(a, m, t)]})
        rows.append({"asset": "ghost", "metric": "speed_kmh", "ts": iso(T0), "value": 1, "line": b})
        batches.append(pd.DataFrame(rows))
    seen = []
    res = Ingestor(eng).ingest_many(iter(batches), source="pipe", now=NOW, each=seen.append)
    assert (res.accepted, res.rejected) == (len(every), 5)
    assert [r.rejected for r in seen] == [1] * 5
    assert stored(eng) == every
    exp_a, exp_d = expected_rollups([(a, m, t, v) for (a, m, t), v in every.items()], small_city)
    act_a, act_d = rollups(eng)
    assert_rollups_match(act_a, exp_a)
    assert_rollups_match(act_d, exp_d)
    newest = {}
    for (a, m, t), v in every.items():
        if t >= newest.get((a, m), (-1, 0))[0]:
            newest[(a, m)] = (t, v)
    assert latest_table(eng) == newest


def test_ingest_many_keeps_batches_before_a_failing_source(small_city):
    """A source that fails mid-way: the batches before it are stored, the error reaches the caller."""
    eng = small_city["engine"]

    def source():
        yield [{"asset": "r1", "metric": "speed_kmh", "ts": iso(T0), "value": 40}]
        yield [{"asset": "r1", "metric": "speed_kmh", "ts": iso(T0 + 60), "value": 41}]
        raise OSError("feed connection lost")

    with pytest.raises(OSError, match="feed connection lost"):
        Ingestor(eng).ingest_many(source(), now=NOW)
    assert stored(eng) == {("r1", "speed_kmh", T0): 40.0, ("r1", "speed_kmh", T0 + 60): 41.0}


def test_rollup_values_by_hand(small_city):
    """A tiny case worked out on paper: two roads of the north, one of the south, one substation."""
    eng = small_city["engine"]
    Ingestor(eng).ingest([
        {"asset": "r1", "metric": "speed_kmh", "ts": T0 + 10, "value": 20},   # ff 60: tti 3, congested
        {"asset": "r1", "metric": "speed_kmh", "ts": T0 + 310, "value": 60},  # tti 1
        {"asset": "r2", "metric": "speed_kmh", "ts": T0 + 20, "value": 40},   # ff 80: tti 2, not congested
        {"asset": "r3", "metric": "speed_kmh", "ts": T0 + 30, "value": 0.5},  # ff 50: tti 50 (speed clamped to 1)
        {"asset": "p2", "metric": "load_mw", "ts": T0 + 40, "value": 150},
    ], now=NOW)
    a, d = rollups(eng)
    assert d[(300, "north", "tti", T0)] == [2, 5.0, 2.0, 3.0]
    assert d[(300, "north", "congested", T0)] == [2, 1.0, 0.0, 1.0]
    assert d[(3600, "north", "tti", T0)] == [3, 6.0, 1.0, 3.0]
    assert d[(3600, "*", "tti", T0)] == [4, 56.0, 1.0, 50.0]
    assert d[(3600, "*", "congested", T0)] == [4, 2.0, 0.0, 1.0]
    assert d[(3600, "*", "speed_kmh", T0)] == [4, 120.5, 0.5, 60.0]
    assert d[(300, "south", "capacity_mw", T0)] == [1, 200.0, 200.0, 200.0]
    assert d[(3600, "*", "load_mw", T0)] == [1, 150.0, 150.0, 150.0]
    assert a[(300, "r1", "speed_kmh", T0 + 300)] == [1, 60.0, 60.0, 60.0]
    assert a[(3600, "r1", "speed_kmh", T0)] == [2, 80.0, 20.0, 60.0]
    assert not math.isnan(d[(3600, "*", "capacity_mw", T0)][1])


# ----------------------------------------------------------------------- writers meet a busy store
def _readings_csv(path, n_ts: int, tail: str = "") -> int:
    """Write speed readings of r1, r2, r3 at ``n_ts`` minutes from T0 (plus ``tail``); return the rows."""
    lines = ["asset_id,metric,ts,value"]
    lines += [f"{a},speed_kmh,{T0 + 60 * i},{30 + i % 40}" for i in range(n_ts) for a in ("r1", "r2", "r3")]
    path.write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")
    return len(lines) - 1


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_file_ingest_commits_in_chunks_so_a_concurrent_write_gets_in(small_city, tmp_path):
    """Between two chunks of a file, another connection writes at once (it no longer waits for the file)."""
    import threading

    from sqlalchemy import event

    from dashboard.store.ingest import ingest_csv
    from dashboard.store.schema import make_engine

    eng = small_city["engine"]
    n = _readings_csv(tmp_path / "big.csv", 400)  # 1,200 rows: 4 chunks of 300
    other = make_engine(str(eng.url))
    event.listen(other, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout = 500"))  # would fail, not wait
    seen = []

    def after_chunk(result):
        if seen:
            seen.append(result.accepted)
            return
        seen.append(result.accepted)
        done, out = threading.Event(), {}

        def small_write():  # another writer (an NGSI notification) while the file is being stored
            try:
                out["result"] = Ingestor(other).ingest(
                    [{"asset": "s1", "metric": "pm25", "ts": T0, "value": 35.0}], source="notify", now=NOW)
                out["readings_then"] = _count(eng, readings)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                out["error"] = exc
            done.set()

        threading.Thread(target=small_write).start()
        assert done.wait(30), "the concurrent write did not finish"
        assert "error" not in out, f"the concurrent write failed: {out.get('error')}"
        assert out["result"].accepted == 1
        assert out["readings_then"] == 300 + 1, "it was stored between the file's first and second chunk"

    result = ingest_csv(eng, tmp_path / "big.csv", chunk_rows=300, each=after_chunk, now=NOW)
    assert seen == [300, 300, 300, 300], "one transaction per chunk"
    assert result.accepted == n and _count(eng, readings) == n + 1
    assert stored(eng)[("s1", "pm25", T0)] == 35.0
    other.dispose()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_file_ingest_lets_a_writer_waiting_for_the_lock_in_before_it_ends(small_city, tmp_path):
    """A writer blocked on SQLite's lock (its busy handler polling) gets in between two chunks.

    With one transaction per file it got in only once the whole file was stored; the rows it sees in
    its own transaction show the file still being stored.
    """
    import threading

    from dashboard.store.ingest import ingest_csv
    from dashboard.store.schema import make_engine

    eng = small_city["engine"]
    n = _readings_csv(tmp_path / "big.csv", 2000)  # 6,000 rows: 20 chunks of 300
    other = make_engine(str(eng.url))  # the store's usual 30-s busy timeout
    out = {}

    def waiting_writer():
        deadline = time.monotonic() + 60
        while _count(eng, readings) < 300 and time.monotonic() < deadline:  # the file's first chunk is in
            time.sleep(0.005)
        try:
            with other.begin() as conn:
                out["result"] = Ingestor(other).ingest(
                    [{"asset": "s1", "metric": "pm25", "ts": T0, "value": 35.0}], source="notify", now=NOW, conn=conn)
                out["readings_seen"] = conn.execute(select(func.count()).select_from(readings)).scalar()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    writer = threading.Thread(target=waiting_writer)
    writer.start()
    result = ingest_csv(eng, tmp_path / "big.csv", chunk_rows=300, now=NOW)
    writer.join(60)
    assert "error" not in out, f"the concurrent write failed: {out.get('error')}"
    assert out["result"].accepted == 1
    assert out["readings_seen"] < n + 1, "it got in while the file was still being stored"
    assert result.accepted == n and _count(eng, readings) == n + 1
    other.dispose()


@pytest.mark.parametrize("bad_tail", [
    "r1,speed_kmh,2025-01-15T00:00:00Z," + "4" * (1 << 20) + "\n",  # a line over the length bound
    "r1,speed_kmh,2025-01-15T00:00:00Z,4\xff0\n",  # bytes that are not UTF-8 (written as latin-1)
])
def test_file_with_an_unreadable_line_in_its_last_chunk_stores_nothing(small_city, tmp_path, bad_tail):
    from dashboard.store.ingest import ingest_csv

    eng = small_city["engine"]
    path = tmp_path / "bad.csv"
    _readings_csv(path, 400)
    with open(path, "ab") as f:
        f.write(bad_tail.encode("latin-1"))
    before = {t.name: _count(eng, t) for t in (readings, latest, rollup_asset, rollup_district, rejected)}
    with pytest.raises(Exception) as info:
        ingest_csv(eng, path, chunk_rows=300, now=NOW)  # 4 good chunks, then the bad line
    assert type(info.value).__name__ in ("ImportProblem", "UnicodeDecodeError")
    assert {t.name: _count(eng, t) for t in (readings, latest, rollup_asset, rollup_district, rejected)} == before


def test_simulator_tick_that_finds_the_store_busy_is_written_with_the_next_one(tmp_path):
    """A tick refused by a locked store is not lost: the next tick writes its readings too."""
    import sqlite3

    from _demo import BEIJING, empty_store
    from sqlalchemy import event, text

    from dashboard.city import load_city
    from dashboard.feeds.simulator import Simulator
    from dashboard.store.schema import make_engine

    url = empty_store(tmp_path)
    eng = make_engine(url)
    event.listen(eng, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout = 200"))
    sim = Simulator(eng, load_city(BEIJING), seed=3, step=5)
    t1 = int(time.time()) // 60 * 60 - 600 + 10  # t2 = t1 + 5 is off the 60-s catch-up grid
    t2, t3 = t1 + 5, t1 + 10

    def speeds_at(t):
        with eng.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM readings WHERE metric = 'speed_kmh' AND ts = :t"),
                                {"t": t}).scalar()

    assert sim.tick(t1) is not None and speeds_at(t1) > 0
    segments = speeds_at(t1)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the store
    try:
        assert sim.tick(t2) is None, "the tick could not write"
        assert speeds_at(t2) == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sim.tick(t3) is not None
    assert speeds_at(t2) == segments, "the refused tick's readings came with the next tick"
    assert speeds_at(t3) == segments
    eng.dispose()
