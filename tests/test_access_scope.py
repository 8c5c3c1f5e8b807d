"""A district-scoped user sees their districts only: whatever the URL, the callback body, the API
parameters or the CLI's options say; with no district they get their first one, never the city;
shared caches never hand a clipped answer to an unscoped user or the reverse."""
from __future__ import annotations

import copy
import json
import re

import pytest
from _access_kit import (OTHER, OWN, PASSWORD, body, interaction, layout_of, make_world, post_callback,
                         server_callbacks, sign_in)
from _demo import build_demo_store
from typer.testing import CliRunner

from dashboard import accounts

#: A second scoped viewer, of another district: the same request body must not give her Sam's answer.
THIRD = "dongcheng"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scope")
    url = build_demo_store(folder, hours=1)
    w = make_world(url, folder)
    w.store_url = url
    accounts.add_user(w.engine, "tess", "viewer", password=PASSWORD, districts=[THIRD])
    c = w.app_off.server.test_client()
    sign_in(c, "tess")
    w.tess = c
    return w


def live(world):
    return world.app_off.server.extensions["panorama"]


def names_except(world, keep: str) -> list[str]:
    d = live(world).districts()
    return [n for i, n in zip(d["id"], d["name"]) if i != keep]


def assert_denied(r, world):
    assert r.status_code == 403, (r.status_code, r.get_data()[:200])
    text = r.get_data(as_text=True)
    assert len(text) < 1500 and not [n for n in names_except(world, "") if n in text]


def own_body(world, client, callback: str, page: str):
    """The body ``client``'s browser sends for ``callback`` on ``page`` (its own layout)."""
    comps = layout_of(client, page)
    vals, trigger = interaction(callback, comps, OWN)
    return body(world.app_off, server_callbacks(world.app_off)[callback], comps, vals, trigger)


# ----------------------------------------------------------------------------- editing the URL
@pytest.mark.parametrize("url", [f"/?district={OTHER}", f"/wall?district={OTHER}",
                                 f"/embed/traffic.tti?district={OTHER}", f"/embed/map?district={OTHER}"])
def test_scope001_another_district_in_the_url_is_refused(world, url):
    c = world.principals["scoped"].client
    assert_denied(c.get(url), world)
    assert_denied(c.get("/_dash-layout", headers={"Referer": "http://localhost" + url}), world)


@pytest.mark.parametrize("url", [f"/api/kpis?district={OTHER}", *[f"/api/panels/{pid}.{fmt}?district={OTHER}"
                                 for pid in ("traffic.tti", "map-traffic") for fmt in ("json", "csv", "svg", "png")]])
def test_scope002_another_district_in_the_api_is_refused(world, url):
    assert_denied(world.principals["scoped"].client.get(url), world)


