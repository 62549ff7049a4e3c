"""``.json`` files: a list of records, an object holding one list, or a single record, loaded whole (the
standard library has no streaming JSON reader). A ``.json`` file holding JSON lines is read as JSONL."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

from pipelines.data.formats.base import DataFile, DataFormat, ReadResult
from pipelines.data.formats.jsonl import JsonlFormat
from pipelines.data.prompts import FORMATS
from pipelines.data.scan import DataFileError


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


class JsonFormat(DataFormat):
    """A ``.json`` file, loaded once when opened; one holding JSON lines opens as a JSONL file."""

    name = "json"
    suffixes = (".json",)
    lines = JsonlFormat()

    def open(self, path: Path) -> DataFile:
        records = load_json_records(path)
        if records is None:
            return self.lines.open(path)
        return DataFile(path, self, rows=len(records), source=records)

    def count_rows(self, file: DataFile) -> int:
        return len(file.source)

    def read_rows(self, file: DataFile, indices: Sequence[int],
                  max_bytes: Optional[int]) -> Iterable[tuple[int, ReadResult]]:
        return ((i, (None, file.source[i])) for i in indices)
