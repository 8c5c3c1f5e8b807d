"""Panel data and images: /api/panels/<id>.json|csv|png|svg, their bounds, the framing headers, the CLI."""
from __future__ import annotations

import csv
import io
import json
import struct
import time
import zlib

import pytest
from _demo import build_demo_store
from sqlalchemy import text
from layers import LAYERS

from dashboard.app import create_app
from dashboard.export import panel_ids
from dashboard.kpis import KPIS, compute_all
from dashboard.security import embed_policy, parse_origins
from dashboard.settings import Settings
from dashboard.store.schema import make_engine
from layers import LAYER_BY_ID
from _layers import layer_frame

TIME_DEPENDENT = {"service.overdue", "service.open"}  # counts that can move as due times pass during a test


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("export"), hours=4)


@pytest.fixture(scope="module")
def client(store_url, tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("exp-data"), database_url=store_url,
                              refresh_seconds=60))
    return app.server.test_client()


def png_pixels(data: bytes):
    """Return (width, height, rows of RGBA/RGB bytes) of an 8-bit PNG, decoded with zlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    assert depth == 8 and ctype in (2, 6)
    bpp = 4 if ctype == 6 else 3
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def colours(data: bytes) -> int:
    """Return the number of distinct pixel colours of a PNG (sampled every 3rd row)."""
    w, h, bpp, rows = png_pixels(data)
    return len({r[i:i + bpp] for r in rows[::3] for i in range(0, len(r), bpp)})


@pytest.mark.parametrize("pid,w,h", [("traffic.tti", 640, 320), ("map-traffic", 900, 600)])
def test_export001_png_size_and_not_blank(client, pid, w, h):
    r = client.get(f"/api/panels/{pid}.png?width={w}&height={h}&theme=dark")
    assert r.status_code == 200 and r.mimetype == "image/png"
    pw, ph, _, rows = png_pixels(r.data)
    assert (pw, ph) == (w, h)
    assert colours(r.data) > 20, "image is blank or nearly"
    if pid.startswith("map"):  # the map drew: bright congestion colours in the middle
        mid = rows[h // 4:3 * h // 4]
        assert any(px[2] > 200 for r_ in mid for px in [r_[i:i + 4] for i in range(0, len(r_), 4 * 7)]), "no map dots"


def test_export002_png_scale_and_cache(client):
    r = client.get("/api/panels/energy.load.png?width=300&height=200&scale=2&theme=light")
    assert r.status_code == 200
    assert png_pixels(r.data)[:2] == (600, 400)
    t = time.perf_counter()
    again = client.get("/api/panels/energy.load.png?width=300&height=200&scale=2&theme=light")
    assert again.data == r.data and time.perf_counter() - t < 0.5, "second request should come from the cache"


def test_export003_svg_size(client):
    r = client.get("/api/panels/air.aqi_worst.svg?width=500&height=260&theme=light")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    head = r.data[:400].decode()
    assert 'width="500"' in head and 'height="260"' in head and "<svg" in head
    assert r.data.count(b"<text") >= 3 or r.data.count(b"text") >= 3


def test_export004_kpi_json_csv_equal_read_model(client, store_url):
    data = {}
    for k in KPIS:
        j = client.get(f"/api/panels/{k.id}.json?window=24h").get_json()
        data[k.id] = j
    with make_engine(store_url).connect() as conn:
        truth = {k.id: k for k in compute_all(conn, time.time(), "24h", None)}
    for kid, j in data.items():
        k = truth[kid]
        assert j["kpi"]["status"] == k.status or kid in TIME_DEPENDENT
        if isinstance(k.value, float) and kid not in TIME_DEPENDENT:
            assert j["kpi"]["value"] == pytest.approx(k.value, rel=1e-3, abs=10 ** -(k.decimals + 2)), kid
        elif kid not in TIME_DEPENDENT:
            assert j["kpi"]["value"] == k.value, kid
        xs = [p["t"] for p in j["trend"]]  # some trends end at "now": compare points, allow the seconds between
        assert len(xs) == len(k.spark_x) and all(abs(a - b) < 120 for a, b in zip(xs, k.spark_x)), kid
        if kid not in TIME_DEPENDENT:
            assert [p["value"] for p in j["trend"]] == pytest.approx(k.spark_y, nan_ok=True), kid
    rows = list(csv.DictReader(io.StringIO(client.get("/api/panels/traffic.tti.csv").data.decode())))
    k = truth["traffic.tti"]
    assert len(rows) == len(k.spark_x)
    assert float(rows[0]["value"]) == pytest.approx(k.value, abs=1e-3)
    assert [float(r["trend_value"]) for r in rows] == pytest.approx(k.spark_y)


def test_export005_layer_json_csv_equal_read_model(client, store_url):
    layer = LAYER_BY_ID["traffic"]
    with make_engine(store_url).connect() as conn:
        static = layer.static(conn)
        frame = layer_frame(conn, layer)
    truth = layer.worst(static, frame, len(static))
    j = client.get("/api/panels/map-traffic.json").get_json()
    got = {(p["place"], p["value"]) for p in j["places"] if p["layer"] == "traffic"}
    assert got == set(zip(truth["place"], truth["value"]))
    rows = list(csv.DictReader(io.StringIO(client.get("/api/panels/map-traffic.csv").data.decode())))
    assert {(r["place"], float(r["value"])) for r in rows} == got
    sub = client.get("/api/panels/map.json?layers=air_quality&district=chaoyang").get_json()
    assert sub["places"] and {p["district"] for p in sub["places"]} == {"chaoyang"}


@pytest.mark.parametrize("url,status", [
    ("/api/panels/traffic.tti.png?width=199", 400),
    ("/api/panels/traffic.tti.png?width=4001", 400),
    ("/api/panels/traffic.tti.png?height=99999", 400),
    ("/api/panels/traffic.tti.png?scale=9", 400),
    ("/api/panels/traffic.tti.png?scale=nan", 400),
    ("/api/panels/traffic.tti.png?width=abc", 400),
    ("/api/panels/traffic.tti.gif", 400),
    ("/api/panels/traffic.tti", 404),
    ("/api/panels/nope.json", 404),
    ("/api/panels/traffic.tti.json?window=2y", 400),
    ("/api/panels/traffic.tti.json?theme=pink", 400),
    ("/api/panels/traffic.tti.json?refresh=0", 400),
    ("/api/panels/map-traffic.json?layers=energy", 400),
    ("/api/panels/..%2F..%2Fetc%2Fpasswd.json", 404),
    ("/api/panels/..%2F..%2Fetc%2Fpasswd", 404),
])
def test_export006_bad_requests(client, url, status):
    r = client.get(url)
    assert r.status_code == status, (url, r.data[:200])
    assert "error" in r.get_json() and b"Traceback" not in r.data and b"root:" not in r.data


@pytest.mark.parametrize("value", ["' OR '1'='1", "x'); DROP TABLE readings; --", "<script>alert(1)</script>",
                                   "\"><img src=x onerror=alert(1)>", "../../etc/passwd"])
def test_export007_injection_never_reaches_sql_or_html(client, store_url, value):
    from urllib.parse import quote

    for url in (f"/api/panels/traffic.tti.json?district={quote(value)}",
                f"/api/panels/map.csv?layers={quote(value)}",
                f"/embed/traffic.tti?district={quote(value)}",
                f"/embed/{quote(value, safe='')}",
                f"/api/panels/{quote(value, safe='')}.json"):
        r = client.get(url)
        assert r.status_code in (400, 404), url
        body = r.data.decode()
        assert "<script>alert" not in body and "<img src=x" not in body and "Traceback" not in body
        if url.startswith("/embed/"):
            assert r.mimetype == "text/html" and "<h1" in body
    with make_engine(store_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar() > 0


def test_export008_framing_headers(client):
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Content-Security-Policy"].endswith("; frame-ancestors 'none'")
    api = client.get("/api/panels/traffic.tti.json")
    assert api.headers["X-Frame-Options"] == "DENY"
    emb = client.get("/embed/traffic.tti")
    assert emb.status_code == 200 and "X-Frame-Options" not in emb.headers
    assert emb.headers["Content-Security-Policy"].endswith("; frame-ancestors 'self'")
    assert parse_origins("'self', https://intranet.example:8443 http://127.0.0.1:9000") == [
        "'self'", "https://intranet.example:8443", "http://127.0.0.1:9000"]
    assert embed_policy("") == "frame-ancestors 'self'"
    for bad in ("https://x.example; script-src *", "'none' https://a.example", "javascript:alert(1)"):
        with pytest.raises(ValueError):
            parse_origins(bad)


def test_export009_panel_list_from_registries(client):
    j = client.get("/api/panels").get_json()
    ids = [p["id"] for p in j["panels"]]
    assert ids == panel_ids()
    assert set(k.id for k in KPIS) <= set(ids) and {f"map-{lid}" for lid in LAYER_BY_ID} <= set(ids) and "map" in ids


def test_export010_cli_export(store_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dashboard.cli import app

    monkeypatch.setenv("PANORAMA_DATABASE_URL", store_url)
    out = tmp_path / "tti.json"
    r = CliRunner().invoke(app, ["export", "traffic.tti", "--format", "json", "--out", str(out), "--window", "1h"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["kpi"]["id"] == "traffic.tti"
    r = CliRunner().invoke(app, ["export", "nope", "--format", "json", "--out", str(out)])
    assert r.exit_code == 1 and "unknown panel" in r.output


def _subpath_centres(path: str) -> list[tuple[float, float]]:
    """Return the mean vertex of each closed subpath ``M…Z`` of an SVG path (a dot's centre)."""
    out = []
    for sub in path.split("M")[1:]:
        pts = [tuple(map(float, p.split(","))) for p in sub.rstrip("Z").split("L")]
        out.append((sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)))
    return out


