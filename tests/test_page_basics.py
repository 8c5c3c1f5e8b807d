"""What every page carries: a title per page, the city's language, our favicon; compressed,
long-cached script bundles."""
from __future__ import annotations

import gzip
import re
import shutil
import time

import brotli
import pytest
from _demo import BEIJING, build_demo_store

from dashboard.app import create_app
from dashboard.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("basics"), hours=2)


@pytest.fixture(scope="module")
def client(store_url, tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("d"), database_url=store_url, refresh_seconds=5))
    return app.server.test_client()


def _title(page: str) -> str:
    return re.search(r"<title>(.*?)</title>", page, re.DOTALL).group(1).strip()


@pytest.mark.parametrize("path, title", [
    ("/", "Manager · Beijing · City Panorama"),
    ("/wall", "Wall · Beijing · City Panorama"),
    ("/embed/traffic.tti", "Travel-time idx · Beijing · City Panorama"),
    ("/embed/map", "City map · Beijing · City Panorama"),
])
def test_page001_each_page_has_its_own_title(client, path, title):
    r = client.get(path)
    assert r.status_code == 200
    assert _title(r.get_data(as_text=True)) == title


def test_page002_lang_and_our_favicon(client):
    page = client.get("/wall").get_data(as_text=True)
    assert re.search(r'<html lang="en">', page)
    ico = re.search(r'<link rel="icon" type="image/x-icon" href="([^"?]+)', page).group(1)
    svg = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', page).group(1)
    assert ico == "/assets/favicon.ico" and svg == "/assets/favicon.svg"
    body = client.get(ico).data
    assert body == (PROJECT_ROOT / "assets" / "favicon.ico").read_bytes() and body[:4] == b"\0\0\1\0"
    assert b"<svg" in client.get(svg).data


def test_page003_lang_comes_from_the_city(store_url, tmp_path):
    city = tmp_path / "city"
    city.mkdir()
    toml = (BEIJING / "city.toml").read_text(encoding="utf-8")
    (city / "city.toml").write_text('locale = "fr_CA.UTF-8"\n' + toml, encoding="utf-8")
    for f in BEIJING.iterdir():
        if f.name != "city.toml" and f.is_file():
            shutil.copy(f, city / f.name)
    app = create_app(Settings(data_dir=tmp_path / "d", database_url=store_url, city=str(city)))
    assert '<html lang="fr-CA">' in app.server.test_client().get("/").get_data(as_text=True)


@pytest.mark.parametrize("config, lang", [
    ({}, "en"), ({"lang": "zh"}, "zh"), ({"locale": "en_US"}, "en-US"), ({"locale": "de_DE.UTF-8"}, "de-DE"),
    ({"lang": '"><script>'}, "en"), ({"lang": 3}, "en"), ({"lang": "x", "locale": "pt_BR"}, "pt-BR"),
])
def test_page004_city_lang(config, lang):
    from dashboard.page_meta import city_lang

    assert city_lang(config) == lang


def _bundles(client) -> list[str]:
    page = client.get("/").get_data(as_text=True)
    return re.findall(r'<script src="(/_dash-component-suites/[^"]+)"', page)


@pytest.mark.parametrize("encoding, decode", [("br", brotli.decompress), ("gzip", gzip.decompress)])
def test_page005_big_bundles_are_compressed_and_long_cached(client, encoding, decode):
    bundles = _bundles(client)
    big = [b for b in bundles if "plotly" in b or "dash_renderer" in b or "react-dom" in b]
    assert len(big) >= 2, bundles
    for url in big:
        plain = client.get(url, headers={"Accept-Encoding": "identity"})
        packed = client.get(url, headers={"Accept-Encoding": f"{encoding}, deflate"})
        assert packed.status_code == 200 and packed.headers.get("Content-Encoding") == encoding, url
        assert decode(packed.data) == plain.data
        assert len(packed.data) < len(plain.data) / 2.5, url
        assert packed.cache_control.max_age == 31_536_000
        assert "Accept-Encoding" in packed.headers.get("Vary", "")
        again = client.get(url, headers={"Accept-Encoding": encoding})  # from the kept compressed bytes
        assert again.data == packed.data


def test_page006_pages_and_callbacks_are_compressed_assets_cached(client):
    r = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("Content-Encoding") == "gzip" and b"<title>" in gzip.decompress(r.data)
    css = re.search(r'href="(/assets/theme\.css\?m=[^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    assert client.get(css).cache_control.max_age == 31_536_000
    assert client.get("/assets/theme.css").cache_control.max_age != 31_536_000  # not fingerprinted


@pytest.mark.browser
def test_page007_document_title_follows_navigation(dash_duo, store_url, tmp_path):
    app = create_app(Settings(data_dir=tmp_path, database_url=store_url, refresh_seconds=5))
    dash_duo.start_server(app)
    deadline = time.monotonic() + 60

    def title_is(want):
        while time.monotonic() < deadline:
            if dash_duo.driver.title == want:
                return True
            time.sleep(0.2)
        raise AssertionError(f"title {dash_duo.driver.title!r}, wanted {want!r}")

    title_is("Manager · Beijing · City Panorama")
    dash_duo.driver.execute_script(
        "window.history.pushState({}, '', '/wall'); window.dispatchEvent(new CustomEvent('_dashprivate_pushstate'));")
    dash_duo.wait_for_element("#page-title", timeout=30)
    title_is("Wall · Beijing · City Panorama")
    assert dash_duo.driver.execute_script("return document.documentElement.lang") == "en"
