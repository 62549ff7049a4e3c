"""What a scan of a dataset finds: its files (:func:`resolve_input_paths`), and per valid row just enough to
read it back (:class:`ScanResult`). Each data format (:mod:`pipelines.data.formats`) fills one in, row by row
through :func:`count_row` or a block at a time through :meth:`ScanResult.add_classified`."""
from __future__ import annotations

import glob
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from pipelines.data.config import DEFAULT_MAX_ROW_BYTES
from pipelines.data.prompts import DEFAULT_FORMAT, RowFormat, classify, conversation_key


def resolve_input_paths(pattern: str) -> list[Path]:
    """Files matched by a dataset path (a file or a glob), relative to the working directory, sorted."""
    expanded = os.path.expanduser(pattern)
    if glob.has_magic(expanded):
        return sorted(Path(p) for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
    path = Path(expanded)
    return [path] if path.is_file() else []


class DataFileError(ValueError):
    """A file that cannot be read at all (not a bad row: the whole file)."""


@dataclass
class ScanResult:
    """What a scan of one dataset found. ``locate(i)`` finds valid row ``i`` again."""

    sources: list[Any]                                      # per file: the opened file (formats.base.DataFile)
    rows_read: int = 0
    skipped: Counter = field(default_factory=Counter)       # reason -> rows
    formats: Counter = field(default_factory=Counter)       # conversation key -> valid rows
    file_ids: Any = field(default_factory=lambda: array("i"))
    records: Any = field(default_factory=lambda: array("q"))  # the format's record: JSONL 1-based line, else index
    offsets: Any = field(default_factory=lambda: array("q"))  # JSONL: byte offset; else -1
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES                # longer JSONL lines are skipped unparsed

    @property
    def files(self) -> list[Path]:
        """Each scanned file's path."""
        return [source.path for source in self.sources]

    @property
    def kinds(self) -> list[str]:
        """Each scanned file's format name (``jsonl``, ``parquet``, ...)."""
        return [source.kind for source in self.sources]

    @property
    def valid(self) -> int:
        return len(self.records)

    def add(self, file_id: int, record: int, offset: int = -1) -> None:
        self.file_ids.append(file_id)
        self.records.append(record)
        self.offsets.append(offset)

    def add_many(self, file_id: int, records: np.ndarray, offsets: Optional[np.ndarray] = None) -> None:
        """Record many valid rows of one file at once."""
        self.file_ids.extend(array("i", [file_id]) * len(records))
        self.records.extend(array("q", np.asarray(records, dtype=np.int64).tobytes()))
        if offsets is None:
            self.offsets.extend(array("q", [-1]) * len(records))
        else:
            self.offsets.extend(array("q", np.asarray(offsets, dtype=np.int64).tobytes()))

    def add_classified(self, file_id: int, codes: np.ndarray, source: np.ndarray, labels: Sequence[str],
                       records: np.ndarray, offsets: Optional[np.ndarray] = None) -> None:
        """Record a batch classified by the vectorised rules (:mod:`pipelines.data.arrow`): ``codes`` per row
        (0 valid, else the reason), ``source`` the position in ``labels`` of the column each row's prompt comes
        from (its format name); ``records`` (and ``offsets``) locate each row of the batch."""
        from pipelines.data.arrow import count_codes

        self.skipped.update(count_codes(codes))
        valid = codes == 0
        self.add_many(file_id, records[valid], None if offsets is None else offsets[valid])
        for i, label in enumerate(labels):
            rows = int(np.count_nonzero(valid & (source == i)))
            if rows:
                self.formats[label] += rows

    def row_id(self, i: int) -> str:
        """Stable id of valid row ``i``, as its format names rows: ``file:line`` for JSONL, ``file[index]``
        otherwise."""
        fid, rec = self.file_ids[i], self.records[i]
        source = self.sources[fid]
        return source.format.row_label(source.name, int(rec))

    def freeze(self) -> None:
        """Turn the growable arrays into numpy arrays (compact, fast fancy indexing)."""
        self.file_ids = np.frombuffer(self.file_ids, dtype=np.int32) if len(self.file_ids) else np.zeros(0, np.int32)
        self.records = np.frombuffer(self.records, dtype=np.int64) if len(self.records) else np.zeros(0, np.int64)
        self.offsets = np.frombuffer(self.offsets, dtype=np.int64) if len(self.offsets) else np.zeros(0, np.int64)


def count_row(scan: "ScanResult", raw: Any, file_id: int, record: int, offset: int = -1,
              fmt: RowFormat = DEFAULT_FORMAT) -> None:
    """Classify one parsed row and record it (valid) or its reason (skipped)."""
    reason = classify(raw, fmt)
    if reason is None:
        scan.add(file_id, record, offset)
        scan.formats[conversation_key(raw, fmt)] += 1
    else:
        scan.skipped[reason] += 1
