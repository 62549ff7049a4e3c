"""The full scan (``--validate --full-scan``): classify every row of every file of a dataset.

Each file is opened by its format (:mod:`pipelines.data.formats`), which classifies its rows into one
:class:`~pipelines.data.scan.ScanResult`: a valid row keeps just enough to find it again (its file, its record
number and, for JSONL, its byte offset), nothing is tokenized and no row is kept. How fast that goes is the
format's business: JSONL is parsed in blocks of lines by pyarrow, Parquet classified column-wise by row group.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from pipelines.data.config import DEFAULT_MAX_ROW_BYTES
from pipelines.data.formats import DataFile, open_file
from pipelines.data.prompts import DEFAULT_FORMAT, RowFormat
from pipelines.data.scan import DataFileError, ScanResult, resolve_input_paths

__all__ = ["DataFileError", "read_rows", "scan_dataset", "scan_files"]


def scan_files(files: Sequence[DataFile], fmt: RowFormat = DEFAULT_FORMAT,
               max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> ScanResult:
    """Scan every row of already opened files (a :class:`~pipelines.data.index.DataIndex`'s, for instance)."""
    scan = ScanResult(sources=list(files), max_row_bytes=max_row_bytes)
    for file_id, file in enumerate(scan.sources):
        file.format.scan(scan, file, file_id, fmt)
    scan.freeze()
    return scan


def scan_dataset(pattern: str, fmt: RowFormat = DEFAULT_FORMAT, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
                 files: Optional[list[Path]] = None) -> ScanResult:
    """Scan every row of every file a dataset path (file or glob) matches, or of ``files`` (``--full-scan``);
    raises DataFileError for an unreadable file or an unsupported file type."""
    paths = resolve_input_paths(pattern) if files is None else files
    return scan_files([open_file(p) for p in paths], fmt, max_row_bytes)


def read_rows(scan: ScanResult, positions: Iterable[int]) -> dict[int, Any]:
    """Raw rows for valid-row positions of a scan, read straight from the files: {position: row}."""
    by_file: dict[int, list[int]] = {}
    for pos in positions:
        by_file.setdefault(int(scan.file_ids[pos]), []).append(int(pos))
    out: dict[int, Any] = {}
    for fid, poss in by_file.items():
        file = scan.sources[fid]
        key_of = {int(scan.records[p]): p for p in poss}
        offsets = [int(scan.offsets[p]) for p in poss]
        for record, raw in file.format.read_scanned(file, [int(scan.records[p]) for p in poss], offsets):
            out[key_of[record]] = raw
    return out
