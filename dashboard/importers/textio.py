"""Reading a city's text files safely: regular files only, bounded lines, records with their real line.

Every importer and ``panorama ingest`` read through here, so a device (``/dev/zero``), a directory,
a file without line breaks or a runaway quoted field ends in one clear error, never in unbounded
memory. Line numbers are the file's own (1 = the header), also after blank lines and quoted
fields that span several lines.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import stat
from collections.abc import Iterator
from pathlib import Path

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


def bounded_lines(fh, path) -> Iterator[str]:
    """Yield the lines of ``fh``, each read in bounded memory; refuse a line over MAX_LINE_CHARS."""
    n = 0
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
    old = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_FIELD_CHARS)
        with open_text(path, encoding) as fh:
            reader = csv.reader(bounded_lines(fh, path), delimiter=delimiter, skipinitialspace=skipinitialspace)
            start = 1
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
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise ImportProblem(f"{path}: not valid {encoding} (byte {exc.start} of a block: {exc.reason}); "
                          "pass --encoding (e.g. latin-1)") from None
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError, OSError) as exc:
        raise ImportProblem(f"{path}: cannot be read ({exc})") from None
    finally:
        csv.field_size_limit(old)


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
