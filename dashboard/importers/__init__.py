"""Importers: bring a city's own files into the store, one transaction per file.

Each importer reads a file into frames (pure, no store), checks it, and writes it inside the
transaction :func:`run_import` opens. A file that cannot be imported raises :class:`ImportProblem`
naming the file and the line or feature; the transaction is rolled back and the store is exactly as
it was. Rows that are readable but invalid go to the ``rejected`` table with their line.
``--dry-run`` runs the same code and rolls back at the end, so its counts are the real ones.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from dashboard.importers import textio
from dashboard.importers.textio import ImportProblem, check_file, table_chunks  # noqa: F401
from dashboard.store.ingest import AssetIndex, RejectionLedger, forget_repeated_rejections  # noqa: F401
from dashboard.store.ingest import MAX_RAW_CHARS, MAX_REASON_CHARS, clip_text, source_text
from dashboard.store import schema as _schema
from dashboard.store.schema import rejected

#: How many problems a report keeps to show.
MAX_SHOWN = 20


#: Deepest nesting of JSON input taken (an NGSI notification needs about 6 levels).
MAX_JSON_DEPTH = 32


def decode_json(payload: bytes | str, what: str = "payload") -> object:
    """Parse JSON input, raising :class:`ImportProblem` with a reason for a person when it cannot be taken.

    Refused: bytes that are not UTF-8, text that is not JSON, and JSON nested deeper than
    :data:`MAX_JSON_DEPTH` levels (such input would exhaust the stack of any later step).
    """
    try:
        text = payload.decode("utf-8-sig") if isinstance(payload, (bytes, bytearray)) else payload
    except UnicodeDecodeError:
        raise ImportProblem(f"{what} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportProblem(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") \
            from None
    except RecursionError:
        raise ImportProblem(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    check_depth(data, what)
    return data


def check_depth(data, what: str = "input") -> None:
    """Raise :class:`ImportProblem` when lists and objects in ``data`` nest deeper than :data:`MAX_JSON_DEPTH`."""
    stack = [(data, 1)]
    while stack:
        v, depth = stack.pop()
        items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if items is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ImportProblem(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((c, depth + 1) for c in items)


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    kind: str
    file: str
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    crs: str | None = None
    fields: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[tuple[int | None, str]] = field(default_factory=list)  # (line/feature, reason)

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``key``."""
        self.counts[key] = self.counts.get(key, 0) + int(n)

    def problem(self, line: int | None, reason: str) -> None:
        """Keep one of the first problems to show."""
        if len(self.problems) < MAX_SHOWN:
            self.problems.append((line, reason))

    def as_json(self) -> dict:
        """Return the report as a JSON-able dict."""
        return {"kind": self.kind, "file": self.file, "dry_run": self.dry_run, "counts": self.counts,
                "crs": self.crs, "fields": self.fields, "warnings": self.warnings,
                "problems": [{"line": ln, "reason": r} for ln, r in self.problems]}


def import_engine(url: str, dry_run: bool = False) -> tuple[Engine, str | None]:
    """Return (the engine an import of the store at ``url`` runs on, a note for the report).

    A dry run writes nothing anywhere: when ``url`` is a SQLite file that does not exist yet, the
    file (and its folder) is not created; the import is checked against an empty store in memory.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import StaticPool

    from dashboard.store.schema import create_schema, make_engine

    u = make_url(url)
    if dry_run and u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
            and not Path(u.database).exists():
        eng = make_engine("sqlite://", poolclass=StaticPool)
        create_schema(eng)
        return eng, f"the store {u.database} does not exist yet: checked against an empty store, nothing created"
    return make_engine(url), None


def run_import(engine: Engine, work: Callable[[Connection], ImportReport], dry_run: bool = False) -> ImportReport:
    """Run ``work(conn)`` in one transaction: commit, or roll back on error or in a dry run.

    A dry run never migrates: a store whose schema is not this release's is refused with a message.
    """
    from dashboard.store.schema import create_schema

    if dry_run:
        from dashboard.store.migrate import current, head

        have = current(engine)
        if have != head():
            raise ImportProblem(f"the store's schema is {have or 'not created yet'}, this release needs {head()}: "
                                "run `panorama db upgrade` first (a dry run changes nothing)")
    else:
        create_schema(engine)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            before = conn.execute(select(func.coalesce(func.max(rejected.c.id), 0))).scalar()
            report = work(conn)
            _forget_repeated_rejections(conn, before, report)
        except BaseException:
            trans.rollback()
            raise
        if dry_run:
            trans.rollback()
            report.dry_run = True
        else:
            trans.commit()
    return report


def _forget_repeated_rejections(conn: Connection, before: int, report: ImportReport) -> None:
    """Drop rejections this import added that an earlier run already recorded (re-runs change nothing)."""
    n = forget_repeated_rejections(conn, before)
    if n:
        report.count("rejections already recorded", n)


class ConnAssetIndex(AssetIndex):
    """An :class:`AssetIndex` read through an open transaction (sees assets added in it)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.engine = None
        self.reload()

    def reload(self) -> None:
        """Read every asset through the transaction."""
        rows = self.conn.execute(
            select(_schema.assets.c.pk, _schema.assets.c.id, _schema.assets.c.kind, _schema.assets.c.district_id,
                   _schema.assets.c.attributes)).all()
        from dashboard.metrics import DERIVED_ATTRS

        self.frame = pd.DataFrame(
            {"pk": np.array([r.pk for r in rows], dtype=np.int64), "kind": [r.kind for r in rows],
             "district": [r.district_id or "" for r in rows],
             **{a: np.array([float((r.attributes or {}).get(a, d)) for r in rows], dtype=float)
                for a, d in DERIVED_ATTRS.items()}},
            index=pd.Index([r.id for r in rows], name="id"))
        self.by_pk = self.frame.reset_index().set_index("pk")
        self.loaded_at = time.time()


