"""The evaluator in production shape: gunicorn with two workers on PostgreSQL, ticking every second.

A restart in the middle of a pending period fires the alert at the right time, once, and re-fires
none of the open ones; then each tick is evaluated once, by one worker or the other, and the
evaluations each worker counts (``/health``) are exactly the ticks the store holds from it.
"""
from __future__ import annotations

import json
import shutil
import time

import pytest
from _services import Postgres
from sqlalchemy import func, select
from test_production import Gunicorn, http

from dashboard.city import install_city, load_city
from dashboard.settings import DATA_ROOT
from dashboard.store.schema import alert_events, alert_state, alert_ticks, alerts, create_schema, make_engine

pytestmark = [pytest.mark.postgres]

PENDING = 24  # seconds the test rule is pending before it fires
STOP_AFTER = 10  # seconds into the pending period the app is stopped: a timer reset would fire this late


def wait_for(what, fn, timeout=90.0, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL with Beijing installed and no readings (every no-data rule holds), the city file
    with one more rule pending for PENDING seconds."""
    folder = tmp_path_factory.mktemp("alerts-workers")
    city = folder / "city"
    shutil.copytree(DATA_ROOT / "beijing", city)
    with open(city / "city.toml", "a") as fh:
        fh.write(f'\n[[alert]]\nid = "slow-nodata"\nwhen = "no energy data for 1m"\nfor = "{PENDING}s"\n')
    pg = Postgres().start()
    engine = make_engine(pg.url)
    create_schema(engine)
    install_city(engine, load_city(city))
    env = {"PANORAMA_DATABASE_URL": pg.url, "PANORAMA_CITY": str(city), "PANORAMA_DATA_DIR": str(folder),
           "PANORAMA_ALERT_TICK_SECONDS": "1", "PANORAMA_REFRESH_SECONDS": "5"}
    server = Gunicorn(env, folder / "gunicorn.log")
    try:
        yield {"engine": engine, "server": server, "log": folder / "gunicorn.log"}
    finally:
        server.stop()
        engine.dispose()
        pg.cleanup()


def scalar(engine, q):
    with engine.connect() as conn:
        return conn.execute(q).scalar()


def test_a_restart_mid_pending_fires_once_at_the_right_time_and_refires_nothing(stack):
    engine, server = stack["engine"], stack["server"]
    server.start()
    entry = wait_for("the rule to be pending", lambda: scalar(
        engine, select(alert_state.c.entry).where(alert_state.c.key == "slow-nodata|city")))
    assert entry["state"] == "pending"
    opened_before = scalar(engine, select(func.count()).select_from(alerts))
    assert opened_before > 0, "the no-data rules without a pending period fired at once"
    wait_for("the rule to be pending a while", lambda: time.time() >= entry["active_at"] + STOP_AFTER)
    server.stop()  # mid-pending
    assert scalar(engine, select(alerts.c.id).where(alerts.c.rule == "slow-nodata")) is None
    server.start()
    back = time.time()
    opened = wait_for("the pending rule to fire", lambda: scalar(
        engine, select(alerts.c.opened_at).where(alerts.c.rule == "slow-nodata")))
    due = entry["active_at"] + PENDING
    assert opened >= due, f"fired {due - opened:.1f} s before its time"
    # the timer survived the restart: it fires at its time (or at the first ticks after a slow restart),
    # not a pending period after the restart, which would be at least STOP_AFTER seconds later
    late = opened - max(due, back)
    assert late < STOP_AFTER - 3, f"fired {late:.1f} s after its time (a restarted timer would be ≥ {STOP_AFTER} s)"
    with engine.connect() as conn:
        opens = conn.execute(select(alerts.c.key, func.count()).join_from(alert_events, alerts).where(
            alert_events.c.action == "open").group_by(alerts.c.key)).all()
    assert opens and all(n == 1 for _key, n in opens), opens  # nothing re-fired by the restart
    assert len(opens) == opened_before + 1


def health_by_pid(base: str) -> dict[int, dict]:
    seen: dict[int, dict] = {}
    for _ in range(200):
        h = json.loads(http("GET", f"{base}/health")[2])
        seen[h["worker"]["pid"]] = h["worker"]
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only {len(seen)} worker answered")


def test_one_evaluation_per_tick_with_two_workers(stack):
    engine, server = stack["engine"], stack["server"]
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    first = wait_for("a tick", lambda: scalar(engine, select(func.max(alert_ticks.c.tick))))
    wait_for("ten more ticks evaluated", lambda: scalar(
        engine, select(func.count()).select_from(alert_ticks).where(alert_ticks.c.tick > first)) >= 10, 60)
    before = health_by_pid(server.base)
    with engine.connect() as conn:
        by_worker = dict(conn.execute(select(alert_ticks.c.worker, func.count()).group_by(alert_ticks.c.worker)).all())
        ticks = [r.tick for r in conn.execute(select(alert_ticks.c.tick).order_by(alert_ticks.c.tick))]
    after = health_by_pid(server.base)
    assert len(ticks) == len(set(ticks))
    pids = {int(w.rsplit(":", 1)[1]): n for w, n in by_worker.items()}
    for pid in before:  # each worker evaluated exactly the ticks the store holds from it (a tick in flight aside)
        assert before[pid]["alert_evaluations"] <= pids.get(pid, 0) + 1
        assert pids.get(pid, 0) <= after[pid]["alert_evaluations"]
    recent = [t for t in ticks if t > first]
    assert len(recent) >= 10 and recent[-1] - recent[0] + 1 - len(recent) <= 2, recent  # (almost) no tick missed
    assert sum(pids.get(p, 0) for p in before) >= 10  # the recent ticks: by these two workers
