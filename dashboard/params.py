"""URL parameters shared by the pages, the embeds and the API: parse and validate once."""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from dashboard.store.readmodel import WINDOWS
from layers import DEFAULT_LAYERS, LAYER_BY_ID, exclusive_areas


class BadParameter(ValueError):
    """A request parameter is invalid; the message is one line, safe to show."""


#: The longest text a parameter may be (a district id, a comma list of layers, ...).
MAX_TEXT = 200


def check_text(name: str, value, max_len: int = MAX_TEXT) -> str | None:
    """Return ``value`` if it is None or a string of at most ``max_len`` characters, else raise
    :class:`BadParameter` (callback inputs arrive as any JSON value)."""
    if value is None or isinstance(value, str) and len(value) <= max_len:
        return value
    if isinstance(value, str):
        raise BadParameter(f"{name} is too long (at most {max_len} characters)")
    raise BadParameter(f"{name} must be text, not {type(value).__name__}")


def parse_query(search: str) -> dict[str, str]:
    """Return the first value of each query parameter of ``?a=b&c=d``."""
    q = parse_qs((search or "").lstrip("?"), keep_blank_values=True)
    return {k: v[0] for k, v in q.items()}


def check_window(window: str | None, default: str = "24h") -> str:
    """Return a valid window or raise :class:`BadParameter`."""
    if window in (None, ""):
        return default
    if check_text("window", window) not in WINDOWS:
        raise BadParameter(f"unknown window {window[:40]!r}: choose one of {', '.join(WINDOWS)}")
    return window


def check_district(district: str | None, valid: set[str]) -> str | None:
    """Return a valid district id (None for the whole city) or raise :class:`BadParameter`.

    The one place a district enters a request: it is also narrowed to what the request's principal
    may see (:func:`dashboard.access.narrow_district`: raises :class:`dashboard.access.Forbidden`).
    """
    from dashboard.access import narrow_district

    if district in (None, "", "all", "*"):
        return narrow_district(None)
    if check_text("district", district) not in valid:
        raise BadParameter(f"unknown district {district[:60]!r}")
    return narrow_district(district)


def check_layers(layers: str | list | None) -> list[str]:
    """Return the layer ids of a comma list (or a list; default layers when empty) or raise
    :class:`BadParameter`: unknown and repeated ids are refused, so the list is at most every layer."""
    if layers is None or layers == "":
        return list(DEFAULT_LAYERS)
    if isinstance(layers, list):
        if len(layers) > len(LAYER_BY_ID) or not all(isinstance(x, str) for x in layers):
            raise BadParameter(f"layers must be a list of at most {len(LAYER_BY_ID)} layer ids")
        ids = layers
    else:
        ids = [x.strip() for x in check_text("layers", layers, 20 * len(LAYER_BY_ID)).split(",") if x.strip()]
    bad = [x for x in ids if x not in LAYER_BY_ID]
    if bad:
        raise BadParameter(f"unknown layer {bad[0][:40]!r}: choose from {', '.join(LAYER_BY_ID)}")
    twice = next((x for i, x in enumerate(ids) if x in ids[:i]), None)
    if twice is not None:
        raise BadParameter(f"layer {twice!r} is listed twice")
    return exclusive_areas(list(ids))


def view_query(window: str, district: str | None, layers: list[str], kpi: str | None = None) -> str:
    """Return the ``?…`` query string that bookmarks a view (and the KPI whose drill-down is open)."""
    q = {"window": window}
    if district:
        q["district"] = district
    q["layers"] = ",".join(layers)
    if kpi:
        q["kpi"] = kpi
    return "?" + urlencode(q, safe=",")
