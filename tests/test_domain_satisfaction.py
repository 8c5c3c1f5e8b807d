"""The satisfaction domain without a database: hand-written frames in, KPIs, attention items and
map traces out; its reads asked of a recording reader; its feed's records by the simulator's protocol."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layers import DOMAIN_BY_ID, DOMAINS, LayerParams
from layers._domain import Frames, Query
from layers.satisfaction import DOMAIN, attention
from layers.satisfaction import kpis as k
from layers.satisfaction.feed import CLOSURE_LOOKBACK_S, DAY_S, ServiceSim

NOW = 1_780_000_000
H = 3600
STATIC = pd.DataFrame({"id": ["north", "south", "east"], "name": ["North", "South", "East"], "population": 1,
                       "area_km2": 1.0, "label_lon": 0.0, "label_lat": 0.0, "geometry": None})


def stats(n=0, satisfaction=None, rated=0, satisfied=0, late=0, median_hours=None) -> dict:
    return {"n": n, "satisfaction": satisfaction, "rated": rated, "satisfied": satisfied, "late": late,
            "median_hours": median_hours}


def daily(rows=()) -> pd.DataFrame:
    """Closures per day: (bucket, satisfaction, closed, satisfied, rated, hours)."""
    cols = ["bucket", "satisfaction", "closed", "satisfied", "rated", "hours"]
    df = pd.DataFrame(list(rows), columns=cols)
    return df.astype({"bucket": np.int64, "satisfaction": float, "closed": np.int64, "satisfied": np.int64,
                      "rated": np.int64, "hours": float})


def frames(q: Query, current=None, previous=None, open_counts=None, newest=NOW - 60, open_list=None) -> Frames:
    """Frames of one snapshot: ``open_counts`` are (open, overdue) at each of the window's 7 points."""
    pts = k.spark_points(q)
    counts = open_counts or [(0, 0)] * len(pts)
    f = Frames(q, {"by_district": pd.DataFrame(columns=["district_id", "satisfaction", "n"]),
                   "overdue": overdue_of(open_list if open_list is not None else open_frame([]), q.now)},
               {"current": current or (stats(), daily()), "previous": previous or (stats(), daily()),
                "open_at": {t: {"open": o, "overdue": d} for t, (o, d) in zip(pts, counts)},
                "newest": newest})
    f.static = STATIC
    return f


def open_frame(rows) -> pd.DataFrame:
    """Open requests: (id, district, due_at)."""
    return pd.DataFrame({"id": [r[0] for r in rows], "category": "pothole",
                         "district_id": [r[1] for r in rows], "opened_at": [r[2] - 48 * H for r in rows],
                         "due_at": [r[2] for r in rows]})


def overdue_of(open_list: pd.DataFrame, now: float) -> pd.DataFrame:
    """What the store's grouped read gives of these open requests at ``now``: per district, those past
    their due time (n) and the oldest due time."""
    late = open_list[open_list["due_at"] < now]
    g = late.groupby("district_id")["due_at"].agg(["size", "min"]).reset_index()
    return pd.DataFrame({"district_id": g["district_id"], "n": g["size"], "oldest_due": g["min"]})


def values(f: Frames) -> dict:
    return {kpi.id: kpi.evaluate(f, DOMAIN.period_s) for kpi in DOMAIN.kpis}


# ----------------------------------------------------------------------------- the declaration
def test_registered_with_its_kpis_texts_and_no_assets():
    assert DOMAIN_BY_ID["satisfaction"] is DOMAIN and DOMAIN in DOMAINS
    assert (DOMAIN.label, DOMAIN.period_s, DOMAIN.kinds, DOMAIN.metrics) == ("Service satisfaction", 900, (), ())
    assert [x.id for x in DOMAIN.kpis] == ["service.satisfaction", "service.pct_satisfied", "service.open",
                                           "service.overdue", "service.median_close"]
    assert all(x.definition and x.domain == "satisfaction" for x in DOMAIN.kpis)
    assert DOMAIN.wall.headline == ("service.satisfaction", "service.overdue") and DOMAIN.wall.title == "Service"
    assert not DOMAIN.default_on and DOMAIN.layer.id == "satisfaction" and DOMAIN.layer.source == "by_district"
    sat = DOMAIN.kpis[0]
    assert (sat.warn, sat.bad) == k.SATISFACTION_THRESHOLDS  # the map colours as the tile
    q = Query(NOW, "24h")
    assert sat.reaches(q) == NOW + 1 - 60 * 86_400 and DOMAIN.kpis[2].reaches(q) == 0


