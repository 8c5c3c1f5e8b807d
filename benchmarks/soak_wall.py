"""Soak the wall: /wall open in headless Chromium against a server with live feeds.

    python benchmarks/soak_wall.py [--minutes 10] [--url http://host:port/wall] [--pid SERVER_PID]

Without ``--url`` it starts ``panorama run`` itself on a free port with a temporary data dir
(the first run builds a demo store). Every minute it samples the browser's JS heap
(CDP ``Performance.getMetrics``) and the server's RSS; it measures refresh latency from the
Chrome performance log (request sent -> response received of each ``_dash-update-component``
call). Target: no heap or RSS growth beyond noise over the soak; refresh p95 well under the
refresh interval.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _browser import free_port  # noqa: E402
from screenshot import CHROME_ARGS  # noqa: E402


def rss_mb(pid: int) -> float | None:
    """Return a process's resident memory in MB (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except Exception:  # noqa: BLE001
        return None
    return None


def start_server(port: int, data_dir: str) -> subprocess.Popen:
    """Build a store with 2 days of history first, so the soak measures a steady server (not the
    first run's background history fill), then start `panorama run` with its live simulator."""
    env = {**os.environ, "PANORAMA_DATA_DIR": data_dir}
    log = open(Path(data_dir) / "server.log", "w")
    subprocess.run([str(ROOT / ".venv" / "bin" / "panorama"), "init", "--days", "2"], env=env, stdout=log,
                   stderr=subprocess.STDOUT, cwd=ROOT, check=True)
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "panorama"), "run", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_up(url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).read(100)
            return
        except Exception:  # noqa: BLE001
            time.sleep(1)
    raise SystemExit(f"server at {url} did not come up in {timeout} s")


def browser(w: int = 1920, h: int = 1080) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--window-size={w},{h}")
    opts.add_argument("--enable-precise-memory-info")
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    d = webdriver.Chrome(options=opts)
    d.execute_cdp_cmd("Performance.enable", {})
    return d


def heap_mb(d) -> float:
    m = {x["name"]: x["value"] for x in d.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    return m.get("JSHeapUsedSize", 0) / 2**20


def collect_latencies(d, pending: dict, out: list) -> None:
    """Add the durations (ms) of finished ``_dash-update-component`` requests from the performance log."""
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        p = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent" and "_dash-update-component" in p.get("request", {}).get("url", ""):
            pending[p["requestId"]] = p["timestamp"]
        elif msg["method"] == "Network.loadingFinished" and p.get("requestId") in pending:
            out.append(1000 * (p["timestamp"] - pending.pop(p["requestId"])))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--url", help="a running wall (default: start `panorama run` on a free port)")
    ap.add_argument("--pid", type=int, help="server process id, for its RSS (with --url)")
    ap.add_argument("--size", default="1920x1080")
    a = ap.parse_args()
    proc, pid = None, a.pid
    if a.url:
        url = a.url
    else:
        port = free_port()
        data = tempfile.mkdtemp(prefix="soak-wall-")
        proc = start_server(port, data)
        pid = proc.pid
        url = f"http://127.0.0.1:{port}/wall"
        print(f"started panorama run (pid {pid}) on {url}, data in {data}", flush=True)
        wait_up(url)
    w, h = (int(x) for x in a.size.split("x"))
    d = browser(w, h)
    rows, lat, pending = [], [], {}
    try:
        d.get(url)
        time.sleep(15)  # first draw, map, first refreshes
        collect_latencies(d, pending, [])  # drop the first draw's requests
        t0 = time.time()
        end = t0 + 60 * a.minutes
        next_sample = t0
        while True:
            now = time.time()
            if now >= next_sample:
                rows.append((round((now - t0) / 60, 1), heap_mb(d), rss_mb(pid) if pid else None,
                             d.execute_script("return document.getElementById('wall-updated').textContent")))
                print("  min %5.1f  heap %7.1f MB  rss %s MB  %s" % (rows[-1][0], rows[-1][1],
                      "—" if rows[-1][2] is None else f"{rows[-1][2]:.1f}", rows[-1][3]), flush=True)
                next_sample += 60
                if now >= end:
                    break
            collect_latencies(d, pending, lat)
            time.sleep(min(5, max(0.5, next_sample - time.time())))
        collect_latencies(d, pending, lat)
        banner = d.execute_script("const b=document.getElementById('wall-banner'); return b && !b.hidden")
    finally:
        d.quit()
        if proc:
            proc.terminate()
            proc.wait(10)
    first, last = rows[0], rows[-1]
    print()
    print(f"wall soak: {a.minutes:g} min at {a.size}, {url}")
    print(f"{'metric':<28}{'start':>10}{'end':>10}{'change':>10}")
    print(f"{'browser JS heap (MB)':<28}{first[1]:>10.1f}{last[1]:>10.1f}{last[1] - first[1]:>+10.1f}")
    if first[2] is not None and last[2] is not None:
        print(f"{'server RSS (MB)':<28}{first[2]:>10.1f}{last[2]:>10.1f}{last[2] - first[2]:>+10.1f}")
    heaps = [r[1] for r in rows]
    print(f"{'heap min / max (MB)':<28}{min(heaps):>10.1f}{max(heaps):>10.1f}")
    print(f"refresh latency (_dash-update-component, n={len(lat)}): p50 {pct(lat, 50):.0f} ms, "
          f"p95 {pct(lat, 95):.0f} ms, max {max(lat) if lat else float('nan'):.0f} ms"
          + (f", mean {statistics.mean(lat):.0f} ms" if lat else ""))
    print(f"stale banner shown at the end: {bool(banner)}")


if __name__ == "__main__":
    main()
