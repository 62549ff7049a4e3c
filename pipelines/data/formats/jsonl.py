"""JSONL: a line index for counting and reading back drawn rows, and a block scanner for full scans.

Counting (the lazy draw) finds the byte offset and length of every non-blank line with numpy in large blocks,
parsing nothing; a drawn row is then one seek and one ``json.loads``, its length checked against
``max_row_bytes`` before it is read. A full scan parses blocks of lines with pyarrow's JSON reader, with a
line-by-line Python fallback:

Parsing every line with ``json.loads`` costs about 10 µs a row, most of a scan of a large dump, so each block of
lines is first offered to pyarrow's (C++, multithreaded) JSON reader with an explicit schema holding only
the conversation columns, and classified with the vectorised rules of :mod:`pipelines.data.arrow`.
The fast path is taken only when it is provably aligned with the Python rules: every non-empty line of the
block starts with ``{`` and ends with ``}`` (pyarrow 26 crashes on a bare ``null`` line), and pyarrow returns
exactly one row per non-empty line. Any other block (a bad line, a value of an unexpected type, whitespace-only
lines) is scanned line by line with ``json.loads`` and :func:`~pipelines.data.prompts.classify`.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from pipelines.data.formats.base import DataFile, DataFormat, ReadResult, progress_bar
from pipelines.data.prompts import DEFAULT_FORMAT, FORMATS, RowFormat
from pipelines.data.scan import ScanResult, count_row

BLOCK_BYTES = 8 << 20         # bytes read at a time, by the line index and by the scanner
WHITESPACE = np.array([9, 11, 12, 13, 32], dtype=np.uint8)   # a line starting with one of these may be blank
ARROW_BLOCK_BYTES = 1 << 20   # pyarrow's parallel parse unit; a longer line makes it fail (-> Python fallback)
# A line with this many opening brackets may nest deeper than json.loads can parse; pyarrow skips over such a
# value in a column it ignores, so the block goes to the Python path, which reports it as `malformed`.
DEEP_BRACKETS = 900


def _scan_lines_python(scan: ScanResult, block: bytes, file_id: int, first_line: int, offset: int,
                       fmt: RowFormat = DEFAULT_FORMAT) -> None:
    start = 0
    for lineno, line in enumerate(block.split(b"\n"), first_line):
        line_start, start = start, start + len(line) + 1
        if not line.strip():
            continue
        scan.rows_read += 1
        reason, raw = parse_line(line, scan.max_row_bytes)
        if reason is not None:
            scan.skipped[reason] += 1
            continue
        count_row(scan, raw, file_id, lineno, offset + line_start, fmt)


def parse_line(line: bytes, max_bytes: Optional[int]) -> tuple[Optional[str], Any]:
    """(bad-row reason or None, parsed row) of one JSON line: ``too_large`` (not parsed) over ``max_bytes``,
    ``invalid_json`` (bad UTF-8 included), ``malformed`` for nesting too deep for the parser."""
    if max_bytes is not None and len(line) > max_bytes:
        return "too_large", None
    try:
        return None, json.loads(line)
    except ValueError:
        return "invalid_json", None
    except RecursionError:
        return "malformed", None


def _lines(block: bytes) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(start offsets, 0-based line indices) of the block's non-empty lines, and their end offsets when every
    one of them looks like a single JSON object, else None."""
    arr = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(arr)]))
    ends = ends - ((ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13))  # \r\n line endings
    filled = ends > starts
    starts, ends, index = starts[filled], ends[filled], np.flatnonzero(filled)
    objects = bool(len(starts)) and bool((arr[starts] == ord("{")).all() and (arr[ends - 1] == ord("}")).all())
    return starts, index, (ends if objects else None)


def _maybe_deep(block: bytes, starts: np.ndarray) -> bool:
    """Whether some line holds enough opening brackets to nest too deeply for json.loads."""
    arr = np.frombuffer(block, dtype=np.uint8)
    opens = ((arr == ord("[")) | (arr == ord("{"))).astype(np.int32)
    return bool(len(starts)) and bool((np.add.reduceat(opens, starts) > DEEP_BRACKETS).any())


def _arrow_schema():
    import pyarrow as pa
    return pa.schema([(key, pa.list_(pa.struct([(role, pa.string()), (content, pa.string())])))
                      for key, (role, content) in FORMATS.items()])


