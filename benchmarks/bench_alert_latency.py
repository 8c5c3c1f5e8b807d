"""Alert notification latency end to end: from a condition becoming true to the webhook receiver.

Target (issue 19): p95 ≤ one evaluator tick + 1 s. ``bench_notify.py`` measures the outbox's part
(commit → receiver); this runs the whole path as the app does: the evaluator's :class:`Ticker`
ticking every ``--tick`` seconds, the rule ``traffic.tti > 1.6`` per district (``for`` 0: the
alert fires at the first tick that sees the condition), the evaluator writing the alert, its event
and the outbox row in one transaction, the app's deliverer threads posting signed webhooks to a real
receiver (``tests/_receivers.py``). Each of ``--districts`` districts flips its value between 1.2 and
2.0 at random times (exponential gaps, mean ``--mean-gap`` s, never in step with the ticks); the
latency of a flip is the receiver's arrival time of its ``firing`` (or ``resolved``) notification
minus the time the feed's value changed. A flip seen at a tick is at most one tick late by design.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_alert_latency.py                  # SQLite, 5 s ticks, 3 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_alert_latency.py --engine postgresql --seconds 300

What it cannot see: the screens' snapshots (the feed is synthetic: observing the live store costs
what ``observe_live`` costs, ~0.5 s a tick on the Beijing demo, see bench_alert_rules), SMTP, a
receiver across a network.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SECRET = b"bench-alert-latency-secret-0123456789"


def make_engine(kind: str):
    from dashboard.store import make_engine as mk
    from dashboard.store.schema import create_schema

    if kind == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-latency-')}/store.sqlite"
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        base = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        db = f"bench_latency_{int(time.time())}"
        admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{db}"')
        url = make_url(base).set(database=db).render_as_string(hide_password=False)
    engine = mk(url)
    create_schema(engine)
    return engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--tick", type=float, default=5.0, help="evaluator tick, seconds (the refresh interval)")
    ap.add_argument("--districts", type=int, default=20)
    ap.add_argument("--mean-gap", type=float, default=12.0, help="mean seconds between a district's flips")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/alert_latency.json"))
    a = ap.parse_args()

    from _receivers import WebhookReceiver

    from dashboard.alerts import notify
    from dashboard.alerts.config import parse_alerting
    from dashboard.alerts.deliver import Deliverer, Options
    from dashboard.alerts.engine import KpiObs, Observations
    from dashboard.alerts.evaluator import Evaluator, Ticker
    from dashboard.alerts.outbox import Channel
    from dashboard.alerts.rules import parse_rules

    districts = tuple(f"d{i:02d}" for i in range(a.districts))
    rules = parse_rules([{"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district",
                          "summary": "Heavy congestion"}], districts=set(districts))
    engine = make_engine(a.engine)
    receiver = WebhookReceiver(SECRET).start()
    channel = Channel("bench-hook", "webhook", url=receiver.url, secret_env="BENCH_HOOK_SECRET")
    notify.configure([channel], rules)
    values = {d: 1.2 for d in districts}
    changed: dict[tuple[str, str], list[float]] = {}  # (district, event) -> times the value flipped that way
    lock = threading.Lock()

    def observe(now):
        with lock:
            snap = dict(values)
        return Observations(now=now, districts=districts,
                            kpis={("traffic.tti", d): KpiObs(v) for d, v in snap.items()})

    evaluator = Evaluator(engine, rules, parse_alerting({"auto_resolve_after": "off"}), observe, a.tick)
    ticker = Ticker(evaluator).start()
    deliverer = Deliverer(engine, [channel], Options(), environ={"BENCH_HOOK_SECRET": SECRET.decode()})
    deliverer.start()
    rng = random.Random(a.seed)
    stop = time.time() + a.seconds
    print(f"{a.engine}: tick {a.tick:g} s, {a.districts} districts flipping every ~{a.mean_gap:g} s, "
          f"for {a.seconds:g} s …", flush=True)

    def flipper(d: str) -> None:
        wake = threading.Event()
        while not wake.wait(rng.expovariate(1 / a.mean_gap)) and time.time() < stop:
            with lock:
                firing = values[d] < 1.6
                values[d] = 2.0 if firing else 1.2
                changed.setdefault((d, "firing" if firing else "resolved"), []).append(time.time())

    threads = [threading.Thread(target=flipper, args=(d,), daemon=True) for d in districts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(a.tick + 3)  # the last flips' notifications arrive (a benchmark may wait on the clock)
    ticker.stop()
    deliverer.stop()
    receiver.stop()
    notify.configure(())

    lat = {"firing": [], "resolved": []}
    for r in receiver.received:
        b = r["body"]
        ev, d = b.get("event"), b.get("district")
        if ev not in lat or (d, ev) not in changed:
            continue
        # the flip this notification answers: the latest flip that way before it arrived
        flips = [t for t in changed[(d, ev)] if t <= r["at"]]
        if flips:
            lat[ev].append(r["at"] - flips[-1])
    missed = sum(len(v) for v in changed.values()) - sum(len(v) for v in lat.values())
    target = a.tick + 1.0
    out = {"engine": a.engine, "tick_s": a.tick, "districts": a.districts, "target_s": target,
           "unsent_flips": missed}
    print(f"\n{'event':>9} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7}   target p95 ≤ {target:g} s "
          f"(tick {a.tick:g} s + 1 s)")
    for ev, xs in lat.items():
        xs.sort()
        q = (lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]) if xs else (lambda p: float("nan"))
        out[ev] = {"n": len(xs), "p50_s": q(0.5), "p95_s": q(0.95), "max_s": xs[-1] if xs else None,
                   "mean_s": statistics.fmean(xs) if xs else None}
        print(f"{ev:>9} {len(xs):>5} {q(0.5):>7.2f} {q(0.95):>7.2f} {(xs[-1] if xs else float('nan')):>7.2f}"
              f"   {'PASS' if xs and q(0.95) <= target else 'FAIL'}")
    print(f"flips whose notification never came (a flip undone before the next tick is not an alert): {missed}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
