"""The evaluator: once per tick for the whole deployment, the engine's step written to the store.

Each tick (``time // tick seconds``) is evaluated by exactly one process of the deployment, whatever
the number of workers and hosts: on PostgreSQL the one holding ``pg_try_advisory_xact_lock`` and
finding no row of the tick in ``alert_ticks``; on SQLite (one host) the one that inserts the tick's
row first (the row's primary key decides). The evaluator reads the same snapshots the screens read
(:func:`dashboard.alerts.observe.observe_live`) and writes, in ONE transaction, the tick's row, the
changed state entries, the alert rows and their events — so a crash leaves the previous tick whole,
and a restart reloads every timer from the store: no re-fired alert, no lost pending period.

After the engine's step, the tick does what time does to alerts: shelves expire, alerts whose
condition has been clear for ``auto_resolve_after`` are resolved, and new alerts nobody acknowledged
within ``escalate_after`` escalate (counting only the time they were open and neither muted nor
shelved: :func:`dashboard.alerts.store.unacked`) (``[alerting]``, :mod:`dashboard.alerts.config`). Alerts it opened
are then grouped into incidents by the city's ``[[incident_rule]]`` tables (:func:`dashboard.incidents.store.group`),
in the same transaction.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from dashboard.alerts import store
from dashboard.alerts.config import Alerting, raised
from dashboard.alerts.engine import Observations, Plan, evaluate, key_of
from dashboard.store.schema import alert_ticks, alerts

log = logging.getLogger("panorama.alerts")

#: The advisory lock of the evaluation (any constant the deployment's other locks do not use).
LOCK_KEY = 0x70616E5F616C7274  # "pan_alrt"
#: Ticks kept in ``alert_ticks`` (older rows are deleted as new ones come).
KEEP_TICKS = 10_000


class Evaluator:
    """Evaluates the rules once per tick into the store. ``observe(now)`` returns the
    :class:`~dashboard.alerts.engine.Observations` at ``now``; ``clock`` is injectable for tests."""

    def __init__(self, engine, rules, config: Alerting | None = None, observe=None, tick_seconds: float = 5,
                 clock=time.time, worker: str | None = None, incidents=None):
        self.engine = engine
        self.incidents = incidents  # dashboard.incidents.config.Incidents: its rules group new alerts
        self.plan = Plan(rules)
        self.config = config or Alerting()
        self.observe = observe or (lambda now: Observations(now=now))
        self.tick_seconds = float(tick_seconds)
        self.clock = clock
        self._worker = worker
        self.evaluations = 0  # ticks this process evaluated (its share of the deployment's)
        self.last: dict | None = None

    @property
    def worker(self) -> str:
        """Who evaluates: host and pid, read when asked (gunicorn forks the workers after the app is made)."""
        return (self._worker or f"{socket.gethostname()}:{os.getpid()}")[:64]

    def tick(self, now: float | None = None) -> dict | None:
        """Evaluate the tick of ``now`` (default: the clock) unless another process has or is doing it;
        return what it did, or None."""
        now = self.clock() if now is None else float(now)
        n = int(now // self.tick_seconds)
        pg = self.engine.dialect.name == "postgresql"
        obs = None
        if not pg:  # observe before taking SQLite's one write lock: ingest is not kept waiting
            with self.engine.connect() as conn:
                if _done(conn, n):
                    return None
            obs = self._observe(now)
        try:
            with self.engine.begin() as conn:
                if pg and not conn.execute(select(func.pg_try_advisory_xact_lock(LOCK_KEY))).scalar():
                    return None  # another process evaluates right now
                if pg and _done(conn, n):
                    return None  # ... or has, this tick
                conn.execute(insert(alert_ticks).values(tick=n, at=now, worker=self.worker, ms=0.0, transitions=0))
                if obs is None:
                    obs = self._observe(now)
                self.last = self._evaluate(conn, n, now, obs)
                return self.last
        except IntegrityError:
            with self.engine.connect() as conn:
                if _done(conn, n):
                    return None  # SQLite: another process inserted the tick first
            raise

    def _observe(self, now: float) -> Observations:
        return self.observe(now) if self.plan.rules else Observations(now=now)

    def _evaluate(self, conn, n: int, now: float, obs: Observations) -> dict:
        t0 = time.perf_counter()
        self.evaluations += 1
        old = store.load_state(conn)
        new, trans = evaluate(self.plan, old, obs, store.active_silences(conn, now))
        store.save_state(conn, old, new, now)
        rows = store.open_rows(conn)
        events = self._alerts(conn, rows, old["alerts"], new["alerts"], trans, now)
        events += self._time_passes(conn, rows, now)
        grouped = []
        opened = [e for e in events if e["action"] == "open"]
        if opened and self.incidents is not None and self.incidents.rules:
            from dashboard.incidents.store import group

            grouped = group(conn, self.incidents, opened, now)  # same transaction: an alert and its incident
        ms = (time.perf_counter() - t0) * 1000
        conn.execute(update(alert_ticks).where(alert_ticks.c.tick == n).values(ms=ms, transitions=len(trans)))
        conn.execute(delete(alert_ticks).where(alert_ticks.c.tick < n - KEEP_TICKS))
        return {"tick": n, "at": now, "transitions": trans, "events": events, "incident_events": grouped, "ms": ms}

    def _alerts(self, conn, rows: dict, old: dict, new: dict, trans: list, now: float) -> list[dict]:
        """Open, change or clear the alert rows of the engine's step; return the events written."""
        events = []
        by_key = {key_of(t.rule, t.scope): t for t in trans}
        for key in sorted(set(by_key) | (set(rows) & (set(old) | set(new)))):
            t, e, o, row = by_key.get(key), new.get(key), old.get(key), rows.get(key)
            state = store.row_state(e["state"]) if e else store.CLEAR
            muted = e.get("muted") if e else t.muted if t else row and row["muted"]
            value = e.get("value") if e else t.value if t else None
            more = max(0, (e or {}).get("repeat", 0) - (o or {}).get("repeat", 0))
            why = {"event": t.event if t else "repeat" if more else "muted", "engine_state": e["state"] if e else "inactive",
                   "value": value, "reason": (t.reason if t else (e or {}).get("reason")) or None}
            if row is None:
                if state == store.CLEAR:
                    continue  # pending, or cleared before it fired: no alert
                r = self.plan.by_id.get(e["rule"])
                rows[key], ev = store.append(conn, None, "open", store.SYSTEM, now, None, {
                    **why, "key": key, "rule": e["rule"], "scope": e["scope"], "district": e.get("district"),
                    "asset": e.get("asset"), "domain": r.domain if r else "", "severity": r.severity if r else "warning",
                    "state": state, "summary": r.summary if r else None, "repeat": max(1, e.get("repeat", 0)),
                    "muted": muted})
                events.append(ev)
            elif state != row["state"] or more or muted != row["muted"]:
                rows[key], ev = store.append(conn, row, "engine", store.SYSTEM, now, None, {
                    **why, "state": state, "repeat": row["repeat"] + more, "muted": muted})
                events.append(ev)
            if value != rows[key]["value"]:  # the live reading: refreshed in place, not history
                conn.execute(update(alerts).where(alerts.c.id == rows[key]["id"]).values(value=value))
                rows[key]["value"] = value
        return events

    def _time_passes(self, conn, rows: dict, now: float) -> list[dict]:
        """Expire shelves, resolve alerts clear for long enough, escalate unacknowledged ones."""
        cfg, events = self.config, []
        for key in sorted(rows):
            row = rows[key]
            if row["shelved_until"] is not None and row["shelved_until"] <= now:
                row, ev = store.append(conn, row, "unshelve", store.SYSTEM, now, "shelve expired")
                events.append(ev)
            if (row["state"] == store.CLEAR and cfg.auto_resolve_after is not None and row["clear_since"] is not None
                    and now - row["clear_since"] >= cfg.auto_resolve_after):
                row, ev = store.append(conn, row, "resolve", store.SYSTEM, now,
                                       f"condition clear for {int(now - row['clear_since'])} s")
                events.append(ev)
            level = row["escalation"]
            if (store.counting(row) and cfg.escalates(row["severity"]) and level < len(cfg.targets)
                    and store.unacked(row, now) >= cfg.escalate_after):
                row, ev = store.append(conn, row, "escalate", store.SYSTEM, now,
                                       f"not acknowledged for {int(store.unacked(row, now)) // 60} min "
                                       "while open and neither silenced nor shelved", {
                                           "level": level + 1, "target": cfg.targets[level],
                                           "severity": raised(row["severity"]), "from_severity": row["severity"]})
                events.append(ev)
            rows[key] = row
        return events


