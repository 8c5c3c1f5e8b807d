"""Readings import: the UCI Beijing files (wide, gz), long and wide CSV with options, malformed files."""
from __future__ import annotations

import gzip
from datetime import datetime, timezone

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
