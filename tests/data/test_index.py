"""Lazy sampling (issue 13): rows are counted without being parsed (Parquet metadata, a JSONL line index), and
only the rows drawn are read and validated; bad ones are counted by reason and replaced by further draws."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data.formats.jsonl import index_jsonl
from pipelines.data.index import build_index
from pipelines.data.readers import scan_dataset
from pipelines.data.sampling import draw_order, sample_datasets
from pipelines.data.summary import inspect_datasets
from tests.data.data_rows import good_rows, make_spec, write_jsonl


def _naive_lines(data: bytes) -> list[tuple[int, int]]:
    """(offset, 1-based line number) of every non-blank line, the obvious way."""
    out, offset = [], 0
    for number, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            out.append((offset, number))
        offset += len(line) + 1
    return out


@pytest.mark.parametrize("data", [
    b'{"a": 1}\n{"a": 2}\n', b'{"a": 1}\n\n\n{"a": 2}', b"\n\n", b"", b'{"a": 1}\r\n   \r\n{"a": 2}\r\n',
    b'  {"indented": 1}\n\t\n{"b": 2}\n \n', b"x" * 100 + b"\n" + b" " * 70000 + b"\n" + b"y\n",
])
def test_line_index_matches_a_naive_split(tmp_path, data, monkeypatch):
    import pipelines.data.formats.jsonl as data_jsonl
    monkeypatch.setattr(data_jsonl, "BLOCK_BYTES", 7)          # lines and newlines straddle block edges
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    got = index_jsonl(path)
    assert list(zip(got.offsets.tolist(), got.lines.tolist())) == _naive_lines(data)
    for off, length in zip(got.offsets, got.lengths):
        assert data[off: off + length].rstrip(b"\r").strip() == data[off:].split(b"\n")[0].strip()


def test_parquet_rows_are_counted_from_metadata_and_read_by_position(tmp_path):
    rows = good_rows(100)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=13)
    idx = build_index(str(path))
    assert idx.total == 100 and idx.files[0].kind == "parquet"
    got = idx.read([99, 0, 13, 12, 57])
    assert {p: raw for p, (reason, raw) in got.items()} == {p: rows[p] for p in [99, 0, 13, 12, 57]}
    assert idx.row_id(13) == f"{path}[13]"


def test_only_drawn_rows_are_read_and_bad_ones_are_replaced_and_counted(tmp_path):
    good = [json.dumps(r) for r in good_rows(500)]
    bad = ['{"broken": ', '[1, 2]', '{"text": "no prompt"}'] * 100
    lines = [x for pair in zip(good, bad + [""] * 200) for x in pair if x]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = sample_datasets(make_spec([{"path": str(path)}], total_rows=20), None)
    stats = res.stats[0]
    assert len(res.train) == 20 and stats.total_rows == 800
    assert stats.rows_read == 20 + sum(stats.skipped.values()) < 80     # far from all 800
    assert set(stats.skipped) <= {"invalid_json", "not_an_object", "missing_conversations"}
    again = sample_datasets(make_spec([{"path": str(path)}], total_rows=20), None)
    assert [r["row_id"] for r in again.train] == [r["row_id"] for r in res.train]   # same seed, same rows


def test_full_scan_counts_every_bad_row_in_every_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(30), ['{"x": ', "[1]", "[2]"])
    cfg = make_spec([{"path": str(path)}], total_rows=5)
    lazy = "\n".join(inspect_datasets(cfg, "c.yaml"))
    full = "\n".join(inspect_datasets(cfg, "c.yaml", full_scan=True))
    assert "full scan" not in lazy
    assert ("full scan: rows read: 33, valid: 30, skipped: 2 row is not a JSON object (not_an_object), "
            "1 invalid JSON line (invalid_json)") in full


def test_full_scan_flag_reaches_the_summary_through_the_runner(tmp_path, capsys):
    import yaml

    from pipelines.runner import main
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(6), ["[1]"])
    cfg = yaml.safe_load(open("pipelines/grpo/configs/quickstart.yaml"))
    cfg["datasets"][0]["path"] = str(path)
    cfg["dataset_settings"]["total_rows"] = 3
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "super.yaml").write_text("pipeline_order:\n  - node: grpo\n    config: node.yaml\n")
    args = ["--validate", "--super-config", str(tmp_path / "super.yaml"), "--outputs", str(tmp_path / "o")]
    assert main(args + ["--full-scan"]) == 0
    assert "full scan: rows read: 7, valid: 6, skipped: 1 row is not a JSON object" in capsys.readouterr().out


def test_draw_order_is_seeded_covers_every_row_once_and_starts_small():
    chunks = list(draw_order(10_000, 10, np.random.default_rng(1)))
    assert len(chunks[0]) == 84
    allpos = np.concatenate(chunks)
    assert sorted(allpos.tolist()) == list(range(10_000))
    again = list(draw_order(10_000, 10, np.random.default_rng(1)))
    assert all((a == b).all() for a, b in zip(chunks, again))


def test_prompt_column_in_parquet_full_scan_takes_the_python_path(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "hi"}, {"prompt": ""}, {"prompt": None}]), path)
    scan = scan_dataset(str(path))
    assert scan.valid == 1 and scan.skipped == Counter({"empty_prompt": 1, "missing_conversations": 1})


def test_full_scan_without_validate_is_refused(capsys):
    from pipelines.runner import main
    with pytest.raises(SystemExit) as info:
        main(["--full-scan"])
    assert info.value.code == 2 and "--full-scan only applies with --validate" in capsys.readouterr().err
