"""The data formats: one module each, one table listing them (:data:`BUILTIN_FORMATS`).

Both the lazy draw (:func:`pipelines.data.index.build_index`) and the full scan
(:func:`pipelines.data.readers.scan_dataset`) open every file through :func:`open_file`, which picks the format
by file suffix, and then use only the :class:`~pipelines.data.formats.base.DataFormat` interface. Adding a format
is one module with a ``DataFormat`` subclass plus one line in :data:`BUILTIN_FORMATS` (or, from outside the
package, one :func:`register_format` call).
"""
from __future__ import annotations

from pathlib import Path

from pipelines.data.formats.base import DataFile, DataFormat, ReadResult
from pipelines.data.formats.hf_dataset import HfDatasetFormat
from pipelines.data.formats.json_file import JsonFormat
from pipelines.data.formats.jsonl import JsonlFormat
from pipelines.data.formats.parquet import ParquetFormat
from pipelines.data.scan import DataFileError

HF_DATASET = HfDatasetFormat()
# The table: one line per format.
BUILTIN_FORMATS: tuple[DataFormat, ...] = (
    JsonlFormat(),
    JsonFormat(),
    ParquetFormat(),
    HF_DATASET,          # a loaded datasets.Dataset: reached through hf: paths, no suffix
)
_formats: dict[str, DataFormat] = {f.name: f for f in BUILTIN_FORMATS}


def registered_formats() -> list[DataFormat]:
    """Every format, built-in ones first, in registration order."""
    return list(_formats.values())


def register_format(fmt: DataFormat) -> DataFormat:
    """Add a format to the table (returned unchanged). Raises ValueError for a name already registered or a
    suffix another format reads."""
    if not fmt.name:
        raise ValueError(f"{type(fmt).__name__}: a data format needs a name")
    if fmt.name in _formats:
        raise ValueError(f"data format {fmt.name!r} is registered twice; rename one of them")
    taken = {s.lower(): f.name for f in _formats.values() for s in f.suffixes}
    clash = [s for s in fmt.suffixes if s.lower() in taken]
    if clash:
        raise ValueError(f"data format {fmt.name!r}: suffix {clash[0]!r} is already read by "
                         f"{taken[clash[0].lower()]!r}")
    _formats[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove a format added by :func:`register_format`; raises KeyError for an unknown name."""
    del _formats[name]


def format_named(name: str) -> DataFormat:
    """The registered format called ``name``; raises KeyError."""
    return _formats[name]


def supported_suffixes() -> tuple[str, ...]:
    """Every file suffix some registered format reads (lower case)."""
    return tuple(s.lower() for f in _formats.values() for s in f.suffixes)


def format_for(path: Path) -> DataFormat:
    """The format that reads ``path``, by its suffix; raises DataFileError for an unsupported one."""
    suffix = path.suffix.lower()
    for fmt in _formats.values():
        if suffix in (s.lower() for s in fmt.suffixes):
            return fmt
    raise DataFileError(f"{path}: unsupported file type {path.suffix!r}")


def open_file(path: Path) -> DataFile:
    """``path`` opened by its format (counting its rows where that is cheap); raises DataFileError."""
    return format_for(path).open(path)
