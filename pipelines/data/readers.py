"""Input files: scan them once cheaply, then read back only the rows that were sampled.

A scan walks every file of a dataset, classifies each row (see :func:`pipelines.data.prompts.classify`)
and keeps, for each valid row, just enough to find it again: its file, its record number and (JSONL) its byte
offset. Nothing is tokenized and no row is kept. JSONL is streamed in blocks of lines
(:mod:`pipelines.data.jsonl`), Parquet by row group, reading the conversation column only
(:mod:`pipelines.data.parquet`). A ``.json`` file has no streaming reader in the standard library, so it
is loaded whole (a ``.json`` file holding JSON lines is read as JSONL). Reading back seeks to the sampled
JSONL lines, and decodes only the Parquet row groups that hold sampled rows.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from pipelines.data.jsonl import scan_jsonl
from pipelines.data.config import DEFAULT_MAX_ROW_BYTES
from pipelines.data.prompts import DEFAULT_FORMAT, FORMATS, RowFormat
from pipelines.data.scan import DataFileError, ScanResult, count_row, resolve_input_paths

logger = logging.getLogger(__name__)

PROGRESS_DELAY_S = 1.0  # a progress bar appears only once a scan has taken this long


def _progress(total: int, desc: str, unit: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, delay=PROGRESS_DELAY_S, leave=False)


def _scan_jsonl(scan: ScanResult, path: Path, file_id: int, fmt: RowFormat) -> None:
    with _progress(path.stat().st_size, f"scan {path.name}", "B") as bar:
        scan_jsonl(scan, path, file_id, bar, fmt)


def load_json_records(path: Path) -> Optional[list]:
    """The records of a ``.json`` file (a list, or an object holding one list); None if it is JSON lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                            "save the file as UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return None
        raise DataFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DataFileError(f"{path}: nested too deeply to parse") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if any(k in data for k in FORMATS):  # a single record
            return [data]
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) == 1:
            return data[lists[0]]
        raise DataFileError(f"{path}: expected a list of records or an object holding one list; found "
                            f"{len(lists)} list-valued keys ({', '.join(lists) or 'none'})")
    raise DataFileError(f"{path}: expected a list of records, found {type(data).__name__}")


def _scan_json(scan: ScanResult, path: Path, file_id: int, fmt: RowFormat) -> None:
    records = load_json_records(path)
    if records is None:
        scan.kinds[file_id] = "jsonl"
        _scan_jsonl(scan, path, file_id, fmt)
        return
    for index, raw in enumerate(records):
        scan.rows_read += 1
        count_row(scan, raw, file_id, index, -1, fmt)


def _scan_parquet(scan: ScanResult, path: Path, file_id: int, fmt: RowFormat) -> None:
    from pipelines.data.parquet import ParquetFileError, scan_parquet
    try:
        scan_parquet(scan, path, file_id, _progress, fmt)
    except ParquetFileError as exc:
        raise DataFileError(str(exc)) from None


SCANNERS = {".jsonl": ("jsonl", _scan_jsonl), ".json": ("json", _scan_json), ".parquet": ("parquet", _scan_parquet)}


def scan_dataset(pattern: str, fmt: RowFormat = DEFAULT_FORMAT,
                 max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> ScanResult:
    """Scan every row of every file a dataset path (file or glob) matches (``--full-scan``); raises
    DataFileError for an unreadable file."""
    files = resolve_input_paths(pattern)
    scan = ScanResult(files=files, max_row_bytes=max_row_bytes)
    for file_id, path in enumerate(files):
        kind, scanner = SCANNERS.get(path.suffix.lower(), (None, None))
        if scanner is None:
            raise DataFileError(f"{path}: unsupported file type {path.suffix!r}")
        scan.kinds.append(kind)
        scanner(scan, path, file_id, fmt)
    scan.freeze()
    return scan


def _read_jsonl(path: Path, offsets: Iterable[int]) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as fh:
        for off in sorted(offsets):
            fh.seek(off)
            try:
                yield off, json.loads(fh.readline())
            except ValueError:  # the file changed since the scan: the row is then skipped as a bad row
                yield off, None


def read_rows(scan: ScanResult, positions: Iterable[int]) -> dict[int, Any]:
    """Raw rows for valid-row positions of a scan, read straight from the files: {position: row}."""
    by_file: dict[int, list[int]] = {}
    for pos in positions:
        by_file.setdefault(int(scan.file_ids[pos]), []).append(int(pos))
    out: dict[int, Any] = {}
    for fid, poss in by_file.items():
        path, kind = scan.files[fid], scan.kinds[fid]
        if kind == "jsonl":
            key_of = {int(scan.offsets[p]): p for p in poss}
            for off, raw in _read_jsonl(path, key_of):
                out[key_of[off]] = raw
        elif kind == "parquet":
            from pipelines.data.parquet import read_parquet_rows
            key_of = {int(scan.records[p]): p for p in poss}
            for idx, (_, raw) in read_parquet_rows(path, list(key_of)):
                out[key_of[idx]] = raw
        else:
            records = load_json_records(path) or []
            for p in poss:
                out[p] = records[int(scan.records[p])]
    return out
