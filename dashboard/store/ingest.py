"""The one validated write path for readings: check, store, keep `latest` and rollups current.

Every source (simulator, replay, CSV, MQTT, NGSI-LD) ends here. A row is either stored,
recognised as already stored (same asset, metric, time and value: idempotent), or kept in
the ``rejected`` table with the reason and the raw input. Nothing is dropped silently.

The :class:`Ingestor` runs the steps; each lives by concern:

- :mod:`dashboard.store.ingest_checks`: parsing and checking readings, the rejections and their ledger
- :mod:`dashboard.store.ingest_writers`: readings and ``latest``, per engine (PostgreSQL's binary COPY)
- :mod:`dashboard.store.ingest_rollups`: the per-asset and per-district rollups, the domains' hooks
"""
from __future__ import annotations

import json
import time
from typing import Iterable

import pandas as pd
from sqlalchemy import Connection, Engine

from dashboard.store import ingest_rollups, ingest_writers
from dashboard.store.ingest_checks import (
    MAX_FUTURE_S,
    MAX_RAW_CHARS,
    MAX_REASON_CHARS,
    AssetIndex,
    Batch,
    Codes,
    IngestResult,
    RejectionLedger,
    check_readings,
    clip_text,
    forget_repeated_rejections,
    last_rejection_id,
    raw_records,
    record_rejections,
    source_text,
)
from dashboard.store.schema import rejected

__all__ = [  # what the importers, the feeds and the services' ingest use (the checks' names re-exported)
    "CHUNK_ROWS", "MAX_FUTURE_S", "MAX_RAW_CHARS", "MAX_REASON_CHARS", "WRITER_TURN_S", "AssetIndex",
    "IngestResult", "Ingestor", "RejectionLedger", "clip_text", "forget_repeated_rejections", "ingest_csv",
    "last_rejection_id", "raw_records", "read_readings_csv", "source_text",
]


class Ingestor:
    """Validate readings and write them, with `latest` and the rollups, in one transaction."""

    def __init__(self, engine: Engine, index: AssetIndex | None = None):
        self.engine = engine
        self.index = index or AssetIndex(engine)
        self._codes: Codes | None = None
        self.ledger: RejectionLedger | None = None  # told which rows got stored (see RejectionLedger)

    def _asset_codes(self) -> Codes:
        """Return the per-asset arrays of the index's current asset frame.

        One immutable object per asset frame, swapped in with one assignment. A batch keeps the one
        it was validated against (``Batch.codes``), so a validation in another thread
        (:meth:`ingest_many`) that reloads the index never changes a batch being written.
        """
        f = self.index.frame
        codes = self._codes
        if codes is None or codes.frame is not f:
            codes = Codes(f)
            self._codes = codes
        return codes

    def _validate(self, frame: pd.DataFrame, now: float | None = None):
        """Return (:class:`Batch` of the rows to store, reason per input row): see :func:`check_readings`."""
        return check_readings(frame, now, self.index, self._asset_codes)

    # ---------------------------------------------------------------- writing
    def ingest(self, data, source: str = "api", now: float | None = None,
               conn: Connection | None = None) -> IngestResult:
        """Validate and store readings; ``data`` is a DataFrame or an iterable of dicts.

        Parameters
        ----------
        data : DataFrame or iterable of mappings with asset, metric, ts, value (and optional line)
        source : where the readings came from, kept with every rejection
        now : the current time (epoch seconds) for the future-timestamp check
        conn : an open transaction to write in (default: a new one, committed here)
        """
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
        if frame.empty:
            return IngestResult()
        good, reason = self._validate(frame, now)
        if conn is None:
            with self.engine.begin() as c:
                return self._write(c, frame, good, reason, source)
        return self._write(conn, frame, good, reason, source)

    def ingest_many(self, frames: Iterable, source: str = "api", now: float | None = None,
                    conn: Connection | None = None, each=None) -> IngestResult:
        """Ingest a sequence of batches (DataFrames or lists of dicts) through :meth:`ingest`'s path.

        The next batch is produced (read, generated) and validated in a worker thread while the
        current one is written, so the client's work overlaps the database's. Each batch is one
        transaction of its own, or all go into ``conn`` when given. An error producing a batch is
        raised here, after the batches before it; ``each(result)`` is called after every batch.
        """
        from concurrent.futures import ThreadPoolExecutor

        it = iter(frames)

        def produce():
            data = next(it, None)
            if data is None:
                return None
            frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
            if frame.empty:
                return frame, None, None
            return (frame, *self._validate(frame, now))

        total = IngestResult()
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-validate") as pool:
            nxt = pool.submit(produce)
            while (item := nxt.result()) is not None:
                nxt = pool.submit(produce)
                frame, good, reason = item
                if good is None:
                    continue
                if conn is None:
                    with self.engine.begin() as c:
                        res = self._write(c, frame, good, reason, source)
                else:
                    res = self._write(conn, frame, good, reason, source)
                total += res
                if each is not None:
                    each(res)
        return total

    def _write(self, conn, frame, good: Batch, reason, source) -> IngestResult:
        result = IngestResult()
        if len(good):
            good, conflicts = ingest_writers.drop_stored(conn, good)
            for row, text in conflicts:
                reason[row] = text
            if len(good):
                payloads: list = []
                # the rollups' arrays are computed while the server stores the readings
                ingest_writers.insert_readings(
                    conn, good, meanwhile=lambda: payloads.append(ingest_rollups.rollup_payloads(good)))
                ingest_writers.update_latest(conn, good)
                ingest_rollups.write_rollups(conn, good, payloads[0])
                ingest_rollups.run_hooks(conn, good)
            result.accepted = len(good)
        if self.ledger is not None:
            self.ledger.stored(frame, reason)
        record_rejections(conn, frame, reason, source, result)
        return result


