#!/usr/bin/env python
"""Build the Beijing demo-city data files under ``data/beijing/``.

Usage::

    .venv/bin/python scripts/build_beijing.py [--shared PATH] [--out PATH]

Inputs come from the shared real-data folder (default: ``<repo>/../shared/data``, see its README.md).
Outputs (deterministic: re-running gives byte-identical files):

* ``districts.geojson``      16 districts (real boundaries, echarts 4.9.0 map data) + 2020 census population
* ``stations.csv``           the 12 UCI/PRSA air-quality monitoring stations (real)
* ``air_quality.csv.gz``     one year (2016-03-01 .. 2017-02-28) of the real UCI PRSA hourly data
* ``roads.geojson``          SCHEMATIC ring roads + radial expressways (approximate coordinates, directed links)
* ``substations.csv``        ILLUSTRATIVE substations (invented names/locations/capacities)
* ``service_categories.csv`` ILLUSTRATIVE citizen service-request categories with SLA hours
* ``city.toml``              city metadata and the file list

Everything schematic/illustrative is generated here from fixed parameters, no randomness.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
from pathlib import Path

import shapely
from pyproj import Geod
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box, mapping, shape
from shapely.geometry.polygon import orient
from shapely.ops import substring

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "data" / "beijing"

GEOD = Geod(ellps="WGS84")
ND = 5  # decimals for coordinates

# --------------------------------------------------------------------------------------------------
# 1. Districts
# --------------------------------------------------------------------------------------------------

# 2020 Seventh National Population Census, Beijing Municipal Bureau of Statistics (resident population).
POPULATION_2020 = {
    "dongcheng": 708829,
    "xicheng": 1106214,
    "chaoyang": 3452460,
    "fengtai": 2019764,
    "shijingshan": 567851,
    "haidian": 3133469,
    "mentougou": 392606,
    "fangshan": 1312778,
    "tongzhou": 1840295,
    "shunyi": 1324044,
    "changping": 2269487,
    "daxing": 1993591,
    "huairou": 441040,
    "pinggu": 457313,
    "miyun": 527683,
    "yanqing": 345671,
}
POPULATION_SOURCE = (
    "2020 Seventh National Population Census of China, resident population by district "
    "(Beijing Municipal Bureau of Statistics / Office of the Leading Group for the Seventh "
    "National Population Census of Beijing, 2021)"
)


def _round_coords(obj, nd=ND):
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), nd) for v in obj]
        return [_round_coords(o, nd) for o in obj]
    return obj


def _polygonal(geom):
    """Keep only the polygonal part of a geometry (make_valid may return collections)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys = []
    for g in getattr(geom, "geoms", []):
        if isinstance(g, Polygon):
            polys.append(g)
        elif isinstance(g, MultiPolygon):
            polys.extend(g.geoms)
    return MultiPolygon(polys) if len(polys) > 1 else polys[0]


def _clean_geometry(geom):
    """Round to ND decimals, repair if rounding broke validity; returns a GeoJSON geometry dict."""
    geom = _polygonal(shapely.make_valid(geom)) if not geom.is_valid else geom
    rounded = shape({"type": geom.geom_type, "coordinates": _round_coords(mapping(geom)["coordinates"])})
    if not rounded.is_valid:
        rounded = _polygonal(shapely.make_valid(rounded))
        rounded = shape({"type": rounded.geom_type, "coordinates": _round_coords(mapping(rounded)["coordinates"])})
    assert rounded.is_valid, "district geometry still invalid after repair"
    assert rounded.geom_type in ("Polygon", "MultiPolygon")
    return {"type": rounded.geom_type, "coordinates": _round_coords(mapping(rounded)["coordinates"])}


def build_districts(shared: Path):
    src = json.loads((shared / "beijing" / "districts.geojson").read_text(encoding="utf-8"))
    features = []
    for f in src["features"]:
        p = f["properties"]
        did = p["name_en"].strip().lower()
        cp = [float(v) for v in p["cp"].strip("[] ").split()]
        geom = _clean_geometry(shape(f["geometry"]))
        features.append(
            {
                "type": "Feature",
                "id": did,
                "properties": {
                    "id": did,
                    "name": p["name_en"].strip(),
                    "name_local": p["name"],
                    "adcode": str(p["adcode"]),
                    "population": int(POPULATION_2020[did]),
                    "area_km2": float(p["area_km2"]),
                    "label_lon": round(cp[0], 6),
                    "label_lat": round(cp[1], 6),
                },
                "geometry": geom,
            }
        )
    features.sort(key=lambda ft: ft["properties"]["adcode"])
    assert len(features) == 16, len(features)
    assert sum(ft["properties"]["population"] for ft in features) == 21893095
    return features


