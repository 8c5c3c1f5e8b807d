"""URL parameters shared by the pages, the embeds and the API: parse and validate once."""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from dashboard.store.readmodel import WINDOWS
from layers import DEFAULT_LAYERS, LAYER_BY_ID


class BadParameter(ValueError):
    """A request parameter is invalid; the message is one line, safe to show."""


def parse_query(search: str) -> dict[str, str]:
    """Return the first value of each query parameter of ``?a=b&c=d``."""
    q = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    return {k: v[0] for k, v in q.items()}


def check_window(window: str | None, default: str = "24h") -> str:
    """Return a valid window or raise :class:`BadParameter`."""
    if window in (None, ""):
        return default
    if window not in WINDOWS:
        raise BadParameter(f"unknown window {window[:40]!r}: choose one of {', '.join(WINDOWS)}")
    return window


def check_district(district: str | None, valid: set[str]) -> str | None:
    """Return a valid district id (None for the whole city) or raise :class:`BadParameter`."""
    if district in (None, "", "all", "*"):
        return None
    if district not in valid:
        raise BadParameter(f"unknown district {district[:60]!r}")
    return district


def check_layers(layers: str | None) -> list[str]:
    """Return the layer ids of a comma list (default layers when empty) or raise :class:`BadParameter`."""
    if layers in (None, ""):
        return list(DEFAULT_LAYERS)
    ids = [x.strip() for x in layers.split(",") if x.strip()]
    bad = [x for x in ids if x not in LAYER_BY_ID]
    if bad:
        raise BadParameter(f"unknown layer {bad[0][:40]!r}: choose from {', '.join(LAYER_BY_ID)}")
    return ids


def view_query(window: str, district: str | None, layers: list[str]) -> str:
    """Return the ``?…`` query string that bookmarks a view."""
    q = {"window": window}
    if district:
        q["district"] = district
    q["layers"] = ",".join(layers)
    return "?" + urlencode(q, safe=",")
