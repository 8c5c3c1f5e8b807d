"""gunicorn settings of ``panorama serve --workers N`` (``--config python:dashboard.gunicorn_conf``).

The app is loaded once in the master (``--preload``) and forked: every worker has every callback
registered before it accepts its first request. Database connections are never shared across
the fork.
"""
from __future__ import annotations

import os

worker_class = "gthread"
keepalive = 30           # screens poll every few seconds: keep their connections open
worker_connections = 4000  # open keep-alive connections per worker (one per screen or browser tab)
timeout = 60
graceful_timeout = 20
max_requests = 0         # workers live as long as the master (no leak to hide)
accesslog = os.environ.get("PANORAMA_ACCESS_LOG") or None  # "-" for stdout
errorlog = "-"
control_socket_disable = True  # one fixed socket path per user would clash between instances


def post_fork(server, worker):  # noqa: ARG001 - gunicorn hook signature
    """Drop pooled connections inherited from the master (each worker opens its own); start the
    alert evaluator's ticker and the notification deliverer (threads do not survive the fork: the
    master never starts them)."""
    import sys

    module = sys.modules.get("app")
    extensions = getattr(getattr(module, "server", None), "extensions", {}) if module else {}
    live = extensions.get("panorama")
    if live is not None:
        live.forget_connections()
    ticker = extensions.get("panorama_alerts")
    if ticker is not None:
        ticker.start()  # each worker ticks; one of the deployment evaluates each tick (dashboard.alerts.evaluator)
    notifier = extensions.get("panorama_notify")
    if notifier is not None:
        notifier.start()  # each worker delivers: they share the outbox (SKIP LOCKED)
