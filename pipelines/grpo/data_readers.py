"""Input files: scan them once cheaply, then read back only the rows that were sampled.

A scan walks every file of a dataset, classifies each row (see :func:`pipelines.grpo.data_prompts.classify`)
and keeps, for each valid row, just enough to find it again: its file, its record number and (JSONL) its byte
offset. Nothing is tokenized and no row is kept. JSONL is streamed line by line; Parquet is read in record
batches of the conversation column only, classified with vectorised pyarrow code when the column has the
usual list-of-struct shape. A ``.json`` file has no streaming reader in the standard library, so it is loaded
whole (a ``.json`` file holding JSON lines is read as JSONL).
"""
from __future__ import annotations

import json
import logging
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from pipelines.grpo.checks import resolve_input_paths
from pipelines.grpo.data_jsonl import count_row, scan_jsonl
from pipelines.grpo.data_prompts import FORMATS

logger = logging.getLogger(__name__)

PARQUET_BATCH_ROWS = 8_192
# Stream column chunks through a small buffer instead of loading whole row groups (some files have 1M-row groups).
PARQUET_BUFFER_BYTES = 1 << 20
PROGRESS_DELAY_S = 1.0  # a progress bar appears only once a scan has taken this long


class DataFileError(ValueError):
    """A file that cannot be read at all (not a bad row: the whole file)."""


@dataclass
class ScanResult:
    """What a scan of one dataset found. ``locate(i)`` finds valid row ``i`` again."""

    files: list[Path]
    kinds: list[str] = field(default_factory=list)          # per file: jsonl, json or parquet
    rows_read: int = 0
    skipped: Counter = field(default_factory=Counter)       # reason -> rows
    formats: Counter = field(default_factory=Counter)       # conversation key -> valid rows
    file_ids: Any = field(default_factory=lambda: array("i"))
    records: Any = field(default_factory=lambda: array("q"))  # JSONL: 1-based line; else 0-based row index
    offsets: Any = field(default_factory=lambda: array("q"))  # JSONL: byte offset; else -1

    @property
    def valid(self) -> int:
        return len(self.records)

    def add(self, file_id: int, record: int, offset: int = -1) -> None:
        self.file_ids.append(file_id)
        self.records.append(record)
        self.offsets.append(offset)

    def row_id(self, i: int) -> str:
        """Stable id of valid row ``i``: ``file:line`` for JSONL, ``file[index]`` otherwise."""
        fid, rec = self.file_ids[i], self.records[i]
        return f"{self.files[fid]}:{rec}" if self.kinds[fid] == "jsonl" else f"{self.files[fid]}[{rec}]"

    def freeze(self) -> None:
        """Turn the growable arrays into numpy arrays (compact, fast fancy indexing)."""
        self.file_ids = np.frombuffer(self.file_ids, dtype=np.int32) if len(self.file_ids) else np.zeros(0, np.int32)
        self.records = np.frombuffer(self.records, dtype=np.int64) if len(self.records) else np.zeros(0, np.int64)
        self.offsets = np.frombuffer(self.offsets, dtype=np.int64) if len(self.offsets) else np.zeros(0, np.int64)


def _progress(total: int, desc: str, unit: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, delay=PROGRESS_DELAY_S, leave=False)


def _scan_jsonl(scan: ScanResult, path: Path, file_id: int) -> None:
    with _progress(path.stat().st_size, f"scan {path.name}", "B") as bar:
        scan_jsonl(scan, path, file_id, bar)


