"""Schema migrations (Alembic) and the read-only access of the dashboards.

``upgrade(engine)`` brings any store — empty, or made by an older release — to the schema of this
release; ``panorama db upgrade`` calls it. The migration scripts live in ``dashboard/migrations``.

The screens only read. ``readonly_engine(url)`` returns an engine whose sessions refuse to write:
on PostgreSQL every transaction is ``READ ONLY`` (and ``grant_reader`` creates a login role that
can only ``SELECT``, for a URL of its own or a read replica); on SQLite every connection is
``query_only``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

# its INFO lines (plugin setup on import, each migration step) are noise to operators: quiet before import
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Engine, event, inspect  # noqa: E402

from dashboard.store.schema import make_engine  # noqa: E402

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
FIRST = "0001"  # the schema of release 0.1, which had no migrations


def alembic_config(connection=None, url: str | None = None) -> Config:
    """Return the Alembic config of the store, bound to ``connection`` (or ``url``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """Return the newest revision of the migration scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """Return the store's revision (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the store up to ``revision``; return (revision before, revision after)."""
    before = current(engine)
    with engine.begin() as conn:
        cfg = alembic_config(conn)
        if before is None and inspect(conn).has_table("readings"):
            # a store made before migrations existed (0.1 created its tables directly): that is 0001
            command.stamp(cfg, FIRST)
        command.upgrade(cfg, revision)
    return before, current(engine)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the store down to ``revision`` ("base" drops every table)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


# ---------------------------------------------------------------- read-only access
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def grant_reader(engine: Engine, role: str, password: str | None) -> None:
    """Create (or update) a PostgreSQL login role that can only read the store's tables.

    Tables made later by the role running migrations are readable too (default privileges).
    Names and the password are quoted by psycopg's ``sql`` composition, never pasted in.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError("read-only roles are a PostgreSQL feature; the SQLite dashboard opens its file query-only")
    if not _IDENT.match(role):
        raise ValueError(f"role name {role!r}: use letters, digits and _ (at most 63, not starting with a digit)")
    from psycopg import sql

    r = sql.Identifier(role)
    pw = sql.Literal(password) if password is not None else sql.SQL("NULL")
    with engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        verb = sql.SQL("ALTER" if cur.fetchone() else "CREATE")
        cur.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(verb, r, pw))
        cur.execute("SELECT current_database()")
        db = sql.Identifier(cur.fetchone()[0])
        for stmt in ("GRANT CONNECT ON DATABASE {db} TO {r}",
                     "GRANT USAGE ON SCHEMA public TO {r}",
                     "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}",
                     "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {r}",
                     "ALTER ROLE {r} SET default_transaction_read_only = on"):
            cur.execute(sql.SQL(stmt).format(db=db, r=r))


def _sqlite_query_only(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only = ON")
    cur.close()


def readonly_engine(url: str, **kw) -> Engine:
    """Return an engine on ``url`` that cannot write, whatever the role behind it may do."""
    if url.startswith("sqlite"):
        engine = make_engine(url, **kw)
        event.listen(engine, "connect", _sqlite_query_only)  # after make_engine's pragmas
        return engine
    if url.startswith("postgresql"):
        kw.setdefault("connect_args", {})
        opts = kw["connect_args"].get("options", "")
        kw["connect_args"]["options"] = (opts + " -c default_transaction_read_only=on").strip()
    return make_engine(url, **kw)
