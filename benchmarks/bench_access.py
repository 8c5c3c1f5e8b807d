"""Access: what authorisation adds to a cached wall refresh, in one process, mode against mode.

Target (issue 18): authorisation adds ≤ 1 ms to a cached refresh. The wall's live-refresh request
(captured from headless Chromium) is sent through the app's own WSGI stack (Flask's test client:
every hook, Dash, the shared refresh answers) as:

- ``no-gate``: the access checks and rate limits switched off (what the app did before issue 18);
- ``anonymous``: PANORAMA_ANONYMOUS=viewer, no cookie;
- ``device``: a wall device's cookie and CSRF header (principal looked up in the store, remembered 1 s);
- ``session``: a signed-in viewer's cookie and CSRF header;
- ``scoped``: a viewer who may see one district, asking for it (a clipped answer of its own).

Modes are interleaved, ``--rounds`` rounds of ``--requests`` each; per mode the median of the rounds'
medians is reported, and the difference to ``no-gate``. The principal caches expire every second, so a
run of several seconds includes their store lookups (one per token per second), as on a live wall.
Device and session requests cycle through ``--tokens`` credentials (1,000: one per screen), so each
finds its principal no longer remembered and reads it from the store, as a wall's refresh every 5 s
does. What it cannot see: the network, gunicorn and Redis (``bench_viewers.py --auth`` measures those with
1,000 screens); PostgreSQL lookups (``--database-url`` to use one).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_access.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_access.py --rounds 7 --requests 2000
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _browser import capture_refresh, chromium, free_port, serve  # noqa: E402

MODES = ("no-gate", "anonymous", "device", "session", "scoped")
TARGET_MS = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default="", help="an existing Beijing store (default: a 6 h demo store in /tmp)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1000, help="requests per mode per round")
    ap.add_argument("--tokens", type=int, default=1000, help="devices and sessions the requests cycle through "
                    "(each screen its own: every request finds its principal no longer remembered, as on a wall)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/access.json"))
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-access-"))
    url = a.database_url
    if not url:
        from _demo import build_demo_store

        print("building a 6 h Beijing demo store …", flush=True)
        url = build_demo_store(tmp, hours=6)
    secret = secrets.token_urlsafe(32)
    env = {"PANORAMA_DATABASE_URL": url, "PANORAMA_DATA_DIR": str(tmp), "PANORAMA_SECRET_KEY": secret,
           "PANORAMA_ANONYMOUS": "viewer", "PANORAMA_API_RATE_LIMIT": "1000000 per minute",
           "PANORAMA_BACKGROUND_REFRESH": "0", "PANORAMA_REFRESH_SECONDS": "5"}
    port = free_port()
    proc = serve(env, port, tmp / "capture.log")
    try:
        d = chromium()
        body = capture_refresh(d, f"http://127.0.0.1:{port}/wall", tick="wall-tick", timeout=60)
        d.quit()
    finally:
        proc.terminate()
        proc.wait(20)
    os.environ.update(env)

    from dashboard import accounts
    from dashboard.app import create_app
    from dashboard.store import make_engine
    from dashboard.web_access import CSRF_HEADER, DEVICE_COOKIE, SESSION_COOKIE, csrf_token_of

    engine = make_engine(url)
    district = next(iter(_districts(engine)))
    device_tokens = [accounts.add_device(engine, f"bench wall {i}", "/wall", actor="bench")[1] for i in range(a.tokens)]
    user = accounts.add_user(engine, f"bench-{secrets.token_hex(3)}", "viewer", actor="bench")[0]
    scoped = accounts.add_user(engine, f"bench-{secrets.token_hex(3)}", "viewer", districts=[district], actor="bench")[0]
    session_tokens = [accounts.start_session(engine, user, 2) for _ in range(a.tokens)]
    scoped_tokens = [accounts.start_session(engine, scoped, 2) for _ in range(a.tokens)]
    scoped_body = _with_district(body, district)

    app = create_app()
    server = app.server
    gate = server.extensions["panorama_access"]
    limiter = server.extensions["panorama_limiter"]
    real_check = gate.check

    def headers(cookie: str, tokens: list[str]) -> list[dict]:
        return [{"Cookie": f"{cookie}={t}", CSRF_HEADER: csrf_token_of(secret, t)} for t in tokens]

    cases = {"no-gate": (body, [{}]), "anonymous": (body, [{}]),
             "device": (body, headers(DEVICE_COOKIE, device_tokens)),
             "session": (body, headers(SESSION_COOKIE, session_tokens)),
             "scoped": (scoped_body, headers(SESSION_COOKIE, scoped_tokens))}

    def run(mode: str, n: int) -> list[float]:
        gate.check = (lambda: None) if mode == "no-gate" else real_check
        limiter.enabled = mode != "no-gate"
        payload, hdrs = cases[mode]
        data = json.dumps(payload)
        client = server.test_client()
        times = []
        for i in range(n):
            hdr = hdrs[i % len(hdrs)]  # the next screen's credential
            client._cookies.clear()  # each request carries only its own screen's cookie
            t0 = time.perf_counter()
            r = client.post("/_dash-update-component", data=data, headers={"Content-Type": "application/json", **hdr})
            times.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200 or b'"response"' not in r.data:
                raise SystemExit(f"{mode}: answer {r.status_code} {r.data[:200]!r}")
        return times

    for m in MODES:  # warm: the first answer of each view is computed, later ones are cached
        run(m, 20)
    per_round: dict[str, list[float]] = {m: [] for m in MODES}
    p95: dict[str, list[float]] = {m: [] for m in MODES}
    for rnd in range(a.rounds):
        for m in (MODES if rnd % 2 == 0 else tuple(reversed(MODES))):
            t = sorted(run(m, a.requests))
            per_round[m].append(statistics.median(t))
            p95[m].append(t[int(0.95 * len(t))])
        print(f"round {rnd + 1}: " + ", ".join(f"{m} {per_round[m][-1]:.3f}" for m in MODES) + " ms", flush=True)
    base = statistics.median(per_round["no-gate"])
    print(f"\n{'mode':>10} {'median ms':>10} {'p95 ms':>8} {'adds ms':>8}   ({a.rounds} rounds × {a.requests} cached "
          "wall refreshes, medians of the rounds)")
    out = {}
    for m in MODES:
        med = statistics.median(per_round[m])
        out[m] = {"median_ms": med, "p95_ms": statistics.median(p95[m]), "adds_ms": med - base,
                  "rounds": per_round[m]}
        print(f"{m:>10} {med:>10.3f} {out[m]['p95_ms']:>8.3f} {med - base:>+8.3f}")
    worst = max(out[m]["adds_ms"] for m in MODES)
    print(f"\nauthorisation adds at most {worst:+.3f} ms to a cached refresh: "
          f"{'PASS' if worst <= TARGET_MS else 'FAIL'} (target ≤ {TARGET_MS:g} ms)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


def _districts(engine) -> list[str]:
    from sqlalchemy import select

    from dashboard.store.schema import districts

    with engine.connect() as conn:
        return list(conn.execute(select(districts.c.id).order_by(districts.c.id)).scalars())


def _with_district(body: dict, district: str) -> dict:
    """Return the wall refresh asking for ``district`` (the wall's settings store carries it)."""
    out = json.loads(json.dumps(body))
    for item in out.get("state", []) + out.get("inputs", []):
        if isinstance(item, dict) and isinstance(item.get("value"), dict) and "district" in item["value"]:
            item["value"]["district"] = district
    return out


if __name__ == "__main__":
    main()
