"""Drive the built-in feeds into the store: a history backfill and a live, outage-proof loop.

Both write through the validated paths only (:class:`~dashboard.store.ingest.Ingestor` and
:func:`~dashboard.store.services.ingest_service_requests`), one transaction per chunk, so they
work the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, text

from dashboard.city import City, load_city
from dashboard.store import readmodel as rm
from dashboard.store.ingest import IngestResult, Ingestor
from dashboard.store.schema import assets, districts, service_categories

log = logging.getLogger(__name__)

#: Seconds between simulated traffic/energy readings in a backfill.
BACKFILL_STEP_S = 300
#: A live loop never catches up further back than this after an outage (seconds) ...
MAX_CATCHUP_S = 3600
#: ... and writes the missed traffic/energy ticks at this resolution (seconds).
CATCHUP_STEP_S = 60
#: A tick that could not be written (the store busy or away) is written with the next one, at full
#: resolution, for this many ticks back; older missed ticks get the coarse catch-up above.
MAX_CARRIED_TICKS = 120


def _as_city(city) -> City:
    if isinstance(city, City):
        return city
    p = Path(city)
    if not p.is_dir():
        from dashboard.settings import DATA_ROOT

        p = DATA_ROOT / str(city)
    return load_city(p)


def _assets_frame(conn, kind: str) -> pd.DataFrame:
    rows = conn.execute(select(assets.c.id, assets.c.name, assets.c.district_id, assets.c.attributes)
                        .where(assets.c.kind == kind).order_by(assets.c.id)).all()
    base = pd.DataFrame({"id": [r.id for r in rows], "name": [r.name for r in rows],
                         "district": [r.district_id for r in rows]})
    attrs = pd.DataFrame([dict(r.attributes or {}) for r in rows], index=base.index)
    return pd.concat([base, attrs.drop(columns=[c for c in attrs.columns if c in base.columns])], axis=1)


class Feeds:
    """The demo feeds of one city, one per domain that has a feed and something to simulate."""

    def __init__(self, feeds: dict):
        self.feeds = feeds  # domain id -> feed

    def __getattr__(self, name: str):
        """``feeds.<domain id>``: that domain's feed, or None."""
        feeds = self.__dict__.get("feeds", {})
        if name in feeds:
            return feeds[name]
        if name.startswith("_"):
            raise AttributeError(name)
        return None

    @classmethod
    def from_store(cls, engine: Engine, city: City, seed: int = 42, step: int = 5) -> "Feeds":
        """Build every feed the store and the city folder can support, in registry order."""
        from dashboard.feeds import FeedContext
        from layers import DOMAINS

        with engine.connect() as conn:
            frames = {k.id: _assets_frame(conn, k.id) for d in DOMAINS for k in d.kinds}
            dist = pd.DataFrame(conn.execute(select(
                districts.c.id, districts.c.population, districts.c.area_km2,
                districts.c.label_lon, districts.c.label_lat, districts.c.geometry)).mappings().all())
            cats = pd.DataFrame(conn.execute(select(
                service_categories.c.id, service_categories.c.name, service_categories.c.sla_hours)).mappings().all())
        ctx = FeedContext(city, seed, step, city.timezone, lambda kind: frames.get(kind, pd.DataFrame()), dist, cats)
        feeds = {}
        for d in DOMAINS:
            if d.feed is None:
                continue
            try:
                f = d.feed(ctx)
            except (FileNotFoundError, KeyError) as exc:
                log.warning("no %s feed for %s: %s", d.label, city.name, exc)
                continue
            if f is not None:
                feeds[d.id] = f
        return cls(feeds)

    def readings(self, ticks: np.ndarray, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> pd.DataFrame:
        """Return every feed's readings at ``ticks`` (hourly feeds: for the hours in (t0, t1])."""
        parts = []
        for f in self.feeds.values():
            r = f.readings(ticks, t0, t1, prev=prev, full_incidents=full_incidents)
            if r is not None and len(r):
                parts.append(r)
        if not parts:
            return pd.DataFrame(columns=["asset", "metric", "ts", "value"])
        return pd.concat(parts, ignore_index=True)

    def event_feeds(self) -> list:
        """Return (domain, feed) of the feeds that produce records of their own."""
        from layers import DOMAIN_BY_ID

        return [(DOMAIN_BY_ID[k], f) for k, f in self.feeds.items() if hasattr(f, "events")]


def _ticks(t0: int, t1: int, step: int) -> np.ndarray:
    """Return the multiples of ``step`` in (t0, t1]."""
    first = (t0 // step + 1) * step
    return np.arange(first, t1 + 1, step, dtype=np.int64)


def backfill(engine: Engine, city, days: float = 7, seed: int = 42, end: float | None = None,
             progress: bool = True, step: int = BACKFILL_STEP_S, chunk_s: int = 3600,
             known_at: float | None = None, record: bool = False) -> dict[str, int]:
    """Write ``days`` of history ending at ``end`` (default now), one transaction per ``chunk_s``.

    ``record``: keep the progress in the store's meta table, in each chunk's transaction (a
    background fill behind live data: the screens say which numbers still lack their history).

    Traffic and energy every ``step`` seconds, air quality every hour, and the service requests
    opened in the period (plus earlier ones still open or closed in it) in their state at
    ``known_at`` (default ``end``; later when filling in history behind data already stored).

    Returns
    -------
    dict : readings, duplicates, rejected, service_requests, chunks, seconds
    """
    started = time.perf_counter()
    city = _as_city(city)
    end = int(time.time() if end is None else end) // step * step
    start = end - int(days * 86400) // step * step
    known = int(end if known_at is None else known_at)
    feeds = Feeds.from_store(engine, city, seed=seed, step=step)
    ing = Ingestor(engine)
    res, sres = IngestResult(), IngestResult()
    bounds = list(range(start, end, chunk_s))
    bar = _progress() if progress else nullcontext()
    if record:
        with engine.begin() as conn:
            rm.record_history_fill(conn, start, end, start)
    with bar as prog:
        task = prog.add_task(f"Backfilling {days:g} days of {city.name}", total=len(bounds)) if prog else None
        for k, c0 in enumerate(bounds):
            c1 = min(c0 + chunk_s, end)
            ticks = _ticks(c0, c1, step)
            readings = feeds.readings(ticks, c0, c1, prev=c0)
            # records (service requests, …): those of the chunk, and in the first chunk the backlog
            # opened before the period, still open or closed in it
            events = [(d, f.events(c0, c1, now=known, backlog_from=start if k == 0 else None))
                      for d, f in feeds.event_feeds()]
            with engine.begin() as conn:
                res += ing.ingest(readings, source="simulator:backfill", now=known, conn=conn)
                for d, ev in events:
                    if ev is not None and len(ev):
                        sres += d.records.ingest(conn, ev, source="simulator:backfill", now=known)
                if record:
                    rm.record_history_fill(conn, start, end, c1)
            if prog:
                prog.update(task, advance=1)
    if res.rejected or sres.rejected:
        log.warning("backfill rejected rows: %s", (res.reasons + sres.reasons)[:5])
    return {"readings": res.accepted, "duplicates": res.duplicates, "rejected": res.rejected + sres.rejected,
            "service_requests": sres.accepted, "chunks": len(bounds),
            "seconds": round(time.perf_counter() - started, 2)}


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())


class Simulator:
    """The live loop: each tick writes everything due since the previous one.

    Parameters
    ----------
    engine : the store
    city : a :class:`City` or a city folder
    seed : the seed of every feed (use the backfill's for a seamless history)
    step : seconds between traffic/energy readings
    """

    def __init__(self, engine: Engine, city, seed: int = 42, step: int = 5,
                 catchup_step: int = CATCHUP_STEP_S, max_catchup_s: int = MAX_CATCHUP_S):
        self.engine = engine
        self.city = _as_city(city)
        self.seed = int(seed)
        self.step = int(step)
        self.catchup_step = max(int(catchup_step), self.step) // self.step * self.step
        self.max_catchup_s = int(max_catchup_s)
        self.last: int | None = None  # the last tick written
        self.feeds: Feeds | None = None
        self._ing: Ingestor | None = None
        self.failures = 0
        self._carried = np.array([], dtype=np.int64)  # ticks of failed writes: written with the next tick

    def _stored_last(self) -> int | None:
        from sqlalchemy import bindparam

        from layers import DOMAINS

        # the newest reading of a feed that reports every tick (hourly feeds lag by design)
        ms = [m.id for d in DOMAINS if d.period_s < 3600 for m in d.metrics]
        if not ms:
            return None
        with self.engine.connect() as conn:
            v = conn.execute(text("SELECT max(ts) FROM latest WHERE metric IN :ms")
                             .bindparams(bindparam("ms", expanding=True)), {"ms": ms}).scalar()
        return None if v is None else int(v)

    def tick(self, now: float | None = None) -> dict[str, int] | None:
        """Write what is due at ``now`` (default: the clock); return counts, or None when it failed."""
        now = time.time() if now is None else float(now)
        t = int(now) // self.step * self.step
        ticks = np.array([], dtype=np.int64)
        try:
            if self.feeds is None:
                self.feeds = Feeds.from_store(self.engine, self.city, seed=self.seed, step=self.step)
            if self._ing is None:
                self._ing = Ingestor(self.engine)
            last = self.last if self.last is not None else self._stored_last()
            lo = t - self.max_catchup_s if last is None else max(int(last), t - self.max_catchup_s)
            if lo >= t:
                return {"readings": 0, "service_requests": 0, "rejected": 0, "ticks": 0}
            if last is None:  # nothing written before: the state now, plus the last hour of events
                ticks = np.array([t], dtype=np.int64)
            else:  # catch up the missed ticks (coarser, at most the last hour), then the tick at t
                ticks = np.unique(np.r_[_ticks(lo, t - 1, self.catchup_step), t])
            carried = self._carried[(self._carried > lo) & (self._carried < t)]
            ticks = np.unique(np.r_[carried, ticks])  # what failed before is written now, not lost
            # incident rows are transitions since the last written tick; after a gap: the full state
            gap = last is None or last < lo
            readings = self.feeds.readings(ticks, lo, t, prev=None if gap else lo, full_incidents=gap)
            events = [(d, f.events(lo, t, now=t)) for d, f in self.feeds.event_feeds()]
            with self.engine.begin() as conn:
                r = self._ing.ingest(readings, source="simulator", now=now, conn=conn)
                s = IngestResult()
                for d, ev in events:
                    if ev is not None and len(ev):
                        s += d.records.ingest(conn, ev, source="simulator", now=now)
            self.last = t
            self._carried = np.array([], dtype=np.int64)
            if self.failures:
                log.info("simulator recovered after %d failed tick(s)", self.failures)
            self.failures = 0
            return {"readings": r.accepted, "service_requests": s.accepted,
                    "rejected": r.rejected + s.rejected, "ticks": len(ticks)}
        except Exception as exc:  # a tick must never kill the loop: log, retry next time
            self.failures += 1
            if len(ticks):  # its readings go with the next tick (the newest few at full resolution)
                self._carried = ticks[-MAX_CARRIED_TICKS:]
            if self.failures == 1:
                log.exception("simulator tick at %d failed; retrying on the next tick", t)
            else:
                log.warning("simulator tick at %d failed again (%d in a row): %s", t, self.failures, exc)
            if self.feeds is None or self._ing is None:
                self.feeds, self._ing = None, None
            return None

    def run(self, stop_event: threading.Event, refresh_seconds: float | None = None) -> None:
        """Tick every ``refresh_seconds`` (default: ``step``) until ``stop_event`` is set."""
        every = float(refresh_seconds or self.step)
        log.info("simulator running every %gs for %s", every, self.city.name)
        while not stop_event.is_set():
            began = time.monotonic()
            try:
                self.tick(time.time())
            except Exception:  # pragma: no cover - tick already guards itself
                log.exception("simulator tick raised")
            stop_event.wait(max(0.05, every - (time.monotonic() - began)))
