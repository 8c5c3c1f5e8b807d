"""Reading a city's text files safely: regular files only, bounded lines, records with their real line.

Every importer and ``panorama ingest`` read through here, so a device (``/dev/zero``), a directory,
a file without line breaks or a runaway quoted field ends in one clear error, never in unbounded
memory. Line numbers are the file's own (1 = the header), also after blank lines and quoted
fields that span several lines.
"""
from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gzip
import io
import lzma
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

#: Longest line (characters) a text file may have; a longer one is refused, naming its line.
MAX_LINE_CHARS = 1 << 20
#: Longest field (characters), also when a quoted field spans several lines.
MAX_FIELD_CHARS = 1 << 20
#: Most fields a record may have.
MAX_FIELDS = 10_000
#: Most records a table read whole (one import, one transaction) may have.
MAX_TABLE_RECORDS = 2_000_000
#: Largest document read whole (JSON, GeoJSON): bytes on disk, and once decompressed.
MAX_DOCUMENT_BYTES = 512 << 20
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class ImportProblem(ValueError):
    """The file cannot be imported as a whole; nothing was written."""


def check_file(path) -> Path:
    """Return ``path`` if it is a regular file; raise :class:`ImportProblem` (one line) otherwise."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ImportProblem(f"{p}: no such file") from None
    except OSError as exc:
        raise ImportProblem(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise ImportProblem(f"{p}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise ImportProblem(f"{p}: not a regular file (a device, pipe or socket); give a file")
    return p


def text_encoding(encoding: str) -> str:
    """Return the codec to read ``encoding`` with: UTF-8 with or without a byte-order mark."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig") else encoding


