"""The manager view's builders without a browser: the URL both ways (back/forward), the
drill-down's thresholds, the districts' hover lines."""
from __future__ import annotations

import time

import numpy as np
import pytest
from _demo import build_demo_store
from dash import no_update

from dashboard import views
from dashboard.app import create_app
from dashboard.pages.manager import url_sync
from dashboard.settings import Settings
from layers import DEFAULT_LAYERS, LAYER_BY_ID


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mgrviews")
    app = create_app(Settings(data_dir=folder, database_url=build_demo_store(folder, hours=3)))
    return app.server.extensions["panorama"]


def test_mgrv001_url_change_sets_controls_and_drill_down(live):
    """A URL reached by back/forward sets window, district, layers and the drill-down's KPI; values
    already shown are left alone (nothing recomputed, no history entry)."""
    got = url_sync(live, "manager-url", "?window=7d&district=haidian&layers=energy,traffic&kpi=traffic.tti",
                   "24h", "haidian", ["traffic", "energy"], None)
    assert got == (no_update, "7d", no_update, no_update, "traffic.tti")
    # back to the bare page: the defaults, the drill-down closed
    got = url_sync(live, "manager-url", "", "7d", "haidian", ["energy"], "traffic.tti")
    assert got[0] is no_update and got[1] == "24h" and got[2] is None and got[4] is None
    assert set(got[3]) == set(DEFAULT_LAYERS)
    # a KPI the page does not have opens nothing
    assert url_sync(live, "manager-url", "?kpi=nope", "24h", None, None, "traffic.tti")[4] is None


def test_mgrv002_control_change_writes_url_with_drill_down_once(live):
    """A change of the controls writes the URL (with ``kpi=``); a view the URL already shows is not
    written again (it came from the URL: writing it would add a history entry)."""
    got = url_sync(live, "drill-kpi", "?window=24h&layers=energy", "24h", None, ["energy"], "service.open")
    assert got[0] == "?window=24h&layers=energy&kpi=service.open" and all(v is no_update for v in got[1:])
    assert url_sync(live, "window", "?window=7d&layers=energy,traffic", "7d", None, ["traffic", "energy"], None) \
        == (no_update,) * 5


def test_mgrv003_trend_draws_watch_and_alert_thresholds_city_overrides_first():
    k = views.KPI_BY_ID["traffic.tti"]
    assert views.kpi_thresholds(k.id) == (1.3, 1.6)
    assert views.kpi_thresholds(k.id, {"traffic.tti": (1.1, 1.4)}) == (1.1, 1.4)
    assert views.kpi_thresholds("energy.load") is None  # judged by its share of capacity, not in MW
    assert views.kpi_thresholds("service.open") is None  # no thresholds
    from dashboard.kpis import KpiValue

    kv = KpiValue(id=k.id, domain="traffic", label=k.label, unit="×", value=1.2, delta=None, delta_label="",
                  status="good", as_of=None, age_s=None, stale=False, spark_x=[0, 3600], spark_y=[1.1, 1.2])
    from zoneinfo import ZoneInfo

    lay = views.trend_figure(kv, ZoneInfo("UTC"), thresholds=(1.1, 1.4))["layout"]
    assert [(s["y0"], s["y1"]) for s in lay["shapes"]] == [(1.1, 1.1), (1.4, 1.4)]
    assert [a["text"] for a in lay["annotations"]] == ["WATCH 1.1", "ALERT 1.4"]
    assert views.trend_figure(kv, ZoneInfo("UTC"))["layout"]["shapes"] == []  # none without thresholds


def test_mgrv004_district_hover_shows_the_visible_layers_values(live):
    """Each district's hover lines are the values of the visible layers (as the layers compute
    them), the population only when no layer of values is on."""
    now = time.time()
    frames, params = live.layer_frames(), live.params(now)
    ids = live.static("districts")["id"].tolist()
    fig = views.map_figure(live, frames, params, list(LAYER_BY_ID))
    hover = next(t for t in fig["data"] if t["meta"]["layer"] == "districts")["customdata"]
    assert hover == views.district_hover(live, frames, params, list(LAYER_BY_ID))
    by_id = dict(zip(ids, hover))
    e = LAYER_BY_ID["energy"]._state(live.static("energy"), frames["energy"], now)
    aq = LAYER_BY_ID["air_quality"]._state(live.static("air_quality"), frames["air_quality"], "cn", now)
    aq = aq.assign(district=live.static("air_quality")["district_id"].to_numpy())
    sat = LAYER_BY_ID["satisfaction"]._state(live.static("satisfaction"), frames["satisfaction"])
    for r in e.itertuples():
        if np.isfinite(r.share) and not r.stale:
            assert f"energy load {r.share:.0f}% of capacity" in by_id[r.id]
    for d, g in aq[np.isfinite(aq["aqi"]) & ~aq["stale"]].groupby("district"):
        assert f"worst AQI {g['aqi'].max():.0f} at " in by_id[d]
    for r in sat.itertuples():
        if np.isfinite(r.satisfaction):
            assert f"satisfaction {r.satisfaction:.2f} / 5" in by_id[r.id]
    assert all("traffic speed" in h and "population" not in h for h in hover)
    # only the layers on; the population when none with values is
    only = views.district_hover(live, frames, params, ["districts", "satisfaction"])
    assert all(h.startswith("satisfaction") and "energy" not in h and "AQI" not in h for h in only)
    assert all(h.startswith("population ") for h in views.district_hover(live, frames, params, ["districts"]))
    # a refresh's patch carries them too
    patch = views.map_patch(live, frames, params, ["districts", "energy"]).to_plotly_json()
    want = views.district_hover(live, frames, params, ["districts", "energy"])
    assert any(op["location"][-1] == "customdata" and op["params"]["value"] == want for op in patch["operations"])