def load_json_records(path: Path) -> Optional[list]:
    """The records of a ``.json`` file (a list, or an object holding one list); None if it is JSON lines."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return None
        raise DataFileError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) == 1:
            return data[lists[0]]
        if any(k in data for k in FORMATS):  # a single record
            return [data]
        raise DataFileError(f"{path}: expected a list of records or an object holding one list; found "
                            f"{len(lists)} list-valued keys ({', '.join(lists) or 'none'})")
    raise DataFileError(f"{path}: expected a list of records, found {type(data).__name__}")


def _scan_json(scan: ScanResult, path: Path, file_id: int) -> None:
    records = load_json_records(path)
    if records is None:
        scan.kinds[file_id] = "jsonl"
        _scan_jsonl(scan, path, file_id)
        return
    for index, raw in enumerate(records):
        scan.rows_read += 1
        count_row(scan, raw, file_id, index)


def _scan_parquet(scan: ScanResult, path: Path, file_id: int) -> None:
    import pyarrow.parquet as pq

    from pipelines.grpo.data_arrow import arrow_shape_ok, columns_reason_codes, count_codes

    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise DataFileError(f"{path}: not a readable Parquet file ({exc})") from None
    total = pf.metadata.num_rows
    keys = [k for k in FORMATS if k in pf.schema_arrow.names]
    scan.rows_read += total
    if not keys:
        scan.skipped["missing_conversations"] += total
        return
    fast = all(arrow_shape_ok(pf.schema_arrow.field(k).type, k) for k in keys)
    start = 0
    with _progress(total, f"scan {path.name}", "row") as bar:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=keys):
            if fast:
                codes, second = columns_reason_codes({k: batch.column(k) for k in keys})
                scan.skipped.update(count_codes(codes))
                valid = codes == 0
                rows = np.flatnonzero(valid).astype(np.int64) + start
                scan.file_ids.extend(array("i", [file_id]) * len(rows))
                scan.records.extend(array("q", rows.tobytes()))
                scan.offsets.extend(array("q", [-1]) * len(rows))
                for key, mask in zip(keys, (valid & ~second, valid & second)):
                    if mask.any():
                        scan.formats[key] += int(mask.sum())
            else:
                for i, raw in enumerate(batch.to_pylist()):
                    count_row(scan, raw, file_id, start + i)
            start += batch.num_rows
            bar.update(batch.num_rows)


SCANNERS = {".jsonl": ("jsonl", _scan_jsonl), ".json": ("json", _scan_json), ".parquet": ("parquet", _scan_parquet)}


def scan_dataset(pattern: str) -> ScanResult:
    """Scan every file a dataset path (file or glob) matches; raises DataFileError for an unreadable file."""
    files = resolve_input_paths(pattern)
    scan = ScanResult(files=files)
    for file_id, path in enumerate(files):
        kind, scanner = SCANNERS.get(path.suffix.lower(), (None, None))
        if scanner is None:
            raise DataFileError(f"{path}: unsupported file type {path.suffix!r}")
        scan.kinds.append(kind)
        scanner(scan, path, file_id)
    scan.freeze()
    return scan


def _read_jsonl(path: Path, offsets: Iterable[int]) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as fh:
        for off in sorted(offsets):
            fh.seek(off)
            yield off, json.loads(fh.readline())


def _read_parquet(path: Path, indices: list[int]) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    wanted = np.sort(np.asarray(indices, dtype=np.int64))
    rg_starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    for group in np.unique(np.searchsorted(rg_starts, wanted, side="right") - 1):
        start = int(rg_starts[group])
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[int(group)]):
            end = start + batch.num_rows
            local = wanted[(wanted >= start) & (wanted < end)] - start
            if len(local):
                indices = pa.Array.from_buffers(pa.int64(), len(local), [None, pa.py_buffer(local.tobytes())])
                for idx, raw in zip(local, batch.take(indices).to_pylist()):  # (pa.array(numpy) imports pandas)
                    yield int(idx) + start, raw
            start = end


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
            key_of = {int(scan.records[p]): p for p in poss}
            for idx, raw in _read_parquet(path, list(key_of)):
                out[key_of[idx]] = raw
        else:
            records = load_json_records(path) or []
            for p in poss:
                out[p] = records[int(scan.records[p])]
    return out