# ----------------------------------------------------------------------------- editing a callback body
EDITS = {
    "manager.refresh": ("dashboard.pages.manager.refresh", "/", {("district", "value"): OTHER}),
    "manager.drill": ("dashboard.pages.manager.drill", "/", {("district", "value"): OTHER}),
    "manager.sync_url": ("dashboard.pages.manager.sync_url", "/", {("district", "value"): OTHER}),
    "manager.sync_url search": ("dashboard.pages.manager.sync_url", "/",
                                {("manager-url", "search"): f"?district={OTHER}"}),
    "manager.pick_district current": ("dashboard.pages.manager.pick_district", "/", {("district", "value"): OTHER}),
    "manager.fly_to": ("dashboard.pages.manager.fly_to", "/", {("district", "value"): OTHER}),
    "wall.refresh config": ("dashboard.pages.wall.refresh", "/wall", {}),
    "router search": ("dashboard.app.route", "/", {("url", "pathname"): "/", ("url", "search"): f"?district={OTHER}"}),
    "router wall": ("dashboard.app.route", "/", {("url", "pathname"): "/wall",
                                                 ("url", "search"): f"?district={OTHER}"}),
    "router embed": ("dashboard.app.route", "/", {("url", "pathname"): "/embed/traffic.tti",
                                                  ("url", "search"): f"?district={OTHER}"}),
    "embed.refresh_kpi spec": ("dashboard.pages.embed.refresh_kpi", "/embed/traffic.tti", {}),
    "embed.refresh_map spec": ("dashboard.pages.embed.refresh_map", "/embed/map-traffic", {}),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_scope003_another_district_in_a_callback_body_is_refused(world, edit):
    callback, page, values = EDITS[edit]
    c = world.principals["scoped"].client
    b = own_body(world, c, callback, page)
    for part in ("inputs", "state"):
        for item in b[part]:
            if isinstance(item, dict) and (item["id"], item["property"]) in values:
                item["value"] = values[(item["id"], item["property"])]
            if isinstance(item, dict) and item["id"] == "wall-config":
                item["value"] = {**item["value"], "district": OTHER}
            if isinstance(item, dict) and item["id"] == "embed-spec":
                item["value"] = {**item["value"], "args": {**item["value"]["args"], "district": OTHER}}
    assert b != own_body(world, c, callback, page), "the edit changed nothing"
    assert_denied(post_callback(c, b), world)


def test_scope004_a_click_on_another_districts_shape_does_not_switch_to_it(world):
    c = world.principals["scoped"].client
    b = own_body(world, c, "dashboard.pages.manager.pick_district", "/")
    b["inputs"][0]["value"] = {"points": [{"location": OTHER}]}
    b["state"][0]["value"] = OWN
    r = post_callback(c, b)
    assert r.status_code == 204 or r.get_json()["response"] == {}, r.get_data()[:200]
    b["inputs"][0]["value"], b["changedPropIds"] = None, ["whole-city.n_clicks"]
    b["inputs"][1]["value"] = 1
    r = post_callback(c, b)  # "Whole city" (hidden for them) is refused too: it would show no district
    assert r.status_code == 204 or r.get_json()["response"] == {}, r.get_data()[:200]


# ----------------------------------------------------------------------------- no district given
def test_scope005_no_district_means_their_first_never_the_city(world):
    scoped, admin = world.principals["scoped"].client, world.principals["admin"].client
    got = scoped.get("/api/kpis").get_json()
    own = admin.get(f"/api/kpis?district={OWN}").get_json()
    city = admin.get("/api/kpis").get_json()
    assert got["district"] == OWN
    strip = [{k: v for k, v in x.items() if k != "data_age_s"} for x in got["kpis"]]
    assert strip == [{k: v for k, v in x.items() if k != "data_age_s"} for x in own["kpis"]]
    assert strip != [{k: v for k, v in x.items() if k != "data_age_s"} for x in city["kpis"]]
    for pid in ("traffic.tti", "map-traffic", "map-air_quality"):
        j = scoped.get(f"/api/panels/{pid}.json").get_json()
        assert j["district"] == OWN
        assert all(p["district"] == OWN for p in j.get("places", [])), pid
        csv = scoped.get(f"/api/panels/{pid}.csv").get_data(as_text=True)
        assert not [n for n in names_except(world, OWN) if re.search(rf"\b{n}\b", csv)], pid


def test_scope006_the_manager_offers_their_districts_only(world):
    comps = layout_of(world.principals["scoped"].client, "/")
    dd = comps["district"]
    assert dd["value"] == OWN and [o["value"] for o in dd["options"]] == [OWN] and dd["clearable"] is False
    assert comps["whole-city"].get("hidden") is True
    admin = layout_of(world.principals["admin"].client, "/")
    assert len(admin["district"]["options"]) == len(live(world).districts()) and admin["district"]["clearable"]
    assert not admin["whole-city"].get("hidden")


def _points(trace) -> int:
    for k in ("locations", "lon"):
        if isinstance(trace.get(k), (list, dict)):
            return _length(trace[k])
    return 0


def test_scope007_the_map_draws_their_places_and_hover_numbers_only(world):
    from dashboard.pages.manager import layout as _  # noqa: F401 - the manager's layers are registered
    from layers import LAYER_BY_ID

    every = ",".join(lid for lid in LAYER_BY_ID if lid != "districts")
    scoped = layout_of(world.principals["scoped"].client, f"/?layers={every}")["map"]["figure"]["data"]
    admin = layout_of(world.principals["admin"].client, f"/?layers={every}&district={OWN}")["map"]["figure"]["data"]
    assert [t["uid"] for t in scoped] == [t["uid"] for t in admin]
    # the layers' traces (the alerts' markers are filled by the alerts panel, from the viewer's own alerts)
    pairs = [(s, a) for s, a in zip(scoped, admin) if a["meta"]["layer"] in LAYER_BY_ID]
    assert len(pairs) < len(scoped) and all(not _points(s) for s in scoped if s["meta"]["layer"] == "alerts")
    fewer = 0
    for s, a in pairs:
        lid = a["meta"]["layer"]
        static = live(world).static(lid)
        col = "district_id" if "district_id" in static.columns else "id"
        mine = int((static[col] == OWN).sum())
        assert _points(s) <= _points(a), lid
        if _points(a) == len(static) and len(static):  # one point (and hover number) per place
            assert _points(s) == mine, (lid, _points(s), mine)
            if isinstance(a.get("customdata"), (list, dict)) and isinstance(s.get("customdata"), list):
                assert len(s["customdata"]) == mine
            fewer += _points(s) < _points(a)
        if isinstance(s.get("locations"), list):
            assert s["locations"] == [OWN] or set(s["locations"]) <= {OWN}, lid
    assert fewer >= 3, "the clip was not exercised on the point layers"


def test_scope008_the_wall_shows_their_district_attention_and_worst_places(world):
    def lists(comps):
        return {k: v.get("children") for k, v in comps.items() if k == "wall-attention" or "wall-worst" in k}

    scoped = lists(layout_of(world.principals["scoped"].client, "/wall"))
    own = lists(layout_of(world.principals["admin"].client, f"/wall?district={OWN}"))
    assert scoped == own
    text = json.dumps(scoped)
    assert not [n for n in names_except(world, OWN) if re.search(rf"\b{n}\b", text)]


def test_scope009_health_and_district_shapes_carry_no_kpi(world):
    c = world.principals["nobody"].client
    h = c.get("/health").get_json()
    assert set(h) == {"store", "cache", "domains", "worker"}
    assert all(v is None or isinstance(v, (int, float)) for v in h["domains"].values())
    g = c.get("/api/geo/districts.geojson").get_json()
    assert {k for f in g["features"] for k in f["properties"]} == {"name"}


# ----------------------------------------------------------------------------- shared caches, both orders
def _refresh(world, client, window: str, district=None):
    b = own_body(world, client, "dashboard.pages.manager.refresh", "/")
    for item in b["inputs"]:
        if item["id"] == "window":
            item["value"] = window
        if item["id"] == "district":
            item["value"] = district
    r = post_callback(client, b)
    assert r.status_code == 200, r.get_data()[:200]
    resp = r.get_json()["response"]
    values = {k: v[:2] for k, v in resp["kpi-live"]["data"].items()}  # value and change (ages move on)
    return values, _hover_numbers(resp["map"]["figure"])


def _length(v) -> int:
    """Return the length of a list or of plotly's typed array ({"dtype", "bdata", "shape"})."""
    if isinstance(v, list):
        return len(v)
    return int(str(v.get("shape", "0")).split(",")[0]) if isinstance(v, dict) else 0


def _hover_numbers(patch: dict) -> int:
    """Return how many places a map Patch sends hover numbers (customdata) for."""
    return sum(_length(op["params"]["value"]) for op in patch.get("operations", [])
               if op.get("location", [None])[-1] == "customdata")


def _wall(world, client, window_unused: str, district=None):
    b = own_body(world, client, "dashboard.pages.wall.refresh", "/wall")
    for item in b["state"]:
        if isinstance(item, dict) and item["id"] == "wall-config":
            item["value"] = {**item["value"], "district": district}
        if isinstance(item, dict) and item["id"] == "wall-traces":
            item["value"] = None  # the first draw: the whole map, its points countable
    r = post_callback(client, b)
    assert r.status_code == 200, r.get_data()[:200]
    resp = r.get_json()["response"]
    rows = [x for x in resp["wall-attention"]["children"] if "att-stale" not in x["props"]["className"]]
    return rows, sum(_points(t) for t in resp["wall-map"]["figure"]["data"])


@pytest.mark.parametrize("screen", ["manager", "wall"])
@pytest.mark.parametrize("order", ["unscoped first", "scoped first"])
def test_scope010_cached_answers_follow_the_viewer(world, order, screen):
    """The same body (no district: the city for the admin, their first district for Sam and Tess)
    from each in turn; each answer is the one they get alone."""
    call = _refresh if screen == "manager" else _wall
    window = {"unscoped first": "1h", "scoped first": "7d"}[order] if screen == "manager" else "24h"
    who = [("admin", world.principals["admin"].client), ("sam", world.principals["scoped"].client),
           ("tess", world.tess)]
    if order == "scoped first":
        who.reverse()
    if screen == "wall":  # the wall has no window: each order starts without kept answers
        world.app_off.server.extensions["panorama_refresh"]._mem.clear()
    admin = world.principals["admin"].client
    district = {"admin": None, "sam": OWN, "tess": THIRD}
    got, expect = {}, {}
    for name, c in who:  # each beside the admin's answer for that district, in the same refresh bucket
        for _ in range(3):
            bucket = live(world).bucket()
            got[name], expect[name] = call(world, c, window), call(world, admin, window, district[name])
            if live(world).bucket() == bucket:
                break
    for name in got:  # the KPI values (manager) or attention list (wall) of their district, or the city's
        assert got[name][0] == expect[name][0], name
    assert got["admin"][1] > got["sam"][1] and got["admin"][1] > got["tess"][1]  # the clip: fewer points
    assert got["sam"][0] != got["tess"][0] or got["sam"][1] != got["tess"][1]


def test_scope011_export_bytes_are_kept_per_viewer(world):
    """The export cache keys the viewer's scope: the admin's map of a district (every road drawn, the view
    fitted to it) and Sam's (his district's roads only) are different answers, whoever asks first."""
    admin, sam = world.principals["admin"].client, world.principals["scoped"].client
    for first, second, window in ((admin, sam, "1h"), (sam, admin, "7d")):
        a = first.get(f"/api/panels/map.json?district={OWN}&window={window}&layers=traffic").get_json()
        b = second.get(f"/api/panels/map.json?district={OWN}&window={window}&layers=traffic").get_json()
        assert a["district"] == b["district"] == OWN
    # the JSON's places are the district's for both; the cache key holds the scope all the same
    from dashboard.access import Principal, acting
    from dashboard.export import get_panel, PanelRequest

    req = PanelRequest(get_panel("map"), district=OWN)
    with acting(Principal("user", "sam", districts=(OWN,))):
        clipped = req.key("svg")
    assert clipped != req.key("svg")


# ----------------------------------------------------------------------------- the CLI
def _cli(world, *args):
    from dashboard.cli import app

    mp = pytest.MonkeyPatch()
    mp.setenv("PANORAMA_DATABASE_URL", world.store_url)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        mp.undo()


def test_scope012_export_as_a_user_keeps_their_scope(world, tmp_path):
    out = tmp_path / "p.json"
    r = _cli(world, "export", "map-traffic", "--format", "json", "--out", str(out), "--as", "sam",
             "--district", OTHER)
    assert r.exit_code == 1 and "outside" in r.output and not out.exists()
    r = _cli(world, "export", "map-traffic", "--format", "json", "--out", str(out), "--as", "sam")
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["district"] == OWN and j["places"] and {p["district"] for p in j["places"]} == {OWN}
    r = _cli(world, "export", "map-traffic", "--format", "json", "--out", str(out))
    assert r.exit_code == 0 and json.loads(out.read_text())["district"] is None  # the administrator: the city
    r = _cli(world, "export", "traffic.tti", "--format", "json", "--out", str(out), "--as", "nobody-here")
    assert r.exit_code == 1 and "no user" in r.output


def test_scope013_report_as_a_user_keeps_their_scope(world, tmp_path):
    from datetime import date

    today = date.today().isoformat()
    out = tmp_path / "r.html"
    r = _cli(world, "report", "--from", today, "--to", today, "--out", str(out), "--as", "sam", "--district", OTHER)
    assert r.exit_code == 1 and "outside" in r.output and not out.exists()
    r = _cli(world, "report", "--from", today, "--to", today, "--out", str(out), "--as", "sam")
    assert r.exit_code == 0, r.output
    from dashboard.report import MANIFEST, _e

    page = out.read_text().replace(_e(MANIFEST.read_text(encoding="utf-8")), "")  # the data sources' notes
    own_name = dict(zip(live(world).districts()["id"], live(world).districts()["name"]))[OWN]
    assert own_name in page
    leaked = [n for n in names_except(world, OWN) if re.search(rf"\b{n}\b", page)]
    assert leaked == [], leaked


def test_scope014_help_says_who_the_cli_acts_as(world):
    for cmd in ("export", "report"):
        r = _cli(world, cmd, "--help")
        assert "--as" in r.output and "administrator" in r.output, r.output


def test_scope015_a_second_scoped_viewer_gets_her_own_first_district(world):
    assert world.tess.get("/api/kpis").get_json()["district"] == THIRD
    assert copy.deepcopy(layout_of(world.tess, "/")["district"]["value"]) == THIRD
