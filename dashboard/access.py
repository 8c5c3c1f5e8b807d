"""Who may see and do what: the one access table, and the principal a request acts as.

Every Flask route (by endpoint), every page (by path) and every Dash callback (by its function) is
in a table here with the least role it needs and whether a wall device or a signed embed may use
it. :mod:`dashboard.web_access` enforces the tables on every request (a route or callback missing
from them is refused), and ``tests/test_access_matrix.py`` generates its role × route matrix from
them. Districts are enforced where a district enters a request, :func:`dashboard.params.check_district`,
which narrows it to the principal's scope (:func:`scope`).

No Flask import at module level: the CLI and the pure parts read this without a web app.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

ROLES = ("viewer", "operator", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}

#: Anyone, signed in or not: the sign-in page, script bundles, the health check.
PUBLIC = "public"
#: A route with a credential of its own (the NGSI bearer token), checked by the route.
OWN_TOKEN = "own-token"
VIEWER, OPERATOR, ADMIN = ROLES
LEVELS = (PUBLIC, OWN_TOKEN, *ROLES)


@dataclass(frozen=True)
class Rule:
    """The least role a route, page or callback needs; whether a wall device or a signed embed may use it."""

    level: str
    devices: bool = False
    embeds: bool = False
    why: str = ""

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"unknown access level {self.level!r}")


#: What a page needs: decides Dash's page route (``/``, ``/<path>``), its ``/_dash-layout`` and the router.
PAGES: dict[str, Rule] = {
    "/": Rule(VIEWER, why="the manager view"),
    "/wall": Rule(VIEWER, devices=True, why="the control-room wall; a device token shows its own wall URL"),
    "/embed/": Rule(VIEWER, embeds=True, why="one panel; a signed URL shows exactly what it locks"),
}

#: Pages Dash serves (the catch-all and the index): decided by :data:`PAGES`.
PAGE_ENDPOINTS = ("/", "/<path:path>")
#: Dash's callback endpoint: decided by :data:`CALLBACKS`.
CALLBACK_ENDPOINT = "/_dash-update-component"

#: Flask endpoints.
ROUTES: dict[str, Rule] = {
    "/": Rule(VIEWER, devices=True, embeds=True, why="a page: see PAGES"),
    "/<path:path>": Rule(VIEWER, devices=True, embeds=True, why="a page: see PAGES"),
    "/_dash-layout": Rule(VIEWER, devices=True, embeds=True, why="the page of the Referer, checked against PAGES"),
    "/_dash-dependencies": Rule(VIEWER, devices=True, embeds=True, why="the callbacks' wiring, no data"),
    CALLBACK_ENDPOINT: Rule(VIEWER, devices=True, embeds=True, why="a callback: see CALLBACKS"),
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>":
        Rule(PUBLIC, why="Dash's script bundles: code, no data (the sign-in page loads none)"),
    "/_reload-hash": Rule(VIEWER, why="Dash's hot reload (debug only)"),
    "/_favicon.ico": Rule(PUBLIC, why="the tab icon"),
    "static": Rule(PUBLIC, why="Flask's static folder (unused)"),
    "_dash_assets.static": Rule(PUBLIC, why="CSS and scripts of assets/: no data"),
    "api_kpis": Rule(VIEWER, why="every KPI as JSON, for the caller's districts"),
    "api_panels": Rule(VIEWER, why="the list of panel ids"),
    "api_panel": Rule(VIEWER, embeds=True, why="a panel as json/csv/png/svg; a signed URL locks its parameters"),
    "districts_geojson": Rule(PUBLIC, why="district names and outlines, no numbers: a signed map embed in "
                                          "another site's page fetches them without credentials"),
    "ngsi_notify": Rule(OWN_TOKEN, why="sensor notifications: Authorization: Bearer PANORAMA_NGSI_TOKEN"),
    "health": Rule(PUBLIC, why="for load balancers: store reachability and data ages, no KPI"),
    "access.login": Rule(PUBLIC, why="the sign-in page and form"),
    "access.logout": Rule(PUBLIC, why="ends the caller's own session (POST with CSRF token)"),
    "access.device": Rule(PUBLIC, why="a wall claims its device token (the token is the credential)"),
}

#: Dash callbacks by ``module.function``. The router renders any page: the page in its body is
#: checked against :data:`PAGES` like a page request.
CALLBACKS: dict[str, Rule] = {
    "dashboard.app.route": Rule(VIEWER, devices=True, embeds=True, why="renders the page of its URL (see PAGES)"),
    "dashboard.pages.manager.pick_district": Rule(VIEWER),
    "dashboard.pages.manager.fly_to": Rule(VIEWER),
    "dashboard.pages.manager.sync_url": Rule(VIEWER),
    "dashboard.pages.manager.legend": Rule(VIEWER),
    "dashboard.pages.manager.refresh": Rule(VIEWER),
    "dashboard.pages.manager.open_drill": Rule(VIEWER),
    "dashboard.pages.manager.drill": Rule(VIEWER),
    "dashboard.pages.wall.refresh": Rule(VIEWER, devices=True),
    "dashboard.pages.embed.refresh_kpi": Rule(VIEWER, embeds=True),
    "dashboard.pages.embed.refresh_map": Rule(VIEWER, embeds=True),
}


def register(table: dict[str, Rule], key: str, rule: Rule) -> None:
    """Add a route, page or callback of a later module (admin pages, alerts) to a table, once."""
    if key in table and table[key] != rule:
        raise ValueError(f"{key!r} is already in the access table with another rule")
    table[key] = rule


def page_rule(path: str) -> Rule | None:
    """Return the rule of the page at ``path``, or None when no page is there."""
    if path in PAGES:
        return PAGES[path]
    for prefix in sorted(PAGES, key=len, reverse=True):  # the longest prefix; "/" is the index page only
        if prefix != "/" and prefix.endswith("/") and path.startswith(prefix) and len(path) > len(prefix):
            return PAGES[prefix]
    return None


def callback_key(fn) -> str | None:
    """Return the ``module.function`` of a Dash callback (Dash keeps both through its wrapper)."""
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    ``kind``: ``user`` (signed in), ``anonymous`` (not signed in, with ``PANORAMA_ANONYMOUS=viewer``),
    ``device`` (a wall's token) or ``embed`` (a signed embed URL). ``districts`` is None for every
    district, else the ids the principal may see. ``locks`` holds what a device or a signed embed
    is locked to (a device: its wall ``path``; an embed: its ``panel`` and ``args``).
    """

    kind: str
    name: str
    role: str = VIEWER
    districts: tuple[str, ...] | None = None
    locks: dict = field(default_factory=dict, compare=False, hash=False)
    user_id: int | None = None
    session: str | None = None  # the session token's digest (users), for sign-out and CSRF

    def allows(self, rule: Rule) -> bool:
        """Return whether this principal may use a route, page or callback of ``rule``."""
        if rule.level in (PUBLIC, OWN_TOKEN):
            return True
        if self.kind == "device":
            return rule.devices
        if self.kind == "embed":
            return rule.embeds
        return RANK.get(self.role, -1) >= RANK[rule.level]

    @property
    def scoped(self) -> bool:
        """Whether this principal sees some districts only."""
        return self.districts is not None

    def sees(self, district: str) -> bool:
        return self.districts is None or district in self.districts


