"""A ``datasets.Dataset`` as a data format: an ``hf:`` path that is not read in place (a ``save_to_disk``
folder, a Hub dataset in the local cache, anything ``datasets.load_dataset`` turns into memory-mapped Arrow).
:mod:`pipelines.data.hf` resolves the path; rows are then read by index, so memory stays bounded."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from pipelines.data.formats.base import DataFile, DataFormat, ReadResult, progress_bar, scan_batches
from pipelines.data.prompts import DEFAULT_FORMAT, RowFormat
from pipelines.data.scan import DataFileError, ScanResult

BATCH_ROWS = 8_192


class HfDatasetFormat(DataFormat):
    """A loaded ``datasets.Dataset`` (no file suffix: it is reached only through an ``hf:`` path)."""

    name = "hf"

    def open(self, path: Path) -> DataFile:
        raise DataFileError(f"{path}: a Hugging Face dataset is opened from an hf: path, not a file")

    def open_dataset(self, dataset: Any, name: str) -> DataFile:
        """The opened file for a loaded ``datasets.Dataset``; row ids name it ``name``."""
        return DataFile(Path(name), self, rows=len(dataset), source=dataset, name=name)

    def count_rows(self, file: DataFile) -> int:
        return len(file.source)

    def read_rows(self, file: DataFile, indices: Sequence[int],
                  max_bytes: Optional[int]) -> Iterable[tuple[int, ReadResult]]:
        from pipelines.data.arrow import take_rows

        indices = list(indices)
        if not indices:
            return []
        table = file.source.with_format("arrow")[indices]
        return list(zip(indices, take_rows(table, np.arange(len(indices)), max_bytes)))

    def columns(self, file: DataFile) -> Optional[list[str]]:
        return list(file.source.column_names)

    def scan(self, scan: ScanResult, file: DataFile, file_id: int, fmt: RowFormat = DEFAULT_FORMAT) -> None:
        from pipelines.data.arrow import vectorised_columns

        dataset = file.source
        rules = vectorised_columns(dataset.data.schema, fmt)
        with progress_bar(len(dataset), f"scan {file.name}", "row") as bar:
            scan_batches(scan, file_id, dataset.with_format("arrow").iter(batch_size=BATCH_ROWS), rules, fmt, bar)
