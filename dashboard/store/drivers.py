"""How the read model talks to the drivers: plain tuples, binary results, placeholders per dialect.

The screen reads of thousands of rows skip SQLAlchemy's per-row processing (:func:`fetch`); the
SQL they write by hand is the same on both engines but for placeholders and JSON attributes,
adapted here.
"""
from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection


def rows_frame(rows, columns) -> pd.DataFrame:
    """Return ``rows`` (tuples or Row objects) as a frame with ``columns``."""
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def fetch(conn: Connection, sql, params: tuple = ()) -> list[tuple]:
    """Run driver-level SQL (``?`` placeholders) or a Core statement and return the driver's plain tuples.

    Skips SQLAlchemy's per-row result processing (only for columns the driver returns as the
    wanted Python type: numbers and text), and on PostgreSQL asks for binary results (half the
    client time of text): for the hot screen reads of thousands of rows. The statement still goes
    through the connection (its transaction and its events).
    """
    run = conn.exec_driver_sql if isinstance(sql, str) else (lambda q, _p: conn.execute(q))
    if conn.dialect.name == "sqlite":
        res = run(sql, params)
    else:
        if isinstance(sql, str):
            sql = sql.replace("?", "%s")
        dc = conn.connection.driver_connection
        factory = getattr(dc, "cursor_factory", None)
        binary = _binary_cursor(factory)
        if binary is not None:
            dc.cursor_factory = binary
        try:
            res = run(sql, params)
        finally:
            if binary is not None:
                dc.cursor_factory = factory
    try:
        return res.cursor.fetchall()
    finally:
        res.close()


_BINARY: dict = {}


def _binary_cursor(factory):
    """Return a subclass of the psycopg cursor class ``factory`` that fetches binary results."""
    if factory is None:
        return None
    if factory not in _BINARY:
        try:
            from psycopg import Cursor
            from psycopg.pq import Format
        except ImportError:  # another PostgreSQL driver: its own cursor
            _BINARY[factory] = None
        else:
            if not (isinstance(factory, type) and issubclass(factory, Cursor)):
                _BINARY[factory] = None
            else:
                class _Binary(factory):
                    def __init__(self, *a, **kw):
                        super().__init__(*a, **kw)
                        self.format = Format.BINARY

                _BINARY[factory] = _Binary
    return _BINARY[factory]


def kind_filter(kind: str, district: str | None) -> tuple[str, tuple]:
    """Return the WHERE clause (``?`` placeholders) and parameters selecting assets ``a`` of ``kind`` (in ``district``)."""
    return ("a.kind = ?" + (" AND a.district_id = ?" if district else ""),
            (kind, district) if district else (kind,))


def attr_sql(conn: Connection, key: str) -> str:
    """Return SQL for a numeric attribute of asset ``a`` (as ``assets.c.attributes[key].as_float()``)."""
    if not key.replace("_", "").isalnum():
        raise ValueError(f"bad attribute name {key!r}")
    if conn.dialect.name == "sqlite":
        return f"CAST(JSON_EXTRACT(a.attributes, '$.\"{key}\"') AS FLOAT)"
    return f"CAST(a.attributes ->> '{key}' AS FLOAT)"
