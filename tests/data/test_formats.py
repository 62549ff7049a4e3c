"""The data-format table (issue 21): a format is one DataFormat subclass plus one registration, and both the
full scan and the lazy draw read files through it. Here a CSV format, written in this file with the standard
library's csv module, is registered through the public API for one test and removed afterwards."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Sequence

import pytest

from pipelines.data.checks import check_input_paths
from pipelines.data.formats import (DataFile, DataFormat, ReadResult, format_for, register_format,
                                    registered_formats, supported_suffixes, unregister_format)
from pipelines.data.index import build_index
from pipelines.data.readers import DataFileError, read_rows, scan_dataset
from pipelines.data.sampling import sample_datasets
from tests.data.data_rows import make_spec


class CsvFormat(DataFormat):
    """CSV with a header line; every row is a dict of strings (empty cells are None)."""

    name = "csv"
    suffixes = (".csv",)

    def count_rows(self, file: DataFile) -> int:
        with open(file.path, newline="", encoding="utf-8") as fh:
            file.source = [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)]
        return len(file.source)

    def read_rows(self, file: DataFile, indices: Sequence[int],
                  max_bytes: Optional[int]) -> Iterable[tuple[int, ReadResult]]:
        return ((i, (None, file.source[i])) for i in indices)


@pytest.fixture
def csv_format():
    fmt = register_format(CsvFormat())
    try:
        yield fmt
    finally:
        unregister_format("csv")


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


ROWS = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i), "level": str(i % 3)} for i in range(12)]
BAD = [{"prompt": "   ", "answer": "0", "level": "0"}, {"prompt": "", "answer": "1", "level": "1"}]


def test_a_registered_csv_format_serves_the_full_scan_and_the_lazy_draw(csv_format, tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS[:6] + BAD + ROWS[6:])     # bad rows at positions 6 and 7
    assert format_for(path) is csv_format and ".csv" in supported_suffixes()
    assert check_input_paths(make_spec([{"path": str(path)}], 1).datasets, "c.yaml") == []

    scan = scan_dataset(str(path))
    assert scan.kinds == ["csv"] and scan.rows_read == 14 and scan.valid == 12
    assert scan.skipped == Counter({"empty_prompt": 1, "missing_conversations": 1})
    assert scan.formats == Counter({"prompt": 12})
    assert list(scan.records) == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]
    got = read_rows(scan, [0, 7, 11])
    assert [got[p] for p in (0, 7, 11)] == [ROWS[0], ROWS[7], ROWS[11]]
    assert scan.row_id(6) == f"{path}[8]"

    idx = build_index(str(path))
    assert idx.total == 14 and [f.kind for f in idx.files] == ["csv"]
    assert idx.read([8])[8] == (None, ROWS[6]) and idx.row_id(8) == f"{path}[8]"

    res = sample_datasets(make_spec([{"path": str(path)}], total_rows=12), None)
    stats = res.stats[0]
    assert len(res.train) == 12 and stats.total_rows == 14 and stats.rows_read == 14
    assert stats.skipped == scan.skipped and stats.formats == Counter({"prompt": 12})
    by_id = {r["row_id"]: r for r in res.train}
    assert set(by_id) == {f"{path}[{i}]" for i in scan.records}
    row = by_id[f"{path}[9]"]                                   # ROWS[7]
    assert row["prompt"] == [{"role": "user", "content": "What is 7 + 7?"}]
    assert row["answer"] == "14" and row["level"] == "1"


def test_a_registered_format_is_gone_once_unregistered(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS)
    register_format(CsvFormat())
    unregister_format("csv")
    assert "csv" not in [f.name for f in registered_formats()] and ".csv" not in supported_suffixes()
    with pytest.raises(DataFileError, match="unsupported file type '.csv'"):
        scan_dataset(str(path))
    with pytest.raises(DataFileError, match="unsupported file type '.csv'"):
        build_index(str(path))


def test_a_name_or_suffix_taken_twice_is_refused(csv_format):
    with pytest.raises(ValueError, match="'csv' is registered twice"):
        register_format(CsvFormat())

    class OtherJsonl(CsvFormat):
        name = "jsonl2"
        suffixes = (".JSONL",)

    with pytest.raises(ValueError, match=r"suffix '.JSONL' is already read by 'jsonl'"):
        register_format(OtherJsonl())
    assert [f.name for f in registered_formats()] == ["jsonl", "json", "parquet", "hf", "csv"]


def test_bad_registrations_and_lookups_say_what_is_wrong(tmp_path):
    class Nameless(CsvFormat):
        name = ""

    with pytest.raises(ValueError, match="Nameless: a data format needs a name"):
        register_format(Nameless())
    with pytest.raises(KeyError, match="nope"):
        unregister_format("nope")
    from pipelines.data.formats import HF_DATASET

    with pytest.raises(DataFileError, match="is opened from an hf: path, not a file"):
        HF_DATASET.open(tmp_path / "d.arrow")
