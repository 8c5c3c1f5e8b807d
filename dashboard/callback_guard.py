"""Check the shape of every ``/_dash-update-component`` request before Dash runs a callback.

Dash trusts its renderer: a forged body (an unknown output, too few inputs, a list where an input
belongs, a deeply nested value, a malformed ``changedPropIds`` entry) made it fail with HTTP 500. A
body that does not match the callback it names is answered 400 with a one-line reason here; the
callbacks themselves check their input *values* (``dashboard.params``) and answer "no update".
"""
from __future__ import annotations

import json

import orjson
from dash import Dash
from flask import Response, request

UPDATE_PATH = "/_dash-update-component"
#: The largest callback request accepted, in bytes (the screens send a few kB).
MAX_BODY = 256 * 1024
#: The deepest nesting of lists and objects accepted in a callback request.
MAX_DEPTH = 24
#: The most components one pattern-matching input may carry.
MAX_MATCHES = 500


class BadCallback(ValueError):
    """A callback request does not match its callback; the message is one line, safe to show."""


def _depth_ok(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                return False
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return True


def _spec_id(spec_id: str):
    """Return a dependency's id: a string, or the dict of a pattern-matching id."""
    return json.loads(spec_id) if spec_id.startswith("{") else spec_id


def _prop(p) -> str | None:
    """Return a property name without Dash's ``@<hash>`` suffix (outputs with allow_duplicate)."""
    return p.split("@")[0] if isinstance(p, str) else None


def _check_item(item, spec: dict, where: str) -> None:
    """Check one entry of ``inputs``, ``state`` or ``outputs`` against its dependency ``spec`` (id, property)."""
    want, prop = _spec_id(spec["id"]), _prop(spec["property"])
    if isinstance(want, dict):  # pattern-matching: a list of {id: {...}, property[, value]}
        if not isinstance(item, list) or len(item) > MAX_MATCHES:
            raise BadCallback(f"{where} must be a list of at most {MAX_MATCHES} components")
        for x in item:
            if not (isinstance(x, dict) and isinstance(x.get("id"), dict) and _prop(x.get("property")) == prop
                    and set(x["id"]) == set(want)
                    and all(isinstance(x["id"][k], str) for k, v in want.items() if v == ["ALL"])
                    and all(x["id"][k] == v for k, v in want.items() if v != ["ALL"])):
                raise BadCallback(f"{where} does not match {spec['id']}.{prop}")
    elif not (isinstance(item, dict) and item.get("id") == want and _prop(item.get("property")) == prop):
        raise BadCallback(f"{where} must be {spec['id']}.{prop}")


def _output_specs(output: str) -> list[dict]:
    """Return the (id, property) of each output of a callback's output key (``..a.b...c.d..`` or ``a.b``)."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    return [dict(zip(("id", "property"), p.rsplit(".", 1))) for p in parts]


def _check_outputs(outputs, output: str) -> None:
    specs = _output_specs(output)
    if not output.startswith(".."):
        _check_item(outputs, specs[0], "outputs")
        return
    if not (isinstance(outputs, list) and len(outputs) == len(specs)):
        raise BadCallback(f"outputs must be a list of {len(specs)}")
    for i, (item, spec) in enumerate(zip(outputs, specs)):
        _check_item(item, spec, f"outputs[{i}]")


def check_body(app: Dash, body) -> None:
    """Raise :class:`BadCallback` unless ``body`` is a callback request matching the callback it names."""
    if not isinstance(body, dict):
        raise BadCallback("the body must be a JSON object")
    if not _depth_ok(body, MAX_DEPTH):
        raise BadCallback(f"the body is nested deeper than {MAX_DEPTH} levels")
    output = body.get("output")
    cb = app.callback_map.get(output) if isinstance(output, str) else None
    if cb is None or cb.get("callback") is None:  # clientside callbacks run in the browser only
        raise BadCallback("unknown callback output")
    _check_outputs(body.get("outputs"), output)
    for part, specs in (("inputs", cb.get("inputs", [])), ("state", cb.get("state", []))):
        items = body.get(part, [])
        if not isinstance(items, list) or len(items) != len(specs):
            raise BadCallback(f"{part} must be a list of {len(specs)}")
        for i, (item, spec) in enumerate(zip(items, specs)):
            _check_item(item, spec, f"{part}[{i}]")
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or len(changed) > MAX_MATCHES or not all(isinstance(c, str) for c in changed):
        raise BadCallback("changedPropIds must be a list of strings")
    for c in changed:
        cid = c.rpartition(".")[0]
        if cid.startswith("{"):
            try:
                if not isinstance(json.loads(cid), dict):
                    raise TypeError
            except (TypeError, ValueError):
                raise BadCallback("changedPropIds has a malformed component id") from None


def init_app(app: Dash) -> None:
    """Answer a malformed callback request 400 (413 when too large), before Dash runs it."""
    path = app.config.routes_pathname_prefix + UPDATE_PATH.lstrip("/")

    def bad(status: int, message: str) -> Response:
        return Response(orjson.dumps({"error": message}) + b"\n", status=status, mimetype="application/json")

    @app.server.before_request
    def check_callback_request():
        if request.method != "POST" or request.path != path:
            return None
        if (request.content_length or 0) > MAX_BODY:
            return bad(413, f"callback request larger than {MAX_BODY // 1024} kB")
        raw = request.get_data(cache=True)
        if len(raw) > MAX_BODY:
            return bad(413, f"callback request larger than {MAX_BODY // 1024} kB")
        try:
            check_body(app, orjson.loads(raw))
        except orjson.JSONDecodeError:
            return bad(400, "the body is not JSON (or nested too deeply)")
        except BadCallback as exc:
            return bad(400, str(exc))
        return None
