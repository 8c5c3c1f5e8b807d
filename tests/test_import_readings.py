"""Readings import: the UCI Beijing files (wide, gz), long and wide CSV with options, malformed files."""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from _import_kit import FIXTURES, beijing_store, imp, snapshot
from sqlalchemy import text

from dashboard.importers import ImportProblem
from dashboard.importers.readings import import_readings

PRSA = FIXTURES / "beijing" / "PRSA_Data_Dongsi_20130301-20130314.csv.gz"  # the real file's first 2 weeks
RENAME = {"PM2.5": "pm25", "PM10": "pm10", "SO2": "so2", "NO2": "no2", "CO": "co", "O3": "o3", "TEMP": "temp_c"}
T0 = int(datetime(2013, 2, 28, 16, tzinfo=timezone.utc).timestamp())  # 2013-03-01 00:00 in Beijing


@pytest.fixture
def store(tmp_path):
    return beijing_store(tmp_path)


@pytest.fixture(scope="module")
def prsa_head():
    """The first 2 weeks of the real Dongsi file (gzip), as shipped in tests/fixtures."""
    assert len(gzip.open(PRSA, "rt", encoding="utf-8").read().splitlines()) == 24 * 14 + 1
    return PRSA


def stored(engine, asset, metric):
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT r.ts, r.value FROM readings r JOIN assets a ON a.pk = r.asset_pk "
                                      "WHERE a.id = :a AND r.metric = :m ORDER BY r.ts"),
                                 {"a": asset, "m": metric}).all())