class Forbidden(PermissionError):
    """The request's principal may not see or do this; the message is one line, safe to show."""


#: The principal a computation outside a request acts for (the background refresher re-running a
#: screen's computation keeps the principal that asked for it: :func:`bound`).
_ACTING: ContextVar[Principal | None] = ContextVar("panorama_principal", default=None)


def current() -> Principal | None:
    """Return the principal of the request being served, or the one a computation was bound to
    (None otherwise: the CLI and the tests see every district)."""
    from flask import g, has_request_context

    if has_request_context():
        return g.get("panorama_principal")
    return _ACTING.get()


def bound(fn):
    """Return ``fn`` that runs as the current principal wherever it is called later (a cache's
    background refresher calls it outside the request that asked)."""
    p = current()
    if p is None:
        return fn

    def run():
        token = _ACTING.set(p)
        try:
            return fn()
        finally:
            _ACTING.reset(token)

    return run


def scope() -> tuple[str, ...] | None:
    """Return the districts the current request may see (None: every district)."""
    p = current()
    return None if p is None else p.districts


def narrow_district(district: str | None) -> str | None:
    """Return the district a request shows: ``district`` if the principal sees it, its first district
    when it asks for the whole city but sees some only; raise :class:`Forbidden` otherwise."""
    districts = scope()
    if districts is None:
        return district
    if district is None:
        if not districts:
            raise Forbidden("your account may see no district: ask an administrator")
        return districts[0]
    if district not in districts:
        raise Forbidden(f"district {district[:60]!r} is outside what you may see")
    return district


def view_key() -> str:
    """Return what, besides a request's own parameters, changes what it is shown: ``clip`` when the
    principal sees some districts only (maps then draw only the district shown). Part of every
    cache key of a rendered answer."""
    return "clip" if scope() is not None else ""
