"""Full refresh on a cache miss, and SQL statements per refresh, per code version and domain count.

Issue 17's targets: a full refresh of the manager (every layer's values and every KPI) on a cache
miss ≤ 50 ms with six domains on the 10M-reading store; the four-domain figure before and after
the redesign in the same run; SQL statements per snapshot before and after (fewer, never more).

    .venv/bin/python benchmarks/bench_domains.py --database-url sqlite:////tmp/bench32/demo.sqlite \\
        --old /tmp/panorama-old          # a checkout of the code before the redesign (git worktree add …)

What a run does, per version, in a process of its own: builds the app on the store, then for each of
``--runs`` rounds empties the cache and renders the manager's refresh for a mix of what users ask
for — whole city and three districts, windows 1 h / 24 h / 7 d in turn — timing each render (a cache
miss: the snapshot reads and every domain's transforms) and counting the statements the SQLite driver
executed (``sqlite3``'s trace callback: everything, whatever path issued it). Medians are reported.
What it cannot see: PostgreSQL's plans (run with a PostgreSQL URL for those), several processes
sharing one Redis, and the browser's side of a refresh (see bench_refresh.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, statistics, sys, time
from sqlalchemy import event
from dashboard.app import create_app
from dashboard.kpis import KPIS
from dashboard.pages import manager
from dashboard.settings import Settings
from layers import LAYERS

url, runs = sys.argv[1], int(sys.argv[2])
app = create_app(Settings(database_url=url, refresh_seconds=5, background_refresh=False))
live = app.server.extensions["panorama"]
count = [0]

SKIP = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE")

def on_statement(sql):
    if not sql.lstrip().upper().startswith(SKIP):
        count[0] += 1

def traced(dbapi_conn, _rec):
    dbapi_conn.set_trace_callback(on_statement)

event.listen(live.engine, "connect", traced)
live.engine.dispose()  # every connection from now on is traced
layers_on = [layer.id for layer in LAYERS]
order = [k.id for k in KPIS]
ids = sorted(live.districts()["id"])
mix = [("24h", None), ("1h", ids[0]), ("7d", None), ("24h", ids[len(ids) // 2]), ("1h", None), ("7d", ids[-1])]
manager._render(live, "24h", None, layers_on, order)  # warm: static geometry, imports
times, stmts = [], []
for i in range(runs):
    window, district = mix[i % len(mix)]
    live.cache.clear()  # the shared cache and this process's copies: a true miss
    count[0] = 0
    t0 = time.perf_counter()
    manager._render(live, window, district, layers_on, order)
    times.append(1000 * (time.perf_counter() - t0))
    stmts.append(count[0])
print(json.dumps({"domains": len({k.domain for k in KPIS}), "kpis": len(KPIS), "layers": len(layers_on),
                  "miss_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
                  "statements": statistics.median(stmts), "statements_max": max(stmts)}))
"""


def run(code: Path, url: str, runs: int, without: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "PANORAMA_WITHOUT": without,
           "PANORAMA_DATA_DIR": str(Path("/tmp") / f"bench-domains-{os.getpid()}")}
    p = subprocess.run([sys.executable, "-c", WORKER, url, str(runs)], cwd=code, env=env, capture_output=True,
                       text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{code}: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True, help="a SQLite store with every domain's data")
    ap.add_argument("--old", type=Path, help="a checkout of the code before the redesign")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="versions are run in turn this many times (noise)")
    a = ap.parse_args()
    versions = []
    if a.old:
        versions.append(("before the redesign, 4 domains", a.old, ""))
    versions.append(("after, 4 domains", ROOT, "parking,transit"))
    versions.append(("after, 6 domains", ROOT, ""))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in versions}
    for _ in range(a.rounds):  # interleaved: the machine's noise falls on every version alike
        for name, code, without in versions:
            results[name].append(run(code, a.database_url, a.runs, without))
    print(f"store: {a.database_url}; {a.runs} refreshes × {a.rounds} rounds per version (medians of round medians)")
    print(f"{'version':<34} {'domains':>7} {'KPIs':>5} {'miss ms':>8} {'p90 ms':>7} {'SQL/refresh':>11} {'max':>5}")
    for name, rs in results.items():
        r0 = rs[0]
        print(f"{name:<34} {r0['domains']:>7} {r0['kpis']:>5} {statistics.median(r['miss_ms'] for r in rs):>8.1f} "
              f"{statistics.median(r['p90_ms'] for r in rs):>7.1f} {statistics.median(r['statements'] for r in rs):>11.0f} "
              f"{max(r['statements_max'] for r in rs):>5}")
    six = statistics.median(r["miss_ms"] for r in results["after, 6 domains"])
    print(f"target: full refresh on a miss with six domains ≤ 50 ms: {'met' if six <= 50 else 'NOT met'} ({six:.1f} ms)")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)")
