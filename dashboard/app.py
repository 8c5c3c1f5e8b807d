"""The app factory: the only place that wires settings, store, cache, pages and API together."""
from __future__ import annotations

import logging

from dash import Dash, dcc, html
from flask_caching import Cache

from dashboard.cache import BucketCache, cache_config
from dashboard.live import LiveData, build_live
from dashboard.settings import PROJECT_ROOT, Settings, get_settings
from dashboard.store.migrate import readonly_engine

log = logging.getLogger("panorama")


def create_app(settings: Settings | None = None, engine=None) -> Dash:
    """Create the Dash app for ``settings`` (default: from the environment).

    The screens read through ``engine`` (default: a read-only engine on the read URL); only the
    NGSI-LD notification endpoint writes, through an engine of its own made when first used.
    """
    settings = settings or get_settings()
    engine = engine or readonly_engine(settings.resolved_read_database_url)
    app = Dash(
        __name__,
        assets_folder=str(PROJECT_ROOT / "assets"),
        title="City Panorama",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
    )
    server = app.server
    if settings.proxy_hops:
        # X-Forwarded-For/-Proto of the trusted proxies give the client's address (rate limits, audit
        # log) and HTTPS (Secure cookies); from anyone else they are ignored
        from werkzeug.middleware.proxy_fix import ProxyFix

        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    _compress(server)
    cache = Cache()
    cache.init_app(server, config=cache_config(settings.cache_url, default_timeout=settings.refresh_seconds * 6))
    city = _city(settings)
    live = build_live(settings, city, engine, BucketCache(cache, ttl=settings.refresh_seconds * 6))
    settings = live.settings
    server.extensions["panorama"] = live
    from dashboard.alerts.deliver import Deliverer

    # alert notifications: started by the server once it runs (after gunicorn's fork), not here
    server.extensions["panorama_notify"] = Deliverer.for_app(settings, city)
    if city is not None:
        from dashboard.alerts import notify
        from dashboard.alerts.rules import RuleError

        try:
            notify.configure(city.notify_channels, city.alert_rules)  # where the evaluator's changes go
        except RuleError:
            notify.configure(())  # the evaluator says why it does not run (dashboard.alerts.evaluator.for_live)

    from dashboard import api, security

    api.init_app(server, live)
    from dashboard.alerts import web as alerts_web

    alerts_web.init_app(server, live, settings)
    from dashboard.incidents import web as incidents_web

    incidents_web.init_app(server, live, settings)
    from dashboard import page_meta

    city_name = city.name if city is not None else None
    page_meta.install(app, city_name, page_meta.city_lang(city.config if city is not None else None))
    _refuse_unknown_pages(app)
    from dashboard import web_access

    web_access.init_app(app, live, settings)  # before any hook that could answer from a cache
    from dashboard import admin

    admin.init_app(server)
    app.layout = lambda: _shell(live, city_name)
    for page in _pages():
        page.register(app, live)
    _register_router(app, live, city_name)
    security.init_app(server, settings, app.csp_hashes())  # after every clientside callback is known
    from dashboard.callback_guard import init_app as guard_callbacks

    guard_callbacks(app)
    _share_refresh_answers(app, live)
    web_access.limit_rates(server, settings)
    return app


#: The pages Dash serves its index for (``/embed/<panel-id>`` is checked by the embed page itself).
PAGE_PATHS = ("/", "/wall")
#: The longest query string any URL may have, in bytes (every parameter list is short).
MAX_QUERY = 2048


def _refuse_unknown_pages(app: Dash) -> None:
    """Answer 404 for a path no page shows, instead of Dash's index (its catch-all route takes any path),
    and 414 for an overlong query string, before any route parses it."""
    from flask import request

    from dashboard.pages.embed import PREFIX

    catchall = app.config.routes_pathname_prefix + "<path:path>"

    @app.server.before_request
    def query_too_long():
        if len(request.query_string) > MAX_QUERY:
            from dashboard.api import _error

            return _error(414, f"query string longer than {MAX_QUERY} bytes")
        return None

    @app.server.before_request
    def not_a_page():
        if request.endpoint != catchall:
            return None
        if request.path in PAGE_PATHS or request.path.startswith(PREFIX):
            return None
        from dashboard.pages.embed import error_html

        return error_html(404, f"no page at {request.path[:80]}", title="Page not found"), 404


def _share_refresh_answers(app: Dash, live: LiveData) -> None:
    """Keep each live refresh's answer per bucket, for every screen sending the same request."""
    from dashboard.refresh_cache import RefreshCache

    ticks = {t for page in _pages() for t in getattr(page, "LIVE_TICKS", ())}
    outputs = {out: i["id"] for out, cb in app.callback_map.items() for i in cb.get("inputs", [])
               if i.get("id") in ticks}
    cache = RefreshCache(live.bucket, outputs)
    cache.init_app(app.server)
    app.server.extensions["panorama_refresh"] = cache


