"""Alembic migrations on both engines, and the dashboards' read-only access."""
from __future__ import annotations

import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from typer.testing import CliRunner

from dashboard.cli import app as cli
from dashboard.store.migrate import FIRST, current, downgrade, grant_reader, head, readonly_engine, upgrade
from dashboard.store.schema import drop_schema, make_engine, meta, metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request, tmp_path):
    """An empty database (no tables at all) on either engine."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    else:
        eng = request.getfixturevalue("_pg_store_engine")
        drop_schema(eng)
    yield eng
    if request.param == "sqlite":
        eng.dispose()


def test_migrations_run_up_from_empty_and_match_the_models(empty):
    assert current(empty) is None
    before, after = upgrade(empty)
    assert (before, after) == (None, head())
    assert set(inspect(empty).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    with empty.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"the migrations and dashboard/store/schema.py disagree: {diff}"
    assert upgrade(empty) == (head(), head())  # a second run changes nothing


def test_downgrade_to_base_and_up_again(empty):
    upgrade(empty)
    downgrade(empty, "base")
    assert set(inspect(empty).get_table_names()) <= {"alembic_version"}
    upgrade(empty)
    assert current(empty) == head()


def test_a_store_made_before_migrations_is_adopted_keeping_its_data(empty):
    upgrade(empty, FIRST)  # release 0.1's tables, made as it made them: without a migration record
    with empty.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert current(empty) is None
    with empty.begin() as conn:
        conn.execute(insert(meta), [{"key": "city", "value": "Old town"}])
    upgrade(empty)
    assert current(empty) == head()
    with empty.connect() as conn:
        assert conn.execute(select(meta.c.value).where(meta.c.key == "city")).scalar() == "Old town"


def test_the_dashboard_engine_cannot_write(engine):
    url = engine.url.render_as_string(hide_password=False)
    ro = readonly_engine(url)
    try:
        with ro.connect() as conn:
            assert conn.execute(select(meta.c.key)).all() == [("assets_rev",)]  # reads work
        with pytest.raises((OperationalError, DBAPIError), match="(?i)read.only|readonly"):
            with ro.begin() as conn:
                conn.execute(insert(meta), [{"key": "x", "value": "y"}])
    finally:
        ro.dispose()
    with engine.connect() as conn:
        assert conn.execute(select(meta.c.key)).all() == [("assets_rev",)]


def test_create_app_reads_through_a_read_only_engine(tmp_path):
    from dashboard.app import create_app
    from dashboard.settings import Settings

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    upgrade(make_engine(url))
    live = create_app(Settings(data_dir=tmp_path, database_url=url)).server.extensions["panorama"]
    with pytest.raises(OperationalError, match="readonly"):
        with live.engine.begin() as conn:
            conn.execute(insert(meta), [{"key": "x", "value": "y"}])
    with live.writer().begin() as conn:  # the NGSI-LD endpoint's engine may write
        conn.execute(insert(meta), [{"key": "x", "value": "y"}])


@pytest.mark.postgres
def test_reader_role_can_select_and_nothing_else(_pg_store_engine):
    eng = _pg_store_engine
    drop_schema(eng)
    upgrade(eng)
    role = f"panorama_ro_{secrets.token_hex(4)}"
    password = "it's a \"secret\"; DROP TABLE meta; --"  # quoted by psycopg.sql, stored verbatim
    grant_reader(eng, role, password)
    grant_reader(eng, role, password)  # repeatable (ALTER the second time)
    url = make_url(eng.url).set(username=role, password=password)
    ro = create_engine(url)
    try:
        with ro.connect() as conn:
            assert conn.execute(select(meta.c.key)).all() == [("assets_rev",)]
        with pytest.raises(DBAPIError, match="(?i)read-only|permission denied"):
            with ro.begin() as conn:
                conn.execute(text("SET TRANSACTION READ WRITE"))
                conn.execute(insert(meta), [{"key": "x", "value": "y"}])
        assert inspect(eng).has_table("meta")
    finally:
        ro.dispose()
        with eng.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("bad", ["1abc", "x; DROP TABLE meta", "a" * 64, ""])
def test_reader_role_names_are_checked(_pg_store_engine, bad):
    with pytest.raises(ValueError, match="role name"):
        grant_reader(_pg_store_engine, bad, "pw")


def test_reader_role_is_refused_on_sqlite(tmp_path):
    with pytest.raises(ValueError, match="PostgreSQL"):
        grant_reader(make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}"), "reader", "pw")


def test_cli_db_upgrade_current_and_errors(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("PANORAMA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    r = runner.invoke(cli, ["db", "current"])
    assert r.exit_code == 3 and "not migrated" in r.output
    r = runner.invoke(cli, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert "migrated" in r.output and head() in r.output
    r = runner.invoke(cli, ["db", "upgrade"])
    assert r.exit_code == 0 and "up to date" in r.output
    r = runner.invoke(cli, ["db", "current"])
    assert r.exit_code == 0 and f"store: {head()}" in r.output
    r = runner.invoke(cli, ["db", "grant-reader", "reader"])
    assert r.exit_code == 1 and "PANORAMA_READER_PASSWORD" in r.output
    monkeypatch.setenv("PANORAMA_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    r = runner.invoke(cli, ["db", "upgrade"])
    assert r.exit_code == 1 and "cannot be reached" in r.output
    assert len(r.output.strip().splitlines()) <= 2


def test_0011_fills_the_escalation_clock_of_open_alerts_from_their_events(empty):
    """Downgraded below 0011 and upgraded again, every open alert's escalation clock is what its
    events make it: the time it was open and neither shelved nor acknowledged, running or paused."""
    from dashboard.alerts import store
    from dashboard.alerts.engine import KpiObs, Observations
    from dashboard.alerts.evaluator import Evaluator
    from dashboard.alerts.rules import parse_rules
    from dashboard.store.schema import alerts

    upgrade(empty)
    places = ("north", "south", "east")
    rules = parse_rules([{"id": "tti", "when": "traffic.tti > 1.6", "scope": "each district", "severity": "critical"}],
                        districts=set(places))
    ev = Evaluator(empty, rules, None, lambda now: Observations(
        now=now, districts=places, kpis={("traffic.tti", d): KpiObs(2.0) for d in places}), 60, worker="test")
    ev.tick(0)
    with empty.begin() as conn:
        ids = {r.district_id: r.id for r in conn.execute(select(alerts.c.district_id, alerts.c.id))}
        store.act(conn, ids["north"], "shelve", "ann", {"minutes": 10}, now=300)
        store.act(conn, ids["south"], "shelve", "ann", {"minutes": 60}, now=300)
        store.act(conn, ids["east"], "ack", "ann", now=420)
    for t in range(60, 1260, 60):
        ev.tick(t)

    def clocks():
        with empty.connect() as conn:
            return {r.district_id: (r.unacked_s, r.unacked_since)
                    for r in conn.execute(select(alerts.c.district_id, alerts.c.unacked_s, alerts.c.unacked_since))}

    before = clocks()
    assert before == {"north": (300, 900), "south": (300, None), "east": (420, None)}
    downgrade(empty, "0010")
    upgrade(empty)
    assert clocks() == before
    with empty.connect() as conn:
        assert all(store.replay(conn, i)["unacked_s"] == before[d][0] for d, i in ids.items())
