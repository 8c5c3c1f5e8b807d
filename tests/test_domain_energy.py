"""The energy domain on hand-written frames, no store: load, share of capacity, energy used today,
renewables, and the attention rule (near or over rated capacity, stale)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from dashboard.store.readmodel import Rollup
from layers._domain import Frames, Query
from layers.energy import DOMAIN

TZ = "Asia/Shanghai"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=ZoneInfo(TZ)).timestamp()  # noon, city time
MIDNIGHT = int(datetime(2026, 12, 7, 0, 0, tzinfo=ZoneInfo(TZ)).timestamp())


def rollup(buckets, means, n=1):
    """A rollup whose mean is ``means`` (n readings a bucket)."""
    b = np.asarray(buckets, dtype=np.int64)
    m = np.asarray(means, dtype=float)
    s = m * n
    return Rollup(b, np.full(len(b), n, dtype=np.int64), s, m.copy(), m.copy())


def frames(subs, load=None, capacity=None, renewable=None, load_2d=None, n=2, window="24h", district=None):
    q = Query(NOW, window, district, TZ)
    empty = rollup([], [])
    f = Frames(q, {"substations": subs},
               {"load": load or empty, "capacity": capacity or empty, "renewable": renewable or empty,
                "load_2d": load_2d or empty, "n": n})
    return f


SUBS = pd.DataFrame({"asset_id": ["s1", "s2"], "name": ["North", "South"], "district_id": ["a", "b"],
                     "ts": [NOW - 30, NOW - 20], "load_mw": [60.0, 30.0], "renewable_mw": [3.0, 1.5],
                     "capacity_mw": [100.0, 50.0]})


def values(f):
    return {k.id: k.evaluate(f, DOMAIN.period_s) for k in DOMAIN.kpis}


def test_load_and_share_of_capacity_with_the_share_as_the_loads_status():
    hour = 3600
    xs = [int(NOW) - 2 * hour, int(NOW) - hour]
    f = frames(SUBS, load=rollup(xs, [40.0, 44.0]), capacity=rollup(xs, [150.0, 150.0], n=2),
               renewable=rollup(xs, [4.0, 4.5]))
    v = values(f)
    assert v["energy.load"].value == 90.0 and v["energy.load"].note == "2 substations"
    assert v["energy.load"].delta == pytest.approx(90.0 - 40.0 * 2)  # the total is the mean × substations
    assert v["energy.capacity_share"].value == pytest.approx(60.0) and v["energy.capacity_share"].status == "good"
    assert v["energy.load"].status == "good"  # judged by its share of capacity, not by 90 MW
    hot = SUBS.assign(load_mw=[95.0, 46.0])
    v = values(frames(hot))
    assert v["energy.capacity_share"].value == pytest.approx(94.0) and v["energy.capacity_share"].status == "bad"
    assert v["energy.load"].status == "bad"
    assert v["energy.renewable_share"].value == pytest.approx(100 * 4.5 / 141)


def test_city_thresholds_override_the_share():
    f = frames(SUBS)
    f.q = Query(NOW, "24h", None, TZ, thresholds=(("energy.capacity_share", (50.0, 55.0)),))
    assert values(f)["energy.capacity_share"].status == "bad"  # 60 % ≥ the city's own 55 %


def test_energy_used_today_integrates_5_minute_totals_and_compares_with_yesterday_by_this_hour():
    step = 300
    today = list(range(MIDNIGHT, int(NOW) + 1, step))
    yday = list(range(MIDNIGHT - 86_400, MIDNIGHT - 86_400 + (int(NOW) - MIDNIGHT), step))
    f = frames(SUBS, load_2d=rollup(yday + today, [45.0] * len(yday) + [50.0] * len(today)))
    v = values(f)["energy.consumption_today"]
    assert v.value == pytest.approx(len(today) * 100.0 * step / 3600)  # 2 substations × 50 MW mean
    assert v.delta == pytest.approx(v.value - len(yday) * 90.0 * step / 3600)
    assert v.note.endswith("vs yesterday by this hour")
    holes = frames(SUBS, load_2d=rollup(yday + today[::2], [45.0] * len(yday) + [50.0] * len(today[::2])))
    h = values(holes)["energy.consumption_today"]
    assert h.delta is None and h.note.startswith("partial:")
    week = frames(SUBS, load_2d=rollup(yday + today, [45.0] * len(yday) + [50.0] * len(today)), window="7d")
    assert values(week)["energy.consumption_today"].note.startswith("since midnight, not the 7d window")


def test_no_substations_reporting_is_unknown_never_zero():
    v = values(frames(SUBS.iloc[0:0]))
    assert all(x.value is None and x.status == "unknown" for x in v.values())


def test_old_readings_are_stale():
    v = values(frames(SUBS.assign(ts=NOW - 3600)))
    assert v["energy.load"].stale and v["energy.load"].age_s == pytest.approx(3600)


def test_attention_near_and_over_capacity_and_stale():
    static = pd.DataFrame({"id": ["a", "b", "c"], "name": ["Alpha", "Beta", "Gamma"], "capacity_mw": [100.0, 100.0, 100.0]})
    subs = pd.DataFrame({"asset_id": ["s1", "s2", "s3"], "name": ["1", "2", "3"], "district_id": ["a", "b", "c"],
                         "ts": [NOW - 30, NOW - 30, NOW - 3600], "load_mw": [96.0, 87.0, 99.0],
                         "renewable_mw": [0.0, 0.0, 0.0], "capacity_mw": [100.0, 100.0, 100.0]})
    f = frames(subs)
    f.static = static
    items = {i["place"]: i for i in DOMAIN.attention(f)}
    assert items["Alpha"]["level"] == "bad" and items["Beta"]["level"] == "warn"
    assert items["Gamma"]["level"] == "stale"  # 99 % but an hour old: never an alert
    assert 0 < items["Alpha"]["score"] <= 1 and items["Alpha"]["detail"].startswith("96% of capacity")
    f = frames(subs, district="b")
    f.static = static
    assert [i["place"] for i in DOMAIN.attention(f) if i["district"] == "b"] == ["Beta"]
