"""Real cities: any subset of domains renders everywhere, the map is fitted to the city's districts
(clear of the legend and toggles, or as ``[map]`` in city.toml says), and a value older than its
feed's stale age never passes for a current one (map, CSV/JSON panels, the wall's attention list)."""
from __future__ import annotations

import csv
import io
import json
import time
from datetime import date, timedelta

import pytest
from _demo import empty_store
from _store_helpers import ingest_rows
from _subset_city import build_subset_city
from typer.testing import CliRunner

from dashboard import views
from dashboard.app import create_app
from dashboard.city import load_city
from dashboard.export import panel_ids
from dashboard.map_image import mercator_y, view_ranges
from dashboard.pages import manager, wall
from dashboard.settings import Settings
from dashboard.store.schema import make_engine
from layers import LAYER_BY_ID, LayerParams
from layers._common import STALE_COLOUR

NO_ASSETS = ("no road segments in this city", "no stations in this city", "no substations in this city")


def _app(city: dict, tmp_path):
    return create_app(Settings(data_dir=tmp_path, database_url=city["url"], city=str(city["folder"]),
                               refresh_seconds=60))


def _layout(client, page: str) -> str:
    """Return the JSON of the layout the browser gets for ``page`` (what /_dash-layout answers)."""
    r = client.get("/_dash-layout", headers={"Referer": f"http://localhost{page}"})
    assert r.status_code == 200, (page, r.data[:300])
    return r.data.decode()


@pytest.fixture(scope="module", params=["boundaries", "requests"])
def subset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"subset-{request.param}")
    city = build_subset_city(root, with_requests=request.param == "requests")
    app = _app(city, root / "data")
    return {**city, "kind": request.param, "app": app, "client": app.server.test_client(),
            "live": app.server.extensions["panorama"]}


# ------------------------------------------------------------------ 1. any subset of domains
def test_subset001_every_page_and_embed_renders(subset):
    c = subset["client"]
    district = sorted(subset["live"].district_ids())[0]
    pages = ["/", f"/?district={district}", "/wall", f"/wall?district={district}&focus=air_quality"]
    pages += [f"/embed/{p}" for p in panel_ids()]
    for page in pages:
        body = _layout(c, page)
        assert "Traceback" not in body and "error-page" not in body, page
        if not page.startswith("/embed/"):
            assert r'wall-map' in body or '"map"' in body, page
        assert c.get(page.split("?")[0]).status_code == 200, page


def test_subset002_every_panel_export_and_the_kpis_answer(subset):
    c = subset["client"]
    for p in panel_ids():
        for fmt in ("json", "csv"):
            r = c.get(f"/api/panels/{p}.{fmt}")
            assert r.status_code == 200, (p, fmt, r.data[:200])
    for p in ("map", "map-air_quality", "map-traffic", "air.aqi_worst", "service.satisfaction"):
        r = c.get(f"/api/panels/{p}.png?width=400&height=300")
        assert r.status_code == 200 and r.data[:4] == b"\x89PNG", p
    svg = c.get("/api/panels/air.aqi_worst.svg?width=400&height=300").data.decode()
    assert "no stations in this city" in svg and "as of no data" not in svg
    r = c.get("/api/kpis")
    assert r.status_code == 200
    notes = {k["id"]: k["note"] for k in r.get_json()["kpis"]}
    assert notes["air.aqi_worst"] == "no stations in this city"
    assert notes["traffic.tti"] == "no road segments in this city"
    assert notes["energy.load"] == "no substations in this city"


def test_subset003_report_renders(subset, tmp_path):
    from dashboard.cli import app as cli

    out = tmp_path / "r.html"
    env = {**subset["env"], "PANORAMA_DATABASE_URL": subset["url"]}
    r = CliRunner().invoke(cli, ["report", "--from", (date.today() - timedelta(days=6)).isoformat(),
                                 "--to", date.today().isoformat(), "--out", str(out)], env=env)
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 10_000 and "Traceback" not in out.read_text()


