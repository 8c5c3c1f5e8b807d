"""Framing policy: who may put a page in an iframe.

``/embed/*`` may be framed by the origins of the ``frame_ancestors`` setting (CSP ``frame-ancestors``;
default ``'self'``, the app's own origin); every other response denies framing
(``X-Frame-Options: DENY`` and ``frame-ancestors 'none'``).

Every response also carries a script policy (scripts from the app's origin and Dash's own inline
scripts, by hash: no ``eval``, no other inline script; MapLibre's workers from ``blob:``),
``Referrer-Policy`` and ``X-Content-Type-Options: nosniff``.
"""
from __future__ import annotations

import re

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # flask is imported where it is used: settings validate origins without it (CLI start-up)
    from flask import Flask

EMBED_PREFIX = "/embed/"
_KEYWORDS = {"'self'", "'none'", "*"}
_ORIGIN = re.compile(r"^(https?://)?(\*\.)?[a-z0-9.\-]+(:(\d{1,5}|\*))?$|^(https?|wss?):$", re.IGNORECASE)


def parse_origins(value: str) -> list[str]:
    """Return the origins of a space- or comma-separated list; raise ValueError on anything else."""
    out = []
    for item in re.split(r"[\s,]+", value or ""):
        if not item:
            continue
        if item.lower() in {"self", "none"}:
            item = f"'{item.lower()}'"
        if item not in _KEYWORDS and not _ORIGIN.match(item.rstrip("/")):
            raise ValueError(f"not an origin for frame-ancestors: {item[:80]!r}")
        out.append(item.rstrip("/"))
    if "'none'" in out and len(out) > 1:
        raise ValueError("'none' cannot be combined with other origins")
    return out or ["'self'"]


def embed_policy(frame_ancestors: str) -> str:
    """Return the CSP header value for embeddable pages."""
    return "frame-ancestors " + " ".join(parse_origins(frame_ancestors))


def script_policy(script_hashes=()) -> str:
    """Return the CSP directives for scripts: the app's own files and the inline scripts of ``script_hashes``
    (Dash's ``app.csp_hashes()``); workers from ``blob:`` (MapLibre); no plugins, no ``<base>`` elsewhere."""
    return (f"script-src 'self' {' '.join(script_hashes)}".rstrip() + "; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'self'")


REFERRER_POLICY = "strict-origin-when-cross-origin"


def init_app(server: Flask, settings, script_hashes=()) -> None:
    """Send the framing, script and referrer headers on every response."""
    from flask import request

    scripts = script_policy(script_hashes)
    embed_csp = scripts + "; " + embed_policy(settings.frame_ancestors)

    @server.after_request
    def framing_headers(resp):
        """Allow framing of /embed/* by the configured origins only; deny it elsewhere."""
        if request.path.startswith(EMBED_PREFIX):
            resp.headers["Content-Security-Policy"] = embed_csp
            resp.headers.pop("X-Frame-Options", None)
        else:
            resp.headers["Content-Security-Policy"] = scripts + "; frame-ancestors 'none'"
            resp.headers["X-Frame-Options"] = "DENY"
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", REFERRER_POLICY)
        return resp
