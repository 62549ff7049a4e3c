"""Row counts and random access without reading the rows: what sampling touches instead of a full scan.

A :class:`DataIndex` knows how many rows each file of a dataset holds and how to read any one of them back:
Parquet row counts come from the file metadata, a JSONL file gets a line index (the byte offset and length of
every non-empty line, found with numpy in large blocks, nothing parsed), a ``.json`` file is loaded whole
(the standard library has no streaming JSON reader), and a Hugging Face dataset is a memory-mapped Arrow table
(:mod:`pipelines.data.hf`). Sampling then draws row positions, reads and validates only those, and replaces a
bad one by another draw. A row's bytes are checked against ``max_row_bytes`` before it is parsed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from pipelines.data.config import DEFAULT_MAX_ROW_BYTES
from pipelines.data.jsonl import parse_line
from pipelines.data.scan import DataFileError, resolve_input_paths

BLOCK_BYTES = 8 << 20
WHITESPACE = np.array([9, 11, 12, 13, 32], dtype=np.uint8)   # a line starting with one of these may be blank
# (reason or None, raw row or None) for one row position
ReadResult = tuple[Optional[str], Any]


@dataclass
class IndexedFile:
    """One file's rows: ``count``, and for JSONL each row's line offset, byte length and 1-based line number."""

    path: Path
    kind: str                                   # jsonl, json, parquet or hf
    count: int
    offsets: Optional[np.ndarray] = None
    lengths: Optional[np.ndarray] = None
    lines: Optional[np.ndarray] = None
    records: Optional[list] = None              # json: the loaded records
    source: Any = None                          # hf: the datasets.Dataset
    name: str = ""                              # how row ids name this file


def _blank(fh, offset: int, length: int) -> bool:
    fh.seek(offset)
    while length > 0:
        chunk = fh.read(min(length, 1 << 16))
        if not chunk or chunk.strip():
            return not chunk
        length -= len(chunk)
    return True


def index_jsonl(path: Path) -> IndexedFile:
    """Byte offset, length and line number of every non-blank line; reads the file once, parses nothing."""
    newlines, firsts, size, need_first = [], [], 0, True
    with open(path, "rb") as fh:
        while True:
            block = fh.read(BLOCK_BYTES)
            if not block:
                break
            arr = np.frombuffer(block, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            if need_first:
                firsts.append(arr[:1])
            inner = nl + 1
            firsts.append(arr[inner[inner < len(arr)]])
            need_first = bool(len(nl)) and int(nl[-1]) == len(arr) - 1
            newlines.append(nl + size)
            size += len(block)
        nl = np.concatenate(newlines) if newlines else np.zeros(0, np.int64)
        starts = np.concatenate(([0], nl + 1)).astype(np.int64)
        ends = np.concatenate((nl, [size])).astype(np.int64)
        keep = starts < size                                   # no line after a final newline
        starts, ends = starts[keep], ends[keep]
        first = np.concatenate(firsts) if firsts else np.zeros(0, np.uint8)
        filled = ends > starts
        maybe_blank = np.flatnonzero(filled & np.isin(first[: len(starts)], WHITESPACE))
        for i in maybe_blank:                                   # rare: indented or whitespace-only lines
            filled[i] = not _blank(fh, int(starts[i]), int(ends[i] - starts[i]))
    rows = np.flatnonzero(filled)
    return IndexedFile(path, "jsonl", len(rows), offsets=starts[rows], lengths=(ends - starts)[rows],
                       lines=rows + 1, name=str(path))


def _index_file(path: Path) -> IndexedFile:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return index_jsonl(path)
    if suffix == ".parquet":
        from pipelines.data.parquet import ParquetFileError, open_parquet
        try:
            count = open_parquet(path).metadata.num_rows
        except ParquetFileError as exc:
            raise DataFileError(str(exc)) from None
        return IndexedFile(path, "parquet", count, name=str(path))
    if suffix == ".json":
        from pipelines.data.readers import load_json_records
        records = load_json_records(path)
        if records is None:       # JSON lines in a .json file
            return index_jsonl(path)
        return IndexedFile(path, "json", len(records), records=records, name=str(path))
    raise DataFileError(f"{path}: unsupported file type {path.suffix!r}")


@dataclass
class DataIndex:
    """Every row of one dataset, addressed by a position in ``range(total)`` (files in order)."""

    files: list[IndexedFile]
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    starts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.starts = np.concatenate(([0], np.cumsum([f.count for f in self.files]))).astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def _locate(self, pos: int) -> tuple[IndexedFile, int]:
        fid = int(np.searchsorted(self.starts, pos, side="right") - 1)
        return self.files[fid], pos - int(self.starts[fid])

    def row_id(self, pos: int) -> str:
        """Stable id of a row: ``file:line`` for JSONL, ``file[index]`` otherwise."""
        f, local = self._locate(pos)
        return f"{f.name}:{int(f.lines[local])}" if f.kind == "jsonl" else f"{f.name}[{local}]"

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
            for loc, result in _read_file(f, sorted(local), self.max_row_bytes):
                out[local[loc]] = result
        return out


def _read_file(f: IndexedFile, locals_: list[int], max_bytes: int) -> Iterable[tuple[int, ReadResult]]:
    if f.kind == "jsonl":
        with open(f.path, "rb") as fh:
            for loc in locals_:
                length = int(f.lengths[loc])
                if length > max_bytes:          # never read, let alone parsed
                    yield loc, ("too_large", None)
                    continue
                fh.seek(int(f.offsets[loc]))
                yield loc, parse_line(fh.read(length), max_bytes)
    elif f.kind == "json":
        for loc in locals_:
            yield loc, (None, f.records[loc])
    elif f.kind == "parquet":
        from pipelines.data.parquet import read_parquet_rows
        yield from read_parquet_rows(f.path, locals_, max_bytes)
    else:
        from pipelines.data.hf import read_hf_rows
        yield from read_hf_rows(f.source, locals_, max_bytes)


def build_index(path: str, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES, split: str = "train",
                subset: Optional[str] = None, revision: Optional[str] = None) -> DataIndex:
    """The index of a dataset path: local files (a file or a glob) or ``hf:...``; raises DataFileError."""
    if path.startswith("hf:"):
        from pipelines.data.hf import open_hf
        files, dataset = open_hf(path, split, subset, revision)
        if files is None:
            return DataIndex([IndexedFile(Path(path), "hf", len(dataset), source=dataset, name=f"{path}:{split}")],
                             max_row_bytes)
    else:
        files = resolve_input_paths(path)
    return DataIndex([_index_file(p) for p in files], max_row_bytes)


def columns_found(idx: DataIndex, sample: int = 20) -> Optional[list[str]]:
    """The column names of a dataset, for messages: the schema of a Parquet file or an Arrow dataset, else the
    keys of its first rows (None when none of them is readable)."""
    first = idx.files[0] if idx.files else None
    if first is None:
        return None
    if first.kind == "parquet":
        from pipelines.data.parquet import open_parquet
        return list(open_parquet(first.path).schema_arrow.names)
    if first.kind == "hf":
        return list(first.source.column_names)
    names: list[str] = []
    for reason, raw in idx.read(range(min(sample, idx.total))).values():
        if reason is None and isinstance(raw, dict):
            names += [k for k in raw if k not in names]
    return names or None