# ----------------------------------------------------------------------------- KPIs on hand frames
def test_closure_kpis_from_this_and_the_previous_30_days():
    q = Query(NOW, "24h")
    day = NOW // DAY_S * DAY_S
    cur = (stats(n=40, satisfaction=3.75, rated=32, satisfied=20, median_hours=30.0),
           daily([(day - DAY_S, 4.0, 10, 6, 8, 20.0), (day, 3.5, 30, 14, 24, 40.0)]))
    prev = (stats(n=50, satisfaction=4.25, rated=40, satisfied=34, median_hours=20.0), daily())
    got = values(frames(q, cur, prev))
    s = got["service.satisfaction"]
    assert (s.value, s.delta, s.status, s.note) == (3.75, -0.5, "warn", "32 rated closures")
    assert s.spark_x == [day - DAY_S, day] and s.spark_y == [4.0, 3.5] and s.as_of == NOW - 60 and not s.stale
    p = got["service.pct_satisfied"]
    assert p.value == 62.5 and p.delta == pytest.approx(62.5 - 85.0) and p.status == "warn"
    assert p.spark_y == [75.0, pytest.approx(100 * 14 / 24)] and p.note == "rated 4 or 5"
    m = got["service.median_close"]
    assert (m.value, m.delta, m.status, m.spark_y) == (30.0, 10.0, "warn", [20.0, 40.0])
    assert m.note == "40 closed in 30 d, median ±1 % (trend: daily mean)"
    # the city's thresholds win over the registry's
    strict = values(frames(q.with_(thresholds=(("service.satisfaction", (4.0, 3.8)),)), cur, prev))
    assert strict["service.satisfaction"].status == "bad"


def test_a_day_with_no_rated_closure_is_a_gap_in_the_share_trend():
    q = Query(NOW, "7d")
    cur = (stats(n=3, satisfaction=5.0, rated=1, satisfied=1, median_hours=2.0),
           daily([(NOW - 2 * DAY_S, np.nan, 2, 0, 0, 1.0), (NOW - DAY_S, 5.0, 1, 1, 1, 2.0)]))
    got = values(frames(q, cur))["service.pct_satisfied"]
    assert got.value == 100.0 and got.delta is None and got.spark_y == [None, 100.0]


def test_open_and_overdue_across_the_window_status_from_the_overdue_share():
    q = Query(NOW, "1h")
    counts = [(5, 1), (6, 1), (6, 2), (4, 2), (4, 3), (4, 3), (4, 3)]
    got = values(frames(q, open_counts=counts))
    o, d = got["service.open"], got["service.overdue"]
    assert o.spark_x == k.spark_points(q) and o.spark_x[-1] == NOW and o.spark_x[0] == NOW - 3600
    assert (o.value, o.delta, o.spark_y, o.status) == (4.0, -1.0, [5, 6, 6, 4, 4, 4, 4], "good")
    assert o.note == "3 overdue · open until closed, any age"
    assert (d.value, d.delta, d.status) == (3.0, 2.0, "bad")  # 3 of 4 open: 75 % >= 25
    assert d.note == "75% of open requests (any age) past SLA"
    calm = values(frames(q, open_counts=[(20, 1)] * 7))["service.overdue"]
    assert calm.status == "good" and calm.note == "5% of open requests (any age) past SLA"
    none_open = values(frames(q, open_counts=[(0, 0)] * 7))["service.overdue"]
    assert none_open.value == 0.0 and none_open.status == "good" and none_open.note == ""


def test_old_data_is_stale():
    got = values(frames(Query(NOW, "24h"), open_counts=[(2, 0)] * 7, newest=NOW - 3 * 900 - 1))
    assert got["service.open"].stale and got["service.open"].age_s == 3 * 900 + 1


