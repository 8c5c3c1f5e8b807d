"""A small Beijing demo store for tests: the real city, a few hours of simulated history."""
from __future__ import annotations

import time
from pathlib import Path

from dashboard.city import install_city, load_city
from dashboard.settings import PROJECT_ROOT
from dashboard.store.schema import create_schema, make_engine

BEIJING = PROJECT_ROOT / "data" / "beijing"
#: The KPIs of bus arrivals in the last 30 min: at night (no bus from 23:00 to 05:00) they are quiet.
ARRIVAL_KPIS = frozenset({"transit.on_time", "transit.mean_delay", "transit.regularity"})


def last_local(hour: int, minute: int = 0, tz: str = "Asia/Shanghai") -> float:
    """Return the newest instant before now at ``hour``:``minute`` local time (Beijing's by default):
    a store ending then holds the same hours of the day whenever a test runs."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo(tz))
    t = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (t if t <= now else t - timedelta(days=1)).timestamp()


def may_be_quiet(url: str, kid: str, district: str | None = None, now: float | None = None) -> bool:
    """Return whether KPI ``kid`` may show no value because nothing is scheduled (the screens' "quiet"),
    judged without the product: an arrival KPI, and the store at ``url`` holds no bus arrival in
    ``district`` (or the city) in the 30 min before ``now``. Tests run at any hour: at night the
    transit tiles are quiet, by day they must show numbers."""
    from sqlalchemy import text

    if kid not in ARRIVAL_KPIS:
        return False
    now = time.time() if now is None else now
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            n = conn.execute(text(
                "SELECT count(*) FROM readings r JOIN assets a ON a.pk = r.asset_pk WHERE a.kind = 'transit_stop' "
                "AND r.metric = 'arrival_delay_s' AND r.ts >= :t AND (:d IS NULL OR a.district_id = :d)"),
                {"t": int(now - 1800), "d": district}).scalar_one()
    finally:
        engine.dispose()
    return n == 0


def build_demo_store(folder: Path, hours: float = 6, end: float | None = None, seed: int = 7,
                     url: str | None = None) -> str:
    """Create a store (SQLite in ``folder``, or at ``url``) with Beijing and ``hours`` of history; return its URL."""
    from dashboard.feeds.simulator import backfill

    url = url or f"sqlite:///{folder / 'demo.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    city = load_city(BEIJING)
    install_city(engine, city)
    backfill(engine, city, days=hours / 24, seed=seed, end=end or time.time(), progress=False)
    engine.dispose()
    return url


def empty_store(folder: Path) -> str:
    """Create a SQLite store with the Beijing city and no readings; return its URL."""
    url = f"sqlite:///{folder / 'empty.sqlite'}"
    engine = make_engine(url)
    create_schema(engine)
    install_city(engine, load_city(BEIJING))
    engine.dispose()
    return url