def test_subset004_no_assets_is_said_and_differs_from_no_data_yet(subset, tmp_path):
    """A domain with nothing to measure says so on the wall, the manager and the embeds; a domain
    whose assets have not reported yet still says "no data yet"."""
    c = subset["client"]
    w = _layout(c, "/wall")
    for msg in NO_ASSETS:
        assert msg in w
    assert "no stations in this city" in _layout(c, "/")
    assert "no stations in this city" in _layout(c, "/embed/air.aqi_worst")
    assert "no stations in this city" in _layout(c, "/embed/map-air_quality")
    # Beijing with no readings: stations exist, no data yet
    beijing = create_app(Settings(data_dir=tmp_path, database_url=empty_store(tmp_path), refresh_seconds=60))
    b = _layout(beijing.server.test_client(), "/wall")
    assert "no data yet" in b and not any(msg in b for msg in NO_ASSETS)


# ------------------------------------------------------------------ 2. the view fits the city
def _district_box(live) -> dict:
    return live.bounds()


def _in_view(view: dict, box: dict, px, insets) -> bool:
    """True when ``box`` lies in the part of a ``px`` map at ``view`` that ``insets`` leave free."""
    xr, yr = view_ranges(view["center"], view["zoom"], px)
    ppd = px[0] / (xr[1] - xr[0])
    left = (box["lon"][0] - xr[0]) * ppd
    right = (box["lon"][1] - xr[0]) * ppd
    top = (yr[1] - float(mercator_y(box["lat"][1]))) * ppd
    bottom = (yr[1] - float(mercator_y(box["lat"][0]))) * ppd
    return (left >= insets["l"] - 1 and right <= px[0] - insets["r"] + 1 and top >= insets["t"] - 1
            and bottom <= px[1] - insets["b"] + 1)


def test_view001_a_city_without_assets_opens_on_its_districts(subset):
    live = subset["live"]
    fig = views.map_figure(live, live.layer_frames(), live.params(time.time()), ["districts"])
    v = {k: fig["layout"]["map"][k] for k in ("center", "zoom")}
    assert v["zoom"] > 8, v  # not the whole world at zoom 1
    box = _district_box(live)
    assert _in_view(v, box, views.MAP_PX, views.MAP_INSETS), "districts under the toggles or legend"
    # and the view is tight: the districts fill the free part in one direction at least
    assert not _in_view({**v, "zoom": v["zoom"] + 0.3}, box, views.MAP_PX, views.MAP_INSETS)


def test_view002_assets_outside_every_district_never_widen_the_view(tmp_path):
    """A station far outside the districts (a regional monitor 2° away) leaves the view on the districts."""
    city = build_subset_city(tmp_path / "far", with_requests=False)
    live = _app(city, tmp_path / "d0").server.extensions["panorama"]
    before = views.view_for(live)
    f = city["folder"] / "far_stations.csv"
    box = live.bounds()
    f.write_text("id,name,lon,lat,category\nfar-1,Far away,%f,%f,regional\n" % (box["lon"][1] + 2, box["lat"][1] + 1))
    from dashboard.cli import app as cli

    r = CliRunner().invoke(cli, ["city", "import", "assets", str(f), "--kind", "aq_station"], env=city["env"])
    assert r.exit_code == 0, r.output
    live = _app(city, tmp_path / "d1").server.extensions["panorama"]
    assert len(live.static("air_quality")) == 1
    fig = views.map_figure(live, live.layer_frames(), live.params(time.time()), ["districts", "air_quality"])
    assert {k: fig["layout"]["map"][k] for k in ("center", "zoom")} == before
    assert _in_view(before, box, views.MAP_PX, views.MAP_INSETS)


def test_view003_map_section_of_city_toml_is_honoured(tmp_path):
    city = build_subset_city(tmp_path / "c", with_requests=False,
                             map_section='\n[map]\ncenter = [-73.6, 45.5]\nzoom = 9.5\n')
    app = _app(city, tmp_path / "d")
    live = app.server.extensions["panorama"]
    body = json.loads(_layout(app.server.test_client(), "/"))
    assert '"center": {"lon": -73.6, "lat": 45.5}, "zoom": 9.5' in json.dumps(body)
    assert wall.wall_view(live, None) == {"center": {"lon": -73.6, "lat": 45.5}, "zoom": 9.5}
    # bounds: the screens fit them instead of the districts
    (city["folder"] / "city.toml").write_text(
        (city["folder"] / "city.toml").read_text().replace("center = [-73.6, 45.5]\nzoom = 9.5",
                                                           "bounds = [-74.0, 45.3, -73.4, 45.8]"))
    live = _app(city, tmp_path / "d2").server.extensions["panorama"]
    assert wall.wall_view(live, None) == {"lon": [-74.0, -73.4], "lat": [45.3, 45.8]}
    assert _in_view(views.view_for(live), {"lon": [-74.0, -73.4], "lat": [45.3, 45.8]}, views.MAP_PX,
                    views.MAP_INSETS)


