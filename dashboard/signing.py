"""Signed embed URLs: a panel and its parameters, locked by an HMAC (itsdangerous), with an expiry.

``/embed/<panel>?<args>&token=<signed>``: the token carries the panel id, every parameter and the
expiry time; the URL (and the callback body of the live panel) must carry exactly those. The key
is ``PANORAMA_SECRET_KEY`` salted with a random value kept in the store (``meta.embed_key``), so
``panorama embed rotate-key`` revokes every link signed before.
"""
from __future__ import annotations

import time
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

TOKEN_ARG = "token"
#: The longest a signed link may live (a year); ``--expires`` is required to be at most this.
MAX_DAYS = 366


class BadEmbedLink(PermissionError):
    """403: the link was changed, or signed with a key since rotated."""


class ExpiredEmbedLink(PermissionError):
    """410: the link's time is up."""

    def __init__(self, message: str, expired_at: int):
        super().__init__(message)
        self.expired_at = expired_at


def _serializer(secret: str, embed_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="panorama-embed:" + embed_key)


def sign(secret: str, embed_key: str, panel: str, args: dict, expires_at: int) -> str:
    """Return the token locking ``panel`` and ``args`` (strings) until ``expires_at`` (epoch seconds)."""
    clean = {str(k): str(v) for k, v in sorted(args.items()) if k != TOKEN_ARG and v not in (None, "")}
    return _serializer(secret, embed_key).dumps({"p": panel, "a": clean, "e": int(expires_at)})


def url(secret: str, embed_key: str, panel: str, args: dict, expires_at: int, base: str = "") -> str:
    """Return the signed URL of a panel (``base``: the app's origin, e.g. https://panorama.city.gov)."""
    clean = {k: str(v) for k, v in sorted(args.items()) if v not in (None, "")}
    token = sign(secret, embed_key, panel, clean, expires_at)
    return f"{base.rstrip('/')}/embed/{panel}?" + urlencode({**clean, TOKEN_ARG: token}, safe=",")


def verify(secret: str, embed_key: str, token: str, panel: str, args: dict, now: float | None = None) -> dict:
    """Return the locked parameters if ``token`` signs exactly ``panel`` and ``args``; raise
    :class:`BadEmbedLink` (changed, or key rotated) or :class:`ExpiredEmbedLink`."""
    if not isinstance(token, str) or len(token) > 2048:
        raise BadEmbedLink("not a signed link")
    try:
        data = _serializer(secret, embed_key).loads(token)
    except BadSignature:
        raise BadEmbedLink("this link's signature does not match: it was changed, or its signing key was "
                           "rotated (ask for a new link)") from None
    if not (isinstance(data, dict) and isinstance(data.get("a"), dict) and isinstance(data.get("e"), int)):
        raise BadEmbedLink("not a signed link")
    given = {str(k): str(v) for k, v in args.items() if k != TOKEN_ARG and v not in (None, "")}
    if data.get("p") != panel or data["a"] != given:
        changed = sorted(set(data["a"].items()) ^ set(given.items()))
        what = "the panel" if data.get("p") != panel else f"parameter {changed[0][0]!r}" if changed else "a parameter"
        raise BadEmbedLink(f"{what} differs from what the link was signed for: a signed link cannot be changed")
    if (now or time.time()) >= data["e"]:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data["e"]))
        raise ExpiredEmbedLink(f"this shared panel expired on {when}: ask for a new link", data["e"])
    return {"panel": panel, "args": dict(data["a"]), "expires_at": data["e"]}


def parse_expiry(text: str, now: float | None = None) -> int:
    """Return the epoch time ``text`` (``30d``, ``12h``, ``90m``) from now; raise ValueError."""
    import re

    m = re.fullmatch(r"\s*(\d{1,6})\s*([dhm])\s*", str(text or ""))
    if not m:
        raise ValueError(f"not a duration: {str(text)[:20]!r} (e.g. 30d, 12h, 90m)")
    seconds = int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
    if not 0 < seconds <= MAX_DAYS * 86400:
        raise ValueError(f"a signed link lives between a minute and {MAX_DAYS} days")
    return int((now or time.time()) + seconds)


def check_base(base: str) -> str:
    """Return the app's origin (``https://panorama.city.gov[/prefix]``) without a trailing slash; raise ValueError."""
    from urllib.parse import urlsplit

    u = urlsplit(str(base or "").strip())
    if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment or len(base) > 300:
        raise ValueError(f"the base URL is the app's origin, e.g. https://panorama.city.gov, not {str(base)[:60]!r}")
    return str(base).strip().rstrip("/")


def make_link(live, secret: str, panel: str, args: dict, expires: str, base: str, actor: str | None,
              now: float | None = None) -> tuple[str, int]:
    """Return (the signed URL, its expiry) of ``panel`` with ``args``, validated exactly as the embed page
    validates them (:func:`dashboard.export.parse_request`); audit it. Raises ValueError (bad expiry or
    base), :class:`dashboard.export.UnknownPanel` or :class:`dashboard.params.BadParameter`."""
    from dashboard import accounts
    from dashboard.export import parse_request

    if len(secret) < 32:
        raise ValueError("PANORAMA_SECRET_KEY is not set: signed links need the server's key (at least 32 characters)")
    args = {k: str(v) for k, v in args.items() if v not in (None, "")}
    parse_request(live, panel, args)
    expires_at = parse_expiry(expires, now)
    base = check_base(base)
    engine = live.writer()
    key = accounts.ensure_embed_key(engine)
    link = url(secret, key, panel, args, expires_at, base)
    with engine.begin() as conn:
        accounts.audit(conn, "embed.sign", actor, panel, {"args": args, "expires_at": expires_at})
    return link, expires_at
