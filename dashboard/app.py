"""The app factory: the only place that wires settings, store, cache, pages and API together."""
from __future__ import annotations

import logging
from pathlib import Path

from dash import Dash, dcc, html
from flask_caching import Cache

from dashboard.cache import BucketCache, cache_config
from dashboard.live import LiveData
from dashboard.settings import PROJECT_ROOT, Settings, get_settings
from dashboard.store import make_engine

log = logging.getLogger("panorama")


def create_app(settings: Settings | None = None, engine=None) -> Dash:
    """Create the Dash app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.resolved_database_url)
    app = Dash(
        __name__,
        assets_folder=str(PROJECT_ROOT / "assets"),
        title="City Panorama",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
    )
    server = app.server
    cache = Cache()
    cache.init_app(server, config=cache_config(settings.cache_url, default_timeout=settings.refresh_seconds * 6))
    city = _city(settings)
    if city is not None and "aqi_standard" not in settings.model_fields_set:
        settings = settings.model_copy(update={"aqi_standard": city.aqi_standard})  # the city's, unless set
    live = LiveData(settings, engine, BucketCache(cache, ttl=settings.refresh_seconds * 6), city)
    server.extensions["panorama"] = live

    from dashboard import api, security

    api.init_app(server, live)
    security.init_app(server, settings)
    app.layout = html.Div([
        dcc.Location(id="url", refresh=False),
        html.Div(id="page", className="page"),
    ], className="app")
    for page in _pages():
        page.register(app, live)
    _register_router(app, live)
    return app


def _city(settings: Settings):
    """Return the configured city's declaration, or None when there is no city folder (a bare store)."""
    from dashboard.city import load_city

    try:
        return load_city(settings.city_dir)
    except FileNotFoundError:
        log.warning("no city.toml in %s: using registry defaults for thresholds and KPIs", settings.city_dir)
        return None


def _pages() -> list:
    """Return the page modules, each with ``PATH`` (a prefix), ``layout(live, pathname, search)``
    and ``register(app, live)``. The first whose PATH matches the URL renders it; ``/`` last."""
    from dashboard.pages import embed, manager, wall

    return [embed, wall, manager]


def _register_router(app: Dash, live: LiveData) -> None:
    from dash import Input, Output, State

    pages = sorted(_pages(), key=lambda p: -len(p.PATH))

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname, search):
        """Render the page for the URL."""
        path = pathname or "/"
        for page in pages:
            if path == page.PATH or path.startswith(page.PATH.rstrip("/") + "/") or page.PATH == "/":
                return page.layout(live, path, search or "")
        return html.Div("Not found", className="error-page")


def asset_path(name: str) -> Path:
    """Return the path of a file in ``assets/``."""
    return PROJECT_ROOT / "assets" / name
