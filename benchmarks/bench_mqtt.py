"""MQTT ingest: sustained readings/s from the broker into PostgreSQL, and publish-to-screen latency.

Target (issue 6): ≥ 20,000 readings/s, validated, through ``panorama ingest mqtt`` (QoS 1, each
message acknowledged after its transaction commits) into PostgreSQL; and the end-to-end latency
from publish to visible on ``/api/kpis`` (p95), reported.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_mqtt.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_mqtt.py --readings 500000 --per-message 50

Set-up, all on this machine: a Mosquitto broker of the benchmark's own (persistence on, no
queue limit, 100 messages in flight per client: the settings the README recommends), a fresh
PostgreSQL database with the Beijing city, ``panorama ingest mqtt`` as a separate process, and a
publisher process sending our JSON readings (lists of ``--per-message`` road readings, as a
gateway batches its sensors) with QoS 1. Throughput is read from PostgreSQL's own insert counter
of ``readings``; the run checks that every reading published was stored exactly once.

Latency: with the ingest running and the dashboard served (``panorama serve``, refresh 5 s), one
substation reading is published at a time with a fresh timestamp; the time until ``/api/kpis``
shows it (energy KPIs' ``as_of``) is measured, and separately the time until it is in the store.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGET = 20_000


def publish(port: int, roads: list[str], n: int, per: int, start_ts: int, done) -> None:
    """Publish ``n`` road readings in lists of ``per`` with QoS 1; set ``done`` when all are acknowledged."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher", clean_session=True)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    acked = [0]
    c.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    sent = 0
    i = 0
    while i < n:
        batch = []
        for _ in range(min(per, n - i)):
            road = roads[i % len(roads)]
            batch.append({"asset": road, "metric": "speed_kmh", "ts": start_ts + 60 * (i // len(roads)),
                          "value": 20 + (i * 7) % 60})
            i += 1
        c.publish("city/traffic/gateway", json.dumps(batch), qos=1)
        sent += 1
        while sent - acked[0] > 2000:  # keep the client's own queue bounded
            time.sleep(0.001)
    while acked[0] < sent:
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()
    done.set()


def inserted(conn) -> int:
    return conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'readings'").fetchone()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--pg-db", default="panorama_mqtt_bench")
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--per-message", type=int, default=100, help="readings per MQTT message")
    ap.add_argument("--batch", type=int, default=500, help="most messages per ingest transaction")
    ap.add_argument("--probes", type=int, default=30, help="latency probes")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/mqtt.json"))
    a = ap.parse_args()

    import psycopg
    from _browser import free_port
    from _services import Mosquitto
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from dashboard.city import install_city, load_city
    from dashboard.store.schema import create_schema, make_engine

    base = make_url(a.pg_url)
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(a.pg_db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(a.pg_db)))
    url = base.set(database=a.pg_db).render_as_string(hide_password=False)
    dsn = base.set(drivername="postgresql", database=a.pg_db).render_as_string(hide_password=False)
    eng = make_engine(url)
    create_schema(eng)
    install_city(eng, load_city(ROOT / "data" / "beijing"))
    with eng.connect() as conn:
        from sqlalchemy import text

        roads = [r[0] for r in conn.execute(text("SELECT id FROM assets WHERE kind = 'road_segment' ORDER BY id"))]
        subs = conn.execute(text("SELECT id, district_id FROM assets WHERE kind = 'substation' ORDER BY id")).all()
    eng.dispose()

    broker = Mosquitto().start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    env = {**os.environ, "PANORAMA_DATABASE_URL": url, "PANORAMA_DATA_DIR": str(tmp), "PANORAMA_REFRESH_SECONDS": "5"}
    panorama = str(ROOT / ".venv/bin/panorama")
    ingest = subprocess.Popen([panorama, "ingest", "mqtt", "--url", f"mqtt://127.0.0.1:{broker.port}",
                               "--topic", "city/#", "--client-id", "bench-ingest", "--batch", str(a.batch)],
                              env=env, stdout=open(tmp / "ingest.log", "w"), stderr=subprocess.STDOUT)
    web_port = free_port()
    web = subprocess.Popen([panorama, "serve", "--port", str(web_port)], env=env,
                           stdout=open(tmp / "web.log", "w"), stderr=subprocess.STDOUT)
    result: dict = {"readings": a.readings, "per_message": a.per_message, "batch": a.batch}
    try:
        time.sleep(3)  # subscriber connected and subscribed
        # ---------------------------------------------------------------- throughput
        start_ts = int(time.time()) - 86_400 * 3
        done = mp.Event()
        pub = mp.Process(target=publish, args=(broker.port, roads, a.readings, a.per_message, start_ts, done))
        with psycopg.connect(dsn, autocommit=True) as conn:
            n0 = inserted(conn)
            samples = [(time.perf_counter(), 0)]
            pub.start()
            while True:
                time.sleep(1.0)
                got = inserted(conn) - n0
                samples.append((time.perf_counter(), got))
                if got >= a.readings:
                    break
                if len(samples) > 5 and samples[-1][1] == samples[-6][1] and done.is_set():
                    break  # nothing more is coming
            pub.join(30)
            stored = conn.execute("SELECT count(*), count(DISTINCT (asset_pk, ts)) FROM readings").fetchone()
            rejected = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
        first = next(t for t, g in samples if g > 0)
        t_end = next(t for t, g in samples if g >= min(a.readings, samples[-1][1]))
        overall = samples[-1][1] / max(1e-9, t_end - samples[0][0])
        per_s = [(g2 - g1) / (t2 - t1) for (t1, g1), (t2, g2) in zip(samples, samples[1:]) if t1 >= first and g2 > g1]
        steady = statistics.median(per_s) if per_s else 0.0
        result.update({"stored": stored[0], "distinct": stored[1], "rejected": rejected,
                       "rate_overall": overall, "rate_median_1s": steady, "seconds": t_end - samples[0][0]})
        print(f"throughput: {stored[0]:,} readings stored ({stored[1]:,} distinct, {rejected} rejected) of "
              f"{a.readings:,} published in {t_end - samples[0][0]:.1f} s: {overall:,.0f}/s overall, "
              f"{steady:,.0f}/s median per second", flush=True)

        # ---------------------------------------------------------------- latency
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe", clean_session=True)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        to_store, to_screen = [], []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for k in range(a.probes):
                sub_id, district = subs[k % len(subs)]
                ts = int(time.time())
                want = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
                t0 = time.perf_counter()
                c.publish("city/energy/probe", json.dumps({"asset": sub_id, "metric": "load_mw", "ts": ts,
                                                           "value": 10 + k}), qos=1).wait_for_publish(10)
                stored_at = shown_at = None
                while shown_at is None and time.perf_counter() - t0 < 30:
                    if stored_at is None and conn.execute(
                            "SELECT 1 FROM latest l JOIN assets a ON a.pk = l.asset_pk WHERE a.id = %s AND "
                            "l.metric = 'load_mw' AND l.ts = %s", (sub_id, ts)).fetchone():
                        stored_at = time.perf_counter() - t0
                    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/kpis?window=1h&district={district}",
                                                timeout=10) as r:
                        kp = json.loads(r.read())
                    if any(x["id"] == "energy.load" and x["as_of"] == want for x in kp["kpis"]):
                        shown_at = time.perf_counter() - t0
                    time.sleep(0.02)
                to_store.append(stored_at if stored_at is not None else float("nan"))
                to_screen.append(shown_at if shown_at is not None else float("nan"))
                time.sleep(1.1 + random.random() * 5)  # a later second (new as_of), anywhere in the refresh cycle
        c.loop_stop()
        q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]  # noqa: E731
        result.update({"latency_store_p50": q(to_store, 0.5), "latency_store_p95": q(to_store, 0.95),
                       "latency_api_p50": q(to_screen, 0.5), "latency_api_p95": q(to_screen, 0.95)})
    finally:
        ingest.terminate()
        web.terminate()
        ingest.wait(20)
        web.wait(20)
        broker.cleanup()

    ok_all = result["stored"] == a.readings == result["distinct"] and result["rejected"] == 0
    ok_rate = result["rate_overall"] >= TARGET
    print()
    print(f"{'figure':<52} {'value':>14}  target")
    rows = [("readings published / stored / distinct", f"{a.readings:,}/{result['stored']:,}/{result['distinct']:,}",
             "all, once", ok_all),
            ("sustained ingest rate, overall", f"{result['rate_overall']:,.0f}/s", f"≥ {TARGET:,}/s", ok_rate),
            ("ingest rate, median of 1-s windows", f"{result['rate_median_1s']:,.0f}/s", "", None),
            ("publish → stored (latest), p50 / p95",
             f"{result['latency_store_p50'] * 1000:,.0f}/{result['latency_store_p95'] * 1000:,.0f} ms", "", None),
            ("publish → visible on /api/kpis, p50 / p95",
             f"{result['latency_api_p50']:.2f}/{result['latency_api_p95']:.2f} s", "(refresh 5 s)", None)]
    for name, v, t, ok in rows:
        print(f"{name:<52} {v:>14}  {t} {'' if ok is None else 'PASS' if ok else 'FAIL'}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    sys.exit(0 if ok_all and ok_rate else 1)


if __name__ == "__main__":
    main()
