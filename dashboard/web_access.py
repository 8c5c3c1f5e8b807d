"""Enforce :mod:`dashboard.access` on every request: who the request is, whether it may, and CSRF.

Order on each request: find the route's rule (a route missing from the access table is refused),
find the principal (a signed embed's token, a session cookie, a wall's device cookie, or the
anonymous viewer of ``PANORAMA_ANONYMOUS=viewer``), check the rule, the page a layout or the router
renders, the districts a callback body names and what a device or signed embed is locked to —
all before a cached answer may be served. Principals are remembered per process for up to
:data:`TRUST_S` (a session never past its expiry), so a thousand walls refreshing every few seconds
do not each read their credential from the store; every change that revokes or narrows a credential
changes the store's access revision (:func:`accounts.bump_access`), which each process reads at most
every :data:`REMEMBER_S`: a revoked device or ended session stops within one refresh.

CSRF: a request carrying a session or device cookie must send the token of the ``_csrf_token``
cookie (HMAC of its credential) back in ``X-CSRFToken`` (Dash's renderer does so for every
callback) or, for forms, a ``csrf`` field. The sign-in form's token is bound to a random nonce cookie.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Flask, Response, g, redirect, request

from dashboard import accounts, signing
from dashboard.access import (CALLBACK_ENDPOINT, CALLBACKS, PAGE_ENDPOINTS, PUBLIC, ROUTES, Forbidden, Principal,
                              callback_key, page_rule)
from dashboard.params import parse_query

log = logging.getLogger("panorama.access")

SESSION_COOKIE = "panorama_session"
DEVICE_COOKIE = "panorama_device"
#: Dash's renderer sends this cookie's value as ``X-CSRFToken`` with every request it makes.
CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"
NONCE_COOKIE = "panorama_nonce"
#: Seconds between a process's reads of the access revision: a revocation takes effect within this.
REMEMBER_S = 1.0
#: Longest a process trusts a remembered principal without reading it again (a change made outside
#: the product, e.g. by hand in SQL, changes no revision: it takes effect after this).
TRUST_S = 60.0
#: Seconds between writes of when each wall device last refreshed.
SEEN_EVERY_S = 15.0
#: A device cookie lives this long (browsers cap cookies at 400 days); revoking the device ends it sooner.
DEVICE_COOKIE_DAYS = 400
LOGIN_PATH = "/login"
#: What a wall shows, and its callbacks answer, once its device token is revoked (assets/wall_live.js).
DEVICE_REVOKED = "This screen's access was revoked — ask an administrator"


def csrf_token_of(secret: str, binding: str) -> str:
    """Return the CSRF token of a credential (or nonce) under ``secret``: an HMAC no other site can compute."""
    return hmac.new(secret.encode(), b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()[:40]


class Denied(Exception):
    """Answer a request with ``status`` (401, 403, 410) and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _client_ip() -> str:
    return request.remote_addr or "?"


