"""While ``panorama run``'s first start fills in the older days in the background, the KPIs whose
window reaches into days not written yet say "history loading (N %)"; the others, and all of them
once the fill is done, say nothing of it."""
from __future__ import annotations

import pytest

import time

from dashboard import cli, kpis, views
from dashboard.pages import wall
from dashboard.feeds.simulator import backfill
from dashboard.store import readmodel as rm

NOW = 1_736_942_400  # 2025-01-15 12:00 UTC
DAY = 86_400
#: the first run wrote the last day at NOW - 600 and fills the 6 days before that, oldest first
FILL_FROM, FILL_TO = NOW - 600 - 7 * DAY, NOW - 600 - DAY
#: KPIs that read 30-day service periods or requests of any age: always past the filled-in days
LONG = {"service.satisfaction", "service.pct_satisfied", "service.median_close", "service.open", "service.overdue"}


def record(engine, done, failed=False):
    with engine.begin() as conn:
        rm.record_history_fill(conn, FILL_FROM, FILL_TO, done, failed=failed)


def compute(engine, window="24h") -> dict:
    with engine.connect() as conn:
        return {k.id: k for k in kpis.compute_all(conn, NOW, window)}


def test_history_loading_note_on_kpis_reaching_unfilled_days_only(small_city):
    engine = small_city["engine"]
    record(engine, FILL_FROM + int(0.4 * (FILL_TO - FILL_FROM)))
    day = compute(engine, "24h")
    noted = {kid for kid, k in day.items() if k.loading}
    assert LONG <= noted, noted
    # the last 24 h are all written: the 24-hour KPIs do not change as the older days come in
    for kid in ("traffic.tti", "traffic.congested", "air.aqi_worst", "air.over_limit", "energy.load",
                "energy.capacity_share"):
        assert day[kid].loading == "", kid
    assert "air.pm25_24h" in noted  # "vs previous 24 h" reads two days back
    assert day["service.median_close"].loading == "history loading (40 %)"
    # shown wherever the KPI's note is: the cards' note, the API
    assert views.kpi_state(day["service.median_close"])["note"].startswith("history loading (40 %)")
    assert day["service.median_close"].as_json()["note"].startswith("history loading (40 %)")
    assert "history loading" not in views.kpi_state(day["traffic.tti"])["note"]
    # the wall has no note line: its age says it, first drawn and as the browser rewrites it each second
    k = day["service.median_close"]
    assert wall.kpi_view(k, NOW)["age"].endswith(" · history loading (40 %)")
    assert wall.ages(day, NOW)["kpis"][k.id][4] == "history loading (40 %)"
    assert wall.ages(day, NOW)["kpis"]["traffic.tti"][4] == ""
    # a 7-day window reaches into the missing days for every KPI
    week = compute(engine, "7d")
    assert all(k.loading.startswith("history loading") for k in week.values()), \
        [kid for kid, k in week.items() if not k.loading]


def test_no_note_when_the_fill_is_done_or_never_ran(small_city):
    engine = small_city["engine"]
    assert not any(k.loading for k in compute(engine, "7d").values())  # no fill recorded
    record(engine, FILL_TO)
    assert not any(k.loading for k in compute(engine, "7d").values())
    assert all("history" not in views.kpi_state(k)["note"] for k in compute(engine, "7d").values())
    with engine.connect() as conn:
        assert rm.history_fill(conn) is None
        assert "history_fill" not in rm.city_meta(conn)  # the store's bookkeeping, not a city fact


def test_a_failed_fill_says_history_incomplete(small_city):
    engine = small_city["engine"]
    record(engine, FILL_FROM + (FILL_TO - FILL_FROM) // 4)
    cli._mark_fill_failed(engine)
    assert compute(engine)["service.median_close"].loading == "history incomplete (25 %)"


@pytest.fixture
def own_beijing(tmp_path):
    """A Beijing store of this test's own: the fill writes history, which the shared one must not hold."""
    from dashboard.city import install_city, load_city
    from dashboard.settings import PROJECT_ROOT
    from dashboard.store.schema import create_schema, make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    create_schema(eng)
    install_city(eng, load_city(PROJECT_ROOT / "data" / "beijing"))
    try:
        yield eng
    finally:
        eng.dispose()


def test_background_fill_records_its_progress_in_the_store(own_beijing, monkeypatch):
    beijing_engine = own_beijing
    """``backfill(record=True)`` (what ``panorama run`` starts in the background) keeps its progress in
    the meta table, each chunk in that chunk's transaction, and ends done."""
    seen = []
    original = rm.record_history_fill

    def spy(conn, start, end, done, failed=False):
        original(conn, start, end, done, failed)
        seen.append(rm.history_fill(conn))  # what another worker reads once this commits

    monkeypatch.setattr(rm, "record_history_fill", spy)
    end = (int(time.time()) - DAY) // 300 * 300
    backfill(beijing_engine, _beijing(), days=3 / 24, end=end, progress=False, record=True)
    assert [s["percent"] for s in seen[:-1]] == [0, 33, 66], seen
    assert seen[-1] is None  # done: nothing loading
    with beijing_engine.connect() as conn:
        assert rm.history_fill(conn) is None


def _beijing():
    from pathlib import Path

    from dashboard.city import load_city

    return load_city(Path(__file__).resolve().parent.parent / "data" / "beijing")