def rejected_rows(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT line, reason FROM rejected ORDER BY id")).all()


def test_import101_uci_wide_metric_file(store, prsa_head):
    src = prsa_head  # the real file's first two weeks: the whole file (35,064 rows) takes ~30 s on SQLite
    rep = imp(store, import_readings, src, layout="wide-metric", asset="aq-dongsi", rename=RENAME,
              time_columns=["year", "month", "day", "hour"], timezone="Asia/Shanghai")
    df = pd.read_csv(src)
    cells = len(df) * len(RENAME)
    nas = int(df[list(RENAME)].isna().sum().sum())
    assert rep.counts["cells"] == cells and rep.counts["gaps"] == nas
    assert rep.counts["accepted"] + rep.counts["rejected"] == cells - nas
    pm = stored(store, "aq-dongsi", "pm25")
    assert len(pm) == df["PM2.5"].notna().sum() - sum(1 for _, r in rejected_rows(store) if "pm25" in r)
    assert pm[T0] == df["PM2.5"].iloc[0] == 9
    assert stored(store, "aq-dongsi", "co")[T0 + 3600] == df["CO"].iloc[1] == 300
    assert any("ignored" in w and "wd" in w for w in rep.warnings)  # non-metric columns named


def test_import102_long_csv_with_options_and_units(store, prsa_head, tmp_path):
    df = pd.read_csv(prsa_head)
    rows = []
    for _, r in df.iterrows():
        ts = f"{r.day:02d}/{r.month:02d}/{r.year} {r.hour:02d}:00"
        for col, m in (("PM2.5", "pm25"), ("CO", "co")):
            v = "" if pd.isna(r[col]) else (f"{r[col] / 1000:.4f}" if m == "co" else f"{r[col]:.1f}").replace(".", ",")
            rows.append(f"dongsi;{m};{ts};{v};{'mg/m³' if m == 'co' else 'µg/m³'}")
    path = tmp_path / "long.csv"
    path.write_bytes("\ufeffasset;metric;time;value;unit\n".encode() + "\n".join(rows).encode("utf-8") + b"\n")
    rep = imp(store, import_readings, path, delimiter=";", decimal=",", timezone="Asia/Shanghai",
              ts_format="%d/%m/%Y %H:%M", asset_prefix="aq-", ts_column="time")
    assert rep.counts["gaps"] == int(df[["PM2.5", "CO"]].isna().sum().sum())
    co = stored(store, "aq-dongsi", "co")
    assert co[T0] == pytest.approx(df["CO"].iloc[0])  # 0,3000 mg/m³ -> 300 µg/m³
    assert stored(store, "aq-dongsi", "pm25")[T0 + 3600] == df["PM2.5"].iloc[1]
    # latin-1 export of the same file: refused as UTF-8, read with --encoding latin-1
    lat = tmp_path / "latin1.csv"
    lat.write_bytes(path.read_bytes()[3:].decode("utf-8").encode("latin-1"))
    before = snapshot(store)
    with pytest.raises(ImportProblem, match=r"latin1\.csv: not valid utf-8.*--encoding"):
        imp(store, import_readings, lat, delimiter=";", decimal=",", timezone="Asia/Shanghai",
            ts_format="%d/%m/%Y %H:%M", asset_prefix="aq-", ts_column="time")
    assert snapshot(store) == before
    rep = imp(store, import_readings, lat, delimiter=";", decimal=",", timezone="Asia/Shanghai", encoding="latin-1",
              ts_format="%d/%m/%Y %H:%M", asset_prefix="aq-", ts_column="time")
    assert rep.counts["accepted"] == 0 and rep.counts["duplicates"] > 0  # the same readings: duplicates
    assert snapshot(store) == before


def test_import103_wide_asset_and_rerun_idempotent(store, tmp_path):
    frames = {}
    for st in ("Dongsi", "Tiantan"):
        src = FIXTURES / "beijing" / f"PRSA_Data_{st}_20130301-20130314.csv.gz"
        frames[st.lower()] = pd.read_csv(src, nrows=200)
    d = frames["dongsi"]
    wide = pd.DataFrame({"ts": [f"{r.year}-{r.month:02d}-{r.day:02d}T{r.hour:02d}:00:00+08:00" for r in d.itertuples()],
                         "aq-dongsi": d["PM2.5"], "aq-tiantan": frames["tiantan"]["PM2.5"]})
    path = tmp_path / "wide.csv"
    wide.to_csv(path, index=False)
    rep = imp(store, import_readings, path, layout="wide-asset", metric="pm25")
    assert rep.counts["accepted"] == int(wide[["aq-dongsi", "aq-tiantan"]].notna().sum().sum())
    assert stored(store, "aq-tiantan", "pm25")[T0] == frames["tiantan"]["PM2.5"].iloc[0]
    once = snapshot(store)
    rep = imp(store, import_readings, path, layout="wide-asset", metric="pm25")
    assert rep.counts["accepted"] == 0 and rep.counts.get("rejected", 0) == 0
    assert snapshot(store) == once


def test_import104_rejected_rows_kept_with_lines(store, tmp_path):
    path = tmp_path / "some_bad.csv"
    path.write_text("asset,metric,ts,value\n"
                    "aq-dongsi,pm25,2016-01-01T00:00:00+08:00,12\n"
                    "nowhere,pm25,2016-01-01T00:00:00+08:00,12\n"
                    "aq-dongsi,pm25,2016-01-01T01:00:00+08:00,-5\n"
                    "aq-dongsi,pm25,2016-01-01T02:00:00+08:00,NA\n")
    rep = imp(store, import_readings, path)
    assert rep.counts["accepted"] == 1 and rep.counts["rejected"] == 2 and rep.counts["gaps"] == 1
    rows = rejected_rows(store)
    assert [r.line for r in rows] == [3, 4]
    assert "unknown asset 'nowhere'" in rows[0].reason
    once = snapshot(store)
    imp(store, import_readings, path)
    assert snapshot(store) == once  # the same rejections are not recorded twice


@pytest.mark.parametrize("body,opts,msg", [
    ("asset,metric,value\naq-dongsi,pm25,3\n", {}, r"missing the time .* columns are asset, metric, value"),
    ("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\naq-dongsi,pm25,2016-13-45 25:00,4\n",
     {"timezone": "Asia/Shanghai"}, r"line 3: cannot read the date '2016-13-45 25:00'"),
    ("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01 00:00,3\n", {}, r"line 2: .* has no UTC offset; pass --timezone"),
    ("asset,metric,ts,value,unit\naq-dongsi,co,2016-01-01T00:00:00+08:00,0.3,mg/m3\n"
     "aq-dongsi,co,2016-01-01T01:00:00+08:00,300,ug/m3\n", {}, r"mixed units for co: mg/m³ \(line 2\) and µg/m³ \(line 3\)"),
    ("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\naq-dongsi,pm25,2016-01-01T01:0",
     {}, r"line 3: 3 of 4 fields \(a truncated file"),
    ("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\n", {"units": {"pm25": "furlongs"}},
     r"unknown unit 'furlongs' for pm25"),
])
def test_import105_malformed_files_leave_store_unchanged(engine, tmp_path, body, opts, msg):
    from dashboard.city import install_city, load_city
    from _import_kit import REPO

    install_city(engine, load_city(REPO / "data" / "beijing"))
    ok = tmp_path / "ok.csv"
    ok.write_text("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\nx,pm25,2016-01-01T00:00:00Z,1\n")
    imp(engine, import_readings, ok)
    before = snapshot(engine)
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ImportProblem, match=msg) as err:
        imp(engine, import_readings, path, **opts)
    assert "bad.csv" in str(err.value)
    assert snapshot(engine) == before