def _safe_next(target: str | None) -> str:
    """Return a same-site path to go to after sign-in (never another origin)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 1024:
        return "/"
    return target


class Gate:
    """The access checks of one app."""

    def __init__(self, app, live, settings):
        self.app = app
        self.live = live
        self.settings = settings
        self.secret = settings.secret_key.get_secret_value()
        self.anonymous = settings.anonymous
        self._remember: dict[tuple[str, str], tuple[float, object, str | None]] = {}
        self._lock = threading.Lock()
        self._revision: str | None = None
        self._revision_read = float("-inf")
        self._revision_lock = threading.Lock()
        self._seen: dict[int, int] = {}
        self._seen_flushed = time.monotonic()
        self._embed_key: tuple[float, str, str | None] | None = None

    # -- credentials -----------------------------------------------------------------------
    def csrf_for(self, binding: str) -> str:
        return csrf_token_of(self.secret, binding)

    def _remembered(self, kind: str, token: str, load):
        """Return ``load()``'s ``(principal or None, expires)`` for a credential, remembered while the
        access revision stays the one it was read under, for at most :data:`TRUST_S` and never past
        ``expires`` (epoch seconds; None: no expiry of its own)."""
        rev = self._revision_now()
        key = (kind, accounts.digest(token))
        now = time.monotonic()
        hit = self._remember.get(key)
        if hit is not None and hit[0] > now and hit[2] == rev:
            return hit[1]
        value, expires = load()
        until = now + TRUST_S
        if expires is not None:
            until = min(until, now + (expires - time.time()))
        with self._lock:
            if len(self._remember) > 10_000:
                self._remember = {k: v for k, v in self._remember.items() if v[0] > now and v[2] == rev}
            self._remember[key] = (until, value, rev)
        return value

    def _revision_now(self):
        """Return the store's access revision, read at most every :data:`REMEMBER_S` by one thread (the
        others go on with the last one read); a change drops everything remembered under the old one."""
        now = time.monotonic()
        if now >= self._revision_read + REMEMBER_S and self._revision_lock.acquire(blocking=False):
            try:
                if now >= self._revision_read + REMEMBER_S:
                    rev = accounts.access_revision(self.live.writer())
                    self._revision_read = time.monotonic()
                    if rev != self._revision:
                        with self._lock:
                            self._revision = rev
                            self._remember.clear()
                            self._embed_key = None
            except Exception:  # noqa: BLE001 - a store that cannot be read cannot have been revoked in
                log.warning("could not read the access revision", exc_info=True)
            finally:
                self._revision_lock.release()
        return self._revision

    def forget(self) -> None:
        """Drop what this process remembers (after an admin change made here: no second of grace)."""
        with self._lock:
            self._remember.clear()
            self._embed_key = None
            self._revision_read = float("-inf")

    def embed_key(self) -> str:
        rev = self._revision_now()
        now = time.monotonic()
        if self._embed_key is None or self._embed_key[0] <= now or self._embed_key[2] != rev:
            self._embed_key = (now + TRUST_S, accounts.ensure_embed_key(self.live.writer()), rev)
        return self._embed_key[1]

    def session_principal(self, token: str) -> Principal | None:
        def load():
            with self.live.writer().connect() as conn:
                found = accounts.session_of(conn, token)
            if found is None:
                return None, None
            u, expires = found
            return Principal("user", u.name, u.role, u.districts, user_id=u.id,
                             session=accounts.digest(token)), expires
        return self._remembered("session", token, load)

    def device_principal(self, token: str) -> Principal | None:
        def load():
            with self.live.writer().connect() as conn:
                d = accounts.device_of(conn, token)
            return (None if d is None else Principal("device", d.name, districts=d.districts,
                                                     locks={"path": d.path, "id": d.id})), None
        p = self._remembered("device", token, load)
        if p is not None:
            self._saw_device(p.locks["id"])
        return p

    def _saw_device(self, did: int) -> None:
        """Note that a device refreshed; write the notes at most every :data:`SEEN_EVERY_S` per process
        (each gunicorn worker writes its own; :func:`accounts.touch_devices` never moves a time back)."""
        with self._lock:
            self._seen[did] = int(time.time())
            if time.monotonic() - self._seen_flushed < SEEN_EVERY_S:
                return
            seen, self._seen, self._seen_flushed = self._seen, {}, time.monotonic()
        if seen:
            try:
                accounts.touch_devices(self.live.writer(), seen)
            except Exception:  # noqa: BLE001 - a busy store must not stop the wall: try again later
                log.warning("could not record when wall devices last refreshed", exc_info=True)
                with self._lock:
                    self._seen = {**seen, **self._seen}

    def embed_principal(self, panel: str, args: dict) -> Principal:
        token = args.get(signing.TOKEN_ARG)
        try:
            locked = signing.verify(self.secret, self.embed_key(), token, panel, args)
        except signing.ExpiredEmbedLink as exc:
            raise Denied(410, str(exc)) from None
        except signing.BadEmbedLink as exc:
            raise Denied(403, str(exc)) from None
        district = locked["args"].get("district")
        return Principal("embed", f"signed link to {panel}", districts=(district,) if district else None,
                         locks=locked)

    def user_or_anonymous(self) -> Principal | None:
        """Return the principal of the request's cookies, else the anonymous viewer (if allowed)."""
        token = request.cookies.get(SESSION_COOKIE)
        if token and len(token) < 200:
            p = self.session_principal(token)
            if p is not None:
                return p
        token = request.cookies.get(DEVICE_COOKIE)
        if token:
            p = self.device_principal(token) if len(token) < 200 else None
            if p is None:  # a revoked wall says so; it does not carry on as the anonymous viewer
                raise Denied(403, DEVICE_REVOKED)
            return p
        if self.anonymous == "viewer":
            return Principal("anonymous", "anonymous")
        return None

    # -- the checks ------------------------------------------------------------------------
    def check(self) -> None:
        """Set ``g.panorama_principal`` for this request, or raise :class:`Denied`."""
        rule_name = request.url_rule.endpoint if request.url_rule is not None else None
        if rule_name is None:
            return  # no route: Flask answers 404 (or 405)
        rule = ROUTES.get(rule_name)
        if rule is None:
            log.error("route %s is not in the access table: refused", rule_name)
            raise Denied(403, "this route is not in the access table")
        if rule.level == PUBLIC or rule.level == "own-token":
            return
        body = None
        if rule_name == CALLBACK_ENDPOINT:
            body = self._body()
        principal = self._principal(rule_name, body)
        g.panorama_principal = principal
        if principal is None:
            raise Denied(401, "sign in to see this")
        if not principal.allows(rule):
            raise Denied(403, f"{self._who(principal)} may not use {request.path[:80]}")
        if rule_name in PAGE_ENDPOINTS:
            self._check_page(principal, request.path, request.query_string.decode("latin-1"))
        elif rule_name == "/_dash-layout":
            ref = self._referred_page()
            if ref is not None:
                self._check_page(principal, *ref)
        elif rule_name == CALLBACK_ENDPOINT and isinstance(body, dict):
            self._check_callback(principal, body)
        self._check_csrf()

    @staticmethod
    def _who(p: Principal) -> str:
        return {"user": f"{p.role} {p.name}", "anonymous": "a visitor who has not signed in",
                "device": f"wall device {p.name!r}", "embed": "a signed link"}.get(p.kind, p.kind)

    def _body(self):
        try:
            return orjson.loads(request.get_data(cache=True))
        except orjson.JSONDecodeError:
            return None  # the callback guard answers it 400

    def _referred_page(self) -> tuple[str, str] | None:
        if not request.referrer:
            return None
        u = urlsplit(request.referrer)
        if u.netloc and u.netloc != request.host:
            return None
        return u.path or "/", u.query

    def _principal(self, rule_name: str, body) -> Principal | None:
        """Return who the request acts as: a signed embed token present on the request wins."""
        from dashboard.pages.embed import PREFIX, panel_id_of

        if rule_name in PAGE_ENDPOINTS and request.path.startswith(PREFIX) and signing.TOKEN_ARG in request.args:
            return self.embed_principal(panel_id_of(request.path), request.args.to_dict())
        if rule_name == "api_panel" and signing.TOKEN_ARG in request.args:
            pid = request.view_args.get("name", "").rpartition(".")[0]
            return self.embed_principal(pid, {k: v for k, v in request.args.items()
                                              if k not in ("width", "height", "scale")})
        if rule_name in ("/_dash-layout", "/_dash-dependencies"):
            ref = self._referred_page()
            if ref and ref[0].startswith(PREFIX) and signing.TOKEN_ARG in parse_query(ref[1]):
                return self.embed_principal(panel_id_of(ref[0]), parse_query(ref[1]))
        if rule_name == CALLBACK_ENDPOINT and isinstance(body, dict):
            spec = _embed_spec(body)
            if spec is not None and signing.TOKEN_ARG in spec[1]:
                return self.embed_principal(*spec)
            path, query = _router_url(body)  # the router of a signed embed's page: its URL holds the token
            if path is not None and path.startswith(PREFIX) and signing.TOKEN_ARG in parse_query(query):
                return self.embed_principal(panel_id_of(path), parse_query(query))
        return self.user_or_anonymous()

    def _check_page(self, p: Principal, path: str, query: str) -> None:
        rule = page_rule(path)
        if rule is None:
            return  # no page there: answered 404 by the router's own check
        if not p.allows(rule):
            raise Denied(403, f"{self._who(p)} may not open {path[:80]}")
        if p.kind == "embed":
            self._check_embed_page(p, path, query)
        if p.kind == "device":
            from dashboard.accounts import check_wall_url

            want = p.locks["path"]
            try:
                with self.live.writer().connect() as conn:
                    got = check_wall_url(conn, path + ("?" + query if query else ""))[0]
            except accounts.AccountError:
                got = None
            if got != want:
                raise Denied(403, f"this wall device shows {want} only")
        district = parse_query(query).get("district")
        if district and not p.sees(district):
            raise Denied(403, f"district {district[:60]!r} is outside what {self._who(p)} may see")

    @staticmethod
    def _check_embed_page(p: Principal, path: str, query: str) -> None:
        """A signed link opens its own panel with its own parameters only (the router's body may name
        another page than the one the link signed)."""
        from dashboard.pages.embed import PREFIX, panel_id_of

        args = {k: v for k, v in parse_query(query).items() if k != signing.TOKEN_ARG and v not in (None, "")}
        if not path.startswith(PREFIX) or panel_id_of(path) != p.locks.get("panel") or args != p.locks.get("args"):
            raise Denied(403, "a signed link shows the panel it was signed for only")

    def _check_callback(self, p: Principal, body: dict) -> None:
        cb = self.app.callback_map.get(body.get("output")) if isinstance(body.get("output"), str) else None
        if cb is None:
            return  # the callback guard answers it 400
        key = callback_key(cb.get("callback"))
        rule = CALLBACKS.get(key)
        if rule is None:
            log.error("callback %s is not in the access table: refused", key)
            raise Denied(403, "this callback is not in the access table")
        if not p.allows(rule):
            raise Denied(403, f"{self._who(p)} may not use this panel")
        for district in _districts_in(body):
            if not p.sees(district):
                raise Denied(403, f"district {district[:60]!r} is outside what {self._who(p)} may see")
        if key == "dashboard.app.route":
            path, query = _router_url(body)
            if path is not None:
                self._check_page(p, path, query)

    def _check_csrf(self) -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        binding = request.cookies.get(SESSION_COOKIE) or request.cookies.get(DEVICE_COOKIE)
        if not binding:
            return  # no ambient credential: a forged request acts as nobody
        given = request.headers.get(CSRF_HEADER) or request.form.get("csrf", "")
        if not hmac.compare_digest(given.encode(), self.csrf_for(binding).encode()):
            raise Denied(403, "missing or wrong CSRF token: reload the page")

    def check_form_csrf(self) -> None:
        """Check a form's ``csrf`` field against the session, device or nonce cookie."""
        binding = (request.cookies.get(SESSION_COOKIE) or request.cookies.get(DEVICE_COOKIE)
                   or request.cookies.get(NONCE_COOKIE))
        given = request.form.get("csrf", "") or request.headers.get(CSRF_HEADER, "")
        if not binding or not hmac.compare_digest(given.encode(), self.csrf_for(binding).encode()):
            raise Denied(403, "missing or wrong CSRF token: reload the page and try again")

    def csrf_token(self, resp: Response | None = None) -> str:
        """Return the CSRF token of this request's credential, setting a nonce cookie when there is none."""
        binding = request.cookies.get(SESSION_COOKIE) or request.cookies.get(DEVICE_COOKIE) \
            or request.cookies.get(NONCE_COOKIE) or g.get("panorama_nonce")
        if not binding:
            binding = g.panorama_nonce = secrets.token_urlsafe(24)
        return self.csrf_for(binding)


