"""WSGI entry point: ``gunicorn app:server`` (what ``panorama serve --workers N`` runs)."""
import sys

from dashboard.alerts.outbox import NotifyError
from dashboard.app import create_app, warm
from dashboard.web_access import NoSecretKey

try:
    app = create_app()
except (NoSecretKey, NotifyError) as exc:  # one line, no traceback: what is wrong and how to mend it
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
server = app.server
warm(app)  # Dash's per-process setup, done before gunicorn forks the workers (--preload)
