"""Manager view refresh: server time (cache miss / hit), bytes per refresh, first load, time to a drawn map.

Targets (issue 3): a full refresh of the page (every layer and KPI) ≤ 50 ms on a cache miss and
≤ 5 ms on a cache hit, on a store of ≥ 10 million readings; ≤ 20 KB sent per live refresh; time
from navigation to a drawn map in headless Chromium ≤ 3 s.

    .venv/bin/python benchmarks/bench_refresh.py --database-url sqlite:////tmp/bench10m.sqlite
    .venv/bin/python benchmarks/bench_refresh.py            # builds a 7-day demo store first (~2.3 M readings)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _browser import capture_refresh, chromium, free_port, serve  # noqa: E402


def post(url: str, body: dict) -> tuple[float, int, bytes]:
    """POST ``body`` as JSON; return (seconds, response bytes, payload)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        payload = r.read()
    return time.perf_counter() - t0, len(payload), payload


def in_process(database_url: str, runs: int) -> dict:
    """Time the manager's refresh callback work in-process: on a cache miss and on a hit."""
    from dashboard.app import create_app
    from dashboard.kpis import KPIS
    from dashboard.pages import manager
    from dashboard.settings import Settings

    app = create_app(Settings(database_url=database_url, refresh_seconds=5, background_refresh=False))
    live = app.server.extensions["panorama"]
    layers_on = ["districts", "traffic", "air_quality", "energy", "satisfaction"]
    order = [k.id for k in KPIS]

    def refresh():  # what the callback does: one cached render of every layer's values and every KPI
        return live.cached("bench", lambda: manager._render(live, "24h", None, layers_on, order))

    refresh()  # warm: static geometry, imports
    miss, hit = [], []
    for _ in range(runs):
        live.cache.clear()  # the shared cache and this process's copies: a true miss
        t0 = time.perf_counter()
        refresh()
        miss.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        refresh()
        hit.append(time.perf_counter() - t0)
    return {"miss_ms": 1000 * statistics.median(miss), "hit_ms": 1000 * statistics.median(hit)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", help="store to measure (default: build a 7-day demo store)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--nav-runs", type=int, default=5)
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    url = a.database_url
    if not url:
        sys.path.insert(0, str(ROOT / "tests"))
        from _demo import build_demo_store

        print("building a 7-day demo store …", flush=True)
        url = build_demo_store(tmp, hours=7 * 24)
    from sqlalchemy import text

    from dashboard.store.schema import make_engine

    with make_engine(url).connect() as conn:
        n_readings = conn.execute(text("SELECT count(*) FROM readings")).scalar()
    print(f"store: {url} ({n_readings:,} readings)")

    # 1. server time of a full refresh, in process
    ip = in_process(url, a.runs)

    # 2. over HTTP with a real browser: first-load bytes, refresh bytes, refresh latency, time to map
    port = free_port()
    proc = serve({"PANORAMA_DATABASE_URL": url, "PANORAMA_REFRESH_SECONDS": "5",
                  "PANORAMA_DATA_DIR": str(tmp)}, port, tmp / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        d = chromium()
        nav = []
        first_load = None
        for i in range(a.nav_runs):
            d.get("about:blank")
            t0 = time.perf_counter()
            d.get(base + "/")
            while True:
                ok = d.execute_script(
                    "const g = document.querySelector('#map .js-plotly-plot');"
                    "if (!g || !g._fullLayout || !g._fullLayout.map) return false;"
                    "const m = g._fullLayout.map._subplot.map;"
                    "return !!(m && m.loaded() && document.querySelector('.maplibregl-canvas'));")
                if ok:
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("map not drawn in 30 s")
                time.sleep(0.02)
            nav.append(time.perf_counter() - t0)
            if i == 0:
                first_load = d.execute_script(
                    "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
                    ".reduce((s, e) => s + (e.encodedBodySize || 0), 0)")
        body = capture_refresh(d, base + "/")
        d.quit()
        upd = base + "/_dash-update-component"
        post(upd, body)
        times, sizes = [], []
        for _ in range(a.runs):
            t, n, _payload = post(upd, body)
            times.append(t)
            sizes.append(n)
    finally:
        proc.terminate()
        proc.wait(10)

    rows = [
        ("full refresh, cache miss (in process)", f"{ip['miss_ms']:.1f} ms", "≤ 50 ms", ip["miss_ms"] <= 50),
        ("full refresh, cache hit (in process)", f"{ip['hit_ms']:.2f} ms", "≤ 5 ms", ip["hit_ms"] <= 5),
        ("refresh over HTTP, median (mostly hits)", f"{1000 * statistics.median(times):.1f} ms", "", None),
        ("bytes per live refresh", f"{statistics.median(sizes) / 1024:.1f} KB", "≤ 20 KB",
         statistics.median(sizes) <= 20 * 1024),
        ("first load (all resources, uncompressed)", f"{first_load / 1024:.0f} KB", "", None),
        ("navigation → drawn map, median", f"{statistics.median(nav):.2f} s", "≤ 3 s", statistics.median(nav) <= 3),
        ("navigation → drawn map, max", f"{max(nav):.2f} s", "", None),
    ]
    print(f"\n{'measure':45s} {'value':>12s}  {'target':8s}")
    for name, val, target, ok in rows:
        mark = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:45s} {val:>12s}  {target:8s} {mark}")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "refresh.json").write_text(json.dumps(
        {"readings": n_readings, **ip, "http_ms": [1000 * t for t in times], "refresh_bytes": sizes,
         "first_load_bytes": first_load, "nav_s": nav}, indent=1))


if __name__ == "__main__":
    main()