def _items(body: dict):
    for part in ("inputs", "state"):
        items = body.get(part)
        for item in items if isinstance(items, list) else ():  # a forged body: the callback guard answers 400
            if isinstance(item, dict):
                yield item
            elif isinstance(item, list):
                yield from (x for x in item if isinstance(x, dict))


def _embed_spec(body: dict) -> tuple[str, dict] | None:
    for item in _items(body):
        v = item.get("value")
        if item.get("id") == "embed-spec" and isinstance(v, dict) and isinstance(v.get("panel"), str) \
                and isinstance(v.get("args"), dict):
            return v["panel"], {str(k): x for k, x in v["args"].items() if isinstance(x, str)}
    return None


def _districts_in(body: dict) -> list[str]:
    """Return every district a callback body names: a district control's value, a ``district`` in a
    URL query, or in a page's settings store (the wall's, an embed's arguments)."""
    out = []
    for item in _items(body):
        v = item.get("value")
        if item.get("id") == "district" and isinstance(v, str):
            out.append(v)
        elif item.get("property") == "search" and isinstance(v, str):
            out.append(parse_query(v).get("district"))
        elif isinstance(v, dict):
            out.append(v.get("district"))
            if isinstance(v.get("args"), dict):
                out.append(v["args"].get("district"))
    return [d for d in out if isinstance(d, str) and d not in ("", "all", "*")]