def open_text(path, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a regular (optionally .gz/.bz2/.xz-compressed) file as text, line endings kept."""
    p = check_file(path)
    opener = _OPENERS.get(p.suffix.lower(), open)
    return opener(p, "rt", encoding=text_encoding(encoding), newline="")


def bounded_lines(fh, path, first: int = 1) -> Iterator[str]:
    """Yield the lines of ``fh`` (the first is line ``first``), each read in bounded memory; refuse a
    line over MAX_LINE_CHARS."""
    n = first - 1
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE_CHARS:
            raise ImportProblem(f"{path}: line {n}: longer than {MAX_LINE_CHARS:,} characters "
                              "(not a line-oriented text file?)")
        yield line


def records(path, delimiter: str = ",", encoding: str = "utf-8",
            skipinitialspace: bool = True) -> Iterator[tuple[int, list[str]]]:
    """Yield (line where the record starts, fields) of every non-empty CSV record, the header first.

    Raises :class:`ImportProblem` for a file that is not a regular file, not in ``encoding``, or has
    a line, a field or a record beyond the bounds above.
    """
    with _read_errors(path, encoding), open_text(path, encoding) as fh:
        yield from _records(fh, path, delimiter, skipinitialspace, 1)


@contextlib.contextmanager
def _read_errors(path, encoding: str):
    """Turn decoding and decompression errors into one-line :class:`ImportProblem`; bound csv fields."""
    old = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_FIELD_CHARS)
        yield
    except UnicodeDecodeError as exc:
        raise ImportProblem(f"{path}: not valid {encoding} (byte {exc.start} of a block: {exc.reason}); "
                            "pass --encoding (e.g. latin-1)") from None
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError, OSError) as exc:
        raise ImportProblem(f"{path}: cannot be read ({exc})") from None
    finally:
        csv.field_size_limit(old)


def _records(fh, path, delimiter: str, skipinitialspace: bool, first: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, fields) of the non-empty records of the text stream ``fh`` starting at line ``first``."""
    reader = csv.reader(bounded_lines(fh, path, first), delimiter=delimiter, skipinitialspace=skipinitialspace)
    start = first
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportProblem(f"{path}: line {start}: not a readable CSV record ({exc})") from None
        if len(rec) > MAX_FIELDS:
            raise ImportProblem(f"{path}: line {start}: {len(rec):,} fields (at most {MAX_FIELDS:,})")
        if rec and any(rec):
            yield start, rec
        start = first + reader.line_num


#: Bytes read at a time by :func:`table_chunks` (a block is parsed at once: at most about this much text).
BLOCK_BYTES = 16 << 20
_SAFE = "\n\r\",;\t| "


def table_chunks(path, delimiter: str = ",", encoding: str = "utf-8", on_width=None,
                 rows: int = 200_000) -> Iterator:
    """Yield a CSV's column names, then DataFrames (text columns and ``line``) of its records in order.

    Read in blocks of BLOCK_BYTES, so memory is bounded whatever the file; ``line`` is where each
    record starts. A record whose fields are all blank is left out; one with another number of fields
    than the header is passed to ``on_width(line, fields, width)`` (raise there to refuse the file)
    and left out. Blocks without quotes are parsed by pandas' C parser; from the first quote (a quoted
    field may span lines) on, record by record with the csv module. DataFrames have at most ``rows`` rows.
    """
    p = check_file(path)
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ImportProblem(f"the delimiter must be one character (not a quote or line break), not {delimiter!r}")
    enc = text_encoding(encoding)
    try:
        fast = _SAFE.encode("utf-8" if enc == "utf-8-sig" else enc) == _SAFE.encode("ascii")
    except (LookupError, UnicodeError):
        raise ImportProblem(f"unknown encoding {encoding!r}") from None
    opener = _OPENERS.get(p.suffix.lower(), open)
    with _read_errors(path, encoding), opener(p, "rb") as fh:
        buf = fh.read(BLOCK_BYTES)
        if enc == "utf-8-sig" and buf.startswith(codecs.BOM_UTF8):
            buf, enc = buf[len(codecs.BOM_UTF8):], "utf-8"
        elif enc == "utf-8-sig":
            enc = "utf-8"
        nl = buf.find(b"\n")
        head = buf if nl < 0 else buf[:nl]
        if nl < 0 and len(buf) > MAX_LINE_CHARS:
            raise ImportProblem(f"{path}: line 1: longer than {MAX_LINE_CHARS:,} characters "
                                "(not a line-oriented text file?)")
        if not fast or head.count(b'"') % 2 or b"\r" in head.rstrip(b"\r"):
            yield from _slow_table(path, _text(buf, fh, enc), 1, None, delimiter, on_width, rows)
            return
        fields = next(csv.reader([head.decode(enc).rstrip("\r")], delimiter=delimiter, skipinitialspace=True), [])
        if not any(fields):
            if not buf.strip():
                raise ImportProblem(f"{path}: empty file")
            yield from _slow_table(path, _text(buf, fh, enc), 1, None, delimiter, on_width, rows)
            return
        cols = header_names(fields)
        yield cols
        if len(cols) == 1:
            yield from _slow_table(path, _text(buf[nl + 1:] if nl >= 0 else b"", fh, enc), 2, cols, delimiter,
                                   on_width, rows)
            return
        carry, line, eof = (buf[nl + 1:] if nl >= 0 else b""), 2, nl < 0
        while True:
            blk = b"" if eof else fh.read(BLOCK_BYTES)
            eof = eof or not blk
            buf = carry + blk
            if not buf:
                return
            cut = len(buf) if eof else buf.rfind(b"\n") + 1
            if cut == 0:
                if len(buf) > MAX_LINE_CHARS:
                    raise ImportProblem(f"{path}: line {line}: longer than {MAX_LINE_CHARS:,} characters "
                                        "(not a line-oriented text file?)")
                carry = buf
                continue
            part, carry = buf[:cut], buf[cut:]
            if not part.endswith(b"\n"):
                part += b"\n"
            arr = np.frombuffer(part, dtype=np.uint8)
            cr = np.flatnonzero(arr == 13)
            if b'"' in part or (cr.size and (arr[np.minimum(cr + 1, len(arr) - 1)] != 10).any()):
                yield from _slow_table(path, _text(buf, fh, enc), line, cols, delimiter, on_width, rows)
                return
            for frame in _fast_block(path, arr, part, line, cols, delimiter, enc, on_width):
                for k in range(0, len(frame), rows):
                    yield frame.iloc[k:k + rows].reset_index(drop=True)
            line += int((arr == 10).sum())
            if eof:
                return


def _text(head: bytes, rest, encoding: str) -> io.TextIOBase:
    """Return a text stream of ``head`` followed by the rest of the binary stream ``rest``."""
    return io.TextIOWrapper(io.BufferedReader(_Chain(head, rest)), encoding=encoding, newline="")


class _Chain(io.RawIOBase):
    """Bytes already read, then the rest of a binary stream."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if len(self.head):
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[:len(data)] = data
        return len(data)


def _slow_table(path, fh, first: int, cols, delimiter: str, on_width, rows: int):
    """The csv-module reader of :func:`table_chunks` (names first when ``cols`` is None)."""
    it = _records(fh, path, delimiter, True, first)
    if cols is None:
        head = next(it, None)
        if head is None:
            raise ImportProblem(f"{path}: empty file")
        cols = header_names(head[1])
        yield cols
    width, lines, recs = len(cols), [], []
    for ln, rec in it:
        if not any(x.strip() for x in rec):
            continue
        if len(rec) != width:
            if on_width is not None:
                on_width(ln, rec, width)
            continue
        lines.append(ln)
        recs.append(rec)
        if len(recs) >= rows:
            yield _frame(recs, lines, cols)
            lines, recs = [], []
    if recs:
        yield _frame(recs, lines, cols)


def _frame(recs: list, lines: list, cols: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(recs, columns=cols, dtype=object)
    frame["line"] = np.array(lines, dtype=np.int64)
    return frame


def _fast_block(path, arr: np.ndarray, part: bytes, first: int, cols: list[str], delimiter: str, enc: str,
                on_width):
    """Parse a block of whole lines without quotes (pandas' C parser); yield its DataFrame."""
    ends = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    long = np.flatnonzero(lengths > MAX_LINE_CHARS)
    if long.size:
        raise ImportProblem(f"{path}: line {first + int(long[0])}: longer than {MAX_LINE_CHARS:,} characters "
                            "(not a line-oriented text file?)")
    dpos = np.flatnonzero(arr == ord(delimiter))
    fields = np.searchsorted(dpos, ends) - np.searchsorted(dpos, starts) + 1
    # a record of blanks only (delimiters, spaces): looked at only among lines with little else in them
    blank = np.zeros(len(ends), dtype=bool)
    for i in np.flatnonzero(lengths - (fields - 1) <= 2 * len(cols) + 2):
        blank[i] = not part[starts[i]:ends[i]].translate(None, f"{delimiter} \t\r".encode())
    width = len(cols)
    good = (fields == width) & ~blank
    for i in np.flatnonzero((fields != width) & ~blank):
        rec = next(csv.reader([part[starts[i]:ends[i]].decode(enc).rstrip("\r")], delimiter=delimiter,
                              skipinitialspace=True))
        if on_width is not None:
            on_width(first + int(i), rec, width)
    if not good.any():
        return
    data = part if good.all() else arr[np.repeat(good, lengths + 1)].tobytes()
    frame = pd.read_csv(io.BytesIO(data), sep=delimiter, header=None, names=list(range(width)), dtype=str,
                        na_filter=False, encoding=enc, skipinitialspace=True, skip_blank_lines=False,
                        quoting=csv.QUOTE_NONE, engine="c")
    if len(frame) != int(good.sum()):
        raise ImportProblem(f"{path}: lines {first}–{first + len(ends) - 1}: not readable as CSV")
    frame.columns = cols
    frame["line"] = first + np.flatnonzero(good)
    yield frame


def header_names(fields: list[str]) -> list[str]:
    """Return stripped column names, a repeated one numbered as pandas does (``a``, ``a.1``)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for f in fields:
        name = f.strip()
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def read_document(path, encoding: str = "utf-8", limit: int | None = None) -> str:
    """Return a whole-file document (JSON, GeoJSON) as text, refusing one over ``limit`` bytes.

    A regular file only (:func:`check_file`); read with a bound, so a file that grows while read, or a
    compressed one that inflates, never takes more than ``limit`` (default MAX_DOCUMENT_BYTES).
    """
    limit = MAX_DOCUMENT_BYTES if limit is None else limit
    p = check_file(path)
    opener = _OPENERS.get(p.suffix.lower(), open)
    try:
        with opener(p, "rb") as fh:
            data = fh.read(limit + 1)
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError, OSError) as exc:
        raise ImportProblem(f"{p}: cannot be read ({exc})") from None
    if len(data) > limit:
        raise ImportProblem(f"{p}: larger than {limit:,} bytes; split it into smaller files")
    try:
        return data.decode(text_encoding(encoding))
    except UnicodeDecodeError as exc:
        raise ImportProblem(f"{p}: not valid {encoding} (byte {exc.start}: {exc.reason})") from None
