"""A second city end to end: Montreal (plotly's districts + synthetic data) imported with the CLI, then /api/kpis."""
from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timezone

import pytest
from _import_kit import REPO, counts, snapshot
from typer.testing import CliRunner

from dashboard.cli import app
from dashboard.store.schema import make_engine
from sqlalchemy import text


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


# --- hostile files through `panorama city import` (issue 14 items 6-8; issue 15 items 5, 9, 15) -------------
@pytest.fixture
def city_cli(tmp_path):
    """Run ``panorama city import …`` against a fresh Beijing store (SQLite file)."""
    from _import_kit import beijing_store

    eng = beijing_store(tmp_path)
    env = {"PANORAMA_DATABASE_URL": eng.url.render_as_string(hide_password=False), "PANORAMA_CITY": "beijing",
           "PANORAMA_DATA_DIR": str(tmp_path / "var"), "COLUMNS": "200"}

    def run(*args, **extra):
        return CliRunner().invoke(app, ["city", "import", *map(str, args)], env={**env, **extra})

    run.engine = eng
    return run


KINDS = ["readings", "requests", "assets", "boundaries", "categories", "ngsi"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["/dev/zero", "dir"])
def test_city005_devices_and_directories_refused_in_one_line(city_cli, tmp_path, kind, target):
    path = tmp_path if target == "dir" else target
    before = snapshot(city_cli.engine)
    r = city_cli(kind, path)
    assert r.exit_code == 1 and "Traceback" not in r.output
    first = r.stderr.splitlines()[0]
    assert first == f"error: {path}: " + ("is a directory, not a file" if target == "dir" else
                                          "not a regular file (a device, pipe or socket); give a file")
    assert r.stdout == ""
    assert snapshot(city_cli.engine) == before


def test_city006_user_data_is_printed_as_plain_text(city_cli, tmp_path):
    path = tmp_path / "[bold]stations[red].csv"
    path.write_text("asset,metric,ts,value\n[/],pm25,2016-01-01T00:00:00+08:00,3\n"
                    "aq-dongsi,pm25,2016-01-01T00:00:00+08:00,4\n")
    r = city_cli("readings", path)
    assert r.exit_code == 0, r.output  # the rows are committed: the command must not fail after that
    assert f"imported readings from {path}" in r.stdout
    assert "line/feature 2: unknown asset '[/]'" in r.stdout
    with city_cli.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar() == 1
    bad = tmp_path / "[bold]bad.csv"
    bad.write_text("asset,metric,ts,value\naq-dongsi,pm25,[/] noon,3\n")
    r = city_cli("readings", bad)
    assert r.exit_code == 1 and f"{bad}: line 2: cannot read the date '[/] noon'" in r.stderr


def test_city007_dry_run_on_a_new_database_path_creates_nothing(tmp_path):
    target = tmp_path / "new" / "store.sqlite"
    r = CliRunner().invoke(app, ["city", "import", "boundaries", str(REPO / "data" / "beijing" / "districts.geojson"),
                                 "--dry-run"], env={"PANORAMA_DATABASE_URL": f"sqlite:///{target}", "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "dry run (nothing written)" in r.stdout and "16 inserted" in r.stdout
    assert "does not exist yet" in r.stdout
    assert not target.exists() and not target.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_city008_report_on_stdout_errors_on_stderr(city_cli, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\n")
    r = city_cli("readings", good)
    assert r.exit_code == 0 and "imported readings" in r.stdout and r.stderr == ""
    r = city_cli("readings", tmp_path / "missing.csv")
    assert r.exit_code == 1 and r.stdout == "" and "missing.csv: no such file" in r.stderr


def test_city009_requests_read_us_style_times_with_ts_format(city_cli, tmp_path):
    path = tmp_path / "311.csv"
    path.write_text("id,category,created,closed,lon,lat\n"
                    "r1,pothole,03/24/2025 11:33:07 PM,03/25/2025 08:00:00 AM,116.40,39.91\n"
                    "r2,noise,03/25/2025 01:02:03 AM,,116.40,39.91\n"
                    "r3,noise,not a time,,116.40,39.91\n")
    r = city_cli("requests", path, "--timezone", "Asia/Shanghai")
    assert r.exit_code == 1 and "line 2: cannot read the date '03/24/2025 11:33:07 PM'" in r.stderr
    assert "--ts-format" in r.stderr
    r = city_cli("requests", path, "--timezone", "Asia/Shanghai", "--ts-format", "%m/%d/%Y %I:%M:%S %p")
    assert r.exit_code == 1 and "line 4: cannot read the date 'not a time'" in r.stderr  # first bad, in file order
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    r = city_cli("requests", path, "--timezone", "Asia/Shanghai", "--ts-format", "%m/%d/%Y %I:%M:%S %p")
    assert r.exit_code == 0, r.output
    with city_cli.engine.connect() as conn:
        opened = dict(conn.execute(text("SELECT id, opened_at FROM service_requests")).all())
    assert opened["r1"] == int(datetime(2025, 3, 24, 15, 33, 7, tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize("dry_run", [False, True])
def test_city010_readings_into_a_store_with_districts_and_no_assets(city_cli, tmp_path, dry_run):
    with city_cli.engine.begin() as conn:
        conn.execute(text("DELETE FROM assets"))
    path = tmp_path / "r.csv"
    path.write_text("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\n")
    r = city_cli("readings", path, *(["--dry-run"] if dry_run else []))
    assert r.exit_code == 0, r.output
    assert "0 accepted" in r.stdout and "1 rejected" in r.stdout and "unknown asset 'aq-dongsi'" in r.stdout


def test_city011_ngsi_reads_exporter_times_with_ts_format(city_cli, tmp_path):
    path = tmp_path / "aq.json"
    path.write_text(json.dumps([{"id": "urn:ngsi-ld:AirQualityObserved:aq-dongsi", "type": "AirQualityObserved",
                                 "dateObserved": "03/24/2025 11:33:07 PM", "pm25": 12}]))
    r = city_cli("ngsi", path, "--timezone", "Asia/Shanghai")
    assert r.exit_code == 0 and "1 rejected" in r.stdout  # the entity alone is rejected, with its reason
    assert "entity 1 ('urn:ngsi-ld:AirQualityObserved:aq-dongsi'): dateObserved" in r.stdout
    r = city_cli("ngsi", path, "--timezone", "Asia/Shanghai", "--ts-format", "%m/%d/%Y %I:%M:%S %p")
    assert r.exit_code == 0, r.output
    assert "1 accepted" in r.stdout
    with city_cli.engine.connect() as conn:
        ts = conn.execute(text("SELECT r.ts FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                               "WHERE a.id = 'aq-dongsi'")).scalar()
    assert ts == int(datetime(2025, 3, 24, 15, 33, 7, tzinfo=timezone.utc).timestamp())


def test_city012_dry_run_never_migrates_an_older_store(tmp_path):
    from dashboard.store.migrate import current, downgrade, head, upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    eng = make_engine(url)
    upgrade(eng)
    downgrade(eng, "0004")
    before = (tmp_path / "old.sqlite").read_bytes()
    r = CliRunner().invoke(app, ["city", "import", "boundaries", str(REPO / "data" / "beijing" / "districts.geojson"),
                                 "--dry-run"], env={"PANORAMA_DATABASE_URL": url, "COLUMNS": "200"})
    assert r.exit_code == 1
    assert f"the store's schema is 0004, this release needs {head()}: run `panorama db upgrade` first" in r.stderr
    assert current(eng) == "0004" and (tmp_path / "old.sqlite").read_bytes() == before
