"""Alerts on screen, through the app and its access gate: the manager's alerts panel (rows, filters,
actions by an operator and refused for a viewer, history, click to zoom, map markers) and the wall's
ticker (what it says, whose districts). Real callback bodies from the layouts, real alert rows."""
from __future__ import annotations

import json

import pytest
from _access_kit import body, layout_of, make_world, post_callback, server_callbacks
from _alerts_kit import fire
from _demo import build_demo_store
from sqlalchemy import select

from dashboard.alerts import store
from dashboard.alerts.config import parse_alerting
from dashboard.alerts.rules import RuleError
from dashboard.store.schema import alerts

HOT = {"chaoyang": 2.4, "haidian": 2.0}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alerts-screens")
    url = build_demo_store(folder, hours=1)
    w = make_world(url, folder)
    w.fired = fire(url, HOT)
    return w


def alert_id(world, rule, district=None, asset=None) -> int:
    with world.engine.connect() as c:
        q = select(alerts.c.id).where(alerts.c.rule == rule, alerts.c.status != "resolved")
        if district:
            q = q.where(alerts.c.district_id == district)
        if asset:
            q = q.where(alerts.c.asset == asset)
        return c.execute(q).scalar_one()


def row(world, aid) -> dict:
    with world.engine.connect() as c:
        return store.get(c, aid)


def call(world, who, callback, page="/", values=None, trigger=None, layout_as=None):
    """POST ``callback`` as principal ``who`` with the component values of the page as ``layout_as``
    (default: ``who``) receives it, and ``values``."""
    p = world.principals[who]
    app = world.app_of(p)
    comps = layout_of(world.principals[layout_as or who].client, page)
    b = body(app, server_callbacks(app)[f"dashboard.pages.{callback}"], comps, values or {}, trigger)
    return post_callback(p.client, b)


def answer(r) -> dict:
    assert r.status_code == 200, (r.status_code, r.get_data(as_text=True)[:300])
    return r.get_json()["response"]


def rows(world, who="viewer", **filters):
    vals = {("tick", "n_intervals"): 1}
    for k, v in filters.items():
        vals[({"state": "alerts-state", "severity": "alerts-severity", "domain": "alerts-domain",
               "district": "district"}[k], "value")] = v
    res = answer(call(world, who, "alerts_panel.alert_rows", values=vals, trigger="tick.n_intervals"))
    return res["alerts-grid"]["rowData"], res


def test_the_panel_lists_the_firing_alerts_most_severe_first_with_their_place_and_owner(world):
    got, res = rows(world)
    assert [(r["severity"], r["place"], r["summary"]) for r in got] == [
        ("CRITICAL", "Haidian", "Heavy congestion"), ("CRITICAL", "Chaoyang", "Heavy congestion"),
        ("WARNING", f"{world.fired['station'][1]} · Chaoyang", "Very unhealthy air"),
        ("INFO", "whole city", "Car parks filling up")]
    assert {(r["state"], r["status"], r["owner"], r["repeat"]) for r in got} == {("firing", "new", "", 1)}
    assert all(r["since"].endswith((" s", " min")) for r in got)
    assert res["alerts-count"]["children"] == "4 shown · 4 firing"
    # the open ones on the map: one marker each, in the severity's colour, the most severe drawn last
    trace = layout_of(world.principals["viewer"].client, "/")["alert-trace"]["data"]
    ops = {tuple(o["location"][2:]): o["params"]["value"] for o in res["map"]["figure"]["operations"]
           if o["location"][1] == trace}
    assert ops[("marker", "color")][-2:] == ["#d55e00", "#d55e00"] and len(ops[("lon",)]) == 3  # the city has no point


def test_filters_severity_domain_state_and_the_pages_district(world):
    assert {r["severity"] for r in rows(world, severity=["critical"])[0]} == {"CRITICAL"}
    assert [r["summary"] for r in rows(world, domain="air_quality")[0]] == ["Very unhealthy air"]
    # the page's district: that district's alerts and the city-wide ones
    assert [r["place"].split(" · ")[-1] for r in rows(world, district="haidian")[0]] == ["Haidian", "whole city"]
    assert rows(world, state="resolved")[0] == []
    # a forged filter is refused without an answer
    r = call(world, "viewer", "alerts_panel.alert_rows", values={("alerts-state", "value"): "everything"},
             trigger="alerts-state.value")
    assert r.status_code == 200 and "rowData" not in r.get_data(as_text=True)


