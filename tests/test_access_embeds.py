"""Signed embeds with ``PANORAMA_ANONYMOUS=off``: a signed URL shows its panel and nothing else, whatever
the URL or the callback body says; expiry, key rotation, the signed export, and unsigned embeds."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from _signed_in import CALLBACK, app_for, embed_refresh, small_store
from typer.testing import CliRunner

from dashboard import accounts, signing
from dashboard.cli import app as cli
from dashboard.settings import get_settings


@pytest.fixture
def setup(tmp_path, monkeypatch):
    url, engine = small_store(tmp_path)
    monkeypatch.setenv("PANORAMA_DATABASE_URL", url)
    app = app_for(url, tmp_path)
    return url, engine, app


def sign_cli(*args) -> str:
    r = CliRunner().invoke(cli, ["embed", "sign", *args, "--base-url", "https://panorama.city.gov"])
    assert r.exit_code == 0, r.output
    return next(w for w in r.output.split() if w.startswith("https://"))


def split(link: str) -> tuple[str, dict]:
    u = urlsplit(link)
    return u.path, {k: v[0] for k, v in parse_qs(u.query).items()}


def spec_of(path: str, args: dict) -> dict:
    return {"panel": path.rsplit("/", 1)[1], "args": args}


def test_embed_access001_signed_url_shows_its_panel_without_a_cookie(setup):
    url, engine, app = setup
    path, args = split(sign_cli("traffic.tti", "--district", "north", "--window", "1h", "--expires", "30d"))
    assert path == "/embed/traffic.tti" and set(args) == {"district", "window", "token"}
    c = app.server.test_client()
    page = c.get(path + "?" + urlencode(args))
    assert page.status_code == 200
    referer = {"Referer": "http://localhost" + path + "?" + urlencode(args)}
    layout = app.server.test_client().get("/_dash-layout", headers=referer)  # no cookie at all
    assert layout.status_code == 200 and b"embed-spec" in layout.data and args["token"].encode() in layout.data
    assert app.server.test_client().get("/_dash-dependencies", headers=referer).status_code == 200
    # the live refresh carries the token in its body (no cookie, no CSRF header: a cross-site iframe)
    fresh = app.server.test_client()
    r = fresh.post(CALLBACK, json=embed_refresh(app, spec_of(path, args)))
    assert r.status_code == 200, r.data[:300]
    assert not fresh.get_cookie("panorama_session") and not fresh.get_cookie("panorama_device")
    # a signed-in browser's cookies riding along change nothing (its CSRF token too)
    with_cookie = app.server.test_client()
    from _signed_in import sign_in

    csrf = sign_in(with_cookie, engine, "viewer1", "viewer")
    assert with_cookie.post(CALLBACK, json=embed_refresh(app, spec_of(path, args)),
                            headers={"X-CSRFToken": csrf}).status_code == 200


@pytest.mark.parametrize("change", ["district=south", "window=24h", "district=", "theme=light", "refresh=1",
                                    "extra=1", "panel"])
def test_embed_access002_a_changed_url_is_403(setup, change):
    url, engine, app = setup
    path, args = split(sign_cli("traffic.tti", "--district", "north", "--window", "1h"))
    if change == "panel":
        path = "/embed/traffic.mean_speed"
    else:
        k, _, v = change.partition("=")
        args = {**args, k: v} if v else {a: b for a, b in args.items() if a != k}
    r = app.server.test_client().get(path + "?" + urlencode(args))
    assert r.status_code == 403, (change, r.status_code)
    assert b"signed link" in r.data or b"signed for" in r.data


@pytest.mark.parametrize("field,value", [("district", "south"), ("district", None), ("window", "7d"),
                                         ("panel", "traffic.mean_speed"), ("layers", "traffic")])
def test_embed_access003_a_changed_callback_body_is_403(setup, field, value):
    url, engine, app = setup
    path, args = split(sign_cli("traffic.tti", "--district", "north", "--window", "1h"))
    spec = spec_of(path, dict(args))
    if field == "panel":
        spec["panel"] = value
    elif value is None:
        spec["args"].pop(field)
    else:
        spec["args"][field] = value
    r = app.server.test_client().post(CALLBACK, json=embed_refresh(app, spec))
    assert r.status_code == 403, (field, value, r.data[:200])
    assert "signed" in r.get_json()["error"]


def test_embed_access004_router_of_a_signed_page_renders_that_panel_only(setup):
    url, engine, app = setup
    path, args = split(sign_cli("traffic.tti", "--district", "north"))
    output = next(k for k in app.callback_map if k.startswith("..page.children"))

    def route(p, q):
        return {"output": output, "outputs": [{"id": "page", "property": "children"},
                                              {"id": "rendered", "property": "data"}],
                "inputs": [{"id": "url", "property": "pathname", "value": p}],
                "state": [{"id": "url", "property": "search", "value": q},
                          {"id": "rendered", "property": "data", "value": None}],
                "changedPropIds": ["url.pathname"]}

    c = app.server.test_client()
    assert c.post(CALLBACK, json=route(path, "?" + urlencode(args))).status_code == 200
    tampered = {**args, "district": "south"}
    assert c.post(CALLBACK, json=route(path, "?" + urlencode(tampered))).status_code == 403
    assert c.post(CALLBACK, json=route("/embed/traffic.mean_speed", "?" + urlencode(args))).status_code == 403


def test_embed_access005_expired_is_410_with_the_time(setup):
    url, engine, app = setup
    secret = get_settings().secret_key.get_secret_value()
    key = accounts.ensure_embed_key(engine)
    expired_at = int(time.time()) - 60
    link = signing.url(secret, key, "traffic.tti", {"district": "north"}, expired_at)
    r = app.server.test_client().get(link)
    assert r.status_code == 410
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expired_at))
    assert f"expired on {when}".encode() in r.data and b"Link expired" in r.data
    path, args = split("http://x" + link)
    assert app.server.test_client().post(CALLBACK, json=embed_refresh(app, spec_of(path, args))).status_code == 410


def test_embed_access006_rotating_the_key_revokes_every_link(setup):
    url, engine, app = setup
    link = sign_cli("traffic.tti", "--district", "north")
    path, args = split(link)
    c = app.server.test_client()
    assert c.get(path + "?" + urlencode(args)).status_code == 200
    r = CliRunner().invoke(cli, ["embed", "rotate-key"])
    assert r.exit_code == 0 and "rotated" in r.output
    app.server.extensions["panorama_access"].forget()  # another process: within REMEMBER_S
    assert c.get(path + "?" + urlencode(args)).status_code == 403
    assert c.post(CALLBACK, json=embed_refresh(app, spec_of(path, args))).status_code == 403
    again = split(sign_cli("traffic.tti", "--district", "north"))
    assert c.get(again[0] + "?" + urlencode(again[1])).status_code == 200
    actions = [a["action"] for a in accounts.audit_tail(engine)]
    assert "embed.rotate_key" in actions and actions.count("embed.sign") == 2


def test_embed_access007_signed_export_is_locked_the_same_way(setup):
    url, engine, app = setup
    path, args = split(sign_cli("traffic.tti", "--district", "north", "--window", "1h"))
    c = app.server.test_client()
    ok = c.get("/api/panels/traffic.tti.json?" + urlencode(args))
    assert ok.status_code == 200 and ok.get_json()["district"] == "north"
    assert c.get("/api/panels/traffic.tti.csv?" + urlencode(args)).status_code == 200
    for bad in ({**args, "district": "south"}, {**args, "window": "7d"}, {**args, "x": "1"}):
        assert c.get("/api/panels/traffic.tti.json?" + urlencode(bad)).status_code == 403, bad
    assert c.get("/api/panels/traffic.mean_speed.json?" + urlencode(args)).status_code == 403
    assert c.get("/api/kpis?" + urlencode(args)).status_code == 401  # the token opens its panel, nothing else


def test_embed_access008_unsigned_embeds_follow_anonymous(setup, tmp_path):
    url, engine, app = setup
    c = app.server.test_client()
    r = c.get("/embed/traffic.tti?district=north")
    assert r.status_code == 303 and r.headers["Location"].startswith("/login?next=/embed/traffic.tti")
    spec = {"panel": "traffic.tti", "args": {"district": "north"}}
    assert c.post(CALLBACK, json=embed_refresh(app, spec)).status_code == 401
    open_app = app_for(url, tmp_path, anonymous="viewer")
    o = open_app.server.test_client()
    assert o.get("/embed/traffic.tti?district=north").status_code == 200
    assert o.post(CALLBACK, json=embed_refresh(open_app, spec)).status_code == 200


def test_embed_access009_cli_validates_as_the_embed_page_does(setup):
    for args, why in ((["nope"], "unknown panel 'nope'"), (["traffic.tti", "--window", "2h"], "unknown window '2h'"),
                      (["traffic.tti", "--district", "mars"], "mars"),
                      (["traffic.tti", "--layers", "traffic"], "layers is only for the whole map panel"),
                      (["traffic.tti", "--theme", "pink"], "unknown theme 'pink'"),
                      (["traffic.tti", "--expires", "2y"], "not a duration"),
                      (["traffic.tti", "--expires", "400d"], "366 days")):
        r = CliRunner().invoke(cli, ["embed", "sign", *args])
        assert r.exit_code == 1 and why in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)
    link = sign_cli("map", "--layers", "traffic,air_quality", "--theme", "light", "--expires", "12h")
    assert split(link)[1]["layers"] == "traffic,air_quality"