def test_no_requests_at_all_is_unknown_never_zero():
    got = values(frames(Query(NOW, "24h"), newest=None))
    for v in got.values():
        assert v.value is None and v.status == "unknown" and v.as_of is None and not v.stale, v
        assert v.delta is None
    assert got["service.satisfaction"].note == "0 rated closures"


# ----------------------------------------------------------------------------- attention
def test_districts_with_overdue_requests_need_attention():
    rows = [(f"n{i}", "north", NOW - (i + 1) * H) for i in range(6)]  # 6 overdue: an alert
    rows += [("s1", "south", NOW - 2 * DAY_S)]  # one, two days late: an alert
    rows += [("e1", "east", NOW - 600), ("e2", "east", NOW + H)]  # one just late (a watch), one not yet due
    rows += [("x1", "nowhere", NOW - H)]  # a district the map does not know: named by its id
    items = attention(frames(Query(NOW, "24h"), open_list=open_frame(rows)))
    by = {i["district"]: i for i in items}
    assert set(by) == {"north", "south", "east", "nowhere"}
    n = by["north"]
    assert (n["level"], n["place"], n["domain"]) == ("bad", "North", "satisfaction")
    assert n["score"] == pytest.approx(1 / 95) and n["magnitude"] == pytest.approx(6 + 6 * H / 1e9)
    assert n["detail"] == "6 overdue requests · oldest 6 h past SLA"
    s = by["south"]
    assert s["level"] == "bad" and s["score"] == 0.0 and s["detail"] == "1 overdue request · oldest 2 d past SLA"
    e = by["east"]
    assert (e["level"], e["score"], e["detail"]) == ("warn", 0.2, "1 overdue request · oldest 10 min past SLA")
    assert by["nowhere"]["place"] == "nowhere"
    assert attention(frames(Query(NOW, "24h"))) == []


# ----------------------------------------------------------------------------- the map layer
def test_layer_draws_the_rating_per_district():
    layer = DOMAIN.layer
    frame = pd.DataFrame({"district_id": ["south", "north"], "satisfaction": [3.2, 4.456], "n": [12, 40]})
    p = LayerParams(now=NOW, extra={"geojson_url": "/districts.json"})
    t = layer.traces(STATIC, frame, p)[0]
    assert t["locations"] == ["north", "south", "east"] and t["z"] == [4.46, 3.2, None]
    assert t["customdata"] == [[40], [12], [0]] and (t["zmin"], t["zmax"]) == (1, 5)
    assert layer.values(STATIC, frame, p) == [{"z": t["z"], "customdata": t["customdata"]}]
    w = layer.worst(STATIC, frame)
    assert w["place"].tolist() == ["South", "North"] and w["rated closures"].tolist() == [12, 40]
    empty = layer.traces(STATIC, pd.DataFrame(columns=["district_id", "satisfaction", "n"]), p)[0]
    assert empty["z"] == [None, None, None] and layer.worst(STATIC, None).empty
    assert len(layer.legend(p)) == 3


# ----------------------------------------------------------------------------- the reads
class RecordingReader:
    """A reader that records what is asked of it and answers from ``answers`` by function name."""

    def __init__(self, q: Query, answers: dict):
        self.q, self.answers, self.calls = q, answers, []

    def read(self, fn, *args, district=True):
        self.calls.append((fn.__name__, args, self.q.district if district else "city"))
        return self.answers[fn.__name__]


def test_latest_reads_the_city_and_history_the_district():
    q = Query(NOW, None)
    r = RecordingReader(q, {"service_by_district": "by", "service_overdue_by_district": "late"})
    assert k.latest(r) == {"by_district": "by", "overdue": "late"}
    assert r.calls == [("service_by_district", (NOW + 1 - 30 * DAY_S, NOW + 1), "city"),
                       ("service_overdue_by_district", (NOW,), "city")]
    q = Query(NOW, "7d", "north")
    r = RecordingReader(q, {"service_window": "w", "service_open_at_many": "o", "service_newest_ts": 5})
    assert k.history(r) == {"current": "w", "previous": "w", "open_at": "o", "newest": 5}
    end = NOW + 1
    assert r.calls == [("service_window", (end - 30 * DAY_S, end), "north"),
                       ("service_window", (end - 60 * DAY_S, end - 30 * DAY_S), "north"),
                       ("service_open_at_many", (tuple(k.spark_points(q)),), "north"),
                       ("service_newest_ts", (), "north")]


