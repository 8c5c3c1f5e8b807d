"""Export benchmark: PNG of a KPI panel and of the map on a warm kaleido renderer (p50/p95 over 20 each,
target map p50 <= 1 s), and a 7-day report's generation time and file size.

Each export bypasses the image cache (a new refresh bucket per call) so every call renders.
Run: .venv/bin/python benchmarks/bench_export.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

N = 20


def main() -> None:
    from _demo import build_demo_store

    from dashboard.export import Renderer, panel_figure, parse_request, standalone_live
    from dashboard.report import build_report
    from dashboard.settings import Settings
    from dashboard.store import make_engine

    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    t = time.perf_counter()
    url = build_demo_store(folder, hours=24 * 7)
    print(f"demo store (7 days): {time.perf_counter() - t:.1f} s")
    live = standalone_live(Settings(data_dir=folder, database_url=url))
    t = time.perf_counter()
    Renderer.start()
    Renderer.render({"data": [], "layout": {}}, "png", 200, 150)
    print(f"renderer cold start + first image: {time.perf_counter() - t:.2f} s")
    for pid, size in (("traffic.tti", (800, 450)), ("map", (1200, 800))):
        req = parse_request(live, pid, {"width": str(size[0]), "height": str(size[1])})
        Renderer.render(panel_figure(live, req), "png", *size)  # warm
        times, nbytes = [], 0
        for _ in range(N):
            t = time.perf_counter()
            png = Renderer.render(panel_figure(live, req), "png", *size)  # figure build + render, no cache
            times.append(time.perf_counter() - t)
            nbytes = len(png)
        p50, p95 = np.percentile(times, [50, 95])
        target = "  (target p50 <= 1 s: " + ("met" if p50 <= 1 else "NOT met") + ")" if pid == "map" else ""
        print(f"PNG {pid:<12} {size[0]}x{size[1]}: p50 {p50:.3f} s  p95 {p95:.3f} s  ({nbytes / 1e3:.0f} KB){target}")
    Renderer.stop()
    today = date.today()
    t = time.perf_counter()
    page = build_report(make_engine(url), today - timedelta(days=6), today)
    dt = time.perf_counter() - t
    out = folder / "week.html"
    out.write_text(page, encoding="utf-8")
    print(f"7-day report: {dt:.2f} s, {out.stat().st_size / 1e6:.2f} MB (plotly.js inlined ≈ 4.6 MB)")


if __name__ == "__main__":
    main()