# --- hostile and real-world files (issue 14 items 6, 8, 16; issue 15 items 5, 9, 10) -----------------
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DONGSI = FIXTURES / "PRSA_Data_Dongsi_first300h.csv"  # the real file's first 300 hours (tests/fixtures/README.md)
WIDE = dict(layout="wide-metric", asset="aq-dongsi", rename=RENAME, time_columns=["year", "month", "day", "hour"],
            timezone="Asia/Shanghai")


def dongsi_lines() -> list[str]:
    return DONGSI.read_text(encoding="utf-8").splitlines(keepends=True)


def line_of(text: str, marker: str) -> int:
    """Return the physical line (1-based) of the file text where ``marker`` is."""
    return text[: text.index(marker)].count("\n") + 1


def test_import106_real_prsa_excerpt_gaps_stay_gaps(store):
    rep = imp(store, import_readings, DONGSI, **WIDE)
    df = pd.read_csv(DONGSI)
    cells, nas = len(df) * len(RENAME), int(df[list(RENAME)].isna().sum().sum())
    assert len(df) == 300 and nas > 0
    assert rep.counts["cells"] == cells and rep.counts["gaps"] == nas
    assert rep.counts["accepted"] + rep.counts.get("rejected", 0) == cells - nas
    assert stored(store, "aq-dongsi", "pm25")[T0] == df["PM2.5"].iloc[0] == 9


@pytest.mark.parametrize("block", [None, 300])  # the reader's block size: default, and tiny (many blocks)
def test_import107_rejected_lines_are_the_files_own_after_blank_lines_and_multiline_fields(store, tmp_path,
                                                                                          monkeypatch, block):
    from dashboard.importers import textio

    if block:
        monkeypatch.setattr(textio, "BLOCK_BYTES", block)
    lines = dongsi_lines()
    lines[2] = lines[2].replace('"NW"', '"N\nW"')        # a quoted field over two lines (wd, not a metric)
    lines[5] = "\n" + lines[5] + "\n\n"                   # blank lines around a record
    lines[9] = lines[9].replace(",-0.", ",BADTEMP-0.", 1)  # a TEMP that is not a number
    text = "".join(lines)
    assert "BADTEMP" in text and '"N\nW"' in text
    path = tmp_path / "dongsi_messy.csv"
    path.write_text(text, encoding="utf-8")
    rep = imp(store, import_readings, path, **WIDE)
    bad = [(ln, r) for ln, r in rejected_rows(store) if "BADTEMP" in r]
    assert bad and bad[0][0] == line_of(text, "BADTEMP") == 14  # 10 + 1 (multi-line field) + 3 blank lines
    assert rep.counts["rejected"] == 1


@pytest.mark.parametrize("block", [None, 300])
def test_import108_a_row_with_extra_fields_is_rejected_alone(store, tmp_path, monkeypatch, block):
    from dashboard.importers import textio

    if block:
        monkeypatch.setattr(textio, "BLOCK_BYTES", block)
    lines = dongsi_lines()
    lines[7] = lines[7].rstrip("\n") + ',"extra"\n'
    path = tmp_path / "extra.csv"
    path.write_text("".join(lines), encoding="utf-8")
    rep = imp(store, import_readings, path, **WIDE)
    assert rep.counts["rejected"] == 1
    assert rejected_rows(store)[0].line == 8 and "19 fields, the header has 18" in rejected_rows(store)[0].reason
    df = pd.read_csv(DONGSI)
    pm = stored(store, "aq-dongsi", "pm25")
    assert len(pm) == int(df["PM2.5"].drop(index=6).notna().sum())  # every other row is stored
    with store.connect() as conn:
        raw = conn.execute(text("SELECT raw FROM rejected")).scalar()
    assert json.loads(raw)[-1] == "extra"