def read_readings_csv(path, chunksize: int | None = None, bad_rows: list | None = None):
    """Read a long-format readings CSV (asset_id, metric, ts, value) as text, keeping line numbers.

    Read record by record in bounded memory (a device, a directory or an over-long line is refused);
    ``line`` is where each record starts in the file, also after blank lines and quoted fields that
    span lines. A record with another number of fields than the header is appended to ``bad_rows``
    as (line, fields, reason), or refuses the file when ``bad_rows`` is None.
    """
    from dashboard.importers.textio import table_chunks

    def on_width(line: int, rec: list[str], width: int) -> None:
        reason = f"{len(rec)} fields, the header has {width}"
        if bad_rows is None:
            raise ValueError(f"{path}: line {line}: {reason}")
        bad_rows.append((line, rec, reason))

    it = table_chunks(path, on_width=on_width, rows=chunksize or 200_000)
    found = next(it)
    cols = ["asset" if c == "asset_id" else c for c in found]
    missing = {"asset", "metric", "ts", "value"} - set(cols)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                         f"(need asset_id, metric, ts, value; found {', '.join(found)})")
    for chunk in it:
        chunk.columns = [*cols, "line"]
        yield chunk


#: Rows of a file stored per transaction: between two, other writers get the store.
CHUNK_ROWS = 200_000
#: Pause after each chunk on SQLite: longer than the 100 ms a writer waiting for the lock sleeps between
#: two tries (SQLite's busy handler), so every waiting writer gets its turn before the next chunk.
WRITER_TURN_S = 0.12


def ingest_csv(engine: Engine, path, source: str | None = None, now: float | None = None,
               chunk_rows: int | None = None, each=None) -> IngestResult:
    """Ingest a long-format CSV file: read it whole first, then store it ``chunk_rows`` rows a transaction.

    A file that cannot be read (a missing column, bad UTF-8, a malformed line anywhere in it) stores
    nothing: a file of more than one chunk is read through once before its first chunk is written.
    Between two chunks other writers (``POST /ngsi-ld/notify``, the simulator, MQTT) get the store, so a
    large file no longer locks them out for its whole length. Should the store fail midway, the chunks
    committed stay; the same file run again stores the rest once (stored readings are recognised).
    ``each(result)`` is called after every chunk is committed. ``chunk_rows`` defaults to :data:`CHUNK_ROWS`.

    A row with the wrong number of fields is rejected on its own, like any other bad row. Running
    the same file again records no rejection twice, and clears earlier rejections of rows now stored.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    source = source or str(path)
    bad: list = []
    chunks = read_readings_csv(path, chunk_rows, bad_rows=bad)
    first = next(chunks, None)
    single = first is None or next(chunks, None) is None
    if single:
        batches: Iterable = [] if first is None else [first]  # one chunk: read once, one transaction
    else:
        del first
        for _ in chunks:  # raises on the first unreadable part, before anything is written
            pass
        bad.clear()  # the second read finds them again
        batches = read_readings_csv(path, chunk_rows, bad_rows=bad)
    turn = WRITER_TURN_S if engine.dialect.name == "sqlite" and not single else 0.0

    def after(result: IngestResult) -> None:
        if each is not None:
            each(result)
        if turn:
            time.sleep(turn)  # the lock is free: a writer waiting for it takes it now

    ing = Ingestor(engine)
    with engine.connect() as conn:
        ing.ledger = RejectionLedger(conn, source)
    result = ing.ingest_many(batches, source=source, now=now, each=after)
    with engine.begin() as conn:
        if bad:
            received = int(time.time())
            conn.execute(rejected.insert(), [
                {"received_at": received, "source": source[:500], "line": line,
                 "raw": json.dumps(rec, ensure_ascii=False), "reason": reason}
                for line, rec, reason in bad])
            result.rejected += len(bad)
            result.reasons = sorted(result.reasons + [(ln, r) for ln, _, r in bad[:20]],
                                    key=lambda x: (x[0] is None, x[0] or 0))[:20]
        ing.ledger.resolve(conn)
        forget_repeated_rejections(conn, ing.ledger.before)
    return result