@pytest.mark.parametrize("section,error", [
    ("[map]\nzoom = 9\n", "center and zoom go together"),
    ("[map]\ncenter = [-73.6]\nzoom = 9\n", "center must be a list of 2 numbers"),
    ("[map]\ncenter = [-73.6, 45.5]\nzoom = 40\n", "zoom must be a number from 0 to 22"),
    ("[map]\nbounds = [-73.4, 45.3, -74.0, 45.8]\n", "west < east"),
    ("[map]\nbound = [1, 2, 3, 4]\n", "unknown key(s) bound"),
])
def test_view004_a_bad_map_section_is_a_clear_error(tmp_path, section, error):
    (tmp_path / "city.toml").write_text(f'name = "X"\ntimezone = "UTC"\n\n{section}')
    with pytest.raises(ValueError, match=r"city\.toml: \[map\].*" + error.replace("(", r"\(").replace(")", r"\)")):
        load_city(tmp_path).map_view  # noqa: B018 - reading the property raises


def _assigned(patch) -> dict:
    return {tuple(o["location"]): o["params"]["value"] for o in patch.to_plotly_json()["operations"]
            if o["operation"] == "Assign"}


def test_view005_picking_a_district_zooms_to_it_and_dims_the_rest(subset):
    live = subset["live"]
    district = sorted(live.district_ids())[0]
    ops = _assigned(manager.view_patch(live, district))
    view = {"center": ops[("layout", "map", "center")], "zoom": ops[("layout", "map", "zoom")]}
    assert view["zoom"] > views.view_for(live)["zoom"] + 0.5
    assert _in_view(view, live.bounds(district), views.MAP_PX, views.MAP_INSETS)
    ids = list(live.static("districts")["id"])
    i = next(i for i, t in enumerate(views.map_figure(live, live.layer_frames(), live.params(time.time()),
                                                      ["districts"])["data"]) if t["meta"]["layer"] == "districts")
    patch, _, _ = manager._render(live, "24h", district, ["districts"], [])
    assert _assigned(patch)[("data", i, "z")] == [0 if d == district else 1 for d in ids], "the others are dimmed"
    assert ("layout", "map", "zoom") not in _assigned(patch), "a refresh leaves the view alone"
    assert _assigned(manager.view_patch(live, None))[("layout", "map", "zoom")] == views.view_for(live)["zoom"]
    patch, _, _ = manager._render(live, "24h", None, ["districts"], [])
    assert set(_assigned(patch)[("data", i, "z")]) == {0}


# ------------------------------------------------------------------ 3. stale values are not current
DAY = 86_400


@pytest.fixture(scope="module")
def stale_city(tmp_path_factory):
    """Beijing: every station reports PM2.5 10 µg/m³ now, except one whose newest value (94 µg/m³,
    AQI 124) is 38 days old."""
    folder = tmp_path_factory.mktemp("stale")
    url = empty_store(folder)
    eng = make_engine(url)
    now = time.time()
    with eng.connect() as conn:
        static = LAYER_BY_ID["air_quality"].static(conn)
    ids = list(static["id"])
    rows = [{"asset": a, "metric": "pm25", "ts": int(now - 600), "value": 10.0} for a in ids[1:]]
    rows += [{"asset": ids[0], "metric": "pm25", "ts": int(now - 38 * DAY), "value": 94.0}]
    res = ingest_rows(eng, rows, now=now)
    assert res.accepted == len(rows), res
    app = create_app(Settings(data_dir=folder, database_url=url, refresh_seconds=60))
    return {"url": url, "old": ids[0], "old_name": static["name"].iloc[0], "now": now, "app": app,
            "live": app.server.extensions["panorama"], "client": app.server.test_client()}


