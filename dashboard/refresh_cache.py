"""The answers of the live-refresh callbacks, kept per refresh bucket and per process.

A thousand wall screens showing the same view send the same refresh request every interval,
differing only in their tick count. The values behind it are computed once per bucket anyway
(:mod:`dashboard.cache`); this keeps the *answer* too, as bytes, so a screen's request costs a
dictionary lookup instead of rebuilding and serialising the same Dash output. The first request
of each bucket runs the callback as usual; the callback says its answer may be shared by setting
``flask.g.panorama_refresh_ok`` (a failed refresh, with its STALE banner, is never kept). The answer
is also kept gzip-compressed, once, for the screens that accept gzip: compressing a wall's answer
(its map values, lists and alert ticker, ~100 KB) for every request cost more than all the rest.

One request per process renders a key's new answer: while it does, the others get the previous
bucket's answer (as :meth:`dashboard.cache.BucketCache.compute_once` serves the previous value), or
wait for the new one when there is none. At each bucket's start a thousand walls would otherwise
all miss at once and every worker thread would render the same answer, the screens queueing behind.
"""
from __future__ import annotations

import gzip
import hashlib
import threading
import time

import orjson
from flask import Flask, Response, g, request

UPDATE_PATH = "/_dash-update-component"
MAX_KEYS = 512
#: Longest a request waits for another thread's render of the same answer before rendering it too.
WAIT_S = 10.0


def mark_shareable() -> None:
    """Say, from inside a refresh callback, that its answer is the same for every screen asking it."""
    g.panorama_refresh_ok = True


class RefreshCache:
    """Per-process store of refresh answers: request (without its tick count) + bucket -> bytes."""

    def __init__(self, bucket_fn, ticks: dict[str, str]):
        """``ticks``: callback output spec -> id of the interval whose count is ignored in the key."""
        self.bucket_fn = bucket_fn
        self.ticks = dict(ticks)
        self._mem: dict[bytes, tuple[int, bytes, str, bytes]] = {}
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)  # notified when a render ends (kept or not)
        self._rendering: dict[bytes, tuple[int, int]] = {}  # key -> (bucket, thread) rendering it now
        self.hits = 0
        self.misses = 0
        self.stale = 0  # answered the previous bucket's answer while the new one was rendered

    def key(self, body: dict) -> bytes | None:
        """Return the cache key of a callback request, or None when it is not a live refresh."""
        tick = self.ticks.get(body.get("output"))
        if tick is None:
            return None
        inputs = [i if not (isinstance(i, dict) and i.get("id") == tick) else {"id": tick}
                  for i in body.get("inputs", [])]
        from dashboard.access import view_key

        canon = orjson.dumps([body.get("output"), inputs, body.get("state", []), view_key()],
                             option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(canon, digest_size=16).digest()

    def init_app(self, server: Flask) -> None:
        """Answer repeated refreshes from memory; keep the answers of successful ones."""

        @server.before_request
        def answer_from_memory():
            if request.method != "POST" or not request.path.endswith(UPDATE_PATH):
                return None
            try:
                body = orjson.loads(request.get_data(cache=True))
            except orjson.JSONDecodeError:
                return None  # Dash answers it (with its own error)
            key = self.key(body) if isinstance(body, dict) else None
            if key is None:
                return None
            bucket = self.bucket_fn()
            hit = self._mem.get(key)
            if hit is None or hit[0] != bucket:
                hit = self._claim(key, bucket)
            if hit is None:  # this request renders the answer
                self.misses += 1
                g.panorama_refresh_key = (key, bucket)
                return None
            if hit[0] == bucket:
                self.hits += 1
            else:
                self.stale += 1
            if "gzip" in request.headers.get("Accept-Encoding", ""):
                resp = Response(hit[3], content_type=hit[2])
                resp.headers["Content-Encoding"] = "gzip"  # as Flask-Compress would, once per bucket
                resp.vary.add("Accept-Encoding")
                return resp
            return Response(hit[1], content_type=hit[2])

        @server.teardown_request
        def end_render(_exc=None):
            kb = g.pop("panorama_refresh_key", None)
            if kb is not None:
                self._release(*kb)

        @server.after_request
        def keep_answer(resp):
            kb = g.get("panorama_refresh_key")
            if kb is not None and resp.status_code == 200 and g.pop("panorama_refresh_ok", False) \
                    and not resp.direct_passthrough and "Content-Encoding" not in resp.headers:
                key, bucket = kb
                data = resp.get_data()
                packed = gzip.compress(data, compresslevel=6, mtime=0)
                with self._lock:
                    self._mem[key] = (bucket, data, resp.content_type, packed)
                    if len(self._mem) > MAX_KEYS:
                        for k, (b, _d, _t, _z) in list(self._mem.items()):
                            if b < bucket:
                                self._mem.pop(k, None)
            return resp

    def _claim(self, key: bytes, bucket: int):
        """Return the answer to serve instead of rendering (the previous bucket's while another thread
        renders this one, or the new one once it is kept), or None: this request renders it. A request
        that waited for a render that kept nothing (a failed refresh) renders its own, at once."""
        me = threading.get_ident()
        deadline = time.monotonic() + WAIT_S
        with self._lock:
            waited = False
            while True:
                hit = self._mem.get(key)
                if hit is not None and hit[0] == bucket:
                    return hit
                owner = self._rendering.get(key)
                if owner is None or owner[0] != bucket:
                    if waited:
                        return None  # the render waited for kept nothing (a failed refresh): render here too
                    self._rendering[key] = (bucket, me)
                    return None
                if hit is not None and hit[0] == bucket - 1:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0:
                    return None  # the other render is stuck: render it here too
                self._done.wait(left)
                waited = True

    def _release(self, key: bytes, bucket: int) -> None:
        with self._lock:
            if self._rendering.get(key) == (bucket, threading.get_ident()):
                del self._rendering[key]
                self._done.notify_all()
