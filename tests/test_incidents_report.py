"""``panorama report --incident ID``: the after-action report of a real incident on the Beijing demo store —
alerts fired through the evaluator with an injected clock and grouped by the city's own rule, the
checklist worked through, closed with a summary."""
from __future__ import annotations

import re
import time

import pytest
from _demo import BEIJING, build_demo_store
from typer.testing import CliRunner

from dashboard import accounts
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import parse_rules
from dashboard.city import load_city
from dashboard.cli import app
from dashboard.incidents import config as ic
from dashboard.incidents import store
from dashboard.store import readmodel as rm
from dashboard.store.schema import make_engine

NOW = time.time()
T = NOW - 5 * 3600  # the first alert: five hours ago, inside the stored history


@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    folder = tmp_path_factory.mktemp("incident-report")
    url = build_demo_store(folder, hours=8, end=NOW)
    engine = make_engine(url)
    for name, role in (("ann", "operator"), ("eve", "operator"), ("ada", "admin")):
        accounts.add_user(engine, name, role)
    with engine.connect() as conn:
        dists = rm.districts_frame(conn)
    did, name = dists["id"].iloc[0], dists["name"].iloc[0]
    city = load_city(BEIJING)
    cfg = ic.parse_incidents({**city.config, "teams": {"environment": ["eve"]}}, alerting=city.alerting)
    aqi = {"value": 260.0}

    def feed(now):
        return Observations(now=now, districts=(did,), kpis={("air.aqi_worst", did): KpiObs(aqi["value"])})

    rules = parse_rules([{"id": "aqi-district", "when": "air.aqi_worst > 200", "scope": did, "severity": "critical"}],
                        districts={did})
    ev = Evaluator(engine, rules, city.alerting, feed, 60, worker="test", incidents=cfg)
    res = ev.tick(T)
    assert [e["action"] for e in res["incident_events"]] == ["open", "alerts"]  # the city's air-episode rule
    iid = res["incident_events"][0]["incident_id"]

    def act(action, actor, role="operator", at=0, **body):
        with engine.begin() as conn:
            store.act(conn, iid, action, actor, role, body, cfg, now=T + at)

    act("owner", "ann", at=300, to="ann")
    act("step", "ann", at=600, step=1, fields={"stations": "Dongsi, Tiantan", "peak_aqi": 312})
    act("step", "eve", at=900, step=2, fields={"level": "orange"})
    act("note", "ann", at=1200, note="school sports moved indoors")
    aqi["value"] = 150.0
    ev.tick(T + 3600)  # the air clears …
    ev.tick(T + 3600 + 660)  # … and the alert resolves by itself after 10 min
    act("step", "ann", at=4800, step=3, fields={"channels": "Weibo, city app"})
    act("handover", "ann", at=5000, note="watch the evening peak; advice stays up until 22:00")
    act("close", "ada", role="admin", at=5400, summary="Episode over: AQI under 200 since the afternoon")
    engine.dispose()
    return {"url": url, "id": iid, "district": name, "folder": folder}


def report(incident, *args):
    out = incident["folder"] / "incident.html"
    mp = pytest.MonkeyPatch()
    mp.setenv("PANORAMA_DATABASE_URL", incident["url"])
    try:
        r = CliRunner().invoke(app, ["report", "--incident", str(incident["id"]), "--out", str(out), *args])
    finally:
        mp.undo()
    return r, out


def test_the_after_action_report(incident):
    r, out = report(incident)
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert "<script" not in html and not re.search(r"""(src|href)=["']https?://""", html)
    assert f"incident {incident['id']}: Air-pollution episode" in html and incident["district"] in html
    assert "Episode over: AQI under 200 since the afternoon" in html
    assert "watch the evening peak" in html and "(ann, " in html
    steps = re.findall(r"<tr class='step' data-done='(\w+)'><td>(\d)</td><td>[^<]*</td><td>(\w+)</td><td>([^<]+)</td>"
                       r"<td class='nowrap'>([^<]*)</td><td>(.*?)</td></tr>", html)
    assert [(s[0], s[1], s[2], s[3]) for s in steps] == [("yes", "1", "operator", "ann"), ("yes", "2", "environment", "eve"),
                                                         ("yes", "3", "operator", "ann"), ("no", "4", "admin", "not done")]
    assert "<b>peak_aqi</b>: 312" in steps[0][5] and "<b>level</b>: orange" in steps[1][5]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d", s[4]) for s in steps[:3])
    events = re.findall(r"<tr class='event' data-source='(\w+)'><td class='nowrap'>([^<]+)</td><td>([^<]*)</td>"
                        r"<td>([^<]*)</td>", html)
    whats = [(src, who, what) for src, _when, who, what in events]
    assert whats[0][0] == "alert" and ": open" in whats[0][2]
    assert any(s == "incident" and w == "system" and x.startswith("opened: Air-pollution episode")
               for s, w, x in whats)  # opened by the city's rule, in the alert's tick
    assert [w for s, _, w in whats if s == "alert"][-1].endswith("resolve")
    assert [w for s, _, w in whats if s == "incident"][-1] == "closed"
    assert [e[1] for e in events] == sorted(e[1] for e in events)  # merged by time
    charts = re.findall(r"<figure class='chart' id='trend-([^']+)'>", html)
    assert charts and all(c.startswith("air-") for c in charts)
    assert re.search(r"id='trend-air-aqi_worst'><figcaption>[^<]*</figcaption><svg[^>]*>.*?<path d='M", html, re.S), \
        "the worst AQI has data over the event"
    assert re.search(r'id="incident-map"><svg', html) and "stroke-width='2.5'" in html  # the district outlined


def test_report_refuses_what_it_cannot_do(incident):
    r, _ = report(incident, "--from", "2026-01-01")
    assert r.exit_code == 1 and "--incident" in r.output
    mp = pytest.MonkeyPatch()
    mp.setenv("PANORAMA_DATABASE_URL", incident["url"])
    try:
        r = CliRunner().invoke(app, ["report", "--incident", "999999", "--out", str(incident["folder"] / "x.html")])
    finally:
        mp.undo()
    assert r.exit_code == 1 and "no incident 999999" in r.output