def _router_url(body: dict) -> tuple[str | None, str]:
    path, query = None, ""
    for item in _items(body):
        if item.get("property") == "pathname" and isinstance(item.get("value"), str):
            path = item["value"]
        elif item.get("property") == "search" and isinstance(item.get("value"), str):
            query = item["value"].lstrip("?")
    return path, query


def _deny_response(status: int, message: str) -> Response:
    """Return a denial: JSON for the API and callbacks, a short page (with a sign-in link) otherwise."""
    from dashboard.api import _error

    if request.path.startswith("/api/") or request.path.endswith(CALLBACK_ENDPOINT) or request.method == "POST" \
            and not request.path.startswith(LOGIN_PATH):
        return _error(status, message)
    from dashboard.pages.embed import error_html

    if status == 401:
        return redirect(f"{LOGIN_PATH}?next=" + _quote(request.full_path.rstrip("?")), 303)
    if message == DEVICE_REVOKED:
        return Response(revoked_html(), status, mimetype="text/html")
    title = {403: "Not allowed", 410: "Link expired"}.get(status, "Not allowed")
    return Response(error_html(status, message, title=title), status, mimetype="text/html")


def revoked_html() -> str:
    """Return the page a revoked wall shows when reloaded: the message the live wall shows, as large
    (``.wall-revoked`` in assets/wall.css, readable from 5 m)."""
    return ("<!doctype html><html lang='en' class='panorama-revoked'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Access revoked</title>"
            "<link rel='icon' href='/assets/favicon.svg' type='image/svg+xml'>"
            "<link rel='stylesheet' href='/assets/theme.css'><link rel='stylesheet' href='/assets/wall.css'></head>"
            f"<body><div class='wall-revoked' role='alert'><p class='wall-revoked-text'>{DEVICE_REVOKED}</p>"
            "</div></body></html>")


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="/")


