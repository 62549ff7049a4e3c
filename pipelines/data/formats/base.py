"""The interface every data format implements, and the opened file it hands around.

A format answers two kinds of question, and both the lazy draw (:mod:`pipelines.data.index`) and the full scan
(:mod:`pipelines.data.readers`) ask them through this interface only:

- how many rows does a file hold, and what are rows ``i, j, ...`` (:meth:`DataFormat.count_rows`,
  :meth:`DataFormat.read_rows`): the draw counts every file, then reads back only the rows it drew;
- what does every row of a file look like (:meth:`DataFormat.scan`): ``--validate --full-scan``. The default
  reads every row through ``read_rows`` and classifies it with :func:`~pipelines.data.scan.count_row`, so a new
  format needs only the two methods above; a format with a faster way (vectorised pyarrow rules) overrides it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from pipelines.data.prompts import DEFAULT_FORMAT, RowFormat, source_label
from pipelines.data.scan import ScanResult, count_row

# (bad-row reason or None, raw row or None) for one row
ReadResult = tuple[Optional[str], Any]
PROGRESS_DELAY_S = 1.0      # a progress bar appears only once a scan has taken this long
SCAN_CHUNK_ROWS = 8_192     # rows the default full scan asks read_rows for at a time


def progress_bar(total: int, desc: str, unit: str):
    """A tqdm bar that stays hidden for scans shorter than :data:`PROGRESS_DELAY_S`."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, delay=PROGRESS_DELAY_S, leave=False)


@dataclass(eq=False)
class DataFile:
    """One opened file (or in-memory dataset) of some format: what its format needs to count and read its rows.
    ``source`` is the format's own state (a line index, the loaded records, a ``datasets.Dataset``...); ``rows``
    stays None until the rows are counted, so a format may count only when asked (the full scan never asks)."""

    path: Path
    format: "DataFormat"
    rows: Optional[int] = None
    source: Any = None
    name: str = ""                               # how row ids name this file

    def __post_init__(self) -> None:
        self.name = self.name or str(self.path)

    @property
    def kind(self) -> str:
        """The format's name: ``jsonl``, ``parquet``, ..."""
        return self.format.name

    @property
    def count(self) -> int:
        """Rows in the file, counted by its format on first use."""
        if self.rows is None:
            self.rows = self.format.count_rows(self)
        return self.rows

    def row_id(self, index: int) -> str:
        """Stable id of row ``index``: ``file:line`` for JSONL, ``file[index]`` otherwise."""
        return self.format.row_label(self.name, self.format.record(self, index))


class DataFormat(ABC):
    """One data format. Subclasses set ``name`` (unique; scan summaries and ``DataFile.kind`` show it) and
    ``suffixes`` (lower-case file suffixes it reads, e.g. ``(".csv",)``), implement :meth:`count_rows` and
    :meth:`read_rows`, and are listed once in :mod:`pipelines.data.formats` (or added with ``register_format``).
    Every method raises :class:`~pipelines.data.scan.DataFileError` (or OSError) for a file that cannot be read
    at all; a bad row is not an error but a reason (:data:`~pipelines.data.prompts.REASONS`)."""

    name: str = ""
    suffixes: tuple[str, ...] = ()

    def open(self, path: Path) -> DataFile:
        """The opened file; the default reads nothing yet (rows are counted on first use)."""
        return DataFile(path, self)

    @abstractmethod
    def count_rows(self, file: DataFile) -> int:
        """How many rows the file holds (as cheaply as the format allows); may keep an index in ``file.source``."""

    @abstractmethod
    def read_rows(self, file: DataFile, indices: Sequence[int],
                  max_bytes: Optional[int]) -> Iterable[tuple[int, ReadResult]]:
        """``(index, (reason or None, raw row))`` for each of the sorted 0-based row ``indices`` of a file already
        counted. A row that cannot be parsed gets a reason (``invalid_json``...), one over ``max_bytes`` (when the
        format can tell before parsing) ``too_large``; the raw row itself is classified by the caller."""

    def record(self, file: DataFile, index: int) -> int:
        """The number row ids show for row ``index`` (and a full scan records): the index itself by default."""
        return index

    def row_label(self, name: str, record: int) -> str:
        """A row id from a file's name and a row's record: ``file[record]`` by default."""
        return f"{name}[{record}]"

    def columns(self, file: DataFile) -> Optional[list[str]]:
        """The file's column names when the format knows them without reading rows (a schema), else None."""
        return None

    def scan(self, scan: ScanResult, file: DataFile, file_id: int, fmt: RowFormat = DEFAULT_FORMAT) -> None:
        """Classify every row of the file into ``scan`` (``--full-scan``); the default reads them all through
        :meth:`read_rows`, a chunk at a time, and records each valid row's :meth:`record`."""
        with progress_bar(file.count, f"scan {file.path.name}", "row") as bar:
            for start in range(0, file.count, SCAN_CHUNK_ROWS):
                indices = range(start, min(start + SCAN_CHUNK_ROWS, file.count))
                for index, (reason, raw) in self.read_rows(file, indices, scan.max_row_bytes):
                    scan.rows_read += 1
                    if reason is not None:
                        scan.skipped[reason] += 1
                    else:
                        count_row(scan, raw, file_id, self.record(file, index), -1, fmt)
                bar.update(len(indices))

    def read_scanned(self, file: DataFile, records: Sequence[int],
                     offsets: Sequence[int]) -> Iterator[tuple[int, Any]]:
        """``(record, raw row)`` for rows a full scan recorded (its ``records`` and ``offsets``); the default
        reads them as row indices, which is what the default :meth:`record` makes them."""
        for index, (_, raw) in self.read_rows(file, sorted(records), None):
            yield index, raw


def scan_batches(scan: ScanResult, file_id: int, batches: Iterable[Any],
                 rules: Optional[dict[str, tuple[str, str]]], fmt: RowFormat, bar: Any) -> None:
    """Classify pyarrow batches (tables or record batches, in file order) into ``scan``: with the vectorised
    ``rules`` of :func:`~pipelines.data.arrow.vectorised_columns` when there are some, else row by row."""
    labels = [source_label(k, fmt) for k in rules] if rules else []
    start = 0
    for batch in batches:
        rows = batch.num_rows
        scan.rows_read += rows
        if rules:
            from pipelines.data.arrow import columns_reason_codes
            codes, source = columns_reason_codes({k: batch.column(k) for k in rules}, rules)
            scan.add_classified(file_id, codes, source, labels, np.arange(start, start + rows))
        else:
            for i, raw in enumerate(batch.to_pylist()):
                count_row(scan, raw, file_id, start + i, -1, fmt)
        start += rows
        bar.update(rows)
