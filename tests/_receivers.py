"""Real receivers of notifications for the tests and the benchmark: an HTTP webhook receiver
(``http.server`` in a thread) that checks each signature with nothing but :mod:`hmac`, as a
receiver would, and an SMTP server (aiosmtpd) that keeps every message."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """Return a TCP port nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Waitable:
    """Something that records arrivals and lets a test wait for a condition on them."""

    def __init__(self):
        self.cond = threading.Condition()

    def _arrived(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float = 30.0, what: str = "the condition"):
        """Wait until ``pred(self)`` is true; fail the test after ``timeout`` seconds."""
        with self.cond:
            if not self.cond.wait_for(lambda: pred(self), timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class WebhookReceiver(_Waitable):
    """POSTs to ``url`` are checked (HMAC-SHA256 of ``timestamp.body`` with ``secret``, the delivery
    header equal to the body's, a timestamp under five minutes old) and kept in ``received``.

    ``answers``: status codes to answer the first requests with (then 200). ``hold``: a key whose
    request is kept waiting, once, until ``release`` is set (``holding`` is set when it arrives):
    the window between a deliverer's send and its mark."""

    def __init__(self, secret: bytes, answers=(), hold: str | None = None):
        super().__init__()
        self.secret = secret
        self.answers = list(answers)
        self.hold, self.holding, self.release = hold, threading.Event(), threading.Event()
        self.received: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self):
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ts = self.headers.get("X-Panorama-Timestamp", "")
                want = "sha256=" + hmac.new(recv.secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                sig_ok = hmac.compare_digest(want, self.headers.get("X-Panorama-Signature", ""))
                doc = json.loads(body)
                key = self.headers.get("X-Panorama-Delivery")
                fresh = ts.isdigit() and abs(at - int(ts)) < 300
                with recv.cond:
                    status = recv.answers.pop(0) if recv.answers else 200
                    recv.received.append({"key": key, "at": at, "status": status, "signed": sig_ok and fresh
                                          and doc.get("delivery") == key, "body": doc})
                    recv.cond.notify_all()
                if key is not None and key == recv.hold:
                    recv.hold = None
                    recv.holding.set()
                    recv.release.wait(60)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> Counter:
        """Return how many times each delivery key was answered 200."""
        with self.cond:
            return Counter(r["key"] for r in self.received if r["status"] == 200)


class SmtpSink(_Waitable):
    """A real SMTP server on 127.0.0.1 (aiosmtpd) keeping every message it is given."""

    def __init__(self):
        super().__init__()
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.port = free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = message_from_bytes(envelope.original_content or envelope.content)
                with sink.cond:
                    sink.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
                    sink.cond.notify_all()
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def message_ids(self) -> Counter:
        with self.cond:
            return Counter(m["Message-ID"] for _, _, m in self.messages)
