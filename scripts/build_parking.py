#!/usr/bin/env python
"""Build the SIMULATED Beijing car parks and on-street parking zones: ``data/beijing/car_parks.csv``.

Usage::

    .venv/bin/python scripts/build_parking.py [--districts PATH] [--out PATH]

Reads the project's own ``data/beijing/districts.geojson`` (ids, population, area, label points,
outlines). Deterministic: every "random" number is a hash of fixed keys (no random state), so re-running
gives a byte-identical file. Invented for the demo: no real car park is described.

How: each district gets car parks and zones in proportion to its population × a ring weight (the core
most, the outer districts least; at least 4 car parks and 1 zone each). A car park lies near one of
the district's anchors — its label point or a business centre inside it (Guomao, Financial Street,
Zhongguancun, …) — at a Gaussian distance (σ from the district's size, smaller in the core; zones
tighter still), kept at least ~100 m inside its district. ``business`` (0 residential … 1 office and
commercial) falls off with the distance to the nearest business centre; capacity is log-normal
around 280 spaces, larger in business areas (40–3,000, rounded to 10); a zone has 12–80 spaces.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
from pathlib import Path

from shapely.geometry import Point, shape

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DISTRICTS = REPO / "data" / "beijing" / "districts.geojson"
DEFAULT_OUT = REPO / "data" / "beijing" / "car_parks.csv"
ND = 5  # decimals of coordinates
SEED = "beijing-parking-1"
CAR_PARKS, ZONES = 320, 140
#: Car parks per resident, relative: the core draws visitors from the whole city.
RING_WEIGHT = {"dongcheng": 3.0, "xicheng": 3.0, "chaoyang": 1.5, "haidian": 1.5, "fengtai": 1.2,
               "shijingshan": 1.2, "tongzhou": 0.8, "shunyi": 0.8, "changping": 0.8, "daxing": 0.8,
               "fangshan": 0.7, "mentougou": 0.7, "huairou": 0.6, "pinggu": 0.6, "miyun": 0.6, "yanqing": 0.6}
#: Business centres (approximate, WGS84): (name, lon, lat, reach in km).
CENTRES = [
    ("Guomao CBD", 116.461, 39.909, 2.5), ("Financial Street", 116.358, 39.915, 1.8),
    ("Wangfujing", 116.411, 39.914, 1.5), ("Xidan", 116.373, 39.908, 1.2), ("Sanlitun", 116.455, 39.935, 1.2),
    ("Zhongguancun", 116.316, 39.983, 2.5), ("Shangdi", 116.305, 40.033, 2.0), ("Wangjing", 116.470, 39.996, 2.0),
    ("Lize", 116.315, 39.865, 1.5), ("Yizhuang", 116.505, 39.795, 3.0), ("Tongzhou sub-centre", 116.725, 39.905, 2.5),
    ("Tianzhu", 116.580, 40.070, 2.0),
]
KM_PER_DEG_LAT = 111.32


def _u(*keys) -> float:
    """Return a uniform number in [0, 1) from ``keys`` (a hash: the same keys, the same number)."""
    h = hashlib.blake2b("|".join(map(str, (SEED, *keys))).encode(), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / float(1 << 53)


def _normal(*keys) -> float:
    """Return a standard normal number from ``keys`` (Box-Muller on two hashes)."""
    return math.sqrt(-2.0 * math.log1p(-_u(*keys, "a"))) * math.cos(2.0 * math.pi * _u(*keys, "b"))


def _km(lon0, lat0, lon1, lat1) -> float:
    kx = KM_PER_DEG_LAT * math.cos(math.radians((lat0 + lat1) / 2))
    return math.hypot((lon1 - lon0) * kx, (lat1 - lat0) * KM_PER_DEG_LAT)


def _shares(weights: dict, total: int, least: int) -> dict:
    """Split ``total`` by ``weights`` (at least ``least`` each; largest remainders get the rest)."""
    rest = total - least * len(weights)
    s = sum(weights.values())
    raw = {k: rest * w / s for k, w in weights.items()}
    out = {k: least + int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (-(raw[k] - int(raw[k])), k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def business_share(lon: float, lat: float, key) -> float:
    """Return how office/commercial a place is, 0–1: near a business centre high, elsewhere low."""
    near = max(math.exp(-(_km(lon, lat, c[1], c[2]) / c[3]) ** 2) for c in CENTRES)
    return round(min(1.0, max(0.0, 0.12 + 0.85 * near + 0.16 * (_u(key, "business") - 0.5))), 2)


def build_car_parks(features: list[dict]) -> list[dict]:
    """Return the car parks and zones (id, name, kind, lon, lat, capacity, business) of the districts."""
    weights = {f["properties"]["id"]: f["properties"]["population"] * RING_WEIGHT.get(f["properties"]["id"], 0.8)
               for f in features}
    n_cp, n_zone = _shares(weights, CAR_PARKS, 4), _shares(weights, ZONES, 1)
    rows = []
    for f in features:
        p = f["properties"]
        did, geom = p["id"], shape(f["geometry"])
        inner = geom.buffer(-0.001)  # ~100 m inside: the point is in this district whatever the border's slivers
        if inner.is_empty:
            inner = geom
        anchors = [(p["label_lon"], p["label_lat"])] + [(c[1], c[2]) for c in CENTRES
                                                         if inner.contains(Point(c[1], c[2]))]
        core = RING_WEIGHT.get(did, 0.8) >= 3.0
        sigma = 1.2 if core else min(8.0, max(1.5, 0.18 * math.sqrt(p["area_km2"])))
        for kind, prefix, word, n, tight in (("car_park", "cp", "Car Park", n_cp[did], 1.0),
                                             ("parking_zone", "pz", "On-street Zone", n_zone[did], 0.6)):
            for i in range(1, n + 1):
                aid = f"{prefix}-{did}-{i:03d}"
                ax, ay = anchors[int(_u(aid, "anchor") * len(anchors))]
                kx = KM_PER_DEG_LAT * math.cos(math.radians(ay))
                for attempt in range(500):
                    s = sigma * tight * (1 + attempt / 100)  # widen if the anchor is near a border
                    x = round(ax + _normal(aid, attempt, "x") * s / kx, ND)
                    y = round(ay + _normal(aid, attempt, "y") * s / KM_PER_DEG_LAT, ND)
                    if inner.contains(Point(x, y)):
                        break
                else:
                    raise RuntimeError(f"no place for {aid} inside {did}")
                b = business_share(x, y, aid)
                if kind == "car_park":
                    cap = 280 * math.exp(0.6 * _normal(aid, "capacity")) * (1 + 0.8 * b)
                    cap = int(min(3000, max(40, round(cap / 10) * 10)))
                else:
                    cap = 12 + int(_u(aid, "capacity") * 69)
                rows.append({"id": aid, "name": f"{p['name']} {word} {i:02d}", "kind": kind, "lon": x, "lat": y,
                             "capacity": cap, "business": b})
    return sorted(rows, key=lambda r: r["id"])


def write(rows: list[dict], path: Path) -> None:
    """Write ``rows`` as the city file (one header, ``\\n`` line ends)."""
    cols = ["id", "name", "kind", "lon", "lat", "capacity", "business"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--districts", type=Path, default=DEFAULT_DISTRICTS, help="districts GeoJSON")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output CSV")
    args = ap.parse_args(argv)
    features = json.loads(args.districts.read_text(encoding="utf-8"))["features"]
    rows = build_car_parks(features)
    write(rows, args.out)
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("car_park", "parking_zone")}
    print(f"car_parks={kinds['car_park']} parking_zones={kinds['parking_zone']} -> {args.out}")


if __name__ == "__main__":
    main()
