"""WSGI entry point: ``gunicorn app:server``."""
from dashboard.app import create_app

app = create_app()
server = app.server
