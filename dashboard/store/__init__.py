"""The SQL store: schema, the validated ingest path and the read model."""
from __future__ import annotations

from sqlalchemy import Engine, inspect, select

from dashboard.store.schema import create_schema, districts, make_engine


def is_initialised(engine: Engine) -> bool:
    """Return True when the schema exists and a city is loaded."""
    if not inspect(engine).has_table("districts"):
        return False
    with engine.connect() as conn:
        return conn.execute(select(districts.c.id).limit(1)).first() is not None


__all__ = ["create_schema", "is_initialised", "make_engine"]
