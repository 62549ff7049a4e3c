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


MSGS_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
SHAREGPT_Q = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]


def _msgs(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


def _three_column_rows(i: int) -> list[dict]:
    """Rows over conversations, messages and a messages-shaped prompt column: each row's prompt comes from the
    first of them that is not null, valid or not."""
    good = _msgs(("user", f"q{i}"), ("assistant", f"a{i}"))
    return [
        {"conversations": SHAREGPT_Q, "messages": None, "prompt": None},
        {"conversations": None, "messages": good, "prompt": None},
        {"conversations": None, "messages": None, "prompt": _msgs(("user", f"p{i}"))},
        {"conversations": SHAREGPT_Q, "messages": _msgs(("robot", "x")), "prompt": good},
        {"conversations": None, "messages": _msgs(("system", "s")), "prompt": good},
        {"conversations": None, "messages": None, "prompt": None},
        {"conversations": [], "messages": good, "prompt": good},
        {"conversations": None, "messages": None, "prompt": _msgs(("user", "q"), ("tool", "x"))},
        {"conversations": None, "messages": None, "prompt": good},
    ]


def test_parquet_with_three_conversation_columns_full_scan_and_lazy_draw(tmp_path):
    from pipelines.data.arrow import vectorised_columns
    from pipelines.data.prompts import conversation_key
    from pipelines.data.sampling import sample_datasets
    from tests.data.data_rows import make_spec

    rows = [r for i in range(4) for r in _three_column_rows(i)]
    schema = pa.schema([("conversations", CONV_TYPE), ("messages", MSGS_TYPE), ("prompt", MSGS_TYPE)])
    assert list(vectorised_columns(schema)) == ["conversations", "messages", "prompt"]   # the fast path
    path = tmp_path / "three.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=7)
    valid = [i for i, r in enumerate(rows) if classify(r) is None]
    expected_formats = Counter({"conversations": 8, "messages": 4, "prompt": 8})

    scan = scan_dataset(str(path))
    assert list(scan.records) == valid
    assert scan.skipped == Counter(classify(r) for r in rows if classify(r) is not None) == Counter(
        {"missing_conversations": 4, "no_assistant_turn": 4, "empty_conversations": 4, "unknown_role": 4})
    assert scan.formats == Counter(conversation_key(rows[i]) for i in valid) == expected_formats

    res = sample_datasets(make_spec([{"path": str(path)}], total_rows=len(valid)), None)
    stats = res.stats[0]
    assert stats.rows_read == len(rows) and stats.formats == expected_formats and stats.skipped == scan.skipped
    by_id = {r["row_id"]: r for r in res.train}
    assert set(by_id) == {f"{path}[{i}]" for i in valid}
    assert by_id[f"{path}[2]"]["prompt"] == [{"role": "user", "content": "p0"}]
    assert by_id[f"{path}[3]"]["prompt"] == [{"role": "user", "content": "q"}]     # conversations wins

    from datasets import Dataset

    from pipelines.data.index import build_index
    from pipelines.data.readers import scan_files
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))      # the hf format: vectorised as well
    saved = scan_files(build_index(f"hf:{tmp_path / 'saved'}").files)
    assert saved.kinds == ["hf"] and list(saved.records) == valid
    assert saved.skipped == scan.skipped and saved.formats == expected_formats


def test_any_number_of_custom_conversation_columns_and_a_text_prompt_agree_with_python(tmp_path):
    from pipelines.data.arrow import TEXT, vectorised_columns
    from pipelines.data.prompts import RowFormat, conversation_key

    fmt = RowFormat(conversation_keys=("a", "b", "c"), prompt_key="question")
    schema = pa.schema([("a", MSGS_TYPE), ("b", CONV_TYPE), ("c", MSGS_TYPE), ("question", pa.string())])
    assert vectorised_columns(schema, fmt) == {"a": ("role", "content"), "b": ("from", "value"),
                                               "c": ("role", "content"), "question": TEXT}
    good, share = _msgs(("user", "q"), ("assistant", "x")), SHAREGPT_Q
    rows = [
        {"a": good, "b": None, "c": None, "question": None},
        {"a": None, "b": share, "c": good, "question": "why?"},
        {"a": None, "b": None, "c": good, "question": None},
        {"a": None, "b": None, "c": _msgs(("user", "")), "question": "why?"},
        {"a": None, "b": None, "c": None, "question": "why?"},
        {"a": None, "b": None, "c": None, "question": " \t\n"},
        {"a": None, "b": None, "c": None, "question": None},
        {"a": None, "b": [None], "c": good, "question": "x"},
    ] * 3
    path = tmp_path / "custom.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=5)
    scan = scan_dataset(str(path), fmt)
    reasons = [classify(r, fmt) for r in rows]
    assert list(scan.records) == [i for i, r in enumerate(reasons) if r is None]
    assert scan.skipped == Counter(r for r in reasons if r is not None)
    assert scan.skipped == Counter({"empty_prompt": 6, "missing_conversations": 3, "conversations_wrong_type": 3})
    assert scan.formats == Counter(conversation_key(r, fmt) for r, why in zip(rows, reasons) if why is None)
    assert scan.formats == Counter({"a": 3, "b": 3, "c": 3, "prompt": 3})
