"""A second city end to end: Montreal (plotly's districts + synthetic data) imported with the CLI, then /api/kpis."""
from __future__ import annotations

import importlib.util
import json

import pytest
from _import_kit import REPO, counts, snapshot
from typer.testing import CliRunner

from dashboard.cli import app
from dashboard.store.schema import make_engine


def _build_module():
    spec = importlib.util.spec_from_file_location("build_montreal", REPO / "scripts" / "build_montreal.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def montreal(tmp_path_factory):
    """Build a fresh Montreal folder (readings up to now) and import it into a fresh store with the CLI."""
    root = tmp_path_factory.mktemp("mtl")
    folder = root / "montreal"
    built = _build_module().build(folder, hours=6)
    env = {"PANORAMA_CITY": str(folder), "PANORAMA_DATA_DIR": str(root / "var"), "PANORAMA_DATABASE_URL": ""}
    runner = CliRunner()
    f = str(folder)
    steps = [
        ["boundaries", f"{f}/districts.geojson", "--id-field", "id", "--name-field", "name"],
        ["assets", f"{f}/stations.csv"], ["assets", f"{f}/roads.geojson"], ["assets", f"{f}/substations.csv"],
        ["readings", f"{f}/air_quality.csv", "--timezone", "America/Montreal"],
        ["readings", f"{f}/traffic_speed_wide.csv", "--layout", "wide-asset", "--metric", "speed_kmh",
         "--delimiter", ";", "--decimal", ",", "--timezone", "America/Montreal"],
        ["readings", f"{f}/energy.csv", "--unit", "load_mw=kW", "--unit", "renewable_mw=kW"],
        ["categories", f"{f}/service_categories.csv"],
        ["requests", f"{f}/service_requests.csv", "--id-field", "request_id", "--timezone", "America/Montreal"],
    ]
    out = []
    for s in steps:
        r = runner.invoke(app, ["city", "import", *s], env=env)
        assert r.exit_code == 0, (s, r.output)
        out.append(r.output)
    url = f"sqlite:///{(root / 'var' / 'panorama.sqlite').resolve()}"
    return {"folder": folder, "url": url, "env": env, "runner": runner, "built": built, "outputs": out, "steps": steps}


def test_city001_counts_after_import(montreal):
    c = counts(make_engine(montreal["url"]))
    b = montreal["built"]
    assert c["districts"] == b["districts"] == 58
    assert c["assets"] == b["stations"] + b["roads"] + b["substations"]
    assert c["service_requests"] == b["requests"]
    assert c["rejected"] == 0 and c["readings"] > 0


def test_city002_rerun_and_dry_run_change_nothing(montreal):
    eng = make_engine(montreal["url"])
    before = snapshot(eng)
    for s in montreal["steps"]:
        r = montreal["runner"].invoke(app, ["city", "import", *s], env=montreal["env"])
        assert r.exit_code == 0
    assert snapshot(eng) == before
    r = montreal["runner"].invoke(app, ["city", "import", "boundaries", str(REPO / "data" / "beijing" / "districts.geojson"),
                                        "--dry-run"], env=montreal["env"])
    assert r.exit_code == 0 and "dry run" in r.output and "16 inserted" in r.output
    assert snapshot(eng) == before


def test_city003_refused_file_exit_code_and_message(montreal, tmp_path):
    eng = make_engine(montreal["url"])
    before = snapshot(eng)
    bad = tmp_path / "bad.csv"
    bad.write_text("asset,metric,ts,value\nmtl-aq-01,pm25,2024-01-01 00:00,3\n")
    r = montreal["runner"].invoke(app, ["city", "import", "readings", str(bad)], env=montreal["env"])
    assert r.exit_code == 1 and "bad.csv: line 2" in r.output and "store is unchanged" in r.output
    assert snapshot(eng) == before


def test_city004_api_shows_the_second_city(montreal, tmp_path):
    from dashboard.app import create_app
    from dashboard.settings import Settings

    client = create_app(Settings(data_dir=tmp_path, database_url=montreal["url"],
                                 city=str(montreal["folder"]))).server.test_client()
    body = client.get("/api/kpis").get_json()
    assert body["city"] == "Montréal"
    kp = {k["id"]: k["value"] for k in body["kpis"]}
    assert kp["energy.load"] > 0 and kp["traffic.mean_speed"] > 0 and kp["air.aqi_worst"] > 0
    # the district of the first station has air-quality numbers of its own
    eng = make_engine(montreal["url"])
    with eng.connect() as conn:
        from sqlalchemy import text

        did = conn.execute(text("SELECT district_id FROM assets WHERE id = 'mtl-aq-01'")).scalar()
    r = client.get(f"/api/kpis?district={did}")
    assert r.status_code == 200
    kd = {k["id"]: k["value"] for k in r.get_json()["kpis"]}
    assert kd["air.aqi_worst"] is not None and kd["air.pm25_24h"] > 0
    assert client.get("/api/kpis?district=chaoyang").status_code == 400  # a Beijing id
    names = {f["properties"]["id"] for f in json.loads((montreal["folder"] / "districts.geojson").read_text())["features"]}
    assert did in names