def warm(app: Dash) -> None:
    """Do Dash's once-per-process setup now, not at the first request a process gets.

    Dash registers its script bundles and merges callbacks on the first request each process
    serves; a gunicorn worker forked from a master that never served one would answer its first
    script or callback requests wrongly ("not a registered library"). ``app.py`` calls this at
    import, so with ``--preload`` every worker is forked ready. Touches no database.
    """
    resp = app.server.test_client().get("/")
    if resp.status_code != 200:
        raise RuntimeError(f"warming the app up failed: GET / answered {resp.status_code}")


def _page_url() -> tuple[str, str] | None:
    """Return (path, query) of the page whose layout the browser asks for, from the Referer header
    of its ``/_dash-layout`` request, or None when that is unknown."""
    from urllib.parse import urlsplit

    from flask import has_request_context, request

    if not has_request_context() or not request.referrer or not request.path.endswith("/_dash-layout"):
        return None  # Dash also builds the layout to validate it, at a process's first request
    u = urlsplit(request.referrer)
    if u.netloc and u.netloc != request.host:
        return None
    return u.path or "/", ("?" + u.query) if u.query else ""


def _shell(live: LiveData, city_name: str | None = None):
    """Return the app's layout with the requested page already in it (one round trip fewer to a
    drawn map); the router callback renders it instead when the page URL is not known."""
    url = _page_url()
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="rendered", data="".join(url) if url else None),
        html.Div(_titled_page(live, *url, city_name) if url else None, id="page", className="page"),
    ], className="app")


def _titled_page(live: LiveData, pathname: str, search: str, city_name: str | None):
    """Return the page for a URL with the hidden element that sets the browser tab's title."""
    from dashboard.page_meta import title_marker

    return [title_marker(pathname, city_name), _render_page(live, pathname, search)]


def _render_page(live: LiveData, pathname: str, search: str):
    """Return the layout of the page for a URL path and query."""
    from dashboard.pages.embed import PREFIX

    for page in sorted(_pages(), key=lambda p: -len(p.PATH)):
        if pathname == page.PATH or page.PATH + "/" == PREFIX and pathname.startswith(PREFIX):
            return page.layout(live, pathname, search)
    return html.Div("Not found", className="error-page")


def _compress(server) -> None:
    """Answer with brotli or gzip when the browser accepts it (the script bundles shrink ~4x).

    Dash's fingerprinted bundles (``_dash-component-suites/…``) already carry a one-year cache
    lifetime; their compressed bytes are kept per process, so each is compressed once, not per
    request. Callback answers and pages are compressed per request, as they differ each time.
    """
    from flask_compress import Compress

    server.config.update(COMPRESS_ALGORITHM=["br", "gzip"], COMPRESS_BR_LEVEL=5, COMPRESS_LEVEL=6,
                         COMPRESS_CACHE_BACKEND=_StaticCompressCache, COMPRESS_CACHE_KEY=_static_cache_key)
    Compress(server)

    @server.after_request
    def cache_fingerprinted_assets(response):
        """Let browsers keep ``/assets/…?m=<mtime>`` (Dash's fingerprint of our files) for a year."""
        from flask import request

        if request.path.startswith("/assets/") and request.args.get("m") and response.status_code == 200:
            response.cache_control.public = True
            response.cache_control.max_age = 31_536_000
        return response


_NO_CACHE = "-"


def _static_cache_key(request) -> str:
    """Return the compressed-bytes cache key of a fingerprinted bundle, else a key that is never kept."""
    from dash.fingerprint import check_fingerprint

    path = request.path
    if request.method == "GET" and "/_dash-component-suites/" in path and check_fingerprint(path)[1]:
        return path
    return _NO_CACHE


class _StaticCompressCache:
    """flask-compress's cache of compressed bytes, holding fingerprinted bundles only (a fixed set)."""

    def __init__(self):
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return None if key.endswith(";" + _NO_CACHE) else self.data.get(key)

    def set(self, key: str, value: bytes) -> None:
        if not key.endswith(";" + _NO_CACHE) and len(self.data) < 512:
            self.data[key] = value


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


def _register_router(app: Dash, live: LiveData, city_name: str | None = None) -> None:
    from dash import Input, Output, State, no_update

    @app.callback(Output("page", "children"), Output("rendered", "data"),
                  Input("url", "pathname"), State("url", "search"), State("rendered", "data"))
    def route(pathname, search, rendered):
        """Render the page for the URL, unless the layout already holds it."""
        if not isinstance(pathname, (str, type(None))) or not isinstance(search, (str, type(None))) \
                or len(pathname or "") + len(search or "") > 4096:
            return no_update, None
        path = pathname or "/"
        if rendered is not None and rendered == path + (search or ""):
            return no_update, None
        return _titled_page(live, path, search or "", city_name), None
