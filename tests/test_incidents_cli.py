"""``panorama alerts`` assign / resolve / reopen / shelve / comment and ``panorama incident`` owner /
handover / step / close / reopen, as a named user (``--as``), on SQLite and PostgreSQL: each goes
through the store's functions the API uses (the same audit rows, the same notifications queued),
and bad input — an unknown id, a transition the status forbids, a missing field — is one line on
stderr, exit code 2."""
from __future__ import annotations

import time

import pytest
from conftest import build_small_city
from sqlalchemy import select
from test_incidents_api import CITY_TOML as API_CITY  # the jam type: cameras, then team traffic-ops (bob)
from typer.testing import CliRunner

from dashboard import accounts
from dashboard.alerts import notify
from dashboard.alerts import store as alert_store
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import parse_rules
from dashboard.cli import app as cli
from dashboard.incidents import store as incident_store
from dashboard.store.schema import outbox

CITY_TOML = API_CITY + """
[[notify]]
name = "ops-hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = "HOOK_SECRET"
"""


@pytest.fixture
def cli_store(engine, tmp_path, monkeypatch):
    """The test's store with a small city, its users and one TTI alert in north whose condition is
    clear again (new, inactive); the CLI pointed at both. Yields (engine, alert id)."""
    (tmp_path / "city").mkdir()
    (tmp_path / "city" / "city.toml").write_text(CITY_TOML)
    monkeypatch.setenv("PANORAMA_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("PANORAMA_CITY", str(tmp_path / "city"))
    build_small_city(engine)
    for name, role, d in [("ann", "operator", None), ("bob", "operator", None), ("ada", "admin", None),
                          ("vic", "viewer", None), ("sam", "operator", ["south"])]:
        accounts.add_user(engine, name, role, districts=d)
    rules = parse_rules([{"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district"}],
                        districts={"north", "south", "east"})
    tti = {"north": 2.0}

    def feed(now):
        return Observations(now, ("north", "south", "east"),
                            {("traffic.tti", d): KpiObs(tti.get(d, 1.0)) for d in ("north", "south", "east")})

    ev = Evaluator(engine, rules, None, feed, 60)
    ev.tick(time.time() - 120)
    tti["north"] = 1.0
    ev.tick(time.time() - 60)
    with engine.connect() as conn:
        (aid,) = [r["id"] for r in alert_store.list_alerts(conn)[0]]
        assert alert_store.get(conn, aid)["state"] == "inactive"
    yield engine, aid
    notify.configure(())


def bad(r, words: str) -> None:
    """Assert a refusal: exit code 2, one line on stderr naming what is wrong, nothing on stdout."""
    assert r.exit_code == 2 and r.stdout == "", (r.exit_code, r.output)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr


def test_alert_actions_from_the_command_line(cli_store):
    engine, aid = cli_store
    a = str(aid)
    run = CliRunner().invoke

    r = run(cli, ["alerts", "assign", a, "--to", "BOB", "--as", "ann", "--note", "yours"])
    assert r.exit_code == 0 and f"alert {aid}: assigned (tti, inactive), assigned to bob" in r.stdout, r.output
    r = run(cli, ["alerts", "assign", a, "--to", "traffic-ops", "--team", "--as", "ann"])
    assert r.exit_code == 0 and "assigned to traffic-ops" in r.stdout, r.output
    bad(run(cli, ["alerts", "assign", a, "--to", "firemen", "--team", "--as", "ann"]), "no team 'firemen'")
    bad(run(cli, ["alerts", "assign", a, "--as", "ann"]), "to: the user or team to assign the alert to")
    bad(run(cli, ["alerts", "comment", a, "--as", "ann"]), "note: a comment needs text")
    assert run(cli, ["alerts", "comment", a, "--as", "ann", "--note", "lorry still there"]).exit_code == 0
    bad(run(cli, ["alerts", "shelve", a, "--as", "ann"]), "minutes: a number of minutes")
    bad(run(cli, ["alerts", "shelve", a, "--minutes", "0", "--as", "ann"]), "minutes: a number of minutes")
    r = run(cli, ["alerts", "shelve", a, "--minutes", "30", "--as", "ann"])
    assert r.exit_code == 0 and "shelved until" in r.stdout, r.output
    bad(run(cli, ["alerts", "reopen", a, "--as", "ann"]), f"alert {aid} is assigned, not resolved")
    bad(run(cli, ["alerts", "resolve", a]), "--as: name the user acting")
    bad(run(cli, ["alerts", "resolve", a, "--as", "vic"]), "needs an operator or admin")
    bad(run(cli, ["alerts", "resolve", a, "--as", "sam"]), f"no alert {aid}")  # north is not sam's
    bad(run(cli, ["alerts", "resolve", "999999", "--as", "ann"]), "no alert 999999")
    r = run(cli, ["alerts", "resolve", a, "--as", "ann", "--note", "cleared"])
    assert r.exit_code == 0 and f"alert {aid}: resolved" in r.stdout, r.output
    bad(run(cli, ["alerts", "resolve", a, "--as", "ann"]), f"alert {aid} is already resolved")
    r = run(cli, ["alerts", "reopen", a, "--as", "ada", "--note", "back again"])
    assert r.exit_code == 0 and f"alert {aid}: assigned" in r.stdout, r.output

    with engine.connect() as conn:
        hist = alert_store.history(conn, aid)
        assert alert_store.replay(conn, aid) == {k: v for k, v in alert_store.get(conn, aid).items() if k != "value"}
    assert [(e["actor"], e["action"], e["note"]) for e in hist[2:]] == [
        ("ann", "assign", "yours"), ("ann", "assign", None), ("ann", "comment", "lorry still there"),
        ("ann", "shelve", None), ("ann", "resolve", "cleared"), ("ada", "reopen", "back again")]
    assert hist[2]["detail"] == {"to": "bob", "kind": "user"} and hist[3]["detail"] == {"to": "traffic-ops",
                                                                                        "kind": "team"}
    assert hist[5]["detail"]["minutes"] == 30 and 29 * 60 < hist[5]["detail"]["until"] - hist[5]["at"] <= 30 * 60


def test_incident_actions_from_the_command_line(cli_store):
    engine, aid = cli_store
    run = CliRunner().invoke
    r = run(cli, ["incident", "open", "--type", "jam", "--alerts", str(aid), "--as", "ann"])
    assert r.exit_code == 0, r.output
    iid = int(r.stdout.split()[1])
    i = str(iid)

    r = run(cli, ["incident", "owner", i, "--to", "bob", "--as", "ann", "--note", "yours"])
    assert r.exit_code == 0 and f"incident {iid}: owned by bob" in r.stdout, r.output
    bad(run(cli, ["incident", "owner", i, "--to", "bob", "--as", "ann"]), f"incident {iid} is already owned by bob")
    bad(run(cli, ["incident", "owner", i, "--as", "ann"]), "owner: the user who owns the incident")
    bad(run(cli, ["incident", "owner", i, "--to", "nobody", "--as", "ann"]), "owner: no enabled user 'nobody'")
    bad(run(cli, ["incident", "owner", i, "--to", "ada", "--as", "sam"]), f"no incident {iid}")  # north: not sam's
    r = run(cli, ["incident", "owner", i, "--to", "ada", "--handover", "P-7 on site; cameras 3 and 4", "--as", "bob"])
    assert r.exit_code == 0 and f"incident {iid}: owned by ada (handover noted)" in r.stdout, r.output
    bad(run(cli, ["incident", "handover", i, "--as", "ann"]), "note: the handover note's text")
    assert run(cli, ["incident", "handover", i, "--as", "ada", "--note", "quiet now"]).exit_code == 0

    bad(run(cli, ["incident", "step", i, "1", "--field", "cameras", "--as", "ann"]), "--field: NAME=VALUE, not 'cameras'")
    bad(run(cli, ["incident", "step", i, "1", "--as", "ann"]), "step 1: cameras: missing (number)")
    bad(run(cli, ["incident", "step", i, "1", "--field", "cameras=three", "--as", "ann"]), "step 1: cameras: a number")
    bad(run(cli, ["incident", "step", i, "1", "--field", "cameras=3", "--field", "lanes=2", "--as", "ann"]),
        "step 1: unknown field(s) lanes")
    bad(run(cli, ["incident", "step", i, "3", "--as", "ann"]), "step: a step number from 1 to 2")
    r = run(cli, ["incident", "step", i, "1", "--field", "cameras=3", "--as", "ann", "--note", "seen on camera 3"])
    assert r.exit_code == 0 and f"incident {iid}: step 1 done (1 done)" in r.stdout, r.output
    bad(run(cli, ["incident", "step", i, "1", "--field", "cameras=4", "--as", "ann"]), "step 1 was done by ann")
    bad(run(cli, ["incident", "step", i, "2", "--as", "ann"]), "team traffic-ops")
    assert run(cli, ["incident", "step", i, "2", "--as", "bob"]).exit_code == 0
    bad(run(cli, ["incident", "step", "999999", "1", "--as", "ann"]), "no incident 999999")

    bad(run(cli, ["incident", "reopen", i, "--as", "ann"]), f"incident {iid} is open, not closed")
    bad(run(cli, ["incident", "close", i, "--as", "ann"]), "summary: closing an incident needs a summary")
    r = run(cli, ["incident", "close", i, "--summary", "Lorry towed at 17:40", "--as", "ada"])
    assert r.exit_code == 0 and f"incident {iid} closed" in r.stdout, r.output
    bad(run(cli, ["incident", "owner", i, "--to", "ann", "--as", "ann"]), f"incident {iid} is closed: reopen it first")
    r = run(cli, ["incident", "reopen", i, "--as", "ann", "--note", "jam is back"])
    assert r.exit_code == 0 and f"incident {iid} reopened" in r.stdout, r.output

    with engine.connect() as conn:
        hist = incident_store.history(conn, iid)
        row = incident_store.get(conn, iid)
        assert incident_store.replay(conn, iid) == row
        queued = {r.key: r.payload for r in conn.execute(select(outbox.c.key, outbox.c.payload))}
    assert [(e["actor"], e["action"]) for e in hist] == [
        ("ann", "open"), ("ann", "alerts"), ("ann", "owner"), ("bob", "owner"), ("bob", "handover"), ("ada", "handover"),
        ("ann", "step"), ("bob", "step"), ("ada", "close"), ("ann", "reopen")]
    assert hist[6]["detail"]["fields"] == {"cameras": 3} and hist[6]["note"] == "seen on camera 3"
    assert (row["owner"], row["handover"], row["summary"], row["status"]) == (
        "ada", "quiet now", "Lorry towed at 17:40", "open")
    # the same notifications as the API's: every told event once, for the city's channel, in its transaction
    assert sorted(queued) == sorted(f"{e['uid']}:ops-hook" for e in hist if e["action"] != "alerts")
    assert [(queued[f"{e['uid']}:ops-hook"]["event"], queued[f"{e['uid']}:ops-hook"]["who"])
            for e in hist if e["action"] != "alerts"] == [
        ("opened", "ann"), ("owner", "ann"), ("owner", "bob"), ("handover", "bob"), ("handover", "ada"),
        ("step", "ann"), ("step", "bob"), ("closed", "ada"), ("reopened", "ann")]
    assert queued[f"{hist[0]['uid']}:ops-hook"]["alerts"] == [aid]
