"""Viewers: many wall screens polling the live refresh against gunicorn (2 workers) + Redis + PostgreSQL.

Target (issue 6): 1,000 screens, each sending the wall's live-refresh callback every 5 s (the very
request a browser sends, captured from headless Chromium), for at least 5 minutes, at p95 ≤ 200 ms
with zero errors; database work per refresh interval independent of the number of screens. Then
more screens, step by step, until a step misses the target: the largest number held is reported.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_viewers.py                 # 1,000 for 5 min, then steps
    PYTHONPATH=. .venv/bin/python benchmarks/bench_viewers.py --minutes 1 --steps 1500,2000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_viewers.py --minutes 5 --steps "" --fire-alerts

``--fire-alerts`` (issue 19): the server runs a copy of the city whose alert rules fire at once (every
threshold crossed, no pending period), so the wall's refresh — the request captured and replayed —
carries the alert ticker and the takeover's alerts, as on a control-room wall during an incident.

``BENCH_TRACE=out.json`` writes every request of the last level held as [seconds since start, ms,
status]: where in time the slow answers fall (every bucket's start? one worker stalling?).

The load client is a small asyncio HTTP/1.1 client in one process: one keep-alive connection per
screen (as a browser keeps one), screens spread evenly over the interval, each request timed from
write to the last byte of the answer. Database work is read from PostgreSQL's own counters
(``pg_stat_database``: transactions and rows returned in the benchmark's database), per 5-s interval.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _browser import capture_refresh, chromium, free_port  # noqa: E402

INTERVAL = 5.0
TARGET_P95_MS = 200.0


# ----------------------------------------------------------------------------- the load client
def _decoded(data: bytes, encoding: str) -> bytes:
    """Return an answer's body as sent before compression (gzip or deflate, as the client accepts)."""
    import zlib

    if encoding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompress(data)
    return data