def test_import109_years_0001_and_9999_are_rejected_with_a_reason(store, tmp_path):
    lines = dongsi_lines()
    lines[4] = lines[4].replace(",2013,", ",9999,", 1)
    lines[5] = lines[5].replace(",2013,", ",0001,", 1)
    path = tmp_path / "years.csv"
    path.write_text("".join(lines), encoding="utf-8")
    rep = imp(store, import_readings, path, **WIDE)
    df = pd.read_csv(DONGSI)
    bad_cells = int(df.loc[[3, 4], list(RENAME)].notna().sum().sum())
    rows = rejected_rows(store)
    assert rep.counts["rejected"] == len(rows) == bad_cells
    assert {r.line for r in rows} == {5, 6}
    assert any("in the future" in r.reason for r in rows if r.line == 5)
    assert any("before 1970" in r.reason for r in rows if r.line == 6)
    assert len(stored(store, "aq-dongsi", "pm25")) == int(df["PM2.5"].drop(index=[3, 4]).notna().sum())


def test_import110_the_first_bad_time_in_file_order_is_named(store, tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01 00:00,3\naq-dongsi,pm25,yesterday,4\n"
                    "aq-dongsi,pm25,2016-01-01 01:00,5\naq-dongsi,pm25,2016-13-45 25:00,6\n")
    with pytest.raises(ImportProblem, match=r"line 3: cannot read the date 'yesterday'"):
        imp(store, import_readings, path, timezone="Asia/Shanghai")


def test_import111_us_style_times_with_ts_format(store, tmp_path):
    path = tmp_path / "us.csv"
    path.write_text("asset,metric,ts,value\naq-dongsi,pm25,03/24/2025 11:33:07 PM,3\n"
                    "aq-dongsi,pm25,03/25/2025 12:03:00 AM,4\n")
    with pytest.raises(ImportProblem, match=r"line 2: cannot read the date '03/24/2025 11:33:07 PM'.*--ts-format"):
        imp(store, import_readings, path, timezone="Asia/Shanghai")
    rep = imp(store, import_readings, path, timezone="Asia/Shanghai", ts_format="%m/%d/%Y %I:%M:%S %p")
    assert rep.counts["accepted"] == 2
    t = int(datetime(2025, 3, 24, 15, 33, 7, tzinfo=timezone.utc).timestamp())  # 23:33:07 in Beijing
    assert stored(store, "aq-dongsi", "pm25") == {t: 3.0, t + 1793: 4.0}


@pytest.mark.parametrize("dry_run", [False, True])
def test_import112_store_with_districts_but_no_assets_rejects_every_row(store, dry_run):
    with store.begin() as conn:
        conn.execute(text("DELETE FROM assets"))
        assert conn.execute(text("SELECT count(*) FROM districts")).scalar() > 0
    rep = imp(store, import_readings, DONGSI, dry_run=dry_run, **WIDE)
    df = pd.read_csv(DONGSI)
    assert rep.counts["accepted"] == 0
    assert rep.counts["rejected"] == int(df[list(RENAME)].notna().sum().sum())
    assert all("unknown asset 'aq-dongsi'" in r for _, r in rep.problems)
    assert len(rejected_rows(store)) == (0 if dry_run else rep.counts["rejected"])