def act(world, who, button, aid, layout_as="operator", **fields):
    vals = {("alert-selected", "data"): aid, (button, "n_clicks"): 1}
    for k, v in fields.items():
        vals[({"note": "alert-note", "to": "alert-assignee", "kind": "alert-assign-kind",
               "minutes": "alert-minutes"}[k], "value")] = v
    return call(world, who, "alerts_panel.alert_act", values=vals, trigger=f"{button}.n_clicks", layout_as=layout_as)


def test_an_operator_acts_as_himself_and_a_viewer_is_refused(world):
    aid = alert_id(world, "tti-hot", "chaoyang")
    r = act(world, "viewer", "alert-ack", aid, note="mine")
    assert r.status_code == 403 and row(world, aid)["status"] == "new"  # the gate, before the callback
    assert "alert-actions" not in json.dumps(layout_of(world.principals["viewer"].client, "/"))  # no buttons either
    assert act(world, "device", "alert-ack", aid).status_code == 403
    res = answer(act(world, "operator", "alert-ack", aid, note="police informed"))
    assert res["alert-message"]["children"] == f"Acknowledge: alert #{aid} is acknowledged"
    a = row(world, aid)
    assert (a["status"], a["acknowledged_by"], a["ack_note"]) == ("acknowledged", "otto", "police informed")
    rev = res["alerts-rev"]["data"]
    assert isinstance(rev, int) and rev > 0  # the acting page lists again at once
    answer(act(world, "operator", "alert-assign", aid, to="otto", kind="user"))
    assert (row(world, aid)["status"], row(world, aid)["assignee"]) == ("assigned", "otto")
    res = answer(act(world, "operator", "alert-resolve", aid))
    assert "still firing" in res["alert-message"]["children"]  # the store's reason, said on screen
    assert "alerts-rev" not in res
    answer(act(world, "operator", "alert-comment", aid, note="lane 2 reopened"))
    answer(act(world, "operator", "alert-shelve", aid, minutes=15))
    assert row(world, aid)["shelved_by"] == "otto"
    assert "Select an alert first" in json.dumps(answer(act(world, "operator", "alert-ack", None)))
    got = {r["id"]: r for r in rows(world, state="acknowledged")[0]}
    assert got[aid]["owner"] == "otto" and got[aid]["status"] == "assigned · shelved"
    assert aid in {r["id"] for r in rows(world, state="shelved")[0]}


def pick(world, aid, who="viewer"):
    return answer(call(world, who, "alerts_panel.alert_pick", values={("alerts-grid", "selectedRows"): [{"id": aid}]},
                       trigger="alerts-grid.selectedRows"))


def test_selecting_an_alert_shows_its_history_and_zooms_the_map_to_its_place(world):
    sid, name, _d = world.fired["station"]
    aid = alert_id(world, "aqi-hot", asset=sid)
    answer(act(world, "operator", "alert-comment", aid, note="sensor checked on site"))
    res = pick(world, aid)
    assert res["alert-selected"]["data"] == aid
    assert res["alert-title"]["children"].startswith(f"#{aid} WARNING · {name} · Chaoyang")
    lines = [li["props"]["children"] for li in res["alert-history"]["children"]]
    assert lines[0].split(" · ")[1:3] == ["system", "open"]
    assert lines[-1].endswith("otto · comment · sensor checked on site")
    ops = {tuple(o["location"]): o["params"]["value"] for o in res["map"]["figure"]["operations"]}
    with world.engine.connect() as c:
        from dashboard.store.schema import assets
        lon, lat = c.execute(select(assets.c.lon, assets.c.lat).where(assets.c.id == sid)).one()
    assert ops[("layout", "map", "center")] == {"lon": lon, "lat": lat} and ops[("layout", "map", "zoom")] == 14.0
    # a district's alert: the map fits the district
    res = pick(world, alert_id(world, "tti-hot", "haidian"))
    c = {tuple(o["location"]): o["params"]["value"] for o in res["map"]["figure"]["operations"]}
    b = world.app_off.server.extensions["panorama"].bounds("haidian")
    assert b["lon"][0] < c[("layout", "map", "center")]["lon"] < b["lon"][1]
    assert b["lat"][0] < c[("layout", "map", "center")]["lat"] < b["lat"][1]


def test_a_scoped_viewer_sees_only_its_districts_alerts(world):
    got, _ = rows(world, who="scoped")
    assert got and {r["place"].split(" · ")[-1] for r in got} == {"Chaoyang"}
    res = answer(call(world, "scoped", "alerts_panel.alert_pick",
                      values={("alerts-grid", "selectedRows"): [{"id": alert_id(world, "tti-hot", "haidian")}]},
                      trigger="alerts-grid.selectedRows"))
    assert res["alert-selected"]["data"] is None and "Haidian" not in json.dumps(res)


