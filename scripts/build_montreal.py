"""Build the Montreal example city (data/montreal/) from public data plus documented synthetic files.

Real: the 58 electoral districts of Montreal (2013 municipal election) that plotly ships,
``plotly.data.election_geojson()`` (plotly.py, MIT licence). Everything else is SYNTHETIC, generated
here with a fixed seed so the worked example in the README has something to import: air-quality
stations, road segments, substations, readings for the last ``--hours`` hours, and service requests.
The files use the awkward formats real exports come in (local times without offset, CO in mg/m³,
a semicolon-separated wide file with decimal commas and a BOM) so the example exercises the options.

Usage: python scripts/build_montreal.py [--out data/montreal] [--hours 24] [--seed 7]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import plotly.data
from shapely.geometry import LineString, mapping, shape

TZ = ZoneInfo("America/Montreal")
CITY_TOML = """# Montreal example city: built by scripts/build_montreal.py (districts real, the rest synthetic)
name = "Montréal"
timezone = "America/Montreal"
aqi_standard = "us"
center_lon = -73.65
center_lat = 45.55

[files]
districts = "districts.geojson"
stations = "stations.csv"
roads = "roads.geojson"
substations = "substations.csv"
service_categories = "service_categories.csv"
readings = ["air_quality.csv", "traffic_speed_wide.csv", "energy.csv"]
service_requests = "service_requests.csv"

[thresholds]  # per KPI id: warn and bad levels (direction as in the KPI registry)
"air.aqi_worst" = { warn = 51, bad = 101 }
"traffic.tti" = { warn = 1.3, bad = 1.8 }
"energy.renewable_share" = { warn = 30, bad = 15 }

[kpis]  # the KPIs this city's screens show (default: every KPI in the registry)
show = ["traffic.tti", "traffic.mean_speed", "traffic.congested", "traffic.incidents",
        "air.aqi_worst", "air.aqi_weighted", "air.dominant", "air.over_limit", "air.pm25_24h",
        "energy.load", "energy.capacity_share", "energy.renewable_share",
        "service.satisfaction", "service.pct_satisfied", "service.open", "service.overdue", "service.median_close"]