def _done(conn, n: int) -> bool:
    return bool(conn.execute(select(exists().where(alert_ticks.c.tick == n))).scalar())


def evaluations(conn, since_tick: int | None = None) -> list[dict]:
    """Return the ticks evaluated (from ``since_tick``), oldest first: which worker, how long, how many changes."""
    q = select(alert_ticks).order_by(alert_ticks.c.tick)
    if since_tick is not None:
        q = q.where(alert_ticks.c.tick >= since_tick)
    return [dict(r._mapping) for r in conn.execute(q)]


class Ticker:
    """Runs an evaluator's tick at the start of every tick, in a daemon thread, viewers or not."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Ticker":
        """Start ticking (again after a fork: the thread does not survive it)."""
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="panorama-alerts", daemon=True)
            self._thread.start()
        return self

    def stop(self, wait: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)

    def _loop(self) -> None:
        step = self.evaluator.tick_seconds
        while not self._stop.wait(step - time.time() % step + 0.02):  # just after the tick turns over
            try:
                self.evaluator.tick()
            except Exception:  # noqa: BLE001 - a failed tick is retried at the next; the app keeps serving
                log.warning("alert evaluation failed", exc_info=True)


def for_live(live, settings) -> Evaluator | None:
    """Return the evaluator of an app's live data (the city's rules, ``[alerting]``, the screens'
    snapshots; writes through the store's URL), or None when alert evaluation is off
    (``PANORAMA_ALERT_TICK_SECONDS=0``) or the city's alert configuration is wrong (logged)."""
    from dashboard.alerts.observe import observe_live
    from dashboard.alerts.rules import RuleError

    tick = settings.alert_tick_seconds if settings.alert_tick_seconds >= 0 else settings.refresh_seconds
    if tick == 0:
        return None
    city = live.city
    try:
        rules = city.alert_rules if city is not None else []
        config = city.alerting if city is not None else Alerting()
    except RuleError as exc:
        log.error("alerts are not evaluated: %s", exc)
        return None
    try:
        incidents = city.incidents if city is not None else None
    except RuleError as exc:
        log.error("alerts are not grouped into incidents: %s", exc)
        incidents = None
    return Evaluator(live.writer(), rules, config, lambda now: observe_live(live, now, rules=rules), tick,
                     incidents=incidents)
