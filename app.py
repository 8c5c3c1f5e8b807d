"""WSGI entry point: ``gunicorn app:server`` (what ``panorama serve --workers N`` runs)."""
from dashboard.app import create_app, warm

app = create_app()
server = app.server
warm(app)  # Dash's per-process setup, done before gunicorn forks the workers (--preload)