def wall(world, who="viewer", page="/wall"):
    world.principals[who].client.get(page)  # the page sets the CSRF cookie its callbacks send back
    res = answer(call(world, who, "wall.refresh", page=page, values={("wall-tick", "n_intervals"): 1},
                      trigger="wall-tick.n_intervals"))
    text = " ".join(_texts(res["wall-ticker"]["children"]))
    return text, res["wall-alerts"]["data"]


def _texts(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for n in node for t in _texts(n)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children"))
    return []


def test_the_wall_ticker_tells_the_firing_alerts_and_not_the_shelved_ones(world):
    text, items = wall(world)
    a = row(world, alert_id(world, "tti-hot", "chaoyang"))
    shelved = a["shelved_until"] is not None
    assert text.startswith("3 alerts · 1 critical " if shelved else "4 alerts · 2 critical ")
    assert "CRITICAL Haidian Heavy congestion" in text and "INFO whole city Car parks filling up" in text
    assert ("Chaoyang Heavy congestion" in text) is not shelved
    # what may take the wall over: the critical ones nobody acknowledged, with their domain, age and place
    assert [i["place"] for i in items] == ["Haidian"] + ([] if a["status"] != "new" else ["Chaoyang"])
    assert all(set(i) >= {"id", "domain", "opened", "status", "view", "place", "summary"} for i in items)
    # a district's wall and a scoped one: their districts' alerts (and the city's, for the unscoped)
    text, _ = wall(world, page="/wall?district=haidian")
    assert "Haidian" in text and "Chaoyang" not in text and "whole city" in text
    text, _ = wall(world, who="device", page="/wall?district=chaoyang")
    assert "Haidian" not in text and "whole city" not in text


def test_takeover_max_is_read_from_the_alerting_table():
    assert parse_alerting(None).takeover_max == 600
    assert parse_alerting({"takeover_max": "90s"}).takeover_max == 90
    with pytest.raises(RuleError, match="takeover_max"):
        parse_alerting({"takeover_max": "off"})


def test_a_takeover_shows_the_current_step_of_its_incidents_procedure(world):
    """A critical alert in an incident: what the wall's takeover shows carries the first step not done
    yet (the wall's answer is this, kept for its refresh interval)."""
    from dashboard.alerts import screen
    from dashboard.incidents import store as incidents

    live = world.app_off.server.extensions["panorama"]
    cfg = live.city.incidents
    aid = alert_id(world, "tti-hot", "haidian")

    def step():
        return [screen.ticker_item(r)["step"] for r in screen.firing(live, None) if r["id"] == aid]

    assert step() == [None]  # in no incident yet
    with world.engine.begin() as conn:
        row_, _ = incidents.open_incident(conn, "ann", cfg.type("traffic-incident"), alert_ids=[aid])
    assert step() == ["Step 1 of 4: Confirm on the road cameras: what, where, lanes blocked — operator"]
    with world.engine.begin() as conn:
        incidents.act(conn, row_["id"], "step", "ann", "operator",
                      {"step": 1, "fields": {"cause": "crash", "lanes_blocked": 2}}, cfg)
    assert step() == ["Step 2 of 4: Dispatch traffic police and set the diversion — traffic-ops"]
    _, items = wall(world)
    assert all("step" in i for i in items)  # the wall's answer carries it to the takeover


def click_marker(world, curve: int, mid, who="viewer"):
    """POST the alerts panel's pick as a click on point ``mid`` of the map's trace ``curve``."""
    click = {"points": [{"curveNumber": curve, "pointNumber": 0, "customdata": mid}]}
    return call(world, who, "alerts_panel.alert_pick", values={("map", "clickData"): click}, trigger="map.clickData")


def test_an_open_incident_is_a_ring_on_the_map_and_a_click_on_it_or_on_an_alerts_dot_selects_it(world):
    """The map's incident trace: one ring (two discs) an open incident, at its alert's place, with its
    hover text; a click on it shows the incident and zooms there; a click on an alert's dot selects
    its grid row and zooms to it; a click elsewhere (a district) leaves the panel alone."""
    from dashboard.incidents import store as incidents
    from dashboard.pages import alerts_panel
    from dashboard.store.schema import assets

    live = world.app_off.server.extensions["panorama"]
    sid, name, _d = world.fired["station"]
    aid = alert_id(world, "aqi-hot", asset=sid)
    with world.engine.begin() as conn:
        inc, _ = incidents.open_incident(conn, "ann", live.city.incidents.type("air-pollution"), alert_ids=[aid])
        lon, lat = conn.execute(select(assets.c.lon, assets.c.lat).where(assets.c.id == sid)).one()
    comps = layout_of(world.principals["viewer"].client, "/")
    itrace, trace = comps["incident-trace"]["data"], comps["alert-trace"]["data"]
    assert itrace == trace - 1  # drawn under the alerts' dots
    # a new revision (as after an action): not the answer cached before the incident was opened
    res = answer(call(world, "viewer", "alerts_panel.alert_rows", trigger="tick.n_intervals",
                      values={("tick", "n_intervals"): 1, ("alerts-rev", "data"): 10**6 + inc["id"]}))
    ops = {tuple(o["location"][2:]): o["params"]["value"] for o in res["map"]["figure"]["operations"]
           if o["location"][1] == itrace}
    k = ops[("customdata",)].index(inc["id"])
    assert ops[("customdata",)][k:k + 2] == [inc["id"]] * 2 and ops[("marker", "size")][k:k + 2] == list(alerts_panel.RING)
    assert ops[("lon",)][k:k + 2] == [lon, lon] and ops[("lat",)][k:k + 2] == [lat, lat]
    assert ops[("text",)][k] == f"Incident #{inc['id']} · Air-pollution episode · no owner · open · {name} · Chaoyang"
    # a click on the ring: the incident (its next step and timeline), no alert selected, the map at its place
    res = answer(click_marker(world, itrace, inc["id"]))
    assert res["alert-title"]["children"].startswith(f"Incident #{inc['id']} · Air-pollution episode")
    lines = [li["props"]["children"] for li in res["alert-history"]["children"]]
    assert lines[0].startswith("Next: step 1 of ") and any(f"alert #{aid} · system · open" in x for x in lines)
    assert res["alert-selected"]["data"] is None and res["alerts-grid"]["selectedRows"] == []
    zoom = {tuple(o["location"]): o["params"]["value"] for o in res["map"]["figure"]["operations"]}
    assert zoom[("layout", "map", "center")] == {"lon": lon, "lat": lat}
    assert zoom[("layout", "map", "uirevision")] == f"incident:{inc['id']}"
    # a click on an alert's dot: its grid row selected (and scrolled to), its history, the map at its place
    res = answer(click_marker(world, trace, aid))
    assert res["alerts-grid"]["selectedRows"] == {"ids": [str(aid)]} and res["alerts-grid"]["scrollTo"] == {"rowId": str(aid)}
    assert res["alert-selected"]["data"] == aid and res["alert-title"]["children"].startswith(f"#{aid} WARNING")
    zoom = {tuple(o["location"]): o["params"]["value"] for o in res["map"]["figure"]["operations"]}
    assert zoom[("layout", "map", "center")] == {"lon": lon, "lat": lat} and zoom[("layout", "map", "zoom")] == 14.0
    # the grid then reports the selection as it was set: the same alert, no second zoom
    res = answer(call(world, "viewer", "alerts_panel.alert_pick",
                      values={("alerts-grid", "selectedRows"): {"ids": [str(aid)]}, ("alert-selected", "data"): aid},
                      trigger="alerts-grid.selectedRows"))
    assert res["alert-selected"]["data"] == aid and "map" not in res
    # a district's shape, another layer's point, a forged click: nothing for the panel
    for curve, mid in ((0, "chaoyang"), (1, 5), (trace, True), (itrace + 99, inc["id"])):
        assert click_marker(world, curve, mid).status_code == 204
    # an incident the viewer may not see: said, nothing shown of it
    with world.engine.begin() as conn:
        other, _ = incidents.open_incident(conn, "ann", live.city.incidents.type("air-pollution"), district="haidian")
    res = answer(click_marker(world, itrace, other["id"], who="scoped"))
    assert res["alert-title"]["children"] == f"Incident #{other['id']} is closed or not yours to see"
    assert "Haidian" not in json.dumps(res)


# ------------------------------------------------------------------ groups: one domain in one district
def _item(n, domain, severity, opened, district=None, name=None, place=None):
    from dashboard.alerts import screen

    return {"id": n, "severity": severity, "word": screen.SEVERITY[severity][0], "place": place or name or "whole city",
            "summary": f"alert {n}", "opened": opened, "domain": domain, "status": "new", "view": None, "step": None,
            "district_id": district, "district": name}


def _hand_made(now):
    """14 air-quality alerts in Haidian (one critical, the oldest 2 h old), one critical traffic alert in
    Chaoyang, one energy warning in Haidian, three parking notes city-wide."""
    aq = [_item(i, "air_quality", "warning", now - 60 * i, "haidian", "Haidian", f"Station {i} · Haidian")
          for i in range(1, 14)] + [_item(14, "air_quality", "critical", now - 7200, "haidian", "Haidian")]
    return aq + [_item(20, "traffic", "critical", now - 30, "chaoyang", "Chaoyang"),
                 _item(21, "energy", "warning", now - 600, "haidian", "Haidian", "Substation 4 · Haidian"),
                 *[_item(30 + i, "parking", "info", now - 10 * i) for i in range(3)]]


def test_the_wall_ticker_groups_one_domains_alerts_in_one_district_and_keeps_singles_single():
    from dashboard.pages import wall

    now = 1_700_000_000.0
    line = wall.ticker_rows(_hand_made(now), now)[0]
    count, *items = line.children
    assert count.children == "19 alerts · 2 critical"
    got = [(i.className, [s.children for s in i.children]) for i in items]
    assert got == [
        # most severe first, then the larger group, then the oldest; a group: its worst severity, oldest age
        ("tk-item tk-critical", ["CRITICAL", "14 air-quality alerts in Haidian", "2 h"]),
        ("tk-item tk-critical", ["CRITICAL", "Chaoyang", "alert 20", "30 s"]),
        ("tk-item tk-warning", ["WARNING", "Substation 4 · Haidian", "alert 21", "10 min"]),
        ("tk-item tk-info", ["INFO", "3 parking alerts in the city", "20 s"])]
    assert items[0].children[1].className == "tk-summary tk-group"
    assert items[0].children[-1].to_plotly_json()["props"]["data-opened"] == now - 7200


def test_the_panel_summary_lists_the_groups_and_a_chip_filters_the_grid(world):
    from dashboard.alerts import screen
    from dashboard.pages import alerts_panel

    now = 1_700_000_000.0
    rows_ = [{"id": i["id"], "severity": i["severity"], "place": {"name": i["place"], "view": None},
              "summary": i["summary"], "rule": "r", "state": "firing", "opened_at": i["opened"], "domain": i["domain"],
              "status": "new", "district_id": i["district_id"], "district_name": i["district"]} for i in _hand_made(now)]
    rows_ += [{**rows_[-1], "id": 40 + i, "domain": "transit", "district_id": d, "district_name": d.title()}
              for d in ("a", "b", "c") for i in range(2)]
    assert screen.ticker_item(rows_[0])["district"] == "Haidian"
    texts, hidden, classes, keys, more = alerts_panel.group_chips(rows_, "haidian", "air_quality")
    # the groups of two or more, most severe first, as many as fit; how many there are, first
    assert texts == ["Haidian: 14 air quality", "City: 3 parking", "A: 2 public transport", "B: 2 public transport"]
    assert hidden == [False] * 4 and more == "5 groups:"
    assert classes[:2] == ["alerts-chip chip-critical chip-on", "alerts-chip chip-info"]
    assert keys[:2] == [["haidian", "air_quality"], [None, "parking"]]
    # singles are no chips: the world's four alerts are four groups of one
    _, res = rows(world)
    assert res["alerts-group-keys"]["data"] == [] and res["alerts-group-more"]["children"] == ""
    assert [res[_chip_key(i)]["hidden"] for i in range(4)] == [True] * 4
    # a click on a chip sets the page's district and the domain filter: the grid lists that group
    station = world.fired["station"]
    keys = [[None, "parking"], [station[2], "air_quality"]]
    res = answer(call(world, "viewer", "alerts_panel.alert_group", trigger=f"{_chip_key(1)}.n_clicks",
                      values={(_chip_key(1), "n_clicks"): 1, ("alerts-group-keys", "data"): keys}))
    assert (res["district"]["value"], res["alerts-domain"]["value"]) == (station[2], "air_quality")
    got, _ = rows(world, district=station[2], domain="air_quality")
    assert [(r["place"], r["domain"]) for r in got] == [(f"{station[1]} · Chaoyang", "air_quality")]
    # a forged district, or one outside a scoped viewer's districts, sets nothing
    for who, key in (("viewer", ["atlantis", "traffic"]), ("viewer", ["chaoyang", "weather"]),
                     ("scoped", ["haidian", "traffic"]), ("scoped", [None, "parking"])):
        r = call(world, who, "alerts_panel.alert_group", trigger=f"{_chip_key(0)}.n_clicks",
                 values={(_chip_key(0), "n_clicks"): 1, ("alerts-group-keys", "data"): [key]})
        assert r.status_code == 204, (who, key, r.status_code)


def _chip(i):
    return {"slot": str(i), "type": "alerts-group"}


def _chip_key(i):
    return json.dumps(_chip(i), separators=(",", ":"), sort_keys=True)
