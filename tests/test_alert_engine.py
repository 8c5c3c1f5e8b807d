"""The alert engine on hand-made series: pending and keep-firing periods, flapping, NoData and Error,
deduplication, silences, inhibition, and a restart in the middle (the state through JSON)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.alerts.engine import (AssetObs, KpiObs, Observations, Plan, Silence, empty_state, evaluate,
                                     key_of)
from dashboard.alerts.rules import parse_rules

DISTRICTS = ("haidian", "chaoyang")


def rule(**kw):
    return parse_rules([{"id": "r", **kw}], districts=set(DISTRICTS))[0]


def kpi(t, v, district=None, kid="traffic.tti", status="ok", failed=None, ages=None):
    """Observations at ``t`` of one KPI (``v`` None: no data)."""
    o = KpiObs(v, status if v is not None or status != "ok" else "nodata", "")
    return Observations(now=t, districts=DISTRICTS, kpis={(kid, district): o}, failed=failed or {},
                        ages=ages or {})


class Runner:
    """Evaluates step by step, the state going through JSON each time (as a store would keep it)."""

    def __init__(self, rules, silences=()):
        self.plan, self.silences = Plan(rules), list(silences)
        self.state = empty_state()
        self.log = []

    def __call__(self, obs):
        state, trans = evaluate(self.plan, self.state, obs, self.silences)
        self.state = json.loads(json.dumps(state, allow_nan=False))
        self.log += trans
        return trans

    def events(self, *names):
        return [(t.at, t.event) for t in self.log if not names or t.event in names]


def test_pending_then_firing_once_for_has_elapsed():
    r = Runner([rule(when="traffic.tti > 1.6", **{"for": "10m"})])
    for t in range(0, 900, 60):
        r(kpi(t, 1.7))
    assert r.events() == [(0, "pending"), (600, "firing")]
    assert r.state["alerts"]["r|city"]["active_at"] == 0


def test_a_false_evaluation_while_pending_restarts_the_timer():
    r = Runner([rule(when="traffic.tti > 1.6", **{"for": "10m"})])
    series = {t: 1.7 for t in range(0, 1200, 60)}
    series[360] = 1.5
    for t, v in series.items():
        r(kpi(t, v))
    assert r.events() == [(0, "pending"), (360, "inactive"), (420, "pending"), (1020, "firing")]


def test_flapping_at_the_threshold_raises_one_alert_with_keep_firing_for():
    r = Runner([rule(when="traffic.tti > 1.6", keep_firing_for="5m")])
    flaps = [1.61, 1.59] * 10  # every minute across the threshold, 20 minutes
    for i, v in enumerate(flaps + [1.5] * 6):
        r(kpi(i * 60, v))
    assert r.events("firing", "resolved") == [(0, "firing"), ((len(flaps) - 1 + 5) * 60, "resolved")]
    resolved = r.log[-1]
    assert resolved.repeat == 10  # fired once, came back 9 times while still firing
    # the same series without keep_firing_for: an alert per flap
    r2 = Runner([rule(when="traffic.tti > 1.6")])
    for i, v in enumerate(flaps):
        r2(kpi(i * 60, v))
    assert len(r2.events("firing")) == 10 and len(r2.events("resolved")) == 10


def test_repeat_and_evaluation_counts_of_one_deduplicated_alert():
    r = Runner([rule(when="traffic.tti > 1.6", keep_firing_for="3m")])
    for t, v in [(0, 1.7), (60, 1.7), (120, 1.5), (180, 1.7), (240, 1.5), (300, 1.5), (360, 1.7), (420, 1.7)]:
        r(kpi(t, v))
    e = r.state["alerts"]["r|city"]
    assert r.events() == [(0, "firing")]
    assert (e["state"], e["repeat"], e["evaluations"], e["fired_at"]) == ("firing", 3, 8, 0)


def test_no_data_is_a_state_of_its_own_and_a_firing_alert_resumes():
    r = Runner([rule(when="traffic.tti > 1.6", **{"for": "2m"})])
    r(kpi(0, 1.7))
    r(kpi(60, 1.7))
    r(kpi(120, 1.7))  # firing
    r(kpi(180, None))  # no data: at once, no pending period
    r(kpi(240, 1.7, status="nodata"))  # stale: the screens' STALE
    assert r.state["alerts"]["r|city"]["state"] == "nodata"
    r(kpi(300, 1.8))  # back: the same alert, not a new one
    assert r.events() == [(0, "pending"), (120, "firing"), (180, "nodata"), (300, "resumed")]
    assert r.state["alerts"]["r|city"]["fired_at"] == 120
    r(kpi(360, 1.5))
    assert r.events()[-1] == (360, "resolved")


def test_a_pending_alert_starts_again_after_no_data():
    r = Runner([rule(when="traffic.tti > 1.6", **{"for": "5m"})])
    r(kpi(0, 1.7))
    r(kpi(60, None))
    r(kpi(600, 1.7))  # the condition was not seen holding through the gap
    assert r.events() == [(0, "pending"), (60, "nodata"), (600, "pending")]
    r(kpi(900, 1.7))
    assert r.events()[-1] == (900, "firing")


def test_error_when_the_domain_or_the_kpi_fails():
    r = Runner([rule(when="traffic.tti > 1.6")])
    r(kpi(0, 1.7))
    r(kpi(60, None, failed={"traffic": "OperationalError: disk I/O error"}))
    assert r.log[-1].event == "error" and r.log[-1].reason == "OperationalError: disk I/O error"
    r(kpi(120, None, status="error"))
    assert r.state["alerts"]["r|city"]["state"] == "error" and len(r.log) == 2
    r(kpi(180, 1.5))
    assert r.events() == [(0, "firing"), (60, "error"), (180, "resolved")]


def test_a_kpi_with_nothing_to_measure_raises_nothing():
    r = Runner([rule(when="traffic.tti > 1.6")])
    r(kpi(0, None, status="absent"))
    assert r.log == [] and r.state["alerts"] == {}


def test_a_nodata_rule_fires_on_the_feed_age_and_never_reported():
    r = Runner([rule(when="no traffic data for 10m", scope="each district")])
    ages = {("traffic", "haidian"): 30.0, ("traffic", "chaoyang"): 30.0}
    r(Observations(0, DISTRICTS, ages=ages))
    r(Observations(60, DISTRICTS, ages={**ages, ("traffic", "haidian"): 601.0, ("traffic", "chaoyang"): None}))
    assert sorted((t.scope, t.event, t.value) for t in r.log) == [
        ("district:chaoyang", "firing", None), ("district:haidian", "firing", 601.0)]
    r(Observations(120, DISTRICTS, ages={("traffic", "chaoyang"): 5.0}))  # haidian: nothing to measure any more
    assert sorted((t.scope, t.event) for t in r.log[2:]) == [("district:chaoyang", "resolved"),
                                                            ("district:haidian", "resolved")]


def test_silence_mutes_keeps_state_and_expires_by_itself():
    s = Silence("mw-1", start=100, end=400, reason="road works", by="ops@city", district="haidian")
    r = Runner([rule(when="traffic.tti > 1.6", scope="each district")], silences=[s])
    for t in range(0, 600, 60):
        r(Observations(t, DISTRICTS, kpis={("traffic.tti", "haidian"): KpiObs(1.7 if t >= 120 else 1.0),
                                           ("traffic.tti", "chaoyang"): KpiObs(1.7 if t >= 120 else 1.0)}))
    fired = {t.scope: t for t in r.log if t.event == "firing"}
    assert fired["district:haidian"].muted == "silence mw-1"  # computed and kept, only muted
    assert fired["district:chaoyang"].muted is None
    assert r.state["alerts"]["r|district:haidian"]["state"] == "firing"
    unmuted = [(t.at, t.scope) for t in r.log if t.event == "unmuted"]
    assert unmuted == [(420, "district:haidian")]  # the first evaluation after the window's end
    assert r.state["alerts"]["r|district:haidian"]["muted"] is None


def test_silences_are_checked():
    with pytest.raises(ValueError, match="silence 'x': end must be after start"):
        Silence("x", start=10, end=10, reason="r", by="me", rule="r")
    with pytest.raises(ValueError, match="silence 'x': by: say who"):
        Silence("x", start=0, end=10, reason="r", by=" ", rule="r")
    with pytest.raises(ValueError, match="give at least one of rule, domain, district, asset"):
        Silence("x", start=0, end=10, reason="r", by="me")
    with pytest.raises(ValueError, match="has no UTC offset"):
        Silence("x", start="2026-12-06T08:00", end=10, reason="r", by="me", rule="r")
    s = Silence("x", start="2026-12-06T08:00+08:00", end="2026-12-06T09:00+08:00", reason="r", by="me", rule="r")
    assert s.end - s.start == 3600 and s.active(s.start) and not s.active(s.end)


def test_a_district_feed_outage_inhibits_that_districts_alerts_of_the_feed():
    rules = parse_rules([
        {"id": "nd", "when": "no traffic data for 10m", "scope": "each district"},
        {"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district"},
        {"id": "slow", "when": "any road_segment speed_kmh < 10"},
        {"id": "aqi", "when": "any aq_station aqi > 200"},
    ])
    roads = AssetObs(["r1", "r2"], ["haidian", "chaoyang"], [5.0, 6.0])
    stations = AssetObs(["s1"], ["haidian"], [250.0])
    ages = {("traffic", "haidian"): 900.0, ("traffic", "chaoyang"): 20.0}
    obs = Observations(0, DISTRICTS, kpis={("traffic.tti", d): KpiObs(1.7) for d in DISTRICTS},
                       assets={"speed_kmh": roads, "aqi": stations}, ages=ages)
    state, trans = evaluate(rules, None, obs)
    muted = {(t.rule, t.scope): t.muted for t in trans}
    assert muted == {("nd", "district:haidian"): None,
                     ("tti", "district:haidian"): "inhibited by nd|district:haidian",
                     ("tti", "district:chaoyang"): None,
                     ("slow", "asset:r1"): "inhibited by nd|district:haidian",
                     ("slow", "asset:r2"): None,
                     ("aqi", "asset:s1"): None}  # another domain's alert in the same district: not muted
    # the feed comes back: the still-firing alerts are unmuted
    obs.ages = {("traffic", "haidian"): 20.0, ("traffic", "chaoyang"): 20.0}
    obs.now = 60
    _, trans = evaluate(rules, state, obs)
    assert sorted((t.rule, t.scope, t.event) for t in trans) == [
        ("nd", "district:haidian", "resolved"), ("slow", "asset:r1", "unmuted"), ("tti", "district:haidian", "unmuted")]


def test_a_restart_keeps_pending_timers_and_does_not_refire():
    rules = [rule(when="traffic.tti > 1.6", **{"for": "10m"})]
    state, _ = evaluate(rules, None, kpi(0, 1.7))
    state, _ = evaluate(rules, state, kpi(300, 1.7))
    stored = json.dumps(state)  # the process stops here, mid-pending
    state, trans = evaluate(Plan(rules), json.loads(stored), kpi(600, 1.7))  # a new process, a new plan
    assert [(t.from_state, t.event, t.at) for t in trans] == [("pending", "firing", 600)]
    stored = json.dumps(state)  # stops again, firing
    state, trans = evaluate(Plan(rules), json.loads(stored), kpi(660, 1.7))
    assert trans == [] and state["alerts"]["r|city"]["fired_at"] == 600


def test_a_removed_rule_closes_its_alerts():
    state, _ = evaluate([rule(when="traffic.tti > 1.6")], None, kpi(0, 2.0))
    state, trans = evaluate([], state, kpi(60, 2.0))
    assert [(t.rule, t.event, t.reason) for t in trans] == [("r", "removed", "rule removed")]
    assert state["alerts"] == {}


def test_asset_alerts_go_to_no_data_when_their_reading_stops():
    r = Runner([rule(when="any aq_station aqi > 200")])
    r(Observations(0, DISTRICTS, assets={"aqi": AssetObs(["s1", "s2"], ["haidian", None], [250.0, 90.0])}))
    r(Observations(60, DISTRICTS, assets={"aqi": AssetObs(["s1", "s2"], ["haidian", None], [np.nan, 300.0])}))
    r(Observations(120, DISTRICTS, assets={"aqi": AssetObs(["s2"], [None], [300.0])}))
    assert sorted((t.at, t.scope, t.event, t.district) for t in r.log) == [
        (0, "asset:s1", "firing", "haidian"), (60, "asset:s1", "nodata", "haidian"), (60, "asset:s2", "firing", None)]
    assert r.state["alerts"]["r|asset:s1"]["state"] == "nodata"  # gone from the frame: still unknown


def test_per_district_asset_rules_report_the_worst_and_how_many():
    r = Runner([rule(when="any aq_station pm25 >= 150", per="district")])
    a = AssetObs(["s1", "s2", "s3", "s4"], ["haidian", "haidian", "chaoyang", "chaoyang"], [160.0, 210.0, 150.0, 20.0])
    r(Observations(0, DISTRICTS, assets={"pm25": a}))
    got = sorted((t.scope, t.value, t.reason) for t in r.log)
    assert got == [("district:chaoyang", 150.0, "1 of its aq_station"), ("district:haidian", 210.0, "2 of its aq_station")]


def test_an_asset_rule_on_an_unknown_district_is_an_error_not_a_crash():
    plan = Plan(parse_rules([{"id": "r", "when": "any aq_station aqi > 200", "scope": "nowhere"}]))
    state, trans = evaluate(plan, None, Observations(0, DISTRICTS, assets={"aqi": AssetObs(["s"], ["haidian"], [300])}))
    assert [(t.scope, t.event, t.reason) for t in trans] == [("city", "error", "no district 'nowhere' in this city")]


# ---------------------------------------------------------------------------- properties
OPS = (">", ">=", "<", "<=")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10), st.sampled_from((None, *DISTRICTS)),
                          st.sampled_from(("asset", "district"))), min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(0, 10) | st.just(-1), st.sampled_from((*DISTRICTS, None))), min_size=0,
                max_size=30))
def test_vectorised_asset_rules_agree_with_a_plain_loop(specs, assets):
    """Every (rule, asset) breach the grouped searchsorted finds is exactly what comparing one by one finds."""
    tables = [{"id": f"r{i}", "kind": "aq_station", "metric": "aqi", "op": op, "threshold": th, "per": per,
               **({"scope": d} if d else {})} for i, (op, th, d, per) in enumerate(specs)]
    rules = parse_rules(tables)
    vals = [math.nan if v < 0 else float(v) for v, _ in assets]
    a = AssetObs([f"a{i}" for i in range(len(assets))], [d for _, d in assets], vals)
    _, trans = evaluate(rules, None, Observations(0, DISTRICTS, assets={"aqi": a}))
    got = {(t.rule, t.scope) for t in trans}
    want = set()
    for r in rules:
        for i, (v, d) in enumerate(zip(vals, a.districts)):
            if math.isnan(v) or (r.scope != "city" and d != r.scope) or not r.holds(v):
                continue
            if r.per == "asset":
                want.add((r.id, f"asset:a{i}"))
            elif d is not None:
                want.add((r.id, f"district:{d}"))
    assert got == want
    assert all(t.event == "firing" for t in trans)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.sampled_from([True, False, None])), min_size=1, max_size=60),
       st.integers(0, 900), st.integers(0, 900))
def test_any_series_one_open_alert_firing_only_after_for(series, for_s, keep_s):
    """For any series (True/False/no data at random intervals): firing and resolved alternate (one open
    alert per rule and scope), an alert fires only when the condition has held at every evaluation of
    the last ``for`` seconds, and resolves only after it has been false for ``keep_firing_for``."""
    r = Runner([rule(when="traffic.tti > 1.6", **{"for": for_s, "keep_firing_for": keep_s})])
    t, seen = 0, []
    for dt, cond in series:
        t += dt
        seen.append((t, cond))
        r(kpi(t, None if cond is None else (2.0 if cond else 1.0)))
    opened = False
    for tr in r.log:
        if tr.to_state == "firing" and tr.event in ("firing", "resumed"):
            assert not opened or tr.event == "resumed"
            opened = True
        if tr.event == "resolved":
            assert opened
            opened = False
        if tr.event == "firing":
            start = tr.at - for_s
            assert all(c is True for (x, c) in seen if start <= x <= tr.at)
            # the run of True evaluations began at or before tr.at - for
            run_start = max([x for (x, c) in seen if x <= tr.at and c is not True], default=-1)
            first_true = min(x for (x, c) in seen if run_start < x <= tr.at)
            assert tr.at - first_true >= for_s
        if tr.event == "resolved" and tr.from_state == "firing":
            last_true = max(x for (x, c) in seen if x < tr.at and c is True)
            first_false = min(x for (x, c) in seen if last_true < x <= tr.at)
            assert tr.at - first_false >= keep_s
    state = r.state["alerts"]
    assert set(state) <= {key_of("r", "city")}


# ---------------------------------------------------------------------------- from the product's snapshots
def test_observations_from_the_demo_store_drive_the_city_rules(tmp_path):
    """The observations come from the screens' own snapshots: every KPI of the city and each district
    with the screens' values, every asset value of the base snapshot, each feed's newest age."""
    import time

    from _demo import BEIJING, build_demo_store

    from dashboard.alerts.observe import observe_live
    from dashboard.city import load_city
    from dashboard.live import build_live
    from dashboard.settings import Settings
    from layers import DOMAINS

    city = load_city(BEIJING)
    url = build_demo_store(tmp_path, hours=1, end=time.time())
    live = build_live(Settings(database_url=url, background_refresh=False), city)
    end = float(live.base().latest["traffic"]["roads"]["ts"].max() + 60)  # a minute after the last tick written
    # a fresh reader: the one above keeps the clock's snapshot of this refresh interval, which ``end``
    # may share (observed then at the clock's time, not at ``end``)
    live = build_live(Settings(database_url=url, background_refresh=False), city)
    obs = observe_live(live, now=end)
    ids = sorted(live.district_ids())
    assert obs.now == end and list(obs.districts) == ids
    tti = live.snapshot("1h", "haidian", end).kpi("traffic.tti")
    assert obs.kpis[("traffic.tti", "haidian")].value == tti.value and tti.value is not None
    assert {d for (_, d) in obs.kpis} == {None, *ids}
    stations = live.base(end).latest["air_quality"]["stations"]
    assert sorted(obs.assets["aqi"].ids) == sorted(stations["asset_id"])
    assert np.nanmax(obs.assets["aqi"].values) == stations["aqi"].max()
    assert {d for (d, dist) in obs.ages if dist is None} == {d.id for d in DOMAINS}
    assert obs.ages[("traffic", None)] == 60 and obs.ages[("traffic", "haidian")] == 60

    rules = city.alert_rules + parse_rules([
        {"id": "any-road", "when": "any road_segment speed_kmh >= 0", "severity": "info"},
        {"id": "feed-1s", "when": "no energy data for 1s", "severity": "info"}])
    state, trans = evaluate(rules, None, obs)
    json.dumps(state, allow_nan=False)
    roads = live.base(end).latest["traffic"]["roads"]
    fresh = roads[(end - roads["ts"] <= DOMAINS[0].stale_after) & roads["speed_kmh"].notna()]
    assert len(fresh) > 0
    assert {t.asset for t in trans if t.rule == "any-road" and t.event == "firing"} == set(fresh["asset_id"])
    fired = [t for t in trans if t.rule == "feed-1s"]
    assert [t.event for t in fired] == ["firing"] and fired[0].value >= 1
    assert not [t for t in trans if t.event == "error"]


def test_observations_for_the_rules_compute_only_the_kpis_they_test(tmp_path, monkeypatch):
    """The evaluator runs each tick in a worker that also serves screens: it computes only the
    snapshots its rules read (a district's snapshot only for the domains of the KPI rules on it), and
    the rules see the very values a full observation gives them."""
    import time

    from _demo import BEIJING, build_demo_store

    from dashboard import snapshot as snapmod
    from dashboard.alerts.observe import needs_of, observe_live
    from dashboard.city import load_city
    from dashboard.live import build_live
    from dashboard.settings import Settings

    city = load_city(BEIJING)
    url = build_demo_store(tmp_path, hours=1, end=time.time())
    live = build_live(Settings(database_url=url, background_refresh=False), city)
    end = float(live.base().latest["traffic"]["roads"]["ts"].max() + 60)
    ids = sorted(live.district_ids())
    rules = parse_rules([{"id": "tti-city", "when": "traffic.tti > 1.6"},
                         {"id": "tti-each", "when": "traffic.tti > 1.8", "scope": "each district"},
                         {"id": "park-haidian", "when": "parking.full >= 25", "scope": "haidian"},
                         {"id": "aqi", "when": "any aq_station aqi > 200"}], districts=set(ids))
    scopes, metrics = needs_of(rules, ids)
    assert scopes == {None: {"traffic"}, **{d: {"traffic"} for d in ids}, "haidian": {"traffic", "parking"}}
    assert metrics == {"aqi"}
    built = []
    real = snapmod.build
    monkeypatch.setattr(snapmod, "build", lambda c, q, base, domains=None, **k: built.append(
        (q.district, None if domains is None else sorted(d.id for d in domains))) or real(c, q, base, domains, **k))
    part = observe_live(live, now=end, rules=rules)
    assert sorted(built, key=repr) == sorted([(None, ["traffic"]), ("haidian", ["parking", "traffic"])]
                                             + [(d, ["traffic"]) for d in ids if d != "haidian"], key=repr)
    full_now = observe_live(live, now=end)  # the same bucket: every KPI of every scope, for comparison
    assert set(part.kpis) < set(full_now.kpis)
    for key in part.kpis:
        assert part.kpis[key] == full_now.kpis[key], key
    assert set(part.assets) == {"aqi"}
    assert np.array_equal(part.assets["aqi"].values, full_now.assets["aqi"].values, equal_nan=True)
    assert [t.event for t in evaluate(rules, None, part)[1]] == [t.event for t in evaluate(rules, None, full_now)[1]]