def _arrow_codes(block: bytes, rows: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(reason codes, source column) for the block's rows via pyarrow, or None when pyarrow cannot parse it into
    exactly ``rows`` rows."""
    import pyarrow as pa
    import pyarrow.json as pj

    from pipelines.data.arrow import columns_reason_codes

    options = pj.ParseOptions(explicit_schema=_arrow_schema(), unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(block_size=ARROW_BLOCK_BYTES),
                             parse_options=options)
    except (pa.ArrowException, ValueError):  # a bad line or an unexpected type somewhere in the block
        return None
    if table.num_rows != rows:
        return None
    return columns_reason_codes({k: table.column(k) for k in FORMATS})


def _scan_block(scan: ScanResult, block: bytes, file_id: int, first_line: int, offset: int,
                fmt: RowFormat = DEFAULT_FORMAT) -> None:
    if not block:
        return
    starts, index, ends = _lines(block)
    fast = (fmt.is_default and ends is not None and int((ends - starts).max()) <= scan.max_row_bytes
            and not _maybe_deep(block, starts))
    parsed = _arrow_codes(block, len(starts)) if fast else None
    if parsed is not None and (parsed[0] == 1).any():  # rows without a conversation may hold a `prompt`
        parsed = None
    if parsed is None:
        _scan_lines_python(scan, block, file_id, first_line, offset, fmt)
        return
    codes, source = parsed
    scan.rows_read += len(starts)
    scan.add_classified(file_id, codes, source, list(FORMATS), index + first_line, starts + offset)


def scan_jsonl(scan: ScanResult, path: Path, file_id: int, bar: Any, fmt: RowFormat = DEFAULT_FORMAT) -> None:
    """Scan a JSONL file block by block (whole lines per block), updating ``bar`` by bytes."""
    with open(path, "rb") as fh:
        offset, first_line = 0, 1
        while True:
            block = fh.read(BLOCK_BYTES)
            if not block:
                break
            if not block.endswith(b"\n"):
                block += fh.readline()
            if block.endswith(b"\n"):
                body, lines = block[:-1], block.count(b"\n")
            else:
                body, lines = block, block.count(b"\n") + 1
            _scan_block(scan, body, file_id, first_line, offset, fmt)
            offset += len(block)
            first_line += lines
            bar.update(len(block))


@dataclass
class LineIndex:
    """Every row of a JSONL file: its line's byte offset and length, and its 1-based line number."""

    offsets: np.ndarray
    lengths: np.ndarray
    lines: np.ndarray


def _blank(fh, offset: int, length: int) -> bool:
    fh.seek(offset)
    while length > 0:
        chunk = fh.read(min(length, 1 << 16))
        if not chunk or chunk.strip():
            return not chunk
        length -= len(chunk)
    return True


def index_jsonl(path: Path) -> LineIndex:
    """Byte offset, length and line number of every non-blank line; reads the file once, parses nothing."""
    newlines, firsts, size, need_first = [], [], 0, True
    with open(path, "rb") as fh:
        while True:
            block = fh.read(BLOCK_BYTES)
            if not block:
                break
            arr = np.frombuffer(block, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            if need_first:
                firsts.append(arr[:1])
            inner = nl + 1
            firsts.append(arr[inner[inner < len(arr)]])
            need_first = bool(len(nl)) and int(nl[-1]) == len(arr) - 1
            newlines.append(nl + size)
            size += len(block)
        nl = np.concatenate(newlines) if newlines else np.zeros(0, np.int64)
        starts = np.concatenate(([0], nl + 1)).astype(np.int64)
        ends = np.concatenate((nl, [size])).astype(np.int64)
        keep = starts < size                                   # no line after a final newline
        starts, ends = starts[keep], ends[keep]
        first = np.concatenate(firsts) if firsts else np.zeros(0, np.uint8)
        filled = ends > starts
        maybe_blank = np.flatnonzero(filled & np.isin(first[: len(starts)], WHITESPACE))
        for i in maybe_blank:                                   # rare: indented or whitespace-only lines
            filled[i] = not _blank(fh, int(starts[i]), int(ends[i] - starts[i]))
    rows = np.flatnonzero(filled)
    return LineIndex(offsets=starts[rows], lengths=(ends - starts)[rows], lines=rows + 1)


class JsonlFormat(DataFormat):
    """JSON lines: one row per non-blank line; row ids name the line (``file:line``)."""

    name = "jsonl"
    suffixes = (".jsonl",)

    def count_rows(self, file: DataFile) -> int:
        file.source = index_jsonl(file.path)
        return len(file.source.lines)

    def line_index(self, file: DataFile) -> LineIndex:
        """The file's line index, built on first use (a full scan never builds one)."""
        if file.source is None:
            file.rows = self.count_rows(file)
        return file.source

    def read_rows(self, file: DataFile, indices: Sequence[int],
                  max_bytes: Optional[int]) -> Iterable[tuple[int, ReadResult]]:
        index = self.line_index(file)
        with open(file.path, "rb") as fh:
            for i in indices:
                length = int(index.lengths[i])
                if max_bytes is not None and length > max_bytes:          # never read, let alone parsed
                    yield i, ("too_large", None)
                    continue
                fh.seek(int(index.offsets[i]))
                yield i, parse_line(fh.read(length), max_bytes)

    def record(self, file: DataFile, index: int) -> int:
        return int(self.line_index(file).lines[index])

    def row_label(self, name: str, record: int) -> str:
        return f"{name}:{record}"

    def scan(self, scan: ScanResult, file: DataFile, file_id: int, fmt: RowFormat = DEFAULT_FORMAT) -> None:
        with progress_bar(file.path.stat().st_size, f"scan {file.path.name}", "B") as bar:
            scan_jsonl(scan, file.path, file_id, bar, fmt)

    def read_scanned(self, file: DataFile, records: Sequence[int],
                     offsets: Sequence[int]) -> Iterator[tuple[int, Any]]:
        with open(file.path, "rb") as fh:
            for off, record in sorted(zip(offsets, records)):
                fh.seek(off)
                try:
                    yield record, json.loads(fh.readline())
                except ValueError:  # the file changed since the scan: the row is then skipped as a bad row
                    yield record, None
