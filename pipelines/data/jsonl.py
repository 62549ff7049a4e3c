"""JSONL scanning: blocks of lines parsed by pyarrow's JSON reader, with a line-by-line Python fallback.

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
from typing import Optional

import numpy as np

from pipelines.data.prompts import DEFAULT_FORMAT, FORMATS, RowFormat
from pipelines.data.scan import ScanResult, count_row

BLOCK_BYTES = 8 << 20
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
    """(reason codes, uses-second-column mask) for the block's rows via pyarrow, or None when pyarrow cannot
    parse it into exactly ``rows`` rows."""
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
    codes, second = parsed
    scan.rows_read += len(starts)
    scan.add_classified(file_id, codes, second, list(FORMATS), index + first_line, starts + offset)


def scan_jsonl(scan: ScanResult, path, file_id: int, bar, fmt: RowFormat = DEFAULT_FORMAT) -> None:
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
