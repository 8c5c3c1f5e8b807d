"""The service-request rollups: kept current by the request ingest, equal to the table they summarise.

Random requests (some without a district, some re-sent closed, re-scored or reopened) go through
:func:`ingest_service_requests` in batches; the rollups must then equal a rebuild from the table,
and every service read (whole days from the rollups, edges from the table) must equal the same
read done on the table alone, for random windows. Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import random
import statistics

import _store_helpers as h
import pytest
from sqlalchemy import select

from dashboard import kpis
from dashboard.store import readmodel as rm
from dashboard.store import service_reads
from dashboard.store import service_rollup
from dashboard.store.schema import service_close_hist, service_close_spans, service_requests
from dashboard.store.schema import service_rollup as rollup_table
from dashboard.store.services import ingest_service_requests

T0 = 1_736_899_200  # 2025-01-15T00:00:00Z
NOW = T0 + 70 * 86_400 + 13 * 3600 + 1234
H = 3600


def _requests(rnd: random.Random, n: int, prefix: str) -> list[dict]:
    out = []
    for i in range(n):
        opened = NOW - rnd.randrange(0, 75 * 86_400)
        r = {"id": f"{prefix}{i}", "category": rnd.choice(["pothole", "noise"]), "opened_at": opened}
        if rnd.random() < 0.1:
            r.update(lon=10.0, lat=10.0)  # outside every district: stored without one
        else:
            r["district"] = rnd.choice(["north", "south", "east"])
        if rnd.random() < 0.75:
            r["closed_at"] = min(NOW, opened + rnd.randrange(60, 100 * H))
            if rnd.random() < 0.7:
                r["satisfaction"] = rnd.randint(1, 5)
        out.append(r)
    return out


def _changed(rnd: random.Random, reqs: list[dict]) -> list[dict]:
    """Re-send a third of the requests: closed now, re-scored, reopened, moved, or unchanged."""
    out = []
    for r in rnd.sample(reqs, len(reqs) // 3):
        r = dict(r)
        k = rnd.random()
        if "closed_at" not in r or k < 0.3:
            r["closed_at"] = min(NOW, r["opened_at"] + rnd.randrange(60, 200 * H))
            r["satisfaction"] = rnd.randint(1, 5)
        elif k < 0.5:
            r["satisfaction"] = rnd.randint(1, 5)
        elif k < 0.6:
            r.pop("closed_at")
            r.pop("satisfaction", None)
        elif k < 0.7 and "district" in r:
            r["district"] = rnd.choice(["north", "south", "east"])
        out.append(r)
    return out


@pytest.fixture
def requests_store(small_city):
    eng = small_city["engine"]
    rnd = random.Random(11)
    reqs = _requests(rnd, 400, "q")
    res = ingest_service_requests(eng, reqs[:250], now=NOW)
    assert res.rejected == 0, res.reasons
    changed = _changed(rnd, reqs[:250])
    res = ingest_service_requests(eng, reqs[250:] + changed, now=NOW)
    assert res.rejected == 0, res.reasons
    res = ingest_service_requests(eng, _changed(rnd, reqs) + reqs[:20], now=NOW)
    assert res.rejected == 0, res.reasons
    return eng


def _snapshot(conn) -> tuple[list, list]:
    tot = [tuple(r.values()) for r in conn.execute(select(rollup_table)).mappings().all()
           if any(r[k] for k in ("closed", "rated", "sat_sum", "satisfied", "late", "close_s"))]
    hist = [tuple(r) for r in conn.execute(select(service_close_hist)).all() if r.n]
    spans = [tuple(r) for r in conn.execute(select(service_close_spans)).all() if r.n]
    return sorted(tot), sorted(hist), sorted(spans)


def test_rollups_equal_a_rebuild(requests_store):
    with requests_store.begin() as conn:
        kept = _snapshot(conn)
        assert kept[0] and kept[1] and kept[2]
        assert any(r[0] == "" for r in kept[0]), "some requests have no district"
        service_rollup.rebuild(conn)
        assert _snapshot(conn) == kept


def _windows(rnd: random.Random) -> list[tuple[int, int]]:
    out = [(NOW + 1 - 30 * 86_400, NOW + 1), (NOW + 1 - 60 * 86_400, NOW + 1 - 30 * 86_400),
           (T0 + 86_400, T0 + 40 * 86_400), (NOW - 5 * H, NOW + 1), (NOW - 30 * H, NOW - 2 * H), (NOW, NOW)]
    for _ in range(8):
        a = NOW - rnd.randrange(0, 80 * 86_400)
        out.append((a, a + rnd.randrange(1, 40 * 86_400)))
    return out


@pytest.fixture
def raw_only(monkeypatch):
    """Make the service reads use the requests table only (no rollup), as before the rollups."""
    def table_stats(conn, start, end, district=None):
        return h.service_window_table(conn, start, end, district)[0]

    def table_daily(conn, start, end, district=None, res=86_400):
        assert res == 86_400
        return h.service_window_table(conn, start, end, district)[1]

    def use():
        monkeypatch.setattr(rm, "service_window", h.service_window_table)
        monkeypatch.setattr(h, "service_closed_stats", table_stats)
        monkeypatch.setattr(h, "service_daily", table_daily)
        monkeypatch.setattr(service_reads, "_svc_split",
                            lambda start, end: (None, [(start, end)] if start < end else []))
    return use


def test_reads_equal_the_table(requests_store, raw_only):
    rnd = random.Random(5)
    wins = _windows(rnd)
    dists = [None, "north", "south", "east"]

    def reads():
        with requests_store.connect() as conn:
            out = {}
            for s, e in wins:
                out[("by", s, e)] = rm.service_by_district(conn, s, e).sort_values(
                    "district_id", na_position="first").reset_index(drop=True)
                for d in dists:
                    out[("stats", s, e, d)] = h.service_closed_stats(conn, s, e, d)
                    out[("daily", s, e, d)] = h.service_daily(conn, s, e, d)
            return out

    got = reads()
    raw_only()
    want = reads()
    assert any(v["n"] for k, v in want.items() if k[0] == "stats")
    for k, w in want.items():
        g = got[k]
        if k[0] == "stats":
            assert g == w, k
        else:
            assert list(g.columns) == list(w.columns), k
            assert len(g) == len(w), k
            for c in g.columns:  # the very same floats (PostgreSQL: numeric means, as its avg())
                gv, wv = g[c].tolist(), w[c].tolist()
                assert [None if v != v else v for v in gv] == [None if v != v else v for v in wv], (k, c)
                assert g[c].dtype == w[c].dtype, (k, c)


def test_open_counts_equal_a_scan(requests_store):
    with requests_store.connect() as conn:
        stored = [dict(r) for r in conn.execute(select(service_requests)).mappings()]
        for d in (None, "north", "east"):
            times = [NOW - 20 * 86_400, NOW - 86_400 - 77, NOW - 3 * H, NOW]
            got = rm.service_open_at_many(conn, times, d)
            for t in times:
                open_ = [r for r in stored if r["opened_at"] <= t
                         and (r["closed_at"] is None or r["closed_at"] > t) and d in (None, r["district_id"])]
                exp = {"open": len(open_), "overdue": sum(1 for r in open_ if r["due_at"] < t)}
                assert got[t] == exp and h.service_open_at(conn, t, d) == exp, (d, t)


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_kpis_from_rollups_equal_kpis_from_the_table(requests_store, raw_only, window):
    def values():
        with requests_store.connect() as conn:
            out = {}
            for d in (None, "north"):
                for k in kpis.compute_all(conn, NOW, window, d, domain="satisfaction"):
                    out[(d, k.id)] = (k.as_json(), k.spark_x, k.spark_y)
            return out

    got = values()
    raw_only()
    want = values()
    assert any(v[0]["value"] is not None for v in want.values())
    for key, (j, sx, sy) in want.items():
        assert got[key][0] == j, key
        assert got[key][1] == sx, key
        assert got[key][2] == sy, key


def test_an_older_store_gets_its_rollups_filled(requests_store):
    """create_schema on a store made before the rollups existed fills them from the requests."""
    from sqlalchemy import inspect

    from dashboard.store.schema import create_schema

    from dashboard.store.migrate import downgrade

    with requests_store.begin() as conn:
        kept = _snapshot(conn)
    downgrade(requests_store, "0001")  # the schema of release 0.1, without the rollups
    assert "service_rollup" not in inspect(requests_store).get_table_names()
    create_schema(requests_store)
    with requests_store.connect() as conn:
        assert _snapshot(conn) == kept


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_median_time_to_close_is_within_one_percent_of_the_exact_median(small_city, seed):
    """Random times to close from seconds to weeks, closed over 40 days: the median read from the
    rollups (whole days) and the requests (edges) is within 1 % of the exact median, for windows
    of whole days, with edges, per district and city-wide."""
    eng = small_city["engine"]
    rnd = random.Random(seed)
    reqs = []
    for i in range(rnd.randrange(150, 400)):
        scale = rnd.choice([60, 3600, 30 * H, 300 * H])
        closed = NOW - rnd.randrange(0, 40 * 86_400)
        dur = int(rnd.expovariate(1 / scale))
        reqs.append({"id": f"m{i}", "category": "noise", "district": rnd.choice(["north", "south"]),
                     "opened_at": closed - dur, "closed_at": closed})
    assert ingest_service_requests(eng, reqs, now=NOW).rejected == 0
    day = 86_400
    wins = [(NOW + 1 - 30 * day, NOW + 1), (NOW // day * day - 20 * day, NOW // day * day),
            (NOW - 7 * day - 5 * H, NOW - 2 * H)]
    with eng.connect() as conn:
        for s, e in wins:
            for d in (None, "north", "south"):
                durs = [r["closed_at"] - r["opened_at"] for r in reqs
                        if s <= r["closed_at"] < e and d in (None, r["district"])]
                got = h.service_closed_stats(conn, s, e, d)["median_hours"]
                want = statistics.median(durs) / 3600
                assert got == pytest.approx(want, rel=0.01, abs=1e-12), (s, e, d)
