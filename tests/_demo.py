"""A small Beijing demo store for tests: the real city, a few hours of simulated history."""
from __future__ import annotations

import time
from pathlib import Path

from dashboard.city import install_city, load_city
from dashboard.settings import PROJECT_ROOT
from dashboard.store.schema import create_schema, make_engine

BEIJING = PROJECT_ROOT / "data" / "beijing"


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
