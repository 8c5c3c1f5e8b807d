"""``panorama alerts`` and ``panorama silence``: list, acknowledge as a named user, silences that end."""
from __future__ import annotations

import time

from conftest import build_small_city
from typer.testing import CliRunner

from dashboard import accounts
from dashboard.alerts.engine import KpiObs, Observations
from dashboard.alerts.evaluator import Evaluator
from dashboard.alerts.rules import parse_rules
from dashboard.cli import app as cli
from dashboard.store.schema import create_schema, make_engine


def test_alerts_and_silences_from_the_command_line(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("PANORAMA_DATABASE_URL", url)
    engine = make_engine(url)
    create_schema(engine)
    build_small_city(engine)
    for name, role, d in [("ann", "operator", None), ("vic", "viewer", None), ("sam", "operator", ["south"])]:
        accounts.add_user(engine, name, role, districts=d)
    rules = parse_rules([{"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district", "severity": "critical"}],
                        districts={"north", "south", "east"})
    kpis = {("traffic.tti", "north"): KpiObs(2.0), ("traffic.tti", "south"): KpiObs(1.0),
            ("traffic.tti", "east"): KpiObs(None, "absent")}
    Evaluator(engine, rules, None, lambda now: Observations(now, ("north", "south", "east"), kpis), 60).tick(time.time())
    run = CliRunner().invoke

    r = run(cli, ["alerts", "list"])
    assert r.exit_code == 0 and "critical" in r.output and "north" in r.output and "tti" in r.output, r.output
    aid = r.output.split()[0]
    assert run(cli, ["alerts", "list", "--state", "resolved"]).output.strip() == "no alert"
    assert run(cli, ["alerts", "list", "--state", "gone"]).exit_code == 2
    r = run(cli, ["alerts", "ack", aid, "--as", "vic"])
    assert r.exit_code == 2 and "needs an operator" in r.output
    r = run(cli, ["alerts", "ack", aid, "--as", "sam"])
    assert r.exit_code == 2 and f"no alert {aid}" in r.output  # north is not sam's
    r = run(cli, ["alerts", "ack", aid, "--as", "nobody"])
    assert r.exit_code == 2 and "no enabled user" in r.output
    r = run(cli, ["alerts", "ack", aid, "--as", "ann", "--note", "crew sent"])
    assert r.exit_code == 0 and "acknowledged" in r.output, r.output
    r = run(cli, ["alerts", "ack", aid, "--as", "ann"])
    assert r.exit_code == 2 and "only a new alert" in r.output
    r = run(cli, ["alerts", "history", aid])
    assert "system" in r.output and "ann" in r.output and "crew sent" in r.output, r.output

    r = run(cli, ["silence", "add", "--district", "north", "--for", "2h", "--reason", "marathon", "--as", "ann"])
    assert r.exit_code == 0 and "silence 1 until" in r.output, r.output
    r = run(cli, ["silence", "add", "--district", "north", "--for", "2h", "--reason", "x", "--as", "sam"])
    assert r.exit_code == 2 and "may silence south only" in r.output
    r = run(cli, ["silence", "add", "--for", "2h", "--reason", "x", "--as", "ann"])
    assert r.exit_code == 2 and "at least one of" in r.output
    r = run(cli, ["silence", "add", "--rule", "tti", "--for", "soon", "--reason", "x", "--as", "ann"])
    assert r.exit_code == 2 and "not a duration" in r.output
    r = run(cli, ["silence", "list"])
    assert "active" in r.output and "district=north" in r.output and "by ann: marathon" in r.output, r.output
    assert run(cli, ["silence", "end", "1", "--as", "ann"]).exit_code == 0
    assert run(cli, ["silence", "list"]).output.strip() == "no silence"
    assert "ended" in run(cli, ["silence", "list", "--all"]).output
    r = run(cli, ["silence", "end", "1", "--as", "ann"])
    assert r.exit_code == 2 and "already ended" in r.output
