"""What a browser tab shows of a page: its title, the page language and our favicon.

Dash serves one index page with one title for every URL. Each page here gets its own title, in the
served HTML (so a tab, a bookmark and a screen reader see it before any script ran) and again
after an in-app navigation (a clientside callback sets ``document.title``). The ``<html lang>``
comes from the city (``lang`` or ``locale`` in city.toml; default "en"). ``assets/favicon.ico``
(which Dash links by itself) and ``assets/favicon.svg`` are ours.
"""
from __future__ import annotations

import html as htmlmod
import re

from dash import Dash, Input, Output, html

APP_NAME = "City Panorama"
_LANG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")


def city_lang(config: dict | None) -> str:
    """Return the BCP 47 language tag of a city.toml (``lang``, else ``locale`` as "fr_CA"), or "en"."""
    config = config or {}
    for key in ("lang", "locale"):
        v = config.get(key)
        if isinstance(v, str):
            tag = v.strip().split(".")[0].replace("_", "-")
            if _LANG.fullmatch(tag):
                return tag
    return "en"


def page_title(pathname: str | None, city: str | None) -> str:
    """Return the title of the page at ``pathname``: "Wall · Beijing · City Panorama", …"""
    from dashboard.pages import embed

    path = pathname or "/"
    where = f" · {city}" if city else ""
    if path == "/wall" or path.startswith("/wall/"):
        name = "Wall"
    elif path.startswith(embed.PREFIX):
        from dashboard.export import UnknownPanel, get_panel

        try:
            name = get_panel(embed.panel_id_of(path)).label
        except UnknownPanel:
            name = "Panel unavailable"
    elif path == "/":
        name = "Manager"
    else:
        name = "Not found"
    return f"{name}{where} · {APP_NAME}"


def title_marker(pathname: str | None, city: str | None):
    """Return the hidden element that carries a rendered page's title to the browser."""
    return html.Div(page_title(pathname, city), id="page-title", hidden=True)


def install(app: Dash, city: str | None, lang: str) -> None:
    """Give ``app``'s index page the language, our SVG favicon and a title per URL path."""
    from flask import has_request_context, request

    app.index_string = app.index_string.replace("<html>", f'<html lang="{htmlmod.escape(lang)}">', 1).replace(
        "{%favicon%}", '{%favicon%}\n        <link rel="icon" type="image/svg+xml" href="'
        + app.get_asset_url("favicon.svg") + '">', 1)
    interpolate = app.interpolate_index

    def interpolate_index(**kwargs):
        if has_request_context():
            kwargs["title"] = htmlmod.escape(page_title(request.path, city), quote=False)
        return interpolate(**kwargs)

    app.interpolate_index = interpolate_index
    app.clientside_callback(
        "function (t) { if (t) { document.title = t; } return window.dash_clientside.no_update; }",
        Output("page-title", "title"), Input("page-title", "children"))
