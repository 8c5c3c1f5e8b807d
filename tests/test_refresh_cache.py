"""Live-refresh answers shared per bucket: the same request (but its tick count) gets the same bytes."""
from __future__ import annotations

import json

import pytest
from _demo import build_demo_store

from dashboard.app import create_app
from dashboard.refresh_cache import RefreshCache
from dashboard.settings import Settings


@pytest.fixture(scope="module")
def client_and_cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refresh-cache")
    url = build_demo_store(folder, hours=2)
    app = create_app(Settings(data_dir=folder, database_url=url, refresh_seconds=3600))
    return app.server.test_client(), app.server.extensions["panorama_refresh"], app


def kpi_refresh(app, n: int, panel: str = "traffic.tti", args: dict | None = None) -> dict:
    """The body a browser sends for an embedded KPI's live refresh."""
    output = next(k for k in app.callback_map if k.startswith("..embed-value.children"))
    return {"output": output, "outputs": [], "changedPropIds": ["embed-kpi-tick.n_intervals"],
            "inputs": [{"id": "embed-kpi-tick", "property": "n_intervals", "value": n}],
            "state": [{"id": "embed-spec", "property": "data", "value": {"panel": panel, "args": args or {}}}]}


def _outputs(app, body):
    spec = body["output"].strip(".").split("...")
    body["outputs"] = [{"id": s.rsplit(".", 1)[0], "property": s.rsplit(".", 1)[1]} for s in spec]
    return body


def test_the_same_refresh_is_answered_once_per_bucket(client_and_cache):
    client, cache, app = client_and_cache
    h0, m0 = cache.hits, cache.misses
    first = client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, 1)))
    assert first.status_code == 200, first.data[:300]
    assert "response" in json.loads(first.data)
    again = [client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, n))) for n in (2, 3, 9)]
    assert all(r.status_code == 200 and r.data == first.data for r in again)
    assert (cache.hits - h0, cache.misses - m0) == (3, 1)
    other = client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, 4, "energy.load")))
    assert other.status_code == 200 and other.data != first.data  # another panel: another answer
    assert cache.misses - m0 == 2


def test_a_screen_that_accepts_gzip_gets_the_answer_compressed_once(client_and_cache):
    import gzip

    client, cache, app = client_and_cache
    plain = client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, 1, "transit.on_time")))
    h0 = cache.hits
    packed = [client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, n, "transit.on_time")),
                          headers={"Accept-Encoding": "gzip, deflate"}) for n in (2, 3)]
    assert cache.hits - h0 == 2
    assert all(r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"] for r in packed)
    assert packed[0].data == packed[1].data  # the same bytes: compressed once, when the answer was kept
    assert gzip.decompress(packed[0].data) == plain.data


def test_a_new_bucket_computes_a_new_answer(client_and_cache, monkeypatch):
    client, cache, app = client_and_cache
    client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, 1, "air.aqi_worst")))
    m0 = cache.misses
    monkeypatch.setattr(cache, "bucket_fn", lambda: 10 ** 9)
    client.post("/_dash-update-component", json=_outputs(app, kpi_refresh(app, 2, "air.aqi_worst")))
    assert cache.misses == m0 + 1


def test_failed_refreshes_are_not_kept(client_and_cache):
    client, cache, app = client_and_cache
    bad = _outputs(app, kpi_refresh(app, 1, "no.such.panel"))
    for n in (1, 2):
        bad["inputs"][0]["value"] = n
        r = client.post("/_dash-update-component", json=bad)
        assert r.status_code in (200, 204)
    key = cache.key(bad)
    assert key not in cache._mem


def test_only_live_refreshes_are_keyed():
    cache = RefreshCache(lambda: 1, {"..a.children..": "tick"})
    body = {"output": "..a.children..", "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}], "state": []}
    k1 = cache.key(body)
    body["inputs"][0]["value"] = 99
    assert cache.key(body) == k1
    body["state"] = [{"id": "cfg", "property": "data", "value": {"district": "x"}}]
    assert cache.key(body) != k1
    assert cache.key({"output": "other.children", "inputs": []}) is None
