"""A city's own settings in city.toml: AQI standard, KPI thresholds, the KPIs it shows."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from dashboard.app import create_app
from dashboard.city import City, load_city
from dashboard.kpis import KPI_BY_ID, compute_all
from dashboard.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def city_with(tmp_path: Path, extra: str) -> City:
    src = (ROOT / "data" / "beijing" / "city.toml").read_text()
    (tmp_path / "city.toml").write_text(src + "\n" + extra)
    return load_city(tmp_path)


def test_city001_thresholds_override_registry_status(beijing_engine, tmp_path):
    city = city_with(tmp_path, '[thresholds]\n"service.open" = { warn = -2, bad = -1 }\n')
    with beijing_engine.connect() as conn:
        plain = {k.id: k for k in compute_all(conn, time.time(), "24h")}
        over = {k.id: k for k in compute_all(conn, time.time(), "24h", thresholds=city.thresholds)}
    # no data in a store without history: status stays unknown whatever the thresholds
    assert plain["service.open"].status == over["service.open"].status == "unknown"
    kpi = KPI_BY_ID["traffic.tti"]

    from layers._domain import Frames, Query

    Ctx = Frames(Query(now=0, thresholds=(("traffic.tti", (1.0, 1.1)),)))
    NoCtx = Frames(Query(now=0))

    assert kpi.status(NoCtx, 1.05) == "good" and kpi.status(Ctx, 1.05) == "warn" and kpi.status(Ctx, 1.2) == "bad"


@pytest.mark.parametrize("extra, fragment", [
    ('[thresholds]\n"no.such" = { warn = 1, bad = 2 }\n', "unknown KPI 'no.such'"),
    ('[thresholds]\n"traffic.tti" = [1, 2]\n', "needs { warn"),
    ('[kpis]\nshow = ["traffic.tti", "nope"]\n', "unknown KPI(s) nope"),
])
def test_city002_bad_city_config_is_a_clear_error(tmp_path, extra, fragment):
    city = city_with(tmp_path, extra)
    with pytest.raises(ValueError, match="city.toml") as err:
        city.thresholds, city.kpi_ids  # noqa: B018
    assert fragment in str(err.value)


def test_city003_app_takes_aqi_standard_and_kpis_from_the_city(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    src = (ROOT / "data" / "beijing" / "city.toml").read_text().replace('aqi_standard = "cn"', 'aqi_standard = "us"')
    src = src.replace("[files]", "[kpis]\nshow = [\"traffic.tti\", \"air.aqi_worst\"]\n\n[files]")
    (folder / "city.toml").write_text(src)
    app = create_app(Settings(data_dir=tmp_path, city=str(folder), database_url=f"sqlite:///{tmp_path}/x.sqlite"))
    live = app.server.extensions["panorama"]
    assert live.settings.aqi_standard == "us"
    assert live.kpi_ids == ["traffic.tti", "air.aqi_worst"]
    app = create_app(Settings(data_dir=tmp_path, city=str(folder), aqi_standard="cn",
                              database_url=f"sqlite:///{tmp_path}/x.sqlite"))
    assert app.server.extensions["panorama"].settings.aqi_standard == "cn", "an explicit setting wins"
