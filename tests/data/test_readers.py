"""Readers: every file format and globs, bad-row counting, the Parquet fast path agreeing with Python."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data.arrow import arrow_shape_ok
from pipelines.data.prompts import classify
from pipelines.data.readers import DataFileError, read_rows, scan_dataset
from tests.data.data_rows import BAD_LINES, good_rows, openai, sharegpt, write_jsonl

CONV_TYPE = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))


def test_jsonl_scan_counts_every_bad_reason_and_keeps_only_valid_positions(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, good_rows(5), [line for line, _ in BAD_LINES])
    with open(path, "ab") as fh:
        fh.write(b'{"conversations": [{"from": "human", "value": "\xff\xfe"}]}\n\n   \n')
    scan = scan_dataset(str(path))
    expected = Counter(reason for _, reason in BAD_LINES)
    expected["invalid_json"] += 1  # the bad UTF-8 line; blank lines are not rows
    assert scan.skipped == expected
    assert scan.valid == 5 and scan.rows_read == 5 + len(BAD_LINES) + 1
    rows = read_rows(scan, range(scan.valid))
    assert [rows[i]["target"] for i in range(5)] == [0, 1, 2, 3, 4]
    assert scan.row_id(2) == f"{path}:3"


def _same_rows_in(tmp_path: Path, rows: list[dict]) -> dict[str, Path]:
    paths = {"jsonl": write_jsonl(tmp_path / "a.jsonl", rows)}
    paths["json_list"] = tmp_path / "b.json"
    paths["json_list"].write_text(json.dumps(rows))
    paths["json_object"] = tmp_path / "c.json"
    paths["json_object"].write_text(json.dumps({"version": 1, "data": rows}))
    paths["json_lines"] = write_jsonl(tmp_path / "d.json", rows)  # .json holding JSON lines
    paths["parquet"] = tmp_path / "e.parquet"
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"], row_group_size=3)
    return paths


def test_every_format_yields_the_same_rows(tmp_path):
    rows = good_rows(10) + [openai(("user", "hi"), ("assistant", "yo"), nums=[0], target=99)]
    rows[-1]["conversations"] = None  # parquet needs one schema; this row is then a ShareGPT null
    del rows[-1]["messages"]
    for kind, path in _same_rows_in(tmp_path, rows).items():
        scan = scan_dataset(str(path))
        assert scan.valid == 10 and scan.skipped == Counter({"missing_conversations": 1}), kind
        got = read_rows(scan, range(scan.valid))
        assert [got[i] for i in range(10)] == rows[:10], kind


def test_glob_paths_collect_files_in_sorted_order(tmp_path):
    write_jsonl(tmp_path / "part-2.jsonl", good_rows(3, start=20))
    write_jsonl(tmp_path / "part-1.jsonl", good_rows(2, start=10))
    pq.write_table(pa.Table.from_pylist(good_rows(4, start=30)), tmp_path / "part-3.parquet")
    (tmp_path / "other.jsonl").write_text(json.dumps(good_rows(1)[0]) + "\n")
    scan = scan_dataset(str(tmp_path / "part-*"))
    assert [p.name for p in scan.files] == ["part-1.jsonl", "part-2.jsonl", "part-3.parquet"]
    assert scan.valid == 9
    got = read_rows(scan, range(9))
    assert [got[i]["target"] for i in range(9)] == [10, 11, 20, 21, 22, 30, 31, 32, 33]
    assert scan.row_id(0).endswith("part-1.jsonl:1") and scan.row_id(5).endswith("part-3.parquet[0]")


def test_unreadable_json_file_is_a_data_file_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"a": [1], "b": [2]}')
    with pytest.raises(DataFileError, match="list-valued keys"):
        scan_dataset(str(bad))
    bad.write_text('{"conversations": [')
    with pytest.raises(DataFileError, match="not valid JSON"):
        scan_dataset(str(bad))


def _parquet_representable() -> list[dict]:
    """Rows covering every reason a list<struct<from, value>> column can express, plus good ones."""
    rows = [
        {"conversations": None},
        {"conversations": []},
        {"conversations": [None, {"from": "gpt", "value": "x"}]},
        sharegpt(("human", "hi"), ("robot", "beep")),
        sharegpt((None, "hi"), ("gpt", "x")),
        sharegpt(("human", None), ("gpt", "x")),
        sharegpt(("human", "hi")),
        sharegpt(("system", "s")),
        sharegpt(("system", "s"), ("human", "")),
        sharegpt(("human", "hi"), ("gpt", "x"), ("system", "s")),
        sharegpt(("human", " \t"), ("gpt", "x")),
        sharegpt(("system", "s"), ("gpt", "x"), ("human", "late"), ("human", "no answer")),
        sharegpt(("gpt", "first"), ("human", "hi"), ("gpt", "x")),
        sharegpt((" SYSTEM ", "s"), ("Human", "hi"), ("Assistant", "x")),
        sharegpt(("human", "hi"), ("gpt", ""), ("human", "again"), ("gpt", "y")),
    ]
    return rows * 3 + [sharegpt(("human", f"q{i}"), ("gpt", "a")) for i in range(7)]


def test_parquet_fast_path_agrees_with_python_classification(tmp_path):
    assert arrow_shape_ok(CONV_TYPE, "conversations")  # i.e. this file takes the vectorised path
    rows = _parquet_representable()
    table = pa.Table.from_pylist(rows, schema=pa.schema([("conversations", CONV_TYPE)]))
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=5)
    scan = scan_dataset(str(path))
    python_reasons = [classify(r) for r in table.to_pylist()]
    assert scan.skipped == Counter(r for r in python_reasons if r is not None)
    assert list(scan.records) == [i for i, r in enumerate(python_reasons) if r is None]
    assert len(scan.skipped) == 7  # every reason a typed column can hold


def test_parquet_fast_path_with_large_types_and_sliced_batches(tmp_path, monkeypatch):
    import pipelines.data.formats.parquet as data_parquet
    monkeypatch.setattr(data_parquet, "BATCH_ROWS", 4)
    rows = _parquet_representable()
    large = pa.large_list(pa.struct([("from", pa.large_string()), ("value", pa.large_string())]))
    assert arrow_shape_ok(large, "conversations")
    path = tmp_path / "large.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("conversations", large)])), path)
    scan = scan_dataset(str(path))
    assert list(scan.records) == [i for i, r in enumerate(rows) if classify(r) is None]


def test_parquet_of_an_unusual_shape_takes_the_python_path(tmp_path):
    rows = [{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": 6}]}] * 2
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    scan = scan_dataset(str(path))
    assert scan.valid == 0 and scan.skipped == Counter({"non_string_content": 2})
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), nocol)
    assert scan_dataset(str(nocol)).skipped == Counter({"missing_conversations": 3})


def test_parquet_read_rows_returns_exactly_the_asked_rows_with_all_columns(tmp_path):
    rows = good_rows(200)
    path = tmp_path / "many.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=17)
    scan = scan_dataset(str(path))
    wanted = [199, 0, 17, 16, 100, 34]
    got = read_rows(scan, wanted)
    assert {p: got[p] for p in wanted} == {p: rows[p] for p in wanted}


def test_parquet_with_both_conversation_columns_uses_the_first_that_is_not_null(tmp_path):
    msgs_type = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    rows = [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "messages": None},
        {"conversations": None, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"conversations": None, "messages": [{"role": "user", "content": "q"}]},
        {"conversations": None, "messages": None},
        {"conversations": [], "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    schema = pa.schema([("conversations", CONV_TYPE), ("messages", msgs_type)])
    path = tmp_path / "both.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    scan = scan_dataset(str(path))
    assert list(scan.records) == [0, 1, 2]
    assert scan.formats == Counter({"conversations": 1, "messages": 2})
    assert scan.skipped == Counter({"missing_conversations": 1, "empty_conversations": 1})
    assert [classify(r) for r in rows] == [None, None, None, "missing_conversations", "empty_conversations"]


def test_json_object_that_is_a_single_record(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(sharegpt(("human", "hi"), ("gpt", "yo"), tags=["a", "b"])))
    scan = scan_dataset(str(path))
    assert scan.valid == 1 and read_rows(scan, [0])[0]["tags"] == ["a", "b"]