"""


def _unambiguous(t: datetime) -> datetime:
    """Return ``t``, moved out of the hour that repeats when daylight saving ends: written as local
    time without an offset it could be either, and the importer rightly rejects such a row."""
    local = t.astimezone(TZ).replace(tzinfo=None)
    while TZ.utcoffset(local.replace(fold=0)) != TZ.utcoffset(local.replace(fold=1)):
        t += timedelta(hours=1)
        local = t.astimezone(TZ).replace(tzinfo=None)
    return t


def build(out: Path, hours: int = 24, seed: int = 7, now: datetime | None = None) -> dict[str, int]:
    """Write the Montreal city folder to ``out``; return file -> row count."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    gj = plotly.data.election_geojson()
    feats = []
    for f in gj["features"]:
        did = str(f["id"])
        name = f["properties"]["district"].split("-", 1)[1]
        feats.append({"type": "Feature", "id": did, "properties": {"id": did, "name": name,
                                                                   "district": f["properties"]["district"]},
                      "geometry": f["geometry"]})
    (out / "districts.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats},
                                                      ensure_ascii=False))
    (out / "city.toml").write_text(CITY_TOML, encoding="utf-8")
    reps = {f["id"]: shape(f["geometry"]).representative_point() for f in feats}
    ids = sorted(reps, key=int)
    # synthetic air-quality stations in 8 districts
    st_ids = ids[::7][:8]
    with open(out / "stations.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "kind", "lon", "lat", "category"])
        for k, d in enumerate(st_ids):
            p = reps[d]
            w.writerow([f"mtl-aq-{k + 1:02d}", f"Station {feats[ids.index(d)]['properties']['name']}",
                        "aq_station", round(p.x, 5), round(p.y, 5), "urban"])
    # synthetic road segments: between representative points of districts next in id order
    roads = []
    for k in range(len(ids) - 1):
        a, b = reps[ids[k]], reps[ids[k + 1]]
        if a.distance(b) > 0.08:
            continue
        line = LineString([(a.x, a.y), (b.x, b.y)])
        length = int(a.distance(b) * 111_000 * math.cos(math.radians(45.5)))
        roads.append({"type": "Feature", "properties": {
            "id": f"mtl-rd-{k + 1:03d}", "name": f"Segment {ids[k]}–{ids[k + 1]}", "kind": "road_segment",
            "free_flow_kmh": float(rng.choice([40, 50, 60, 70])), "lanes": int(rng.integers(1, 4)),
            "length_m": max(length, 200)}, "geometry": mapping(line)})
    (out / "roads.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": roads}))
    subs = ids[::6]
    with open(out / "substations.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "kind", "lon", "lat", "capacity_mw", "renewable_capacity_mw"])
        for k, d in enumerate(subs):
            p = reps[d]
            w.writerow([f"mtl-ss-{k + 1:02d}", f"Poste {k + 1}", "substation", round(p.x + 0.002, 5),
                        round(p.y, 5), 300 + 20 * (k % 5), 240])
    cats = [("pothole", "Nid-de-poule / pothole", 72), ("snow", "Déneigement / snow removal", 24),
            ("noise", "Bruit / noise", 8), ("lighting", "Éclairage / street lighting", 48)]
    with open(out / "service_categories.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "sla_hours"])
        w.writerows(cats)
    now = now or datetime.now(timezone.utc)
    now = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    steps = [now - timedelta(minutes=15 * i) for i in range(hours * 4 - 1, -1, -1)]
    # air quality: long form, local time without offset, CO in mg/m³
    n_aq = 0
    with open(out / "air_quality.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["asset", "metric", "ts", "value", "unit"])
        for k in range(len(st_ids)):
            base = rng.uniform(6, 18)
            for t in steps[::4]:
                local = t.astimezone(TZ).strftime("%Y-%m-%d %H:%M")
                h = t.astimezone(TZ).hour
                pm = base * (1.2 + 0.5 * math.sin(h / 24 * 2 * math.pi)) + rng.normal(0, 1.5)
                vals = {"pm25": max(pm, 1), "pm10": max(pm * 1.8, 2), "no2": max(20 + rng.normal(0, 6), 1),
                        "o3": max(45 + 15 * math.sin((h - 6) / 24 * 2 * math.pi), 2), "co": 0.3 + rng.uniform(0, 0.3)}
                for m, v in vals.items():
                    gap = rng.random() < 0.01
                    w.writerow([f"mtl-aq-{k + 1:02d}", m, local, "" if gap else round(v, 3),
                                "mg/m3" if m == "co" else "µg/m³"])
                    n_aq += 1
    # traffic: wide by asset, semicolon, decimal comma, BOM, local time
    with open(out / "traffic_speed_wide.csv", "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["time"] + [r["properties"]["id"] for r in roads])
        for t in steps:
            lt = t.astimezone(TZ)
            rush = 1 - 0.45 * (math.exp(-((lt.hour + lt.minute / 60 - 8) ** 2) / 2)
                               + math.exp(-((lt.hour + lt.minute / 60 - 17) ** 2) / 2))
            w.writerow([lt.strftime("%Y-%m-%d %H:%M")] + [
                f"{max(3.0, r['properties']['free_flow_kmh'] * rush * rng.uniform(0.8, 1.05)):.1f}".replace(".", ",")
                for r in roads])
    # energy: long form, ISO 8601 with offset, load in kW
    with open(out / "energy.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["asset", "metric", "ts", "value"])
        for k in range(len(subs)):
            for t in steps:
                lt = t.astimezone(TZ)
                load = 1000 * (120 + 60 * math.sin((lt.hour - 9) / 24 * 2 * math.pi) + rng.normal(0, 5))
                w.writerow([f"mtl-ss-{k + 1:02d}", "load_mw", lt.isoformat(timespec="minutes"), round(load)])
                w.writerow([f"mtl-ss-{k + 1:02d}", "renewable_mw", lt.isoformat(timespec="minutes"),
                            round(1000 * rng.uniform(60, 110))])
    # service requests: CSV export, local times
    n_req = 0
    with open(out / "service_requests.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["request_id", "category", "created", "closed", "lon", "lat", "satisfaction"])
        start = now - timedelta(days=30)
        for i in range(400):
            d = ids[int(rng.integers(len(ids)))]
            p = reps[d]
            opened = _unambiguous(start + timedelta(minutes=int(rng.integers(0, 30 * 24 * 60 - 60))))
            cat = cats[int(rng.integers(len(cats)))]
            close = _unambiguous(opened + timedelta(hours=float(rng.exponential(cat[2] * 0.7))))
            done = close < now
            w.writerow([f"MTL-{100000 + i}", cat[0], opened.astimezone(TZ).strftime("%Y-%m-%d %H:%M"),
                        close.astimezone(TZ).strftime("%Y-%m-%d %H:%M") if done else "",
                        round(p.x + rng.normal(0, 0.002), 5), round(p.y + rng.normal(0, 0.002), 5),
                        int(rng.integers(2, 6)) if done else ""])
            n_req += 1
    return {"districts": len(feats), "stations": len(st_ids), "roads": len(roads), "substations": len(subs),
            "air_quality rows": n_aq, "speed rows": len(steps), "requests": n_req}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "montreal")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    print(build(a.out, a.hours, a.seed))


if __name__ == "__main__":
    main()