def _rgb(c: str) -> tuple:
    from dashboard.map_image import parse_colour

    return tuple(round(v) for v in parse_colour(c)[:3])


def test_export011_map_image_no_webgl_same_values_as_live_layers(store_url, tmp_path):
    """The map image draws no WebGL/map traces, and shows the live layers' values in their colours:
    districts filled by the choropleth's colour scale at their value, traffic dots in their segment's
    band colour, stations with the layer's colours and sizes, over the same view."""
    import numpy as np
    import pandas as pd
    from plotly.colors import sample_colorscale

    from dashboard import views
    from dashboard.export import map_panel_figure, parse_request, standalone_live
    from dashboard.map_image import RIM_PX, mercator_y, static_map_figure
    from dashboard.theme import status_colour, status_scale
    from layers.energy.kpis import LOAD_THRESHOLDS

    LOAD_SCALE = status_scale(*LOAD_THRESHOLDS, 0, 100)
    from layers.traffic.layer import CONGESTION_BANDS
    from layers._common import untyped

    live = standalone_live(Settings(data_dir=tmp_path, database_url=store_url))
    req = parse_request(live, "map", {"layers": "districts,energy,traffic,air_quality", "width": "900",
                                      "height": "600", "district": "chaoyang"})
    fig = map_panel_figure(live, req)
    assert fig["data"] == [], [t["type"] for t in fig["data"]]  # no scattermap/choroplethmap: no WebGL
    assert not {"map", "mapbox", "geo"} & set(fig["layout"]), "no map subplot"
    assert fig["layout"]["yaxis"]["scaleanchor"] == "x" and fig["layout"]["shapes"]
    live_fig = map_panel_figure(live, req, webgl=True)  # same view as the live map figure
    c = live_fig["layout"]["map"]["center"]
    assert sum(fig["layout"]["xaxis"]["range"]) / 2 == pytest.approx(c["lon"], abs=1e-6)
    own = [a["text"] for a in fig["layout"]["annotations"] if not a.get("name", "").startswith("label:")]
    assert own == [a["text"] for a in live_fig["layout"]["annotations"]]

    # varied values, so that several bands and colours show: every speed ratio, loads 0–110 %
    frames = dict(live.layer_frames())
    tr_static = live.static("traffic")
    ratios = np.linspace(0.05, 1.0, len(tr_static))
    frames["traffic"] = pd.DataFrame({"asset_id": tr_static["id"], "speed_kmh": ratios * tr_static["free_flow_kmh"],
                                      "incident": 0.0, "ts": frames["now"]})
    en_static = live.static("energy")
    share = np.linspace(0, 110, len(en_static))
    share[3] = np.nan  # a district with no reading is not filled
    frames["energy"] = pd.DataFrame({"district_id": en_static["id"], "load_mw": share / 100 * en_static["capacity_mw"],
                                     "renewable_mw": 0.0, "ts": frames["now"]})
    params = live.params(frames["now"], "24h", None, "dark")
    on = ["districts", "energy", "traffic", "air_quality"]
    live_map = views.map_figure(live, frames, params, on, layer_ids=on, view=views.asset_extent(live))
    live_map["layout"].update(width=900, height=600)
    img = static_map_figure(live_map)
    shapes = {s["name"]: s for s in img["layout"]["shapes"]}

    # energy: each district's fill = the live choropleth's z on its colour scale (plotly's own sampler)
    energy = next(t for t in live_map["data"] if t.get("uid") == "energy")
    for loc, z in zip(energy["locations"], energy["z"]):
        if z is None:
            assert f"energy:{loc}" not in shapes
            continue
        want = sample_colorscale(LOAD_SCALE, [min(1, max(0, z / 100))])[0]
        want = tuple(round(float(v)) for v in want[4:-1].split(","))
        got = shapes[f"energy:{loc}"]["fillcolor"]
        assert all(abs(a - b) <= 1 for a, b in zip(_rgb(got), want)), (loc, z, got, want)
        assert got.endswith(",0.55)")  # the choropleth's marker opacity
    assert sum(n.startswith("energy:") for n in shapes) == sum(z is not None for z in energy["z"]) == len(en_static) - 1

    # traffic: every dot drawn once, in its segment's congestion band colour, in the data's order
    # (where dots overlap, the later one is on top, as MapLibre paints them)
    dots_lon, dots_lat, _ = tr_static.attrs["dots"]
    band = untyped(LAYER_BY_ID["traffic"].values(tr_static, frames["traffic"], params)[0]["marker"]["color"])
    colours = [status_colour("unknown")] + [b[3] for b in CONGESTION_BANDS]
    drawn, drawn_colour = [], []
    for sh in img["layout"]["shapes"]:
        if sh["name"].startswith("traffic:"):
            centres = _subpath_centres(sh["path"])
            drawn += centres
            drawn_colour += [_rgb(sh["fillcolor"])] * len(centres)
    assert len(drawn) == len(dots_lon)
    assert np.abs(np.array(drawn) - np.c_[dots_lon, mercator_y(dots_lat)]).max() < 1e-4
    assert drawn_colour == [_rgb(colours[b + 1]) for b in band]
    assert len(set(drawn_colour)) >= 3  # the status colours (slow and free flow are both "good")

    # stations: a circle each, in the layer's own marker colour, size (px) and opacity
    aq = next(t for t in live_map["data"] if t.get("uid") == "air-quality")
    circles = [s for s in img["layout"]["shapes"] if s["name"].startswith("air_quality:")]
    assert [s["xanchor"] for s in circles] == aq["lon"]
    assert [s["yanchor"] for s in circles] == pytest.approx(mercator_y(aq["lat"]).tolist(), abs=1e-6)
    assert [s["x1"] - s["x0"] + 2 * RIM_PX for s in circles] == pytest.approx(aq["marker"]["size"])
    assert [_rgb(s["fillcolor"]) for s in circles] == [_rgb(c) for c in aq["marker"]["color"]]
    assert all(s["fillcolor"].endswith(",0.95)") and s["xsizemode"] == "pixel" for s in circles)
    # every layer drawn, in the live map's order; the hover-only traffic trace draws nothing
    order = [s["name"].split(":")[0] for s in img["layout"]["shapes"]]
    assert list(dict.fromkeys(order)) == ["energy", "districts", "traffic", "air_quality"]
    assert img["data"] == []

    # district names, as on the live map: at their label points, inside the image, none over another
    districts = next(t for t in live_map["data"] if t.get("uid") == "districts")
    points = {n.upper(): (x, float(mercator_y(y))) for n, x, y in districts["meta"]["labels"]}
    names = [a for a in img["layout"]["annotations"] if a.get("name", "").startswith("label:")]
    assert len(names) >= len(points) // 2, [a["text"] for a in names]
    (x0, x1), (y0, y1) = img["layout"]["xaxis"]["range"], img["layout"]["yaxis"]["range"]
    boxes = []
    for a in names:
        assert (a["x"], a["y"]) == pytest.approx(points[a["text"]])
        assert x0 < a["x"] < x1 and y0 < a["y"] < y1
        half_w = (0.68 * 12 * len(a["text"]) + 4) / 2 * (x1 - x0) / 900
        half_h = 1.3 * 12 / 2 * (x1 - x0) / 900  # one scale on both axes
        boxes.append((a["x"] - half_w, a["y"] - half_h, a["x"] + half_w, a["y"] + half_h))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    # the districts layer off: no names
    off = views.map_figure(live, frames, params, ["energy"], layer_ids=on, view=views.asset_extent(live))
    off["layout"].update(width=900, height=600)
    assert not [a for a in static_map_figure(off)["layout"].get("annotations", []) if a.get("name", "").startswith("label:")]