# --------------------------------------------------------------------------------------------------
# 2. Stations + 3. air quality (real UCI PRSA data)
# --------------------------------------------------------------------------------------------------

AQ_START, AQ_END = "2016-03-01 00:00", "2017-02-28 23:00"
AQ_COLUMNS = [
    ("PM2.5", "pm25"),
    ("PM10", "pm10"),
    ("SO2", "so2"),
    ("NO2", "no2"),
    ("CO", "co"),
    ("O3", "o3"),
    ("TEMP", "temp_c"),
    ("PRES", "pres_hpa"),
    ("DEWP", "dewp_c"),
    ("RAIN", "rain_mm"),
    ("wd", "wd"),
    ("WSPM", "wspm"),
]


def build_stations(shared: Path):
    rows = []
    with open(shared / "beijing" / "air_quality" / "stations.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            cat = r["kdd2018_category"].split()[0].lower()  # "Urban Stations" -> "urban"
            assert cat in ("urban", "suburban", "other"), cat
            rows.append(
                {
                    "id": r["station"].lower(),
                    "name": r["station"],
                    "lon": float(r["longitude"]),
                    "lat": float(r["latitude"]),
                    "category": cat,
                }
            )
    rows.sort(key=lambda r: r["id"])
    assert len(rows) == 12
    return rows


def build_air_quality(shared: Path, stations):
    """Return the CSV text (exact source value strings kept; NA -> empty)."""
    records = []
    for st in stations:
        path = shared / "beijing" / "air_quality" / f"PRSA_Data_{st['name']}_20130301-20170228.csv.gz"
        with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                assert r["station"] == st["name"], (r["station"], st["name"])
                ts = f"{int(r['year']):04d}-{int(r['month']):02d}-{int(r['day']):02d} {int(r['hour']):02d}:00"
                if not (AQ_START <= ts <= AQ_END):
                    continue
                vals = ["" if r[c] in ("NA", "") else r[c] for c, _ in AQ_COLUMNS]
                records.append((ts, st["id"], vals))
    records.sort(key=lambda x: (x[0], x[1]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["station", "ts"] + [n for _, n in AQ_COLUMNS])
    for ts, sid, vals in records:
        w.writerow([sid, ts] + vals)
    return buf.getvalue(), len(records)


def write_gzip(path: Path, text: str):
    raw = io.BytesIO()
    # filename="" and mtime=0: no name/time in the header -> byte-identical output on every run
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    path.write_bytes(raw.getvalue())


# --------------------------------------------------------------------------------------------------
# 4. Roads (SCHEMATIC)
# --------------------------------------------------------------------------------------------------

# Ring roads: (code, name, bbox minlon, minlat, maxlon, maxlat, corner radius deg, free-flow km/h, lanes)
RECT_RINGS = [
    ("r2", "2nd Ring Road", 116.350, 39.865, 116.435, 39.950, 0.008, 70, 3),
    ("r3", "3rd Ring Road", 116.310, 39.845, 116.465, 39.968, 0.012, 80, 4),
    ("r4", "4th Ring Road", 116.270, 39.825, 116.490, 39.985, 0.016, 80, 4),
    ("r5", "5th Ring Road", 116.200, 39.765, 116.550, 40.025, 0.025, 80, 3),
]
# 6th ring: an irregular loop, approximate waypoints listed clockwise starting in the north.
RING6 = (
    "r6",
    "6th Ring Road",
    [
        (116.400, 40.195), (116.470, 40.192), (116.545, 40.170), (116.610, 40.135),
        (116.665, 40.095), (116.715, 40.040), (116.745, 39.965), (116.752, 39.880),
        (116.735, 39.800), (116.690, 39.740), (116.620, 39.705), (116.530, 39.690),
        (116.430, 39.688), (116.330, 39.692), (116.240, 39.705), (116.160, 39.730),
        (116.095, 39.780), (116.060, 39.850), (116.055, 39.930), (116.075, 40.010),
        (116.120, 40.080), (116.190, 40.140), (116.270, 40.180), (116.340, 40.195),
    ],
    80,
    3,
)

# Radial expressways: (code, name, start ring code, waypoints from inside the start ring outwards).
# The first waypoint lies just inside the start ring; the road is cut where it crosses that ring,
# so the first node is a shared ring node.  Approximate real alignments (WGS84).
RADIALS = [
    ("s12", "Airport Expressway (S12)", "r2",
     [(116.430, 39.940), (116.440, 39.944), (116.456, 39.958), (116.473, 39.975), (116.500, 39.995),
      (116.530, 40.020), (116.560, 40.045), (116.585, 40.065), (116.605, 40.078)]),
    ("g45n", "Jingcheng Expressway (G45)", "r3",
     [(116.437, 39.962), (116.440, 39.972), (116.448, 39.990), (116.462, 40.015), (116.478, 40.045),
      (116.487, 40.080), (116.492, 40.120), (116.497, 40.160), (116.505, 40.200), (116.525, 40.240),
      (116.560, 40.280), (116.600, 40.310)]),
    ("g6", "Jingzang Expressway (G6)", "r3",
     [(116.376, 39.962), (116.376, 39.975), (116.370, 39.995), (116.355, 40.020), (116.340, 40.045),
      (116.315, 40.075), (116.295, 40.110), (116.270, 40.150), (116.240, 40.190), (116.200, 40.225),
      (116.150, 40.260), (116.100, 40.300), (116.060, 40.340), (116.020, 40.370), (115.990, 40.410),
      (115.975, 40.450)]),
    ("g4", "Jinggang'ao Expressway (G4)", "r3",
     [(116.316, 39.884), (116.300, 39.878), (116.280, 39.866), (116.255, 39.846), (116.225, 39.820),
      (116.200, 39.790), (116.175, 39.760), (116.150, 39.725), (116.120, 39.690), (116.085, 39.650),
      (116.050, 39.610)]),
    ("g106", "Jingkai Expressway (G106/G45)", "r3",
     [(116.362, 39.851), (116.360, 39.840), (116.355, 39.820), (116.345, 39.795), (116.335, 39.765),
      (116.330, 39.730), (116.328, 39.690), (116.325, 39.640), (116.322, 39.590)]),
    ("g2", "Jinghu Expressway (G2, Jingjintang)", "r3",
     [(116.452, 39.862), (116.465, 39.852), (116.480, 39.840), (116.505, 39.822), (116.530, 39.805),
      (116.560, 39.790), (116.595, 39.770), (116.630, 39.745), (116.665, 39.718), (116.700, 39.690),
      (116.740, 39.665)]),
    ("g1", "Jingtong / Jingha Expressway (G1)", "r3",
     [(116.455, 39.908), (116.475, 39.908), (116.500, 39.909), (116.530, 39.910), (116.560, 39.910),
      (116.600, 39.908), (116.640, 39.905), (116.680, 39.908), (116.720, 39.912), (116.750, 39.917),
      (116.776, 39.921)]),  # ends at the Chaobai river, the Beijing/Hebei border
    ("fushi", "Fushi Road / Chang'an Avenue West", "r3",
     [(116.316, 39.907), (116.300, 39.907), (116.275, 39.907), (116.245, 39.907), (116.215, 39.908),
      (116.185, 39.912), (116.160, 39.920), (116.130, 39.930), (116.095, 39.940), (116.060, 39.945),
      (116.030, 39.950)]),
    ("s32", "Jingping Expressway (S32)", "r4",
     [(116.485, 39.925), (116.500, 39.928), (116.530, 39.935), (116.560, 39.948), (116.590, 39.965),
      (116.620, 39.985), (116.650, 40.005), (116.690, 40.030), (116.740, 40.055), (116.800, 40.075),
      (116.870, 40.095), (116.940, 40.115), (117.010, 40.130), (117.080, 40.140)]),
]

MAX_LINK_M = 3500.0  # spans between crossings longer than this are split evenly


def _rounded_rect(minx, miny, maxx, maxy, r):
    poly = box(minx + r, miny + r, maxx - r, maxy - r).buffer(r, quad_segs=4)
    return orient(poly, sign=-1.0).exterior  # clockwise


def _start_at_north(coords):
    """Rotate a closed ring (clockwise) so it starts at the vertex nearest due north of its centre."""
    pts = list(coords[:-1])
    cx = sum(p[0] for p in pts) / len(pts)
    top = max(pts, key=lambda p: p[1] - 3 * abs(p[0] - cx))
    i = pts.index(top)
    pts = pts[i:] + pts[:i]
    return pts + [pts[0]]


def _geod_len(coords):
    lons, lats = zip(*coords)
    return GEOD.line_length(lons, lats)


def _rpt(p):
    return (round(p[0], ND), round(p[1], ND))


def build_roads():
    # --- base geometries
    roads = []  # dicts: code, name, kind, line, closed, speed, lanes, start_ring
    for code, name, x0, y0, x1, y1, r, speed, lanes in RECT_RINGS:
        coords = _start_at_north(list(_rounded_rect(x0, y0, x1, y1, r).coords))
        roads.append(dict(code=code, name=name, kind="ring", line=LineString(coords), speed=speed, lanes=lanes))
    code, name, pts, speed, lanes = RING6
    ring6 = orient(Polygon(pts), sign=-1.0).exterior
    roads.append(dict(code=code, name=name, kind="ring", line=LineString(_start_at_north(list(ring6.coords))),
                      speed=speed, lanes=lanes))
    for code, name, start_ring, pts in RADIALS:
        roads.append(dict(code=code, name=name, kind="radial", line=LineString(pts), start_ring=start_ring))
    by_code = {r["code"]: r for r in roads}
    ring5_poly = Polygon(by_code["r5"]["line"].coords)
    ring6_poly = Polygon(by_code["r6"]["line"].coords)

    # --- crossings (shared nodes)
    anchors = {r["code"]: [] for r in roads}  # code -> list of (dist along line, rounded point)
    start_cut = {}
    for r in roads:
        if r["kind"] == "radial":
            x = r["line"].intersection(by_code[r["start_ring"]]["line"])
            pts = [x] if x.geom_type == "Point" else list(x.geoms)
            first = min(pts, key=lambda p: r["line"].project(p))
            start_cut[r["code"]] = r["line"].project(first)
    for i, a in enumerate(roads):
        for b in roads[i + 1:]:
            x = a["line"].intersection(b["line"])
            if x.is_empty:
                continue
            pts = [x] if x.geom_type == "Point" else list(x.geoms)
            for p in pts:
                assert p.geom_type == "Point", (a["code"], b["code"], p.geom_type)
                da, db = a["line"].project(p), b["line"].project(p)
                ok = True
                for road, d in ((a, da), (b, db)):
                    if road["kind"] == "radial" and d < start_cut[road["code"]] - 1e-9:
                        ok = False  # part of the radial before its start ring: not a real crossing
                if not ok:
                    continue
                rp = _rpt((p.x, p.y))
                anchors[a["code"]].append((da, rp))
                anchors[b["code"]].append((db, rp))

    # --- nodes and directed links
    node_ids = {}

    def node(pt):
        if pt not in node_ids:
            node_ids[pt] = f"n{len(node_ids) + 1:04d}"
        return node_ids[pt]

    features = []
    for r in roads:
        line = r["line"]
        L = line.length
        anc = sorted(anchors[r["code"]])
        if r["kind"] == "ring":
            # closed: start vertex is a node too (unless a crossing is right there)
            anc = [(0.0, _rpt(line.coords[0]))] + [a for a in anc if a[0] > 1e-9]
            anc.append((L, anc[0][1]))
        else:
            anc = [a for a in anc if a[0] >= start_cut[r["code"]] - 1e-9]
            assert abs(anc[0][0] - start_cut[r["code"]]) < 1e-9, r["code"]
            end = (L, _rpt(line.coords[-1]))
            if L - anc[-1][0] > 1e-6:
                anc.append(end)
        # subdivide spans
        pts = []  # (dist, rounded point)
        for (d0, p0), (d1, p1) in zip(anc[:-1], anc[1:]):
            span = substring(line, d0, d1)
            n = max(1, math.ceil(_geod_len(span.coords) / MAX_LINK_M))
            pts.append((d0, p0))
            for k in range(1, n):
                d = d0 + (d1 - d0) * k / n
                q = line.interpolate(d)
                pts.append((d, _rpt((q.x, q.y))))
        pts.append(anc[-1])
        links = []
        for (d0, p0), (d1, p1) in zip(pts[:-1], pts[1:]):
            inner = [_rpt(c) for c in substring(line, d0, d1).coords[1:-1]]
            coords = [p0] + [c for c in inner if c != p0 and c != p1] + [p1]
            dedup = [coords[0]]
            for c in coords[1:]:
                if c != dedup[-1]:
                    dedup.append(c)
            links.append(dedup)
        for idx, coords in enumerate(links):
            mid = LineString(coords).interpolate(0.5, normalized=True)
            length = int(round(_geod_len(coords)))
            if r["kind"] == "ring":
                speed, lanes = r["speed"], r["lanes"]
                dirs = (("cw", "clockwise", coords), ("ccw", "counter-clockwise", coords[::-1]))
            else:
                if ring5_poly.contains(mid):
                    speed, lanes = 80, 3
                elif ring6_poly.contains(mid):
                    speed, lanes = 100, 3
                else:
                    speed, lanes = 120, 2
                if r["code"] == "s12":
                    speed, lanes = (80, 3) if ring5_poly.contains(mid) else (100, 3)
                dirs = (("out", "outbound", coords), ("in", "inbound", coords[::-1]))
            for tag, direction, cc in dirs:
                features.append(
                    {
                        "type": "Feature",
                        "id": f"{r['code']}-{tag}-{idx:03d}",
                        "properties": {
                            "id": f"{r['code']}-{tag}-{idx:03d}",
                            "name": r["name"],
                            "road": r["code"],
                            "kind": "ring" if r["kind"] == "ring" else "radial",
                            "direction": direction,
                            "length_m": length,
                            "free_flow_kmh": speed,
                            "lanes": lanes,
                            "from_node": node(tuple(cc[0])),
                            "to_node": node(tuple(cc[-1])),
                        },
                        "geometry": {"type": "LineString", "coordinates": [list(c) for c in cc]},
                    }
                )
    return features, node_ids


# --------------------------------------------------------------------------------------------------
# 5. Substations (ILLUSTRATIVE)
# --------------------------------------------------------------------------------------------------

KW_PER_PERSON = 1.5  # ≈ 25 GW peak load / 21.9 M residents (rounded up slightly for reserve)
SUBSTATIONS_PER_DISTRICT = {
    "dongcheng": 2, "xicheng": 2, "chaoyang": 4, "fengtai": 3, "shijingshan": 2, "haidian": 4,
    "mentougou": 2, "fangshan": 3, "tongzhou": 3, "shunyi": 3, "changping": 3, "daxing": 3,
    "huairou": 2, "pinggu": 2, "miyun": 2, "yanqing": 2,
}
# renewable (solar + wind) share of rated capacity, illustrative: tiny in the core, large in the hills
RENEWABLE_SHARE = {
    "dongcheng": 0.01, "xicheng": 0.01, "chaoyang": 0.03, "fengtai": 0.04, "shijingshan": 0.04,
    "haidian": 0.03, "mentougou": 0.15, "fangshan": 0.12, "tongzhou": 0.08, "shunyi": 0.10,
    "changping": 0.10, "daxing": 0.10, "huairou": 0.30, "pinggu": 0.25, "miyun": 0.30, "yanqing": 0.55,
}
SPLIT_WEIGHTS = {1: [1.0], 2: [0.55, 0.45], 3: [0.4, 0.32, 0.28], 4: [0.3, 0.27, 0.23, 0.2]}


def build_substations(districts):
    rows = []
    for f in districts:
        p = f["properties"]
        did = p["id"]
        k = SUBSTATIONS_PER_DISTRICT[did]
        geom = shape(f["geometry"])
        main = max(geom.geoms, key=lambda g: g.area) if geom.geom_type == "MultiPolygon" else geom
        # candidate grid inside the district (away from the border), then farthest-point sampling
        inner = main.buffer(-0.01 if main.area > 0.02 else -0.004)
        if inner.is_empty:
            inner = main
        minx, miny, maxx, maxy = inner.bounds
        step = max(maxx - minx, maxy - miny) / 40
        cands = []
        y = miny + step / 2
        while y < maxy:
            x = minx + step / 2
            while x < maxx:
                pt = (round(x, ND), round(y, ND))
                if inner.contains(Point(pt)):
                    cands.append(pt)
                x += step
            y += step
        label = (p["label_lon"], p["label_lat"])
        if not inner.contains(Point(label)):
            label = min(cands, key=lambda c: (c[0] - label[0]) ** 2 + (c[1] - label[1]) ** 2)
        label = (round(label[0], ND), round(label[1], ND))
        # seeds: label point + farthest-point sampling; then a few Lloyd (k-means) iterations over the
        # candidate grid with substation 1 pinned at the label point -> well spread, not on the rim
        chosen = [label]
        while len(chosen) < k:
            chosen.append(max(cands, key=lambda c: min((c[0] - q[0]) ** 2 + (c[1] - q[1]) ** 2 for q in chosen)))
        for _ in range(25):
            groups = [[] for _ in chosen]
            for c in cands:
                j = min(range(k), key=lambda j: ((c[0] - chosen[j][0]) ** 2 + (c[1] - chosen[j][1]) ** 2, j))
                groups[j].append(c)
            new = [label]
            for g in groups[1:]:
                mx, my = sum(c[0] for c in g) / len(g), sum(c[1] for c in g) / len(g)
                new.append(min(g, key=lambda c: ((c[0] - mx) ** 2 + (c[1] - my) ** 2, c)))
            if new == chosen:
                break
            chosen = new
        total_mw = p["population"] * KW_PER_PERSON / 1000.0
        share = RENEWABLE_SHARE[did]
        for i, (pt, w) in enumerate(zip(chosen, SPLIT_WEIGHTS[k])):
            cap = int(round(total_mw * w / 10.0) * 10)
            # outer substations of a district get more of the renewables (1.0 .. 1.2 x share)
            ren = round(cap * share * (1.0 + 0.2 * i / max(1, k - 1)), 1)
            rows.append(
                {
                    "id": f"ss-{did}-{i + 1}",
                    "name": f"{p['name']} 220kV Substation {i + 1}",
                    "district": did,
                    "lon": pt[0],
                    "lat": pt[1],
                    "capacity_mw": cap,
                    "renewable_capacity_mw": ren,
                }
            )
    return rows


# --------------------------------------------------------------------------------------------------
# 6. Service categories (ILLUSTRATIVE) and 7. city.toml
# --------------------------------------------------------------------------------------------------

SERVICE_CATEGORIES = [
    ("illegal_parking", "Illegal parking", 2),
    ("traffic_signals", "Traffic signal fault", 4),
    ("water", "Water leak / supply", 8),
    ("noise", "Noise complaint", 12),
    ("waste", "Waste collection", 24),
    ("street_lighting", "Street lighting", 48),
    ("roads", "Road damage / potholes", 72),
    ("parks", "Parks and green spaces", 120),
]

FILES = {
    "districts": "districts.geojson",
    "stations": "stations.csv",
    "air_quality": "air_quality.csv.gz",
    "roads": "roads.geojson",
    "substations": "substations.csv",
    "service_categories": "service_categories.csv",
    "car_parks": "car_parks.csv",  # written by scripts/build_parking.py
}


def city_toml():
    lines = [
        "# Beijing demo city: generated by scripts/build_beijing.py (see data/MANIFEST.md)",
        'name = "Beijing"',
        'name_local = "北京"',
        'timezone = "Asia/Shanghai"',
        'aqi_standard = "cn"',
        "center_lon = 116.397",
        "center_lat = 39.909",
        f'population_source = "{POPULATION_SOURCE}"',
        "",
        "[files]",
    ] + [f'{k} = "{v}"' for k, v in FILES.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------


def write_geojson(path: Path, features, name):
    fc = {"type": "FeatureCollection", "name": name, "features": features}
    # one feature per line: compact but diff-friendly
    body = ",\n".join(json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features)
    text = '{"type":"FeatureCollection","name":%s,"features":[\n%s\n]}\n' % (json.dumps(fc["name"]), body)
    path.write_text(text, encoding="utf-8")


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r[h] for h in header] if isinstance(r, dict) else list(r))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared real-data folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    districts = build_districts(args.shared)
    write_geojson(out / FILES["districts"], districts, "beijing_districts")

    stations = build_stations(args.shared)
    write_csv(out / FILES["stations"], ["id", "name", "lon", "lat", "category"], stations)

    aq_text, n_aq = build_air_quality(args.shared, stations)
    write_gzip(out / FILES["air_quality"], aq_text)

    roads, nodes = build_roads()
    write_geojson(out / FILES["roads"], roads, "beijing_roads_schematic")

    subs = build_substations(districts)
    write_csv(out / FILES["substations"],
              ["id", "name", "district", "lon", "lat", "capacity_mw", "renewable_capacity_mw"], subs)

    write_csv(out / FILES["service_categories"], ["id", "name", "sla_hours"], SERVICE_CATEGORIES)
    (out / "city.toml").write_text(city_toml(), encoding="utf-8")

    print(f"districts={len(districts)} stations={len(stations)} air_quality_rows={n_aq} "
          f"road_segments={len(roads)} road_nodes={len(nodes)} substations={len(subs)} "
          f"service_categories={len(SERVICE_CATEGORIES)} -> {out}")


if __name__ == "__main__":
    main()
