"""Alembic environment of the City Panorama store (SQLite or PostgreSQL).

Run through ``panorama db upgrade`` (or ``dashboard.store.migrate``), which hands over an open
connection; plain ``alembic`` with ``sqlalchemy.url`` set works too.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from dashboard.store.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs by table copy
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the connection given by the caller, or one made from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        _run(conn)


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations (``--sql``) for a DBA to run."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
