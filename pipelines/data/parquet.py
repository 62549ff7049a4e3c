"""Parquet: scan the conversation column(s) row group by row group, read back only the sampled rows.

Row groups are independent, so both the scan and the read-back run on a few threads (pyarrow decodes and
computes without holding the GIL). Each file is opened with a small read buffer instead of pre-buffering whole
column chunks, so memory stays bounded by a batch per thread even for files with million-row groups.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from pipelines.data.prompts import DEFAULT_FORMAT, FORMATS, RowFormat
from pipelines.data.scan import ScanResult, count_row

BATCH_ROWS = 8_192
BUFFER_BYTES = 1 << 20
WORKERS = max(1, min(4, os.cpu_count() or 1))


class ParquetFileError(ValueError):
    """A file pyarrow cannot open as Parquet."""


def open_parquet(path: Path):
    import pyarrow.parquet as pq
    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=BUFFER_BYTES)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise ParquetFileError(f"{path}: not a readable Parquet file ({exc})") from None


def _group_codes(path: Path, group: int, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(reason codes, uses-second-column mask) of one row group; runs on a worker thread."""
    from pipelines.data.arrow import columns_reason_codes

    parts = [columns_reason_codes({k: b.column(k) for k in keys})
             for b in open_parquet(path).iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=keys)]
    if not parts:
        return np.zeros(0, np.uint8), np.zeros(0, bool)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def scan_parquet(scan: ScanResult, path: Path, file_id: int, progress: Callable,
                 fmt: RowFormat = DEFAULT_FORMAT) -> None:
    """Classify every row of a Parquet file into ``scan``; vectorised when the column shape allows."""
    from pipelines.data.arrow import arrow_shape_ok

    pf = open_parquet(path)
    total = pf.metadata.num_rows
    names = pf.schema_arrow.names
    keys = [k for k in FORMATS if k in names]
    scan.rows_read += total
    if fmt.is_default and not keys and "prompt" not in names:
        scan.skipped["missing_conversations"] += total
        return
    groups = range(pf.num_row_groups)
    with progress(total, f"scan {path.name}", "row") as bar:
        vectorised = (fmt.is_default and keys and "prompt" not in names
                      and all(arrow_shape_ok(pf.schema_arrow.field(k).type, k) for k in keys))
        if not vectorised:
            start = 0
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=None if not fmt.is_default or "prompt"
                                         in names else keys):
                for i, raw in enumerate(batch.to_pylist()):
                    count_row(scan, raw, file_id, start + i, -1, fmt)
                start += batch.num_rows
                bar.update(batch.num_rows)
            return
        start = 0
        with ThreadPoolExecutor(WORKERS) as pool:
            for codes, second in pool.map(partial(_group_codes, path, keys=keys), groups):
                scan.add_classified(file_id, codes, second, keys, np.arange(start, start + len(codes)))
                start += len(codes)
                bar.update(len(codes))


def take_rows(table: Any, local: np.ndarray, max_bytes: Optional[int]) -> list[tuple[Optional[str], Any]]:
    """(reason or None, row dict) for rows ``local`` of a pyarrow table or batch; a row whose data exceeds
    ``max_bytes`` becomes ``too_large`` without being converted to Python objects."""
    import pyarrow as pa

    # indices built from a buffer: pa.array(numpy) would import pandas
    indices = pa.Array.from_buffers(pa.int64(), len(local), [None, pa.py_buffer(local.astype(np.int64).tobytes())])
    taken = table.take(indices)
    out: list[tuple[Optional[str], Any]] = []
    for i in range(taken.num_rows):
        row = taken.slice(i, 1)
        if max_bytes is not None and row.nbytes > max_bytes:  # nbytes counts only the bytes this row references
            out.append(("too_large", None))
        else:
            out.append((None, row.to_pylist()[0]))
    return out


def _group_rows(path: Path, group: int, start: int, wanted: np.ndarray,
                max_bytes: Optional[int]) -> list[tuple[int, Any]]:
    """The wanted rows (file row numbers) of one row group, all columns; runs on a worker thread."""
    out = []
    for batch in open_parquet(path).iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
        end = start + batch.num_rows
        local = wanted[(wanted >= start) & (wanted < end)] - start
        if len(local):
            out += [(int(i) + start, result) for i, result in zip(local, take_rows(batch, local, max_bytes))]
        start = end
    return out


def read_parquet_rows(path: Path, indices: list[int], max_bytes: Optional[int] = None
                      ) -> Iterator[tuple[int, tuple[Optional[str], Any]]]:
    """(row number, (reason or None, row dict)) for the given row numbers of a Parquet file."""
    pf = open_parquet(path)
    wanted = np.sort(np.asarray(indices, dtype=np.int64))
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    groups = [int(g) for g in np.unique(np.searchsorted(starts, wanted, side="right") - 1)]
    with ThreadPoolExecutor(WORKERS) as pool:
        tasks = [pool.submit(_group_rows, path, g, int(starts[g]), wanted, max_bytes) for g in groups]
        for task in tasks:
            yield from task.result()
