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


def _toy(bucket: list):
    """A Flask app with one "live refresh" route whose renders the test holds and counts."""
    import threading

    from flask import Flask

    from dashboard.refresh_cache import mark_shareable

    server = Flask("toy")
    cache = RefreshCache(lambda: bucket[0], {"out.children": "tick"})
    cache.init_app(server)
    state = {"renders": 0, "gate": threading.Event(), "inside": threading.Event(), "share": True}

    @server.post("/_dash-update-component")
    def render():
        state["renders"] += 1
        state["inside"].set()
        assert state["gate"].wait(20)
        if state["share"]:
            mark_shareable()
        return f"bucket {bucket[0]} render {state['renders']}"
    return server, cache, state


def _ask(server, n: int, out: list):
    body = {"output": "out.children", "inputs": [{"id": "tick", "property": "n_intervals", "value": n}]}
    out.append(server.test_client().post("/_dash-update-component", json=body).get_data(as_text=True))


def test_while_one_request_renders_a_new_bucket_the_others_get_the_previous_answer():
    """At each bucket's start every wall misses at once: one request per process renders; the others
    get the previous bucket's bytes at once instead of all rendering the same answer."""
    import threading

    bucket = [1]
    server, cache, state = _toy(bucket)
    state["gate"].set()
    first: list = []
    _ask(server, 1, first)
    assert first == ["bucket 1 render 1"]
    bucket[0], state["gate"] = 2, threading.Event()
    state["inside"].clear()
    got: list = []
    renderer = threading.Thread(target=_ask, args=(server, 2, got))
    renderer.start()
    assert state["inside"].wait(20)
    others: list = []
    for n in range(3, 13):
        _ask(server, n, others)  # answered while the render is held: they do not wait for it
    assert others == ["bucket 1 render 1"] * 10 and state["renders"] == 2 and cache.stale == 10
    state["gate"].set()
    renderer.join(20)
    assert got == ["bucket 2 render 2"]
    after: list = []
    _ask(server, 13, after)
    assert after == ["bucket 2 render 2"] and state["renders"] == 2


def _arrive_during_a_render(server, state, n: int):
    """Send ``n`` requests, all but the first while the first one's render is held; return the answers."""
    import threading

    got: list = []
    threads = [threading.Thread(target=_ask, args=(server, i, got)) for i in range(n)]
    threads[0].start()
    assert state["inside"].wait(20)
    for t in threads[1:]:
        t.start()
    state["gate"].set()
    for t in threads:
        t.join(20)
    return got, threads


def test_with_no_previous_answer_the_others_wait_for_the_one_render():

    server, cache, state = _toy([7])
    got, threads = _arrive_during_a_render(server, state, 6)
    assert got == ["bucket 7 render 1"] * 6 and state["renders"] == 1


def test_a_render_that_keeps_nothing_does_not_hold_the_waiting_requests():
    """A failed refresh (its STALE banner is never kept) wakes the requests waiting for it: each
    renders its own answer rather than waiting for one another."""
    server, cache, state = _toy([3])
    state["share"] = False
    got, threads = _arrive_during_a_render(server, state, 4)
    assert not any(t.is_alive() for t in threads) and len(got) == 4 and state["renders"] == 4
    assert cache._rendering == {}