def test_import113_rejections_resolved_once_the_row_is_stored(store, tmp_path):
    from dashboard.importers.assets import import_assets

    path = tmp_path / "new_station.csv"
    path.write_text("asset,metric,ts,value\n"
                    "aq-newstation,pm25,2016-01-01T00:00:00+08:00,12\n"
                    "aq-newstation,pm25,2016-01-01T01:00:00+08:00,14\n"
                    "aq-dongsi,pm25,2016-01-01T00:00:00+08:00,-5\n")
    rep = imp(store, import_readings, path)
    assert rep.counts["rejected"] == 3 and rep.counts["accepted"] == 0
    stations = tmp_path / "stations.csv"
    stations.write_text("id,name,kind,lon,lat\naq-newstation,New station,aq_station,116.40,39.91\n")
    imp(store, import_assets, stations)
    rep = imp(store, import_readings, path)
    assert rep.counts["accepted"] == 2 and rep.counts["earlier rejections resolved"] == 2
    rows = rejected_rows(store)
    assert [r.line for r in rows] == [4] and "outside the physical range" in rows[0].reason  # still bad: kept
    assert len(stored(store, "aq-newstation", "pm25")) == 2
    once = snapshot(store)
    imp(store, import_readings, path)
    assert snapshot(store) == once


@pytest.mark.parametrize("where", ["/dev/zero", "dir"])
def test_import114_devices_and_directories_are_refused_in_one_line(store, tmp_path, where):
    path = tmp_path if where == "dir" else Path(where)
    before = snapshot(store)
    with pytest.raises(ImportProblem) as err:
        imp(store, import_readings, path, **WIDE)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert ("is a directory" if where == "dir" else "not a regular file") in msg
    assert snapshot(store) == before


def test_import115_an_overlong_line_is_refused_naming_it(store, tmp_path):
    path = tmp_path / "no_newlines.csv"
    with path.open("w") as fh:
        fh.write("asset,metric,ts,value\naq-dongsi,pm25,2016-01-01T00:00:00+08:00,3\n")
        fh.write("0" * (2 << 20))  # e.g. a file of zeros: no line break at all (2 Mi characters)
    before = snapshot(store)
    with pytest.raises(ImportProblem, match=r"no_newlines\.csv: line 3: longer than 1,048,576 characters"):
        imp(store, import_readings, path)
    assert snapshot(store) == before


def test_import116_documents_are_read_whole_only_within_a_bound(tmp_path):
    from dashboard.importers.textio import read_document

    doc = tmp_path / "entities.json.gz"
    with gzip.open(doc, "wt", encoding="utf-8") as fh:
        fh.write("[" + " " * 5000 + "]")  # 5 kB once inflated, a few bytes on disk
    assert read_document(doc).strip() == "[" + " " * 5000 + "]"
    with pytest.raises(ImportProblem, match=r"entities\.json\.gz: larger than 1,000 bytes"):
        read_document(doc, limit=1000)
    with pytest.raises(ImportProblem, match=r"/dev/zero: not a regular file"):
        read_document("/dev/zero")
    with pytest.raises(ImportProblem, match=r"is a directory"):
        read_document(tmp_path)


def test_import117_a_table_beyond_the_row_bound_is_refused(store, tmp_path, monkeypatch):
    from dashboard.importers import textio

    monkeypatch.setattr(textio, "MAX_TABLE_RECORDS", 100)
    before = snapshot(store)
    with pytest.raises(ImportProblem, match=r"PRSA_Data_Dongsi_first300h\.csv: line 102: more than 100 rows"):
        imp(store, import_readings, DONGSI, **WIDE)
    assert snapshot(store) == before


@pytest.mark.parametrize("block", [None, 100])
def test_import118_crlf_blank_records_and_late_quotes_keep_their_lines(store, tmp_path, monkeypatch, block):
    from dashboard.importers import textio

    if block:
        monkeypatch.setattr(textio, "BLOCK_BYTES", block)
    rows = ["asset,metric,ts,value"] + [f"aq-dongsi,pm25,2016-01-01T{h:02d}:00:00+08:00,{h + 1}" for h in range(12)]
    rows[4] = ",,,"                                             # line 5: a record of blanks only
    rows[6] = " , , , "                                         # line 7: the same with spaces
    rows[9] = rows[9].rsplit(",", 1)[0] + ",-10"               # line 10: out of range
    rows[11] = '"aq-dongsi",pm25,"2016-01-01T11:00:00+08:00",x'  # line 12: quotes from here on, not a number
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    rep = imp(store, import_readings, path)
    assert rep.counts["accepted"] == 8
    assert [(r.line, r.reason.split(" ")[0]) for r in rejected_rows(store)] == [(10, "value"), (12, "value")]
    assert len(stored(store, "aq-dongsi", "pm25")) == 8