def test_stale001_old_station_is_drawn_stale_with_its_age(stale_city):
    live = stale_city["live"]
    layer = LAYER_BY_ID["air_quality"]
    static, frames = live.static("air_quality"), live.layer_frames()
    v = layer.values(static, frames["air_quality"], LayerParams(now=time.time()))[0]
    i = list(static["id"]).index(stale_city["old"])
    assert v["marker"]["color"][i] == STALE_COLOUR
    assert "STALE, 38 d old" in v["customdata"][i][4] and v["customdata"][i][2] == "stale"
    others = [c for j, c in enumerate(v["marker"]["color"]) if j != i]
    assert STALE_COLOUR not in others


def test_stale002_csv_and_json_carry_as_of_and_age(stale_city):
    c = stale_city["client"]
    j = c.get("/api/panels/map-air_quality.json").get_json()
    rows = {p["place"]: p for p in j["places"] if p["layer"] == "air_quality"}
    old = rows[stale_city["old_name"]]
    assert old["stale"] is True and old["band"] == "stale" and old["age_s"] >= 38 * DAY - 60
    assert old["as_of"].endswith("Z") and old["as_of"][:10] == time.strftime(
        "%Y-%m-%d", time.gmtime(stale_city["now"] - 38 * DAY))
    assert all(p["stale"] is False and p["age_s"] < 3600 for n, p in rows.items() if n != stale_city["old_name"])
    assert list(rows).index(stale_city["old_name"]) == len(rows) - 1, "stale values after every current one"
    table = list(csv.DictReader(io.StringIO(c.get("/api/panels/map-air_quality.csv").data.decode())))
    assert {"as_of", "age_s", "stale"} <= set(table[0])
    row = next(r for r in table if r["place"] == stale_city["old_name"])
    assert row["stale"] == "True" and float(row["age_s"]) >= 38 * DAY - 60


def test_stale003_never_a_current_alert_but_listed_as_stale(stale_city):
    live = stale_city["live"]
    items = live.attention()
    assert not [i for i in items if i["level"] in ("bad", "warn") and i["place"] == stale_city["old_name"]]
    stale = [i for i in items if i["level"] == "stale"]
    assert [i["place"] for i in stale] == [stale_city["old_name"]] and "38 d" in stale[0]["detail"]
    html = json.dumps(wall.attention_rows(items), default=lambda o: o.to_plotly_json())
    assert "All clear" in html and "1 stale sensor" in html and stale_city["old_name"] in html
    body = _layout(stale_city["client"], "/wall?focus=air_quality")
    assert "ALERT" not in body.split("att-list")[1] if "att-list" in body else True
    # the wall's worst-now list leaves it out; the drill-down shows it last, as stale
    frames, params = live.layer_frames(), live.params(time.time())
    df = views.worst_places(live, "air_quality", frames, params, current_only=True)
    assert stale_city["old_name"] not in set(df["place"]) and len(df) == 10
    df = views.worst_places(live, "air_quality", frames, params, n=len(live.static("air_quality")))
    assert list(df["place"])[-1] == stale_city["old_name"] and list(df["band"])[-1] == "stale"
    assert stale_city["old_name"] not in json.dumps(
        wall.worst_rows(live, "air_quality", frames, params), default=lambda o: o.to_plotly_json())


def test_stale004_a_request_open_for_months_is_still_overdue_on_the_wall(tmp_path):
    """The wall's attention list counts every open request past its SLA, however old (as the KPIs do)."""
    from sqlalchemy import text as sql

    from dashboard.store import make_engine

    city = build_subset_city(tmp_path, with_requests=True)
    engine = make_engine(city["url"])
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(sql("DELETE FROM service_requests"))
        district = conn.execute(sql("SELECT id FROM districts ORDER BY id LIMIT 1")).scalar()
        category = conn.execute(sql("SELECT id FROM service_categories LIMIT 1")).scalar()
        for i, age_days in enumerate((120, 200)):  # opened last summer, never closed
            opened = now - age_days * DAY
            conn.execute(sql("INSERT INTO service_requests (id, category_id, district_id, opened_at, due_at, status) "
                             "VALUES (:id, :c, :d, :o, :due, 'open')"),
                         {"id": f"old-{i}", "c": category, "d": district, "o": opened, "due": opened + 3 * DAY})
    live = _app(city, tmp_path / "data").server.extensions["panorama"]
    rows = [i for i in live.attention() if i["domain"] == "satisfaction"]
    assert [(i["district"], i["detail"].split(" ·")[0]) for i in rows] == [(district, "2 overdue requests")]
