"""First load of each screen in headless Chromium: bytes on the wire (compressed) and unpacked.

    .venv/bin/python benchmarks/bench_first_load.py                  # a 1-day demo store in a temp folder
    .venv/bin/python benchmarks/bench_first_load.py --database-url sqlite:////tmp/d31/demo.sqlite

Serves with ``panorama serve`` (one waitress process), opens each page in a browser with an empty
cache, waits until its map or first KPI is drawn and the network is quiet, and adds up the
Resource Timing entries: ``encodedBodySize`` is what crossed the wire (after brotli/gzip),
``decodedBodySize`` what it unpacks to (what was sent before answers were compressed). A second
visit shows what the long cache lifetimes of the fingerprinted bundles save.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _browser import chromium, free_port  # noqa: E402

PAGES = {"manager": "/", "wall": "/wall", "embed (KPI)": "/embed/traffic.tti"}
TOTALS = ("return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
          ".reduce((s, e) => [s[0] + (e.encodedBodySize || 0), s[1] + (e.decodedBodySize || 0),"
          " s[2] + (e.transferSize || 0), s[3] + 1], [0, 0, 0, 0])")


def serve(env: dict, port: int, log: Path) -> subprocess.Popen:
    """Start ``panorama serve`` of this checkout on ``port``; return once it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "serve", "--port", str(port)],
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not start; see {log}")


def settle(driver, timeout: float = 60) -> list[int]:
    """Wait until something is drawn and no new resource arrived for 2 s; return the totals."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        drawn = driver.execute_script("return !!document.querySelector('.main-svg, .maplibregl-canvas, .kpi-value')")
        now = driver.execute_script(TOTALS)
        if now != last:
            last, since = now, time.time()
        elif drawn and time.time() - since > 2:
            return now
        time.sleep(0.25)
    return last


def main() -> None:
    """Build or open a store, serve it, and print the first-load bytes of every screen."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default="")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="panorama-firstload-"))
    url = a.database_url
    if not url:
        from dashboard.cli import init_store
        from dashboard.settings import Settings

        s = Settings(data_dir=tmp)
        init_store(s, 1, 7, progress=False)
        url = s.resolved_database_url
    port = free_port()
    proc = serve({"PANORAMA_DATABASE_URL": url, "PANORAMA_DATA_DIR": str(tmp)}, port, tmp / "server.log")
    rows = []
    try:
        for name, path in PAGES.items():
            d = chromium()
            try:
                d.get(f"http://127.0.0.1:{port}{path}")
                first = settle(d)
                d.get(f"http://127.0.0.1:{port}{path}")
                again = settle(d)
            finally:
                d.quit()
            rows.append({"page": name, "path": path, "wire_bytes": first[0], "unpacked_bytes": first[1],
                         "requests": first[3], "second_visit_transfer_bytes": again[2]})
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\n{'page':14s} {'on the wire':>12s} {'unpacked':>10s} {'ratio':>6s} {'requests':>9s} {'2nd visit':>10s}")
    for r in rows:
        print(f"{r['page']:14s} {r['wire_bytes'] / 1e6:10.2f} MB {r['unpacked_bytes'] / 1e6:8.2f} MB "
              f"{r['unpacked_bytes'] / max(r['wire_bytes'], 1):6.1f} {r['requests']:9d} "
              f"{r['second_visit_transfer_bytes'] / 1e6:8.2f} MB")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "first_load.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
