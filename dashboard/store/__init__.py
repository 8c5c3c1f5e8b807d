"""The SQL store: schema, the validated ingest path and the read model."""
from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from dashboard.store.schema import create_schema, districts, make_engine

#: Errors meaning the store is away, or busy with another writer (a lock timeout): what was being
#: written is held and retried (or the sender asked to retry), never rejected as bad content. The
#: ingest's bulk writes use the driver's own connection, so the drivers' errors come unwrapped too.
STORE_OUTAGES = (OperationalError, InterfaceError, DisconnectionError, sqlite3.OperationalError,
                 psycopg.OperationalError, psycopg.InterfaceError)


def is_initialised(engine: Engine) -> bool:
    """Return True when the schema exists and a city is loaded."""
    if not inspect(engine).has_table("districts"):
        return False
    with engine.connect() as conn:
        return conn.execute(select(districts.c.id).limit(1)).first() is not None


__all__ = ["STORE_OUTAGES", "create_schema", "is_initialised", "make_engine"]