class NoSecretKey(ValueError):
    """The app cannot start: PANORAMA_SECRET_KEY is missing or short (the message says how to make one)."""


def check_secret(settings) -> None:
    """Raise :class:`NoSecretKey` unless the secret key has at least 32 characters (never shows the key)."""
    n = len(settings.secret_key.get_secret_value())
    if n < 32:
        what = "is not set" if n == 0 else f"has {n} characters, fewer than 32"
        raise NoSecretKey(f"PANORAMA_SECRET_KEY {what}: make one with `export PANORAMA_SECRET_KEY=$(python3 -c "
                          "'import secrets; print(secrets.token_urlsafe(48))')` and keep it (`panorama run` "
                          "keeps one in its data folder)")


def init_app(app, live, settings) -> Gate:
    """Install the access checks, the sign-in routes and the rate limits on ``app`` (before any other hook)."""
    check_secret(settings)
    server: Flask = app.server
    gate = Gate(app, live, settings)
    server.extensions["panorama_access"] = gate

    @server.before_request
    def enforce_access():
        try:
            gate.check()
        except Denied as exc:
            return _deny_response(exc.status, str(exc))
        except Forbidden as exc:
            return _deny_response(403, str(exc))
        return None

    @server.errorhandler(Forbidden)
    def forbidden(exc):
        return _deny_response(403, str(exc))

    @server.after_request
    def csrf_cookie(resp):
        """Give the page its CSRF token (Dash's renderer sends it back with each callback)."""
        if request.method != "GET" or resp.status_code >= 300 or resp.mimetype != "text/html":
            # (a redirect sets its own: a wall's claim sets its device's token, which this would replace)
            return resp
        nonce = g.pop("panorama_nonce", None)
        token = gate.csrf_token()
        nonce = nonce or g.pop("panorama_nonce", None)
        secure = request.is_secure
        if nonce:
            resp.set_cookie(NONCE_COOKIE, nonce, httponly=True, samesite="Strict", secure=secure)
        if request.cookies.get(CSRF_COOKIE) != token:
            resp.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="Strict", secure=secure)
        return resp

    server.register_blueprint(_blueprint(gate, settings))
    return gate


