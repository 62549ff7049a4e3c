"""Row counts and random access without reading the rows: what sampling touches instead of a full scan.

A :class:`DataIndex` knows how many rows each file of a dataset holds and how to read any one of them back,
both through each file's format (:mod:`pipelines.data.formats`): Parquet row counts come from the file metadata,
a JSONL file gets a line index (the byte offset and length of every non-empty line, nothing parsed), a ``.json``
file is loaded whole, and a Hugging Face dataset is a memory-mapped Arrow table (:mod:`pipelines.data.hf`).
Sampling then draws row positions, reads and validates only those, and replaces a bad one by another draw. A
row's bytes are checked against ``max_row_bytes`` before it is parsed where the format allows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from pipelines.data.config import DEFAULT_MAX_ROW_BYTES
from pipelines.data.formats import HF_DATASET, DataFile, ReadResult, open_file
from pipelines.data.scan import resolve_input_paths

__all__ = ["DataIndex", "ReadResult", "build_index", "columns_found"]


@dataclass
class DataIndex:
    """Every row of one dataset, addressed by a position in ``range(total)`` (files in order)."""

    files: list[DataFile]
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    starts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.starts = np.concatenate(([0], np.cumsum([f.count for f in self.files]))).astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def _locate(self, pos: int) -> tuple[DataFile, int]:
        fid = int(np.searchsorted(self.starts, pos, side="right") - 1)
        return self.files[fid], pos - int(self.starts[fid])

    def row_id(self, pos: int) -> str:
        """Stable id of a row: ``file:line`` for JSONL, ``file[index]`` otherwise (as its format names it)."""
        f, local = self._locate(pos)
        return f.row_id(local)

    def read(self, positions: Iterable[int]) -> dict[int, ReadResult]:
        """{position: (bad-row reason or None, raw row)} for the given positions, each file read once."""
        by_file: dict[int, list[tuple[int, int]]] = {}
        for pos in positions:
            fid = int(np.searchsorted(self.starts, int(pos), side="right") - 1)
            by_file.setdefault(fid, []).append((int(pos), int(pos) - int(self.starts[fid])))
        out: dict[int, ReadResult] = {}
        for fid, items in by_file.items():
            f = self.files[fid]
            local = {loc: pos for pos, loc in items}
            for loc, result in f.format.read_rows(f, sorted(local), self.max_row_bytes):
                out[local[loc]] = result
        return out


def build_index(path: str, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES, split: str = "train",
                subset: Optional[str] = None, revision: Optional[str] = None) -> DataIndex:
    """The index of a dataset path: local files (a file or a glob) or ``hf:...``; raises DataFileError."""
    if path.startswith("hf:"):
        from pipelines.data.hf import open_hf
        files, dataset = open_hf(path, split, subset, revision)
        if files is None:
            return DataIndex([HF_DATASET.open_dataset(dataset, f"{path}:{split}")], max_row_bytes)
    else:
        files = resolve_input_paths(path)
    return DataIndex([open_file(Path(p)) for p in files], max_row_bytes)


def columns_found(idx: DataIndex, sample: int = 20) -> Optional[list[str]]:
    """The column names of a dataset, for messages: its first file's schema where its format has one, else the
    keys of its first rows (None when none of them is readable)."""
    first = idx.files[0] if idx.files else None
    if first is None:
        return None
    known = first.format.columns(first)
    if known is not None:
        return known
    names: list[str] = []
    for reason, raw in idx.read(range(min(sample, idx.total))).values():
        if reason is None and isinstance(raw, dict):
            names += [k for k in raw if k not in names]
    return names or None
