"""Store benchmark: validated ingest rate and screen-read latency on a 10M-reading city.

Builds a synthetic city (the 16 Beijing districts and their real assets, plus synthetic road
segments, substations and air-quality stations up to ``--assets``) in a fresh store, ingests
``--readings`` time-ordered readings through :meth:`Ingestor.ingest` (the validated path that
keeps ``latest`` and the rollups current), measures the raw driver's bulk insert of the same
rows into an identically indexed table in the same run, then times the reads a screen does.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_store.py                  # both engines, 10M
    PYTHONPATH=. .venv/bin/python benchmarks/bench_store.py --engine sqlite --quick

Results: a table of figures vs targets on stdout, JSON in benchmarks/out/store-<engine>.json.
See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard import kpis  # noqa: E402
from dashboard.city import install_city, load_city  # noqa: E402
from dashboard.metrics import METRICS  # noqa: E402
from dashboard.store import readmodel  # noqa: E402
from dashboard.store.ingest import Ingestor  # noqa: E402
from dashboard.store.schema import assets, create_schema, make_engine  # noqa: E402

#: Targets from the issue: (key, label, target, unit, higher is better).
TARGETS = {
    "sqlite": {"ingest_rate": 50_000},
    "postgresql": {"ingest_rate": 100_000},
}
READ_TARGETS_MS = {"latest_layer": 5.0, "trend_24h": 5.0, "kpis_domain": 20.0}

T_END = 1_735_689_600 + 40 * 3600  # fixed clock (2025-01-02 16:00 UTC): reproducible data and KPIs
TICK = 60
DOMAINS = ["traffic", "air_quality", "energy", "satisfaction"]
POLL = ["pm25", "pm10", "so2", "no2", "co", "o3"]
POLL_BASE = {"pm25": 60, "pm10": 90, "so2": 8, "no2": 40, "co": 900, "o3": 70}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def med(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# --------------------------------------------------------------------------- city
def build_city(engine, n_assets: int, seed: int = 1) -> pd.DataFrame:
    """Install Beijing and add synthetic assets up to ``n_assets``; return the assets (pk, id, kind, ...)."""
    create_schema(engine)
    counts = install_city(engine, load_city(ROOT / "data" / "beijing"))
    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        dist = pd.DataFrame(conn.execute(text("SELECT id, label_lon, label_lat FROM districts ORDER BY id")).all(),
                            columns=["id", "lon", "lat"])
        have = pd.DataFrame(conn.execute(text("SELECT kind, count(*) FROM assets GROUP BY kind")).all(),
                            columns=["kind", "n"]).set_index("kind")["n"]
    extra = max(0, n_assets - int(have.sum()))
    # the mix of a city: mostly road segments, a tenth substations, a twentieth air stations
    want = {"aq_station": round(0.05 * n_assets), "substation": round(0.10 * n_assets)}
    add = {k: max(0, v - int(have.get(k, 0))) for k, v in want.items()}
    add["road_segment"] = max(0, extra - sum(add.values()))
    rows = []
    for kind, n in add.items():
        for i in range(n):
            d = dist.iloc[int(rng.integers(len(dist)))]
            lon, lat = float(d.lon + rng.normal(0, 0.03)), float(d.lat + rng.normal(0, 0.03))
            if kind == "road_segment":
                geom = {"type": "LineString", "coordinates": [[lon, lat], [lon + 0.004, lat + 0.002]]}
                attrs = {"free_flow_kmh": float(rng.choice([40, 50, 60, 70, 80, 100])), "lanes": int(rng.integers(1, 5)),
                         "length_m": 400, "direction": "both", "from_node": "", "to_node": ""}
                rid = f"bench-road-{i:05d}"
            elif kind == "substation":
                geom = {"type": "Point", "coordinates": [lon, lat]}
                cap = float(rng.choice([120, 240, 360, 480]))
                attrs = {"capacity_mw": cap, "renewable_capacity_mw": round(cap * rng.uniform(0.02, 0.15), 1)}
                rid = f"bench-ss-{i:05d}"
            else:
                geom = {"type": "Point", "coordinates": [lon, lat]}
                attrs = {"category": "synthetic"}
                rid = f"bench-aq-{i:05d}"
            rows.append(dict(id=rid, kind=kind, district_id=d.id, name=rid, lon=lon, lat=lat,
                             geometry=json.dumps(geom), attributes=attrs))
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(assets), rows)
    with engine.connect() as conn:
        a = conn.execute(text("SELECT pk, id, kind, district_id, attributes FROM assets ORDER BY pk")).all()
    out = pd.DataFrame([(r[0], r[1], r[2], r[3], r[4] if isinstance(r[4], dict) else json.loads(r[4] or "{}"))
                        for r in a], columns=["pk", "id", "kind", "district_id", "attributes"])
    log(f"  city: {len(dist)} districts, {counts['assets']} Beijing assets + {len(rows)} synthetic = {len(out)} "
        f"({out.kind.value_counts().to_dict()})")
    return out


# --------------------------------------------------------------------------- readings
class ReadingStream:
    """Time-ordered synthetic readings: every asset reports every metric of its kind each tick."""

    def __init__(self, assets_df: pd.DataFrame, n_readings: int, invalid_share: float = 0.001, seed: int = 2):
        self.rng = np.random.default_rng(seed)
        ids, pks, mets, base, lo, hi, kind_code = [], [], [], [], [], [], []
        for r in assets_df.itertuples():
            at = r.attributes or {}
            if r.kind == "road_segment":
                ff = float(at.get("free_flow_kmh", 60))
                lanes = float(at.get("lanes", 2) or 2)
                spec = [("speed_kmh", ff, 0), ("flow_vph", 900.0 * lanes, 1)]
            elif r.kind == "substation":
                cap = float(at.get("capacity_mw", 300))
                spec = [("load_mw", 0.55 * cap, 2), ("renewable_mw", float(at.get("renewable_capacity_mw", 10)), 3)]
            else:
                spec = [(p, POLL_BASE[p] * self.rng.uniform(0.7, 1.3), 4) for p in POLL]
            for m, b, k in spec:
                ids.append(r.id)
                pks.append(r.pk)
                mets.append(m)
                base.append(b)
                kind_code.append(k)
                lo.append(METRICS[m].lo)
                hi.append(METRICS[m].hi)
        self.asset = np.array(ids, dtype=object)
        self.pk = np.array(pks, dtype=np.int64)
        self.metric = np.array(mets, dtype=object)
        self.base = np.array(base)
        self.code = np.array(kind_code)
        self.lo, self.hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
        self.per_tick = len(ids)
        self.n = int(n_readings)
        self.ticks = -(-self.n // self.per_tick)
        self.t0 = T_END - (self.ticks - 1) * TICK
        self.invalid_share = invalid_share

    def rows(self, start: int, stop: int):
        """Return rows [start, stop) as arrays (asset, pk, metric, ts, value) and the invalid mask."""
        i = np.arange(start, stop)
        tick, pos = np.divmod(i, self.per_tick)
        ts = self.t0 + tick * TICK
        hour = (ts % 86_400) / 3600.0 + 8.0  # Beijing local hour
        rush = np.exp(-((hour % 24 - 8.5) ** 2) / 2.0) + np.exp(-((hour % 24 - 18.0) ** 2) / 2.5)
        day = 0.5 + 0.5 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi)
        sun = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0, None)
        code, b = self.code[pos], self.base[pos]
        noise = self.rng.normal(1.0, 0.06, len(i))
        factor = np.select(
            [code == 0, code == 1, code == 2, code == 3],
            [1.0 - 0.55 * rush, 0.3 + 0.5 * day + 0.5 * rush, 0.6 + 0.5 * day, sun],
            1.0 + 0.4 * np.sin((ts / 86_400.0 + pos * 0.01) * 2 * np.pi))
        value = np.clip(np.round(b * factor * noise, 2), self.lo[pos], self.hi[pos])
        asset = self.asset[pos].copy()
        metric = self.metric[pos].copy()
        bad = self.rng.random(len(i)) < self.invalid_share
        nb = int(bad.sum())
        if nb:
            kind = self.rng.integers(0, 4, nb)
            idx = np.flatnonzero(bad)
            value[idx[kind == 0]] = -5.0  # below the physical range
            value[idx[kind == 1]] = np.nan  # not a number
            asset[idx[kind == 2]] = "ghost-asset"  # unknown asset
            # a metric of another asset kind (never valid for this asset, whatever else is in the batch)
            metric[idx[kind == 3]] = np.where(self.code[pos[idx[kind == 3]]] == 4, "speed_kmh", "pm25")
        return asset, self.pk[pos], metric, ts.astype(np.int64), value, bad

    def frame(self, start: int, stop: int) -> tuple[pd.DataFrame, int]:
        asset, _pk, metric, ts, value, bad = self.rows(start, stop)
        return pd.DataFrame({"asset": asset, "metric": metric, "ts": ts, "value": value}), int(bad.sum())

    def tuples(self, start: int, stop: int) -> list[tuple]:
        """Valid rows only, as (asset_pk, metric, ts, value) tuples: what a raw driver insert gets."""
        _a, pk, metric, ts, value, bad = self.rows(start, stop)
        ok = ~bad
        return list(zip(pk[ok].tolist(), metric[ok].tolist(), ts[ok].tolist(), value[ok].tolist()))


# --------------------------------------------------------------------------- raw driver baseline
def raw_sqlite(path: str, stream: ReadingStream, n: int, batch: int) -> dict:
    con = sqlite3.connect(path, timeout=30)
    for p in ("journal_mode=WAL", "synchronous=NORMAL", "temp_store=MEMORY", "cache_size=-65536"):
        con.execute(f"PRAGMA {p}")
    con.execute("DROP TABLE IF EXISTS readings_raw")
    con.execute("CREATE TABLE readings_raw (asset_pk INTEGER NOT NULL, metric VARCHAR(32) NOT NULL, "
                "ts BIGINT NOT NULL, value FLOAT NOT NULL, PRIMARY KEY (asset_pk, metric, ts)) WITHOUT ROWID")
    con.commit()
    chunks = [stream.tuples(s, min(n, s + batch)) for s in range(0, n, batch)]
    rows = sum(len(c) for c in chunks)
    t = time.perf_counter()
    with con:
        for c in chunks:
            con.executemany("INSERT INTO readings_raw VALUES (?, ?, ?, ?)", c)
    dt = time.perf_counter() - t
    con.execute("DROP TABLE readings_raw")
    con.commit()
    con.close()
    return {"rows": rows, "seconds": dt, "rate": rows / dt, "method": "sqlite3 executemany of tuples, one transaction"}


def raw_postgresql(url: str, stream: ReadingStream, n: int, batch: int) -> dict:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS readings_raw")
        con.execute("CREATE TABLE readings_raw (asset_pk INTEGER NOT NULL, metric VARCHAR(32) NOT NULL, "
                    "ts BIGINT NOT NULL, value FLOAT NOT NULL, PRIMARY KEY (asset_pk, metric, ts))")
    chunks = [stream.tuples(s, min(n, s + batch)) for s in range(0, n, batch)]
    rows = sum(len(c) for c in chunks)
    with psycopg.connect(dsn) as con:
        t = time.perf_counter()
        with con.cursor() as cur:
            for c in chunks:
                with cur.copy("COPY readings_raw (asset_pk, metric, ts, value) FROM STDIN") as cp:
                    for r in c:
                        cp.write_row(r)
        con.commit()
        dt = time.perf_counter() - t
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP TABLE readings_raw")
    return {"rows": rows, "seconds": dt, "rate": rows / dt, "method": "psycopg COPY (write_row), one transaction"}


class RawInserter:
    """The raw driver's insert of one batch into ``readings_raw``, one transaction per batch.

    Used interleaved with the validated ingest (same rows, right after each other), so both see
    the same machine load and the same table size: their ratio is the fair comparison on a shared box.
    """

    def __init__(self, kind: str, target: str):
        self.kind = kind
        if kind == "sqlite":
            self.con = sqlite3.connect(target, timeout=30)
            for p in ("journal_mode=WAL", "synchronous=NORMAL", "temp_store=MEMORY", "cache_size=-65536"):
                self.con.execute(f"PRAGMA {p}")
            self.con.execute("DROP TABLE IF EXISTS readings_raw")
            self.con.execute("CREATE TABLE readings_raw (asset_pk INTEGER NOT NULL, metric VARCHAR(32) NOT NULL, "
                             "ts BIGINT NOT NULL, value FLOAT NOT NULL, PRIMARY KEY (asset_pk, metric, ts)) WITHOUT ROWID")
            self.con.commit()
        else:
            import psycopg

            self.con = psycopg.connect(target.replace("postgresql+psycopg://", "postgresql://"))
            self.con.execute("DROP TABLE IF EXISTS readings_raw")
            self.con.execute("CREATE TABLE readings_raw (asset_pk INTEGER NOT NULL, metric VARCHAR(32) NOT NULL, "
                             "ts BIGINT NOT NULL, value FLOAT NOT NULL, PRIMARY KEY (asset_pk, metric, ts))")
            self.con.commit()
        self.rows, self.seconds = 0, 0.0

    def insert(self, rows: list[tuple]) -> float:
        t = time.perf_counter()
        if self.kind == "sqlite":
            with self.con:
                self.con.executemany("INSERT INTO readings_raw VALUES (?, ?, ?, ?)", rows)
        else:
            with self.con.cursor() as cur:
                with cur.copy("COPY readings_raw (asset_pk, metric, ts, value) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            self.con.commit()
        dt = time.perf_counter() - t
        self.rows += len(rows)
        self.seconds += dt
        return dt

    def close(self) -> None:
        self.con.execute("DROP TABLE IF EXISTS readings_raw")
        self.con.commit()
        self.con.close()


# --------------------------------------------------------------------------- service requests
def add_service_requests(engine, assets_df: pd.DataFrame, days: int = 30, per_day: int = 2000, seed: int = 3) -> int:
    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        cats = pd.DataFrame(conn.execute(text("SELECT id, sla_hours FROM service_categories")).all(), columns=["id", "sla"])
        dists = [r[0] for r in conn.execute(text("SELECT id FROM districts")).all()]
    n = days * per_day
    now = T_END + 30
    # requests arrive (and are stored) in the order they are opened
    opened = np.sort((now - rng.uniform(0, days * 86_400, n)).astype(np.int64))
    ci = rng.integers(0, len(cats), n)
    sla = cats.sla.to_numpy()[ci] * 3600
    dur = rng.lognormal(np.log(sla * 0.7), 0.8)
    closed = opened + dur.astype(np.int64)
    is_closed = closed < now
    sat = np.clip(np.round(rng.normal(4.0, 0.9, n) - (dur > sla) * 0.8), 1, 5).astype(int)
    rated = is_closed & (rng.random(n) < 0.7)
    frame = pd.DataFrame({
        "id": [f"bench-sr-{i:07d}" for i in range(n)],
        "category": cats.id.to_numpy()[ci],
        "district": np.array(dists, dtype=object)[rng.integers(0, len(dists), n)],
        "opened_at": opened,
        "closed_at": pd.Series(np.where(is_closed, closed, 0), dtype="Int64").where(is_closed, pd.NA),
        "status": np.where(is_closed, "closed", "open"),
        "satisfaction": pd.Series(sat, dtype="Int64").where(rated, pd.NA),
    })
    try:
        from dashboard.store.services import ingest_service_requests
    except ImportError:  # no validated path yet: write the table directly
        from dashboard.store.schema import service_requests
        recs = [{"id": r.id, "category_id": r.category, "district_id": r.district, "opened_at": int(r.opened_at),
                 "due_at": int(r.opened_at + s), "closed_at": None if pd.isna(r.closed_at) else int(r.closed_at),
                 "status": r.status, "satisfaction": None if pd.isna(r.satisfaction) else int(r.satisfaction)}
                for r, s in zip(frame.itertuples(), sla)]
        with engine.begin() as conn:
            conn.execute(insert(service_requests), recs)
        return n
    total = 0
    for s in range(0, n, 20_000):
        res = ingest_service_requests(engine, frame.iloc[s:s + 20_000], source="bench", now=now)
        total += res.accepted
    return total


# --------------------------------------------------------------------------- reads
def time_ms(fn, runs: int) -> dict:
    fn()  # warm
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    return {"median_ms": med(xs), "min_ms": min(xs), "max_ms": max(xs), "runs": runs}


def measure_reads(engine, reps: int, raw_reps: int) -> tuple[dict, dict]:
    now = T_END + 30
    out, values = {}, {}
    with engine.connect() as conn:
        out["latest_layer"] = time_ms(lambda: readmodel.latest_wide(conn, "road_segment", ["speed_kmh"]), reps)
        out["trend_24h"] = time_ms(
            lambda: readmodel.district_series(conn, "speed_kmh", now - 86_400, now, 300), reps)
        for d in DOMAINS:
            out[f"kpis_{d}"] = time_ms(lambda d=d: kpis.compute_all(conn, now, "24h", None, domain=d), reps)
            values[d] = {k.id: k.as_json() for k in kpis.compute_all(conn, now, "24h", None, domain=d)}
        lw = readmodel.latest_wide(conn, "road_segment", ["speed_kmh"])
        ser = readmodel.district_series(conn, "speed_kmh", now - 86_400, now, 300)
        values["latest_layer"] = {"rows": len(lw), "mean_speed": round(float(lw["speed_kmh"].mean()), 4)}
        values["trend_24h"] = {"buckets": len(ser), "mean": round(float(ser["mean"].mean()), 4)}
        q = text("SELECT ts / 300 * 300 AS b, avg(value), count(*) FROM readings "
                 "WHERE metric = 'speed_kmh' AND ts >= :a AND ts < :b GROUP BY ts / 300 * 300 ORDER BY 1")
        xs, nb = [], 0
        for _ in range(raw_reps):
            t = time.perf_counter()
            nb = len(conn.execute(q, {"a": now - 86_400, "b": now}).all())
            xs.append((time.perf_counter() - t) * 1000)
        out["raw_trend_24h"] = {"median_ms": med(xs), "min_ms": min(xs), "max_ms": max(xs), "runs": raw_reps,
                                "buckets": nb}
    return out, values


# --------------------------------------------------------------------------- one engine
def run_engine(kind: str, args) -> dict:
    log(f"== {kind}")
    workdir = None
    if kind == "sqlite":
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="panorama_bench_"))
        workdir.mkdir(parents=True, exist_ok=True)
        dbfile = workdir / "store.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(dbfile) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{dbfile}"
    else:
        import psycopg

        admin = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {args.pg_db}")
            con.execute(f"CREATE DATABASE {args.pg_db}")
        url = args.pg_url.rsplit("/", 1)[0] + "/" + args.pg_db
    engine = make_engine(url)
    result: dict = {"engine": kind, "readings": args.readings, "assets": args.assets, "batch": args.batch,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()}}
    try:
        adf = build_city(engine, args.assets)
        stream = ReadingStream(adf, args.readings)
        result["per_tick"] = stream.per_tick
        result["ticks"] = stream.ticks
        log(f"  {stream.per_tick} readings per tick, {stream.ticks} ticks of {TICK} s "
            f"({stream.ticks * TICK / 3600:.1f} h)")

        # raw driver baseline, before the store grows (same rows, identically indexed table)
        n_raw = min(args.raw_readings, args.readings)
        raws = []
        for k in range(args.raw_runs):
            r = raw_sqlite(str(dbfile), stream, n_raw, args.batch) if kind == "sqlite" \
                else raw_postgresql(url, stream, n_raw, args.batch)
            raws.append(r)
            log(f"  raw driver insert {k + 1}/{args.raw_runs}: {r['rows']:,} rows in {r['seconds']:.2f} s = "
                f"{r['rate']:,.0f}/s")
        raw = dict(raws[-1], rate=med([r["rate"] for r in raws]), rates=[r["rate"] for r in raws])
        result["raw_insert"] = raw

        # validated ingest
        ing = Ingestor(engine)
        now = T_END + TICK
        rates, secs, counts = [], 0.0, {"accepted": 0, "duplicates": 0, "rejected": 0, "invalid_generated": 0}
        first_rates, paired = [], []
        rawi = RawInserter(kind, str(dbfile) if kind == "sqlite" else url)
        t_report = time.time()
        seg = args.batch * args.segment
        for s0 in range(0, args.readings, seg):
            # one segment of batches through Ingestor.ingest_many: the next batch is validated while
            # this one is written, as `panorama ingest FILE.csv` does; the rows are made beforehand
            bounds = [(s, min(args.readings, s + args.batch)) for s in range(s0, min(args.readings, s0 + seg), args.batch)]
            frames = []
            for s, e in bounds:
                frame, nbad = stream.frame(s, e)
                counts["invalid_generated"] += nbad
                frames.append(frame)
            gc.collect()
            done: list[float] = []
            t = time.perf_counter()
            res = ing.ingest_many(frames, source="bench", now=now, each=lambda _r: done.append(time.perf_counter()))
            dt = time.perf_counter() - t
            secs += dt
            for (s, e), t1, t0 in zip(bounds, done, [t] + done[:-1]):
                rates.append((e - s) / (t1 - t0))
            e = bounds[-1][1]
            if s0 < n_raw:  # the segments of the first --raw-readings rows: paired with the raw insert
                first_rates.append((e - s0) / dt)
                raw_rows, rdt = 0, 0.0
                for s, e_ in bounds:  # the same (valid) rows, one transaction per batch
                    rows = stream.tuples(s, e_)
                    raw_rows += len(rows)
                    rdt += rawi.insert(rows)
                paired.append(((e - s0) / dt) / (raw_rows / rdt))
            counts["accepted"] += res.accepted
            counts["duplicates"] += res.duplicates
            counts["rejected"] += res.rejected
            if time.time() - t_report > 15:
                t_report = time.time()
                log(f"  ingest {e:,}/{args.readings:,}: segment {(e - s0) / dt:,.0f}/s, overall {e / secs:,.0f}/s")
        rawi.close()
        result["raw_interleaved"] = {"rows": rawi.rows, "seconds": rawi.seconds, "rate": rawi.rows / rawi.seconds,
                                     "median_batch_ratio": med(paired),
                                     "method": "same rows right after each ingest segment, "
                                               "one transaction per batch"}
        result["ingest"] = {
            "rows": args.readings, "seconds": secs, "overall_rate": args.readings / secs,
            "median_batch_rate": med(rates), "p10_batch_rate": float(np.percentile(rates, 10)),
            "first_rows_median_batch_rate": med(first_rates), "first_rows": n_raw,
            "batches": len(rates), **counts,
        }
        counts_ok = counts["rejected"] == counts["invalid_generated"] and \
            counts["accepted"] + counts["rejected"] == args.readings
        result["ingest"]["counts_ok"] = counts_ok
        if not counts_ok:
            log(f"  WARNING: ingest counts do not add up: {counts}")
        ir = result["ingest"]
        log(f"  ingest: {ir['overall_rate']:,.0f}/s overall, median batch {ir['median_batch_rate']:,.0f}/s, "
            f"{counts}")

        # store state
        with engine.connect() as conn:
            result["tables"] = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar())
                                for t in ("readings", "latest", "rollup_asset", "rollup_district", "rejected")}
        log(f"  tables: {result['tables']}")

        n_sr = add_service_requests(engine, adf)
        result["service_requests"] = n_sr
        if kind == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        reads, values = measure_reads(engine, args.read_runs, args.raw_query_runs)
        result["reads"] = reads
        result["values"] = values
        for k, v in reads.items():
            log(f"  {k}: median {v['median_ms']:.2f} ms")
    finally:
        engine.dispose()
        if kind == "postgresql" and not args.keep:
            import psycopg

            with psycopg.connect(args.pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as con:
                con.execute(f"DROP DATABASE IF EXISTS {args.pg_db} WITH (FORCE)")
        if kind == "sqlite" and workdir is not None and not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def table(res: dict) -> list[tuple]:
    """Return rows (figure, measured, target, verdict)."""
    kind = res["engine"]
    ir, raw = res["ingest"], res["raw_insert"]
    tgt = TARGETS[kind]["ingest_rate"]
    rows = [
        ("ingest, median batch (readings/s)", f"{ir['median_batch_rate']:,.0f}", f">= {tgt:,}",
         "PASS" if ir["median_batch_rate"] >= tgt else "FAIL"),
        ("ingest, overall incl. slow batches (readings/s)", f"{ir['overall_rate']:,.0f}", f">= {tgt:,}",
         "PASS" if ir["overall_rate"] >= tgt else "FAIL"),
        (f"raw driver insert, {raw['rows']:,} rows, 1 txn, before (rows/s)", f"{raw['rate']:,.0f}", "(reference)", ""),
        ("ratio ingest median / raw", f"{ir['median_batch_rate'] / raw['rate']:.2f}", "", ""),
        (f"ingest, first {ir['first_rows']:,} rows, median segment (readings/s)",
         f"{ir['first_rows_median_batch_rate']:,.0f}", "", ""),
        ("raw insert interleaved, same rows, batch per txn (rows/s)", f"{res['raw_interleaved']['rate']:,.0f}",
         "(reference)", ""),
        ("ratio ingest / raw, interleaved, median of segment pairs",
         f"{res['raw_interleaved']['median_batch_ratio']:.2f}", "", ""),
    ]
    r = res["reads"]
    rows.append(("latest values, one layer (ms)", f"{r['latest_layer']['median_ms']:.2f}",
                 f"<= {READ_TARGETS_MS['latest_layer']:g}",
                 "PASS" if r["latest_layer"]["median_ms"] <= READ_TARGETS_MS["latest_layer"] else "FAIL"))
    rows.append(("24 h trend, 5-min buckets, city (ms)", f"{r['trend_24h']['median_ms']:.2f}",
                 f"<= {READ_TARGETS_MS['trend_24h']:g}",
                 "PASS" if r["trend_24h"]["median_ms"] <= READ_TARGETS_MS["trend_24h"] else "FAIL"))
    for d in DOMAINS:
        v = r[f"kpis_{d}"]["median_ms"]
        rows.append((f"every KPI of {d}, 24 h (ms)", f"{v:.2f}", f"<= {READ_TARGETS_MS['kpis_domain']:g}",
                     "PASS" if v <= READ_TARGETS_MS["kpis_domain"] else "FAIL"))
    rows.append(("raw 24 h bucket query over readings (ms)", f"{r['raw_trend_24h']['median_ms']:.0f}",
                 "(contrast)", ""))
    return rows


def print_table(res: dict) -> None:
    rows = table(res)
    w = max(len(r[0]) for r in rows)
    print(f"\n{res['engine']}: {res['readings']:,} readings, {res['assets']:,} assets, batches of {res['batch']:,}; "
          f"tables {res['tables']}")
    print(f"{'figure':<{w}}  {'measured':>12}  {'target':>12}  verdict")
    for name, val, tgt, verdict in rows:
        print(f"{name:<{w}}  {val:>12}  {tgt:>12}  {verdict}")
    sys.stdout.flush()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--readings", type=int, default=10_000_000)
    p.add_argument("--assets", type=int, default=2000)
    p.add_argument("--batch", type=int, default=200_000,
                   help="readings per ingest call (default: the chunk `panorama ingest FILE.csv` reads)")
    p.add_argument("--segment", type=int, default=5, help="batches per timed ingest_many call")
    p.add_argument("--runs", type=int, default=3, help="runs of the raw-driver baseline (median taken)")
    p.add_argument("--read-runs", type=int, default=30, help="timed repetitions of each read (median taken)")
    p.add_argument("--raw-query-runs", type=int, default=2, help="repetitions of the raw 24 h query over readings")
    p.add_argument("--raw-readings", type=int, default=2_000_000, help="rows for the raw driver baseline")
    p.add_argument("--pg-url", default=os.environ.get("PANORAMA_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1/postgres"),
                   help="a PostgreSQL URL whose server we may create the benchmark database on")
    p.add_argument("--pg-db", default="panorama_bench", help="throwaway database created and dropped")
    p.add_argument("--workdir", help="directory for the SQLite store (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    p.add_argument("--quick", action="store_true", help="1M-row smoke run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = p.parse_args(argv)
    if args.quick:
        args.readings = min(args.readings, 1_000_000)
        args.raw_readings = min(args.raw_readings, 500_000)
        args.read_runs = min(args.read_runs, 20)
    args.raw_runs = args.runs
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    failed = False
    for kind in engines:
        res = run_engine(kind, args)
        res["quick"] = bool(args.quick)
        res["table"] = [dict(zip(("figure", "measured", "target", "verdict"), r)) for r in table(res)]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"store-{kind}.json").write_text(json.dumps(res, indent=2, default=str))
        print_table(res)
        failed |= any(r[3] == "FAIL" for r in table(res))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