def store_rejections(conn: Connection, source: str, rows: list[tuple[int | None, object, str]],
                     report: ImportReport) -> None:
    """Keep rows rejected by an importer (line, raw input, reason) in the ``rejected`` table."""
    if not rows:
        return
    now = int(time.time())
    conn.execute(rejected.insert(), [
        {"received_at": now, "source": source_text(source), "line": line,
         "raw": _raw_text(raw), "reason": clip_text(reason, MAX_REASON_CHARS)} for line, raw, reason in rows])
    report.count("rejected", len(rows))
    for line, _raw, reason in rows:
        report.problem(line, clip_text(reason, MAX_REASON_CHARS))


def _raw_text(raw) -> str:
    """Return the raw input of a rejection as storable text, cut to a few KB (:func:`clip_text`)."""
    if isinstance(raw, bytes):
        head = raw[:MAX_RAW_CHARS].decode("utf-8", "backslashreplace")
        return clip_text(head if len(raw) <= MAX_RAW_CHARS else f"{head}… [cut: {len(raw):,} bytes in all]",
                         len(head) + 50)
    try:
        text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):  # a circular or too deeply nested structure
        text = f"<a {type(raw).__name__} that cannot be written as JSON>"
    return clip_text(text)


def read_table(path, delimiter: str = ",", encoding: str = "utf-8", bad_rows: list | None = None) -> pd.DataFrame:
    """Read a CSV as text (UTF-8 with or without BOM by default), with a ``line`` column.

    Read in bounded blocks (:func:`dashboard.importers.textio.table_chunks`): ``line`` is where
    the record starts in the file, also after blank lines and multi-line quoted fields. A row with
    fewer fields than the header (a truncated file), a file that is not a regular file or not in the
    given encoding raises :class:`ImportProblem` naming the file and line. A row with more fields
    than the header is refused too; or, given a list ``bad_rows``, left out and appended to it as
    (line, raw fields, reason) for the importer to reject.
    """
    def on_width(line: int, rec: list[str], width: int) -> None:
        if len(rec) < width:
            raise ImportProblem(f"{path}: line {line}: {len(rec)} of {width} fields "
                                "(a truncated file or a wrong delimiter?)")
        if bad_rows is None:
            raise ImportProblem(f"{path}: line {line}: {len(rec)} fields, the header has {width} "
                                "(a wrong delimiter or an unquoted delimiter in a value?)")
        bad_rows.append((line, rec, (f"{len(rec)} fields, the header has {width} "
                                     "(an unquoted delimiter in a value?)")))

    it = table_chunks(path, delimiter, encoding, on_width)
    cols = next(it)
    frames, n = [], 0
    for f in it:
        if n + len(f) > textio.MAX_TABLE_RECORDS:
            raise ImportProblem(f"{path}: line {int(f['line'].iloc[textio.MAX_TABLE_RECORDS - n])}: more than "
                                f"{textio.MAX_TABLE_RECORDS:,} rows in one file; split it (long-form readings: "
                                "`panorama ingest` streams any size)")
        n += len(f)
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame({**{c: pd.Series([], dtype=object) for c in cols}, "line": np.array([], dtype=np.int64)})
    if frame.shape[1] == 2 and delimiter not in (";", "\t") and frame.columns[0].count(";") >= 1:
        raise ImportProblem(f"{path}: one column {frame.columns[0]!r}: the delimiter looks like ';' "
                            "(pass --delimiter ';')")
    return frame


def pick_column(path, frame_columns, wanted: str | None, candidates: tuple[str, ...], what: str,
                required: bool = True) -> str | None:
    """Return the column named ``wanted`` or the first of ``candidates`` present (case-insensitive)."""
    cols = [c for c in frame_columns if c not in ("line", "geometry")]
    lower = {c.lower(): c for c in cols}
    if wanted:
        if wanted in cols:
            return wanted
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        raise ImportProblem(f"{path}: no column {wanted!r} for the {what}; columns are {', '.join(cols)}")
    for c in candidates:
        if c.lower() in lower:
            return lower[c.lower()]
    if required:
        raise ImportProblem(f"{path}: missing the {what} column (tried {', '.join(candidates)}; "
                            f"columns are {', '.join(cols)}); name it with an option")
    return None