def _blueprint(gate: Gate, settings) -> Blueprint:
    from dashboard.login_page import login_html

    bp = Blueprint("access", __name__)
    city = gate.live.city.name if gate.live.city is not None else None

    def page(error: str | None = None, name: str = "", status: int = 200) -> Response:
        return Response(login_html(gate.csrf_token(), _safe_next(request.values.get("next")), error=error,
                                   name=name, city=city), status, mimetype="text/html")

    def set_session(resp: Response, token: str) -> None:
        resp.set_cookie(SESSION_COOKIE, token, max_age=int(settings.session_hours * 3600), httponly=True,
                        samesite="Lax", secure=request.is_secure)
        resp.set_cookie(CSRF_COOKIE, gate.csrf_for(token), max_age=int(settings.session_hours * 3600),
                        httponly=False, samesite="Strict", secure=request.is_secure)

    @bp.route(LOGIN_PATH, methods=["GET", "POST"])
    def login():
        nxt = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return page()
        try:
            gate.check_form_csrf()
        except Denied as exc:
            return page(str(exc), status=403)
        name, password = request.form.get("name", "")[:64], request.form.get("password", "")[:1024]
        user = accounts.authenticate(gate.live.writer(), name, password, ip=_client_ip())
        if user is None:  # logged for fail2ban-style watchers too: the name and address, never the password
            log.warning("sign-in failed for %r from %s", name, _client_ip())
            return page("Wrong name or password, or the account is disabled.", name, 401)
        old = request.cookies.get(SESSION_COOKIE)
        if old:  # a session id known before sign-in is never the one after it (no fixation)
            accounts.end_session(gate.live.writer(), old)
        token = accounts.start_session(gate.live.writer(), user, settings.session_hours)
        resp = redirect(nxt, 303)
        set_session(resp, token)
        return resp

    @bp.post("/logout")
    def logout():
        try:
            gate.check_form_csrf()
        except Denied as exc:
            return _deny_response(403, str(exc))
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            accounts.end_session(gate.live.writer(), token, ip=_client_ip())
            gate.forget()
        resp = redirect(LOGIN_PATH, 303)
        resp.delete_cookie(SESSION_COOKIE)
        resp.delete_cookie(CSRF_COOKIE)
        return resp

    @bp.get("/device/<token>")
    def device(token: str):
        """Claim a wall's device token: keep it in a cookie and show the wall it is registered for."""
        p = gate.device_principal(token) if len(token) < 200 else None
        if p is None:
            return _deny_response(403, "this wall link is unknown or was revoked: ask an administrator for a new one")
        resp = redirect(p.locks["path"], 303)
        resp.set_cookie(DEVICE_COOKIE, token, max_age=DEVICE_COOKIE_DAYS * 86400, httponly=True, samesite="Lax",
                        secure=request.is_secure)
        resp.set_cookie(CSRF_COOKIE, gate.csrf_for(token), max_age=DEVICE_COOKIE_DAYS * 86400, httponly=False,
                        samesite="Strict", secure=request.is_secure)
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    return bp


def limiter_storage(cache_url: str) -> str:
    """Return Flask-Limiter's storage for the configured cache: the same Redis, else this process's memory."""
    if cache_url.startswith(("redis://", "rediss://")):
        return cache_url
    return "memory://"


def limit_rates(server: Flask, settings) -> None:
    """Limit sign-in attempts (per address and per name) and API/callback requests (per credential);
    after every route is registered."""
    from flask_limiter import Limiter

    def client() -> str:
        token = request.cookies.get(SESSION_COOKIE) or request.cookies.get(DEVICE_COOKIE)
        return "t:" + accounts.digest(token)[:16] if token else "a:" + _client_ip()

    limiter = Limiter(client, app=server, storage_uri=limiter_storage(settings.cache_url),
                      strategy="fixed-window", headers_enabled=True,  # O(1) per hit (one INCR in Redis)
                      on_breach=None, swallow_errors=True)
    server.extensions["panorama_limiter"] = limiter
    login = server.view_functions["access.login"]
    limited = limiter.limit(settings.login_rate_limit, key_func=lambda: "ip:" + _client_ip(),
                            methods=["POST"])(login)
    limited = limiter.limit(settings.login_rate_limit, methods=["POST"],
                            key_func=lambda: "name:" + request.form.get("name", "")[:64].lower())(limited)
    server.view_functions["access.login"] = limited
    for endpoint in ("api_kpis", "api_panels", "api_panel", CALLBACK_ENDPOINT,
                     *(e for e in server.view_functions if e.startswith("alerts."))):
        if endpoint in server.view_functions:
            server.view_functions[endpoint] = limiter.limit(settings.api_rate_limit)(server.view_functions[endpoint])

    @server.errorhandler(429)
    def too_many(exc):
        """Say what was limited and when to try again: the sign-in page again, JSON for the API."""
        limit = getattr(getattr(exc, "limit", None), "limit", None)
        what = f" ({limit})" if limit is not None else ""
        if request.path == LOGIN_PATH:
            from dashboard.login_page import login_html

            gate = server.extensions["panorama_access"]
            city = gate.live.city.name if gate.live.city is not None else None
            body = login_html(gate.csrf_token(), _safe_next(request.values.get("next")), city=city,
                              error=f"Too many sign-in attempts{what}: wait a minute and try again.")
            return Response(body, 429, mimetype="text/html")
        from dashboard.api import _error

        return _error(429, f"too many requests{what}: slow down and retry after the Retry-After seconds")