def _wait(cond, timeout: float = 30.0):
    """Poll ``cond`` until it is truthy (returned) or the deadline passes (AssertionError)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


@pytest.mark.parametrize("fmt", ["json", "csv", "svg"])
@pytest.mark.parametrize("layers,reason", [("traffic,traffic", "listed twice"), ("traffic," * 200, "too long"),
                                           ("traffic,nope", "unknown layer")])
def test_export012_repeated_unknown_or_endless_layers_are_400(client, fmt, layers, reason):
    r = client.get(f"/api/panels/map.{fmt}?layers={layers}")
    assert r.status_code == 400, (fmt, layers[:40], r.status_code, len(r.data))
    msg = r.get_json()["error"]
    assert reason in msg and "\n" not in msg and len(msg) < 200


def test_export013_image_sizes_snap_to_a_grid_and_share_one_render(client):
    from dashboard.export import Renderer

    live = client.application.extensions["panorama"]
    for _attempt in range(3):  # images are kept per refresh interval: all four requests in one of them
        bucket = live.bucket()
        first = client.get("/api/panels/energy.capacity_share.png?width=801&height=301")
        assert first.status_code == 200
        assert png_pixels(first.data)[:2] == (800, 300)  # snapped to the 20 px grid
        n = Renderer.renders
        for w, h in ((800, 300), (799, 299), (808, 295)):
            again = client.get(f"/api/panels/energy.capacity_share.png?width={w}&height={h}")
            assert again.data == first.data, (w, h)
        if live.bucket() == bucket:
            break
    assert Renderer.renders == n, "a size 1 px away from a cached one was rendered again"


def test_export014_full_render_queue_answers_503_with_retry_after(client, monkeypatch):
    import threading

    from dashboard.export import Renderer

    monkeypatch.setattr(Renderer, "max_waiting", 1)
    app = client.application
    answers = {}
    Renderer._lock.acquire()  # an image is being drawn
    try:
        t = threading.Thread(target=lambda: answers.setdefault(
            "queued", app.test_client().get("/api/panels/energy.load.png?width=420")))
        t.start()
        _wait(lambda: Renderer.waiting == 1)
        r = app.test_client().get("/api/panels/traffic.tti.png?width=440")
        assert r.status_code == 503 and "busy" in r.get_json()["error"]
        assert int(r.headers["Retry-After"]) > 0
    finally:
        Renderer._lock.release()
    t.join(60)
    assert answers["queued"].status_code == 200  # the one in the queue got its turn


def test_export015_a_render_whose_client_hung_up_is_not_drawn(client):
    import socket
    import threading

    from werkzeug.serving import make_server

    from dashboard.export import Renderer

    server = make_server("127.0.0.1", 0, client.application, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    skipped, renders = Renderer.skipped, Renderer.renders
    Renderer._lock.acquire()  # an image is being drawn
    try:
        s = socket.create_connection(("127.0.0.1", server.server_port))
        s.sendall(b"GET /api/panels/air.over_limit.png?width=460 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        _wait(lambda: Renderer.waiting == 1)
        s.close()  # the client gives up while its image waits
    finally:
        Renderer._lock.release()
    try:
        _wait(lambda: Renderer.skipped == skipped + 1)
        assert Renderer.renders == renders, "the abandoned image was drawn"
    finally:
        server.shutdown()


def test_export016_csv_cells_cannot_start_a_formula():
    from dashboard.export import _safe_csv

    for cell in ("=1+1", "+cmd", "-2+3", "-cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\r=1", "-", "-inf", "-1_0"):
        assert _safe_csv(cell) == "'" + cell, cell
    for cell in ("-3.5", "-12", "4.25", "1e-3", "-2.5E+4", "Chaoyang", "", "a-b"):
        assert _safe_csv(cell) == cell, cell


def test_export017_image_pixels_are_bounded(client):
    r = client.get("/api/panels/map.png?width=4000&height=4000&scale=4")
    assert r.status_code == 400 and "million pixels" in r.get_json()["error"]


@pytest.mark.parametrize("lid", [layer.id for layer in LAYERS])
def test_export018_every_map_layer_draws_as_svg(client, lid):
    """Each layer's panel draws, whatever its traces carry: the buses' live positions come as typed
    arrays ({dtype, bdata}), which the image made a 500 of before."""
    r = client.get(f"/api/panels/map-{lid}.svg?width=640&height=400")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml", r.data[:200]
    assert r.data.count(b"<path") >= 1
