"""Write the Beijing demo's bus lines and stops (simulated): data/beijing/transit_lines.geojson and transit_stops.csv.

The lines are schematic: each is a polyline through real Beijing places (approximate WGS84
coordinates, hand-placed), with line numbers and termini chosen to look like Beijing's buses;
they are not the real routes. Stops are spaced evenly along each line, 500–800 m apart, and
named after the nearest place. Each line gets as many buses as its peak headway (at most 6.5
min) needs. Deterministic: re-running writes byte-identical files.

    .venv/bin/python scripts/build_transit.py [--out data/beijing]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from layers.transit.timetable import plan_vehicles  # noqa: E402

#: Places (approximate WGS84 lon, lat): waypoints of the lines and the names of their stops.
PLACES = {
    "Bajiao": (116.212, 39.906), "Babaoshan": (116.236, 39.907), "Yuquanlu": (116.253, 39.907),
    "Wukesong": (116.274, 39.907), "Gongzhufen": (116.310, 39.907), "Military Museum": (116.322, 39.907),
    "Muxidi": (116.338, 39.907), "Fuxingmen": (116.357, 39.907), "Xidan": (116.374, 39.9075),
    "Tiananmen West": (116.391, 39.908), "Tiananmen East": (116.404, 39.908), "Wangfujing": (116.411, 39.914),
    "Dongdan": (116.418, 39.908), "Jianguomen": (116.435, 39.908), "Yonganli": (116.450, 39.908),
    "Guomao": (116.461, 39.909), "Dawanglu": (116.476, 39.908), "Sihui": (116.496, 39.909),
    "Andingmen": (116.408, 39.949), "Yonghegong": (116.417, 39.949), "Beixinqiao": (116.417, 39.940),
    "Dongsi": (116.417, 39.924), "Zhangzizhonglu": (116.417, 39.933), "Chongwenmen": (116.417, 39.899),
    "Ciqikou": (116.420, 39.893), "Tiantan East Gate": (116.420, 39.882), "Liujiayao": (116.432, 39.859),
    "Songjiazhuang": (116.428, 39.846), "Deshengmen": (116.380, 39.948), "Jishuitan": (116.374, 39.948),
    "Pinganli": (116.374, 39.933), "Xisi": (116.374, 39.923), "Lingjing Hutong": (116.374, 39.915),
    "Xuanwumen": (116.374, 39.900), "Caishikou": (116.374, 39.889), "Majiabao": (116.373, 39.851),
    "Jiaomen": (116.380, 39.843), "Zhongguancun": (116.316, 39.984), "Haidian Huangzhuang": (116.318, 39.976),
    "Baishiqiao": (116.326, 39.934), "Ganjiakou": (116.334, 39.919), "Beijing West Railway Station": (116.321, 39.895),
    "Liuliqiao": (116.309, 39.882), "Lize": (116.310, 39.865), "Fengtai Railway Station": (116.296, 39.851),
    "Xizhimen": (116.353, 39.940), "Chegongzhuang": (116.354, 39.933), "Fuchengmen": (116.356, 39.924),
    "Chaoyangmen": (116.434, 39.924), "Dongsishitiao": (116.434, 39.933), "Dongzhimen": (116.434, 39.941),
    "Hujialou": (116.461, 39.924), "Chaoyang Park": (116.478, 39.934), "Qingnianlu": (116.517, 39.923),
    "Guang'anmen": (116.347, 39.890), "Qianmen": (116.398, 39.8995), "Guangqumen": (116.440, 39.893),
    "Shuangjing": (116.461, 39.893), "Liangmaqiao": (116.461, 39.949), "Nongzhanguan": (116.461, 39.941),
    "Tuanjiehu": (116.461, 39.933), "Jinsong": (116.461, 39.883), "Panjiayuan": (116.461, 39.877),
    "Shilihe": (116.461, 39.867), "Olympic Green": (116.392, 40.000), "Beitucheng": (116.394, 39.977),
    "Gulou": (116.394, 39.948), "Di'anmen": (116.396, 39.933), "Beihai": (116.386, 39.925),
    "Tianqiao": (116.398, 39.883), "Yongdingmen": (116.399, 39.872), "Muxiyuan": (116.396, 39.860),
    "Dahongmen": (116.396, 39.845), "Wudaokou": (116.338, 39.993), "Xueyuanlu": (116.354, 39.993),
    "Xitucheng": (116.354, 39.976), "Madian": (116.376, 39.970), "Xinjiekou": (116.368, 39.940),
    "Lishuiqiao": (116.433, 40.038), "Beiyuan": (116.433, 40.028), "Datunlu": (116.418, 40.003),
    "Huixinxijie": (116.418, 39.977), "Hepingxiqiao": (116.418, 39.968), "Anzhenmen": (116.405, 39.968),
    "Yayuncun": (116.408, 39.987), "Sanlitun": (116.455, 39.936), "Wangjing": (116.470, 39.997),
    "Taiyanggong": (116.446, 39.972), "Sanyuanqiao": (116.456, 39.961), "Jiuxianqiao": (116.496, 39.972),
}

#: (line number, scheduled speed km/h, waypoints from terminus A to terminus B).
LINES = [
    (1, 16, ["Bajiao", "Babaoshan", "Yuquanlu", "Wukesong", "Gongzhufen", "Military Museum", "Muxidi", "Fuxingmen",
             "Xidan", "Tiananmen West", "Tiananmen East", "Dongdan", "Jianguomen", "Yonganli", "Guomao", "Dawanglu",
             "Sihui"]),
    (2, 15, ["Andingmen", "Yonghegong", "Beixinqiao", "Zhangzizhonglu", "Dongsi", "Dongdan", "Chongwenmen", "Ciqikou",
             "Tiantan East Gate", "Liujiayao", "Songjiazhuang"]),
    (5, 15, ["Deshengmen", "Jishuitan", "Pinganli", "Xisi", "Lingjing Hutong", "Xidan", "Xuanwumen", "Caishikou",
             "Majiabao", "Jiaomen"]),
    (10, 17, ["Zhongguancun", "Haidian Huangzhuang", "Baishiqiao", "Ganjiakou", "Muxidi", "Beijing West Railway Station",
              "Liuliqiao", "Lize", "Fengtai Railway Station"]),
    (12, 15, ["Xizhimen", "Chegongzhuang", "Fuchengmen", "Xisi", "Beihai", "Dongsi", "Chaoyangmen", "Hujialou",
              "Chaoyang Park", "Qingnianlu"]),
    (20, 15, ["Beijing West Railway Station", "Guang'anmen", "Caishikou", "Qianmen", "Ciqikou", "Guangqumen",
              "Shuangjing"]),
    (43, 17, ["Liangmaqiao", "Nongzhanguan", "Tuanjiehu", "Hujialou", "Guomao", "Shuangjing", "Jinsong", "Panjiayuan",
              "Shilihe"]),
    (52, 16, ["Olympic Green", "Beitucheng", "Gulou", "Di'anmen", "Beihai", "Tiananmen West", "Qianmen", "Tianqiao",
              "Yongdingmen", "Muxiyuan", "Dahongmen"]),
    (68, 16, ["Wudaokou", "Xueyuanlu", "Xitucheng", "Madian", "Jishuitan", "Xinjiekou", "Xizhimen"]),
    (104, 16, ["Lishuiqiao", "Beiyuan", "Datunlu", "Huixinxijie", "Hepingxiqiao", "Yonghegong", "Dongzhimen"]),
    (107, 15, ["Baishiqiao", "Xizhimen", "Xinjiekou", "Gulou", "Andingmen", "Yonghegong", "Dongzhimen", "Sanlitun"]),
    (118, 16, ["Wangjing", "Taiyanggong", "Sanyuanqiao", "Liangmaqiao", "Sanlitun", "Dongsishitiao", "Zhangzizhonglu",
               "Di'anmen", "Pinganli", "Chegongzhuang"]),
]
STOP_SPACING_M = 650  # target; actual spacing is the line's length ÷ a whole number of gaps (500–800 m)
LAYOVER_S = 300
_M_PER_DEG = 111_320.0
COMPASS = ["North", "East", "South", "West"]


def metres(a, b, lat0: float) -> float:
    kx = _M_PER_DEG * math.cos(math.radians(lat0))
    return math.hypot((b[0] - a[0]) * kx, (b[1] - a[1]) * _M_PER_DEG)


def along(coords, dist: float, cum) -> tuple[float, float]:
    for i in range(1, len(cum)):
        if dist <= cum[i] or i == len(cum) - 1:
            f = 0.0 if cum[i] == cum[i - 1] else (dist - cum[i - 1]) / (cum[i] - cum[i - 1])
            f = min(max(f, 0.0), 1.0)
            return (coords[i - 1][0] + f * (coords[i][0] - coords[i - 1][0]),
                    coords[i - 1][1] + f * (coords[i][1] - coords[i - 1][1]))
    raise ValueError("empty line")


def stop_name(p, lat0: float, used: set[str]) -> str:
    """Return the nearest place's name, or "<place> <side>" when the stop is 350 m or more from it;
    the next nearest place when the line already has a stop of that name."""
    near = sorted(PLACES, key=lambda n: (metres(p, PLACES[n], lat0), n))
    for n in near:
        q = PLACES[n]
        if metres(p, q, lat0) < 350:
            name = n
        else:
            ang = math.degrees(math.atan2(p[0] - q[0], p[1] - q[1])) % 360  # 0 north, 90 east
            name = f"{n} {COMPASS[int(((ang + 45) % 360) // 90)]}"
        if name not in used:
            used.add(name)
            return name
    raise ValueError(f"no unused stop name near {p}")


def build() -> tuple[dict, list[dict]]:
    features, stops = [], []
    for no, speed, names in LINES:
        coords = [list(PLACES[n]) for n in names]
        lat0 = sum(c[1] for c in coords) / len(coords)
        cum = [0.0]
        for a, b in zip(coords[:-1], coords[1:]):
            cum.append(cum[-1] + metres(a, b, lat0))
        length = cum[-1]
        gaps = max(1, round(length / STOP_SPACING_M))
        spacing = length / gaps
        assert 500 <= spacing <= 800, (no, spacing)
        line_id = f"bus-{no}"
        used: set[str] = set()
        for s in range(gaps + 1):
            d = s * spacing
            p = along(coords, d, cum)
            stops.append({"id": f"{line_id}-s{s + 1:02d}", "line": line_id, "seq": s + 1,
                          "name": names[0] if s == 0 else names[-1] if s == gaps else stop_name(p, lat0, used | {names[0], names[-1]}),
                          "lon": f"{p[0]:.5f}", "lat": f"{p[1]:.5f}", "dist_m": f"{d:.0f}"})
            used.add(stops[-1]["name"])
        features.append({"type": "Feature", "properties": {
            "id": line_id, "name": f"Line {no}", "line_no": no, "terminus_a": names[0], "terminus_b": names[-1],
            "length_m": round(length), "speed_kmh": speed, "layover_s": LAYOVER_S,
            "vehicles": plan_vehicles(round(length), speed, LAYOVER_S), "first_h": 5, "last_h": 23},
            "geometry": {"type": "LineString", "coordinates": [[round(x, 5), round(y, 5)] for x, y in coords]}})
    return {"type": "FeatureCollection", "features": features}, stops


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "beijing")
    args = ap.parse_args(argv)
    lines, stops = build()
    (args.out / "transit_lines.geojson").write_text(json.dumps(lines, ensure_ascii=False, indent=None,
                                                               separators=(",", ":")) + "\n", encoding="utf-8")
    with open(args.out / "transit_stops.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "line", "seq", "name", "lon", "lat", "dist_m"], lineterminator="\n")
        w.writeheader()
        w.writerows(stops)
    n_bus = sum(f["properties"]["vehicles"] for f in lines["features"])
    print(f"{len(lines['features'])} lines, {len(stops)} stops, {n_bus} buses -> {args.out}")


if __name__ == "__main__":
    main()