def test_records_are_stored_by_the_validated_write_path(monkeypatch):
    import dashboard.store.services as services

    seen = []
    monkeypatch.setattr(services, "ingest_service_requests",
                        lambda conn, frame, source, now: seen.append((conn, frame, source, now)) or "result")
    assert DOMAIN.records.ingest("conn", "frame", source="simulator", now=5) == "result"
    assert seen == [("conn", "frame", "simulator", 5)]


# ----------------------------------------------------------------------------- the feed's records
@pytest.fixture(scope="module")
def sim():
    districts = pd.DataFrame({"id": ["north", "south"], "population": [3e6, 1e6],
                              "label_lon": [116.4, 116.5], "label_lat": [39.9, 39.8]})
    cats = pd.DataFrame({"id": ["noise", "pothole"], "name": ["Noise", "Pothole"], "sla_hours": [4.0, 48.0]})
    return ServiceSim(districts, cats, seed=3, timezone="UTC")


def test_a_backfill_chunk_is_its_requests_as_known_at_the_end(sim):
    start, end = NOW - 6 * H, NOW
    chunk = sim.events(start + H, start + 2 * H, now=end)
    pd.testing.assert_frame_equal(chunk, sim.frame(start + H, start + 2 * H, now=end))
    first = sim.events(start, start + H, now=end, backlog_from=start)
    old = sim.frame(start - CLOSURE_LOOKBACK_S, start, now=end)
    backlog = first[first["opened_at"] <= start]
    assert len(backlog) and set(backlog["id"]) == set(old["id"][old["closed_at"].isna() | (old["closed_at"] > start)])
    assert (backlog["opened_at"] > start - CLOSURE_LOOKBACK_S).all()


def test_a_live_tick_adds_the_closures_of_requests_written_open_before(sim):
    t0, t1 = NOW - H, NOW  # a tick after an hour away
    tick = sim.events(t0, t1, now=t1)
    assert tick["id"].is_unique
    closed_now = sim.closures(t0, t1)
    assert len(closed_now) and set(closed_now["id"]) <= set(tick["id"])
    assert set(sim.frame(t0, t1, now=t1)["id"]) <= set(tick["id"])
    assert (tick.set_index("id").loc[closed_now["id"], "status"] == "closed").all()


def test_backfill_then_live_ticks_leave_every_request_in_its_state_now(sim):
    """Upserting the events by id, as the store does, gives each request's true state at the last tick."""
    start, end = NOW - 12 * H, NOW
    store: dict = {}

    def upsert(frame):
        for r in frame.to_dict("records"):
            store[r["id"]] = r

    for c0 in range(start, end, 4 * H):  # the backfill's chunks, the backlog in the first
        upsert(sim.events(c0, c0 + 4 * H, now=end, backlog_from=start if c0 == start else None))
    t = end
    for t1 in (end + 5, end + 65, end + 3600, end + 3 * 3600):  # live ticks, the last after a gap
        upsert(sim.events(t, t1, now=t1))
        t = t1
    truth = pd.concat([sim.frame(start - CLOSURE_LOOKBACK_S, start, now=t), sim.frame(start, t, now=t)])
    truth = truth[truth["closed_at"].isna() | (truth["closed_at"] > start) | (truth["opened_at"] > start)]
    got = pd.DataFrame(list(store.values()))
    cols = ["id", "status", "closed_at", "satisfaction"]
    pd.testing.assert_frame_equal(got[cols].sort_values("id").reset_index(drop=True),
                                  truth[cols].sort_values("id").reset_index(drop=True), check_dtype=False)
    assert (got["status"] == "open").any() and (got["status"] == "closed").any()