class Screen:
    """One wall screen: a keep-alive connection, a refresh every INTERVAL seconds."""

    def __init__(self, port: int, template: str, headers: str = ""):
        self.port = port
        self.template = template
        self.headers = headers  # a credential's Cookie and X-CSRFToken lines (--auth), else none
        self.n = 0
        self.reader = self.writer = None

    async def _connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self) -> tuple[int, int]:
        """Send one refresh; return (status, body bytes)."""
        if self.writer is None or self.writer.is_closing():
            await self._connect()
        self.n += 1
        body = self.template.replace('"__N__"', str(self.n)).encode()
        head = (f"POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Content-Type: application/json\r\nAccept: application/json\r\nAccept-Encoding: gzip, deflate\r\n"
                f"{self.headers}Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length, close, encoding = None, False, ""
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "connection" and v.strip().lower() == "close":
                close = True
            elif k.lower() == "content-encoding":
                encoding = v.strip().lower()
        if length is None:
            raise ConnectionError("answer without Content-Length")
        data = await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        if status == 200 and b'"response"' not in _decoded(data, encoding):
            status = 599  # a 200 that is not a callback answer
        return status, len(data)  # bytes on the wire (the app compresses answers for clients that accept it)

    async def run(self, start_at: float, stop_at: float, out: list, loop) -> None:
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        t_next = start_at
        while t_next < stop_at:
            t0 = time.perf_counter()
            try:
                status, size = await asyncio.wait_for(self.request(), timeout=10)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
                status, size = -1, 0
                if self.writer is not None:
                    self.writer.close()
                self.writer = None
            out.append((loop.time(), (time.perf_counter() - t0) * 1000, status, size))
            t_next += INTERVAL
            await asyncio.sleep(max(0.0, t_next - loop.time()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def hold(port: int, template: str, screens: int, seconds: float, warmup: float, db_counter,
               credentials: list[str] | None = None) -> dict:
    """Run ``screens`` screens for ``seconds``; return latency, errors and database work after ``warmup``.
    ``credentials``: one header block per screen (a device's or a session's cookie), else anonymous."""
    loop = asyncio.get_running_loop()
    pool = [Screen(port, template, credentials[i] if credentials else "") for i in range(screens)]
    out: list = []
    t0 = loop.time() + 0.5
    stop = t0 + seconds
    tasks = [asyncio.create_task(s.run(t0 + INTERVAL * i / screens, stop, out, loop)) for i, s in enumerate(pool)]
    await asyncio.sleep(max(0.0, t0 + warmup - loop.time()))
    db0, m0 = db_counter(), loop.time()
    await asyncio.gather(*tasks)
    db1, m1 = db_counter(), loop.time()
    for s in pool:
        s.close()
    if os.environ.get("BENCH_TRACE"):
        Path(os.environ["BENCH_TRACE"]).write_text(json.dumps([(r[0] - t0, r[1], r[2]) for r in out]))
    measured = [r for r in out if r[0] >= t0 + warmup]
    lat = sorted(r[1] for r in measured)
    errors = sum(1 for r in measured if r[2] != 200)
    intervals = (m1 - m0) / INTERVAL
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"screens": screens, "seconds": seconds, "requests": len(measured), "errors": errors,
            "rps": len(measured) / max(1e-9, stop - (t0 + warmup)),
            "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": lat[-1] if lat else None,
            "kb_per_refresh": statistics.median([r[3] for r in measured if r[2] == 200] or [0]) / 1024,
            "db_xact_per_interval": (db1[0] - db0[0]) / intervals,
            "db_rows_per_interval": (db1[1] - db0[1]) / intervals,
            "ok": errors == 0 and q(0.95) <= TARGET_P95_MS}


# ----------------------------------------------------------------------------- the stack
def pg_admin(url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(u.render_as_string(hide_password=False), autocommit=True)


def ensure_store(pg_url: str, db: str, hours: float, rebuild: bool) -> str:
    """Return the URL of database ``db`` holding Beijing with ``hours`` of history (built if missing)."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    url = make_url(pg_url).set(database=db).render_as_string(hide_password=False)
    with pg_admin(pg_url) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        if exists and rebuild:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    from dashboard.store import create_schema, is_initialised, make_engine

    create_schema(make_engine(url))  # a store built by an older release is migrated first
    if not is_initialised(make_engine(url)):
        from _demo import build_demo_store

        print(f"building Beijing with {hours:g} h of history in {db} …", flush=True)
        build_demo_store(Path(tempfile.gettempdir()), hours=hours, url=url)
    return url


def db_counter(url: str, db: str):
    def read() -> tuple[int, int]:
        with pg_admin(url) as conn:
            r = conn.execute("SELECT xact_commit + xact_rollback, tup_returned + tup_fetched FROM pg_stat_database "
                             "WHERE datname = %s", (db,)).fetchone()
        return int(r[0]), int(r[1])
    return read


def alerting_city(tmp: Path) -> Path:
    """Return a copy of Beijing whose alert rules all fire: each threshold on the far side of every value
    (``> -1``, ``< 1e9``) and no ``for`` pending period; the evaluator of the server opens them at its
    first tick, and its later ticks keep them firing."""
    import re
    import shutil

    dst = tmp / "beijing-alerts"
    shutil.copytree(ROOT / "data" / "beijing", dst)
    toml = dst / "city.toml"
    text = re.sub(r'(when = "[^"]*?(?:>=|>))\s*-?[\d.]+"', r'\1 -1"', toml.read_text())
    text = re.sub(r'(when = "[^"]*?(?:<=|<))\s*-?[\d.]+"', r'\1 1e9"', text)
    text = re.sub(r'(?m)^for = "[^"]*".*$', "", text)
    toml.write_text(text)
    return dst


def wait_for_alerts(port: int, timeout: float = 90) -> dict:
    """Wait until the server's evaluator has opened alerts; return how many fire, by severity."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/alerts?state=open&limit=500", timeout=10) as r:
            rows = [a for a in json.loads(r.read())["alerts"] if a["state"] in ("firing", "nodata", "error")]
        if rows:
            out: dict = {}
            for a in rows:
                out[a["severity"]] = out.get(a["severity"], 0) + 1
            return out
        time.sleep(1)
    raise RuntimeError("no alert fired: is the alert evaluator off (PANORAMA_ALERT_TICK_SECONDS=0)?")


def start_gunicorn(env: dict, port: int, workers: int, threads: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([str(ROOT / ".venv/bin/panorama"), "serve", "--workers", str(workers),
                             "--threads", str(threads), "--port", str(port)],
                            env={**os.environ, **env}, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gunicorn did not start; see {log}")


def first_requests_ok(port: int, body: dict) -> bool:
    """Send the refresh to freshly started workers before anything else: every answer must be right."""
    data = json.dumps(body).encode()
    ok = True
    for _ in range(8):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/_dash-update-component", data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            ok &= r.status == 200 and b'"response"' in r.read()
    return ok


def ticker_lines(port: int, body: dict) -> int:
    """Return how many alert lines the wall's refresh answer carries in its ticker."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_dash-update-component", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().count(b'"tk-item ')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--pg-db", default="panorama_viewers")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--hours", type=float, default=24, help="history in the store (built once, then reused)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the store")
    ap.add_argument("--screens", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=5.0, help="how long the target level is held")
    ap.add_argument("--steps", default="1500,2000,2500,3000", help="screen counts tried after the target level")
    ap.add_argument("--step-seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/viewers.json"))
    ap.add_argument("--auth", default="", help="compare access modes instead of stepping up: a comma list of "
                    "anonymous (PANORAMA_ANONYMOUS=viewer), device (a wall device token per screen), session "
                    "(a signed-in session per screen); each held --minutes, interleaved for --rounds rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fire-alerts", action="store_true", help="serve a copy of the city whose alert rules all fire: "
                    "the walls' refresh carries the alert ticker (issue 19)")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of sockets, here and in gunicorn
    url = ensure_store(a.pg_url, a.pg_db, a.hours, a.rebuild)
    import redis

    redis.Redis.from_url(a.redis_url).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewers-"))
    port = free_port()
    secret = secrets.token_urlsafe(32)
    # walls read without signing in (the anonymous viewer) or with their credential (--auth); every
    # anonymous screen comes from this one address, so the per-address API limit is raised
    env = {"PANORAMA_DATABASE_URL": url, "PANORAMA_CACHE_URL": a.redis_url, "PANORAMA_REFRESH_SECONDS": "5",
           "PANORAMA_DATA_DIR": str(tmp), "PANORAMA_SECRET_KEY": secret, "PANORAMA_ANONYMOUS": "viewer",
           "PANORAMA_API_RATE_LIMIT": "1000000 per minute"}
    if a.fire_alerts:
        env["PANORAMA_CITY"] = str(alerting_city(tmp))
    # capture the wall's refresh from a real browser on a throwaway single-process server
    cap_port = free_port()
    cap = start_gunicorn(env, cap_port, 2, 2, tmp / "capture.log")
    firing = None
    try:
        if a.fire_alerts:
            firing = wait_for_alerts(cap_port)
            print("alerts firing: " + ", ".join(f"{n} {s}" for s, n in sorted(firing.items())), flush=True)
        d = chromium()
        body = capture_refresh(d, f"http://127.0.0.1:{cap_port}/wall", tick="wall-tick", timeout=60)
        d.quit()
    finally:
        cap.terminate()
        cap.wait(20)
    if a.fire_alerts and "wall-ticker.children" not in body["output"]:
        raise SystemExit("the captured wall refresh does not carry the alert ticker")
    body["inputs"][0]["value"] = "__N__"
    template = json.dumps(body)
    body["inputs"][0]["value"] = 1

    if a.auth:
        compare_auth(a, url, env, port, template, body, secret, tmp)
        return
    proc = start_gunicorn(env, port, a.workers, a.threads, tmp / "gunicorn.log")
    results = []
    try:
        fresh_ok = first_requests_ok(port, body)
        if a.fire_alerts:
            print(f"ticker lines in the refresh answer: {ticker_lines(port, body)}", flush=True)
        counter = db_counter(a.pg_url, a.pg_db)
        levels = [(a.screens, a.minutes * 60)] + [(int(s), a.step_seconds) for s in a.steps.split(",") if s]
        for screens, seconds in levels:
            print(f"{screens:,} screens for {seconds:.0f} s …", flush=True)
            r = asyncio.run(hold(port, template, screens, seconds, warmup=min(15.0, seconds / 4), db_counter=counter))
            results.append(r)
            print(f"  {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms,"
                  f" errors {r['errors']}, {r['db_xact_per_interval']:.1f} db transactions / {INTERVAL:g} s", flush=True)
            if not r["ok"] and screens != a.screens:
                break
    finally:
        proc.terminate()
        proc.wait(30)

    held = max((r["screens"] for r in results if r["ok"]), default=0)
    target = results[0]
    print()
    print(f"{'screens':>8} {'minutes':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'KB':>5} {'db xact/5s':>10} {'db rows/5s':>10}  target")
    for r in results:
        print(f"{r['screens']:>8,} {r['seconds'] / 60:>7.1f} {r['rps']:>7.0f} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['errors']:>6} {r['kb_per_refresh']:>5.1f} {r['db_xact_per_interval']:>10.1f} "
              f"{r['db_rows_per_interval']:>10.0f}  {'PASS' if r['ok'] else 'FAIL'}")
    print(f"\nfresh workers answered their first requests correctly: {'yes' if fresh_ok else 'NO'}")
    print(f"largest number of screens held (p95 ≤ {TARGET_P95_MS:.0f} ms, no error): {held:,}")
    target_ok = target["ok"] and target["seconds"] >= 300 and target["screens"] >= 1000 and fresh_ok
    print(f"target (1,000 screens, 5 min, p95 ≤ 200 ms, 0 errors): {'PASS' if target_ok else 'FAIL'}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"levels": results, "held": held, "fresh_workers_ok": fresh_ok,
                                       "workers": a.workers, "threads": a.threads, "alerts_firing": firing},
                                      indent=2))
    sys.exit(0 if target_ok else 1)


def credentials(url: str, mode: str, n: int, secret: str) -> list[str] | None:
    """Return ``n`` header blocks for ``mode``: a wall device token or a signed-in session per screen."""
    from dashboard import accounts
    from dashboard.store import make_engine
    from dashboard.web_access import CSRF_HEADER, DEVICE_COOKIE, SESSION_COOKIE, csrf_token_of

    if mode == "anonymous":
        return None
    engine = make_engine(url)
    tokens = []
    if mode == "device":
        cookie = DEVICE_COOKIE
        for i in range(n):
            tokens.append(accounts.add_device(engine, f"bench wall {i}", "/wall", actor="bench")[1])
    elif mode == "session":
        cookie = SESSION_COOKIE
        user = next((u for u in accounts.list_users(engine) if u.name == "bench-viewer"), None)
        if user is None:
            user = accounts.add_user(engine, "bench-viewer", "viewer", actor="bench")[0]
        tokens = [accounts.start_session(engine, user, 2.0) for _ in range(n)]
    else:
        raise SystemExit(f"unknown --auth mode {mode!r}: anonymous, device or session")
    engine.dispose()
    return [f"Cookie: {cookie}={t}\r\n{CSRF_HEADER}: {csrf_token_of(secret, t)}\r\n" for t in tokens]


def compare_auth(a, url: str, env: dict, port: int, template: str, body: dict, secret: str, tmp: Path) -> None:
    """Hold the same screens as each access mode in turn, round after round, on one server; print the
    medians per mode and what signing in adds to a cached refresh."""
    modes = [m.strip() for m in a.auth.split(",") if m.strip()]
    creds = {m: credentials(url, m, a.screens, secret) for m in modes}
    proc = start_gunicorn(env, port, a.workers, a.threads, tmp / "gunicorn.log")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    try:
        first_requests_ok(port, body)
        counter = db_counter(a.pg_url, a.pg_db)
        for rnd in range(a.rounds):
            for m in modes:
                r = asyncio.run(hold(port, template, a.screens, a.minutes * 60, warmup=min(15.0, a.minutes * 15),
                                     db_counter=counter, credentials=creds[m]))
                runs[m].append(r)
                print(f"round {rnd + 1} {m:>9}: {a.screens:,} screens, p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms,"
                      f" errors {r['errors']}, {r['db_xact_per_interval']:.1f} db transactions / 5 s", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    med = lambda m, k: statistics.median(r[k] for r in runs[m])  # noqa: E731
    print(f"\n{'mode':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} {'db xact/5s':>10}   (medians of "
          f"{a.rounds} rounds × {a.minutes:g} min, {a.screens:,} screens)")
    for m in modes:
        print(f"{m:>9} {med(m, 'p50_ms'):>7.2f} {med(m, 'p95_ms'):>7.2f} {med(m, 'p99_ms'):>7.2f} "
              f"{sum(r['errors'] for r in runs[m]):>6} {med(m, 'db_xact_per_interval'):>10.1f}")
    if "anonymous" in runs:
        for m in modes:
            if m != "anonymous":
                print(f"{m} adds {med(m, 'p50_ms') - med('anonymous', 'p50_ms'):+.2f} ms at p50, "
                      f"{med(m, 'p95_ms') - med('anonymous', 'p95_ms'):+.2f} ms at p95 (target ≤ 1 ms)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).with_name("viewers_auth.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
