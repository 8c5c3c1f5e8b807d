"""``panorama ingest FILE``: the command-line CSV import, on a SQLite store with the small city."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from dashboard.cli import app
from dashboard.store.schema import latest, readings, rejected, rollup_district

#: The CLI works on the embedded SQLite store; the ``engine`` fixture is narrowed to it.
pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

HEADER = "asset_id,metric,ts,value\n"
GOOD = (HEADER
        + "r1,speed_kmh,2025-01-15T08:00:00+08:00,42.5\n"
        + "r2,speed_kmh,2025-01-15T00:05:00Z,61\n"
        + "p1,load_mw,2025-01-15T00:05:00Z,80.25\n"
        + "s1,pm25,2025-01-15T00:00:00Z,35\n")
BAD = (HEADER
       + "r1,speed_kmh,2025-01-15T00:00:00Z,40\n"       # line 2: fine
       + "nowhere,speed_kmh,2025-01-15T00:00:00Z,40\n"  # line 3
       + "r1,speed_kmh,2025-01-15T00:10:00Z,-3\n"       # line 4
       + "s1,pm25,2025-01-15T00:00:00,12\n"             # line 5
       + "r2,speed_kmh,2099-01-01T00:00:00Z,50\n"       # line 6
       + "r2,speed_kmh,2025-01-15T00:00:00Z,fast\n")    # line 7


@pytest.fixture
def cli(small_city, tmp_path, monkeypatch):
    """Run ``panorama`` against the small-city store, in a temp working directory."""
    eng = small_city["engine"]
    monkeypatch.chdir(tmp_path)
    env = {"PANORAMA_DATA_DIR": str(tmp_path / "var"),
           "PANORAMA_DATABASE_URL": eng.url.render_as_string(hide_password=False),
           "COLUMNS": "200"}
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, list(args), env=env)
        return result, " ".join(result.output.split())

    run.engine = eng
    return run


def counts(engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar()
                     for t in (readings, latest, rollup_district, rejected))


def test_ingest_good_file(cli, tmp_path):
    (tmp_path / "good.csv").write_text(GOOD, encoding="utf-8")
    result, out = cli("ingest", "good.csv")
    assert result.exit_code == 0, result.output
    assert "4 accepted, 0 already stored, 0 rejected" in out
    n = counts(cli.engine)
    assert n[0] == 4 and n[1] == 4 and n[3] == 0
    # the same file again: nothing new
    result, out = cli("ingest", "good.csv")
    assert result.exit_code == 0 and "0 accepted, 4 already stored, 0 rejected" in out
    assert counts(cli.engine) == n


def test_ingest_bad_rows_are_rejected_with_line_numbers(cli, tmp_path):
    (tmp_path / "bad.csv").write_text(BAD, encoding="utf-8")
    result, out = cli("ingest", "bad.csv", "--source", "field-upload")
    assert result.exit_code == 0, result.output
    assert "1 accepted, 0 already stored, 5 rejected" in out
    assert "line 3: unknown asset 'nowhere'" in out
    assert "line 4: value -3 km/h outside the physical range" in out
    assert "line 5: timestamp '2025-01-15T00:00:00' has no UTC offset" in out
    assert "line 6: timestamp 2099-01-01T00:00:00Z is in the future" in out
    assert "line 7: value 'fast' is not a finite number" in out
    with cli.engine.connect() as conn:
        rows = conn.execute(select(rejected).order_by(rejected.c.line)).all()
    assert [r.line for r in rows] == [3, 4, 5, 6, 7]
    assert {r.source for r in rows} == {"field-upload"}
    assert json.loads(rows[0].raw) == {"asset": "nowhere", "metric": "speed_kmh",
                                       "ts": "2025-01-15T00:00:00Z", "value": "40"}


def test_missing_file_is_a_clear_error(cli):
    before = counts(cli.engine)
    result, out = cli("ingest", "missing.csv")
    assert result.exit_code != 0
    assert "error: missing.csv: no such file" in out
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert counts(cli.engine) == before


def test_missing_value_column_is_a_clear_error_and_writes_nothing(cli, tmp_path):
    (tmp_path / "good.csv").write_text(GOOD, encoding="utf-8")
    assert cli("ingest", "good.csv")[0].exit_code == 0
    before = counts(cli.engine)
    (tmp_path / "novalue.csv").write_text("asset_id,metric,ts\nr1,speed_kmh,2025-01-15T01:00:00Z\n",
                                          encoding="utf-8")
    result, out = cli("ingest", "novalue.csv")
    assert result.exit_code != 0
    assert out.startswith("error: novalue.csv:") and "missing column(s) value" in out
    assert "nothing was stored" in out
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert counts(cli.engine) == before


def test_missing_column_message_names_file_once_and_its_own_columns(cli, tmp_path):
    (tmp_path / "novalue.csv").write_text("asset_id,metric,ts\nr1,speed_kmh,2025-01-15T01:00:00Z\n",
                                          encoding="utf-8")
    result, out = cli("ingest", "novalue.csv")
    assert result.exit_code != 0
    assert out.count("novalue.csv") == 1
    assert "found asset_id, metric, ts" in out


def test_utf8_bom_file_works(cli, tmp_path):
    (tmp_path / "bom.csv").write_text(GOOD, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    result, out = cli("ingest", "bom.csv")
    assert result.exit_code == 0, result.output
    assert "4 accepted, 0 already stored, 0 rejected" in out
    assert counts(cli.engine)[0] == 4


def test_file_larger_than_a_chunk_is_all_or_nothing_on_read_errors(cli, tmp_path):
    """A file of several transactions is read whole first: a bad last line stores nothing; fixed, all of it."""
    from dashboard.store.ingest import CHUNK_ROWS

    t0 = 1_736_899_200  # 2025-01-15T00:00:00Z
    n_ts = CHUNK_ROWS // 3 + 1000
    rows = [f"{a},speed_kmh,{t0 + 60 * i},{30 + i % 40}" for i in range(n_ts) for a in ("r1", "r2", "r3")]
    assert len(rows) > CHUNK_ROWS
    good = HEADER + "\n".join(rows) + "\n"
    (tmp_path / "big.csv").write_bytes((good + "r1,speed_kmh,2025-01-15T00:00:00Z,40\n").encode() + b"r\xff\xfe,x,y,z\n")
    before = counts(cli.engine)
    result, out = cli("ingest", "big.csv")
    assert result.exit_code != 0
    assert out.startswith("error: big.csv:") and "nothing was stored" in out and "Traceback" not in out
    assert counts(cli.engine) == before, "the chunks before the bad line were not stored either"
    (tmp_path / "big.csv").write_text(good, encoding="utf-8")
    result, out = cli("ingest", "big.csv")
    assert result.exit_code == 0, result.output
    assert f"{len(rows)} accepted, 0 already stored, 0 rejected" in out
    assert counts(cli.engine)[0] == before[0] + len(rows)


def test_store_failing_midway_says_what_was_stored_and_a_rerun_stores_the_rest_once(cli, tmp_path, monkeypatch):
    """Chunks are the atomic unit: those committed before a store failure stay; the same file again completes it."""
    import sqlite3

    from dashboard.store import ingest

    t0 = 1_736_899_200
    rows = [f"{a},speed_kmh,{t0 + 60 * i},{30 + i % 40}" for i in range(400) for a in ("r1", "r2", "r3")]
    (tmp_path / "f.csv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 300)
    real_write, calls = ingest.Ingestor._write, []

    def failing_third(self, *args, **kw):  # the store goes away while the third chunk is written
        calls.append(1)
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(self, *args, **kw)

    monkeypatch.setattr(ingest.Ingestor, "_write", failing_third)
    before = counts(cli.engine)[0]
    result, out = cli("ingest", "f.csv")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "the store failed midway (disk I/O error) after 600 accepted, 0 already stored, 0 rejected" in out
    assert "run the same command again" in out
    assert counts(cli.engine)[0] == before + 600, "the two chunks committed before the failure stay"
    monkeypatch.setattr(ingest.Ingestor, "_write", real_write)
    result, out = cli("ingest", "f.csv")
    assert result.exit_code == 0, result.output
    assert "600 accepted, 600 already stored, 0 rejected" in out
    assert counts(cli.engine)[0] == before + 1200


# --- hostile files (issue 14 items 6, 7, 8, 16; issue 15 item 15) ----------------------------------------
def rejected_lines(engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [(r.line, r.reason) for r in conn.execute(select(rejected).order_by(rejected.c.id))]


@pytest.mark.parametrize("block", [None, 64])  # the reader's block size: default, and tiny (many blocks)
def test_ingest_line_numbers_after_blank_lines_and_multiline_fields(cli, tmp_path, monkeypatch, block):
    from dashboard.importers import textio

    if block:
        monkeypatch.setattr(textio, "BLOCK_BYTES", block)
    body = (HEADER
            + "r1,speed_kmh,2025-01-15T00:00:00Z,40\n"      # line 2
            + "\n\n"                                        # lines 3-4: blank
            + '"r\n2",speed_kmh,2025-01-15T00:00:00Z,40\n'  # lines 5-6: one record over two lines
            + "nowhere,speed_kmh,2025-01-15T00:00:00Z,40\n"  # line 7
            + "\n"                                          # line 8
            + "r1,speed_kmh,2025-01-15T00:10:00Z,-3\n")     # line 9
    (tmp_path / "messy.csv").write_text(body, encoding="utf-8")
    result, out = cli("ingest", "messy.csv")
    assert result.exit_code == 0, result.output
    assert "1 accepted, 0 already stored, 3 rejected" in out
    assert [ln for ln, _ in rejected_lines(cli.engine)] == [5, 7, 9]
    assert "line 5: unknown asset 'r\\n2'" in result.stdout and "line 9: value -3" in out


def test_ingest_rerun_records_each_rejection_once(cli, tmp_path):
    (tmp_path / "bad.csv").write_text(BAD, encoding="utf-8")
    assert cli("ingest", "bad.csv")[0].exit_code == 0
    once = rejected_lines(cli.engine)
    result, out = cli("ingest", "bad.csv")
    assert result.exit_code == 0 and "0 accepted, 1 already stored, 5 rejected" in out
    assert rejected_lines(cli.engine) == once and len(once) == 5


def test_ingest_row_with_extra_fields_is_rejected_alone(cli, tmp_path):
    (tmp_path / "extra.csv").write_text(GOOD + "r1,speed_kmh,2025-01-15T01:00:00Z,42.5,oops\n", encoding="utf-8")
    result, out = cli("ingest", "extra.csv")
    assert result.exit_code == 0, result.output
    assert "4 accepted, 0 already stored, 1 rejected" in out
    assert "line 6: 5 fields, the header has 4" in out
    assert counts(cli.engine)[0] == 4
    with cli.engine.connect() as conn:
        raw = conn.execute(select(rejected.c.raw)).scalar()
    assert json.loads(raw) == ["r1", "speed_kmh", "2025-01-15T01:00:00Z", "42.5", "oops"]


def test_ingest_prints_user_data_as_plain_text(cli, tmp_path):
    name = "[bold]sensor[red] dump.csv"
    (tmp_path / name).write_text(HEADER + "[/],speed_kmh,2025-01-15T00:00:00Z,40\n"
                                 + "r1,speed_kmh,2025-01-15T00:00:00Z,[/bold]\n", encoding="utf-8")
    result, out = cli("ingest", name)
    assert result.exit_code == 0, result.output  # the rows are stored: the command must not "fail" after
    assert f"{name}: 0 accepted, 0 already stored, 2 rejected" in out
    assert "line 2: unknown asset '[/]'" in out and "line 3: value '[/bold]' is not a finite number" in out
    result, out = cli("ingest", "[/]missing.csv")
    assert result.exit_code == 1 and "error: [/]missing.csv: no such file" in out


@pytest.mark.parametrize("target", ["/dev/zero", "."])
def test_ingest_refuses_devices_and_directories_in_one_line(cli, target):
    before = counts(cli.engine)
    result, out = cli("ingest", target)
    assert result.exit_code == 1
    assert ("not a regular file" if target == "/dev/zero" else "is a directory") in out
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert counts(cli.engine) == before


def test_ingest_report_on_stdout_errors_on_stderr(cli, tmp_path):
    (tmp_path / "bad.csv").write_text(BAD, encoding="utf-8")
    result, _ = cli("ingest", "bad.csv")
    assert "1 accepted" in result.stdout and "line 3: unknown asset" in result.stdout and result.stderr == ""
    result, _ = cli("ingest", "missing.csv")
    assert result.stdout == "" and "error: missing.csv: no such file" in result.stderr


def test_ingest_rejection_cleared_once_the_row_is_stored(cli, tmp_path):
    from sqlalchemy import insert

    from dashboard.store.schema import assets

    (tmp_path / "new.csv").write_text(HEADER + "r9,speed_kmh,2025-01-15T00:00:00Z,40\n"
                                      + "r1,speed_kmh,2025-01-15T00:00:00Z,-1\n", encoding="utf-8")
    result, out = cli("ingest", "new.csv")
    assert "0 accepted, 0 already stored, 2 rejected" in out
    with cli.engine.begin() as conn:  # the road is onboarded afterwards
        conn.execute(insert(assets).values(id="r9", kind="road_segment", name="R9", district_id="north",
                                           geometry='{"type": "Point", "coordinates": [0, 0]}',
                                           attributes={"free_flow_kmh": 50}))
    result, out = cli("ingest", "new.csv")
    assert result.exit_code == 0 and "1 accepted, 0 already stored, 1 rejected" in out
    assert [ln for ln, _ in rejected_lines(cli.engine)] == [3]  # the still-bad row stays, once
