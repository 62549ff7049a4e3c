"""Parquet: rows counted from the file metadata; the scan classifies the prompt-source column(s) row group by
row group; reading back decodes only the row groups that hold drawn rows.

Row groups are independent, so both the scan and the read-back run on a few threads (pyarrow decodes and
computes without holding the GIL). Each file is opened with a small read buffer instead of pre-buffering whole
column chunks, so memory stays bounded by a batch per thread even for files with million-row groups.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from pipelines.data.formats.base import DataFile, DataFormat, ReadResult, progress_bar, scan_batches
from pipelines.data.prompts import DEFAULT_FORMAT, RowFormat, source_label
from pipelines.data.scan import DataFileError, ScanResult

BATCH_ROWS = 8_192
BUFFER_BYTES = 1 << 20
WORKERS = max(1, min(4, os.cpu_count() or 1))


def open_parquet(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` with a small read buffer; raises DataFileError for a broken file."""
    import pyarrow.parquet as pq
    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=BUFFER_BYTES)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise DataFileError(f"{path}: not a readable Parquet file ({exc})") from None


def _group_codes(path: Path, group: int, rules: dict[str, tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(reason codes, source column) of one row group; runs on a worker thread."""
    from pipelines.data.arrow import columns_reason_codes

    keys = list(rules)
    parts = [columns_reason_codes({k: b.column(k) for k in keys}, rules)
             for b in open_parquet(path).iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=keys)]
    if not parts:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def scan_parquet(scan: ScanResult, path: Path, file_id: int, fmt: RowFormat = DEFAULT_FORMAT) -> None:
    """Classify every row of a Parquet file into ``scan``; vectorised when the column shapes allow, with any
    number of prompt-source columns (each row uses the first that is not null)."""
    from pipelines.data.arrow import vectorised_columns

    pf = open_parquet(path)
    total = pf.metadata.num_rows
    names = pf.schema_arrow.names
    read = [k for k in (fmt.fields if fmt.template else fmt.columns()) if k in names]
    if not fmt.template and not read:            # no row can name a prompt source
        scan.rows_read += total
        scan.skipped["missing_conversations"] += total
        return
    rules = vectorised_columns(pf.schema_arrow, fmt)
    with progress_bar(total, f"scan {path.name}", "row") as bar:
        if rules is None:
            scan_batches(scan, file_id, pf.iter_batches(batch_size=BATCH_ROWS, columns=read or None), None, fmt, bar)
            return
        labels = [source_label(k, fmt) for k in rules]
        start = 0
        with ThreadPoolExecutor(WORKERS) as pool:
            for codes, source in pool.map(partial(_group_codes, path, rules=rules), range(pf.num_row_groups)):
                scan.rows_read += len(codes)
                scan.add_classified(file_id, codes, source, labels, np.arange(start, start + len(codes)))
                start += len(codes)
                bar.update(len(codes))


def _group_rows(path: Path, group: int, start: int, wanted: np.ndarray,
                max_bytes: Optional[int]) -> list[tuple[int, ReadResult]]:
    """The wanted rows (file row numbers) of one row group, all columns; runs on a worker thread."""
    from pipelines.data.arrow import take_rows

    out = []
    for batch in open_parquet(path).iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
        end = start + batch.num_rows
        local = wanted[(wanted >= start) & (wanted < end)] - start
        if len(local):
            out += [(int(i) + start, result) for i, result in zip(local, take_rows(batch, local, max_bytes))]
        start = end
    return out


def read_parquet_rows(path: Path, indices: Sequence[int], max_bytes: Optional[int] = None
                      ) -> Iterator[tuple[int, ReadResult]]:
    """(row number, (reason or None, row dict)) for the given row numbers of a Parquet file."""
    pf = open_parquet(path)
    wanted = np.sort(np.asarray(indices, dtype=np.int64))
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    groups = [int(g) for g in np.unique(np.searchsorted(starts, wanted, side="right") - 1)]
    with ThreadPoolExecutor(WORKERS) as pool:
        tasks = [pool.submit(_group_rows, path, g, int(starts[g]), wanted, max_bytes) for g in groups]
        for task in tasks:
            yield from task.result()


class ParquetFormat(DataFormat):
    """Parquet files: counted from metadata, scanned vectorised, read back by row group."""

    name = "parquet"
    suffixes = (".parquet",)

    def open(self, path: Path) -> DataFile:
        return DataFile(path, self, rows=open_parquet(path).metadata.num_rows)

    def count_rows(self, file: DataFile) -> int:
        return open_parquet(file.path).metadata.num_rows

    def read_rows(self, file: DataFile, indices: Sequence[int],
                  max_bytes: Optional[int]) -> Iterable[tuple[int, ReadResult]]:
        return read_parquet_rows(file.path, indices, max_bytes)

    def columns(self, file: DataFile) -> Optional[list[str]]:
        return list(open_parquet(file.path).schema_arrow.names)

    def scan(self, scan: ScanResult, file: DataFile, file_id: int, fmt: RowFormat = DEFAULT_FORMAT) -> None:
        scan_parquet(scan, file.path, file_id, fmt)
