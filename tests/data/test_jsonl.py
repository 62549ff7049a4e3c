"""The JSONL block scanner: its pyarrow fast path must agree with plain json.loads + classify, line by line."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

import pipelines.data.formats.jsonl as data_jsonl
from pipelines.data.prompts import classify, conversation_key
from pipelines.data.readers import read_rows, scan_dataset
from tests.data.data_rows import BAD_LINES, good_rows, openai, sharegpt


def reference(path: Path) -> tuple[Counter, list[tuple[int, int]], Counter, int]:
    """(skipped, [(line number, byte offset)] of valid rows, formats, rows read) the slow, obvious way."""
    skipped, valid, formats, rows, offset = Counter(), [], Counter(), 0, 0
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), 1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        rows += 1
        try:
            raw = json.loads(line)
        except ValueError:
            skipped["invalid_json"] += 1
            continue
        reason = classify(raw)
        if reason:
            skipped[reason] += 1
        else:
            valid.append((lineno, start))
            formats[conversation_key(raw)] += 1
    return skipped, valid, formats, rows


def assert_agrees(path: Path) -> None:
    scan = scan_dataset(str(path))
    skipped, valid, formats, rows = reference(path)
    assert scan.skipped == skipped
    assert list(zip(scan.records.tolist(), scan.offsets.tolist())) == valid
    assert scan.formats == formats and scan.rows_read == rows


def mixed_lines() -> list[str]:
    lines = [json.dumps(r) for r in good_rows(40)]
    lines += [json.dumps(openai(("user", f"q{i}"), ("assistant", "a"), extra=i)) for i in range(10)]
    lines += [json.dumps({"conversations": None, "messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]})]
    lines += [json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                          "messages": "ignored column"})]
    lines += [line for line, _ in BAD_LINES] + ["", "   ", "\t", json.dumps(sharegpt(("human", "é"), ("gpt", "ü")))]
    return lines


@pytest.mark.parametrize("block_bytes", [64, 700, 5000, 1 << 20])
def test_scan_matches_the_line_by_line_reference_for_any_block_size(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(data_jsonl, "BLOCK_BYTES", block_bytes)
    lines = mixed_lines()
    random.Random(block_bytes).shuffle(lines)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\r\n".join(json.dumps(r).encode() for r in good_rows(5)))
    assert_agrees(path)


def test_clean_blocks_take_the_fast_path_and_rows_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(data_jsonl, "BLOCK_BYTES", 2000)
    path = tmp_path / "clean.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in good_rows(100)) + "\n\n")

    def refuse(*args, **kwargs):
        raise AssertionError("a clean block fell back to the Python scanner")

    monkeypatch.setattr(data_jsonl, "_scan_lines_python", refuse)
    scan = scan_dataset(str(path))
    assert scan.valid == 100
    rows = read_rows(scan, [0, 57, 99])
    assert [rows[p]["target"] for p in (0, 57, 99)] == [0, 57, 99]
    assert scan.row_id(57) == f"{path}:58"


def test_null_line_never_reaches_pyarrow(tmp_path):
    # pyarrow 26's JSON reader segfaults on a bare `null` line; such blocks must take the Python path
    path = tmp_path / "nulls.jsonl"
    path.write_text("null\n" + json.dumps(good_rows(1)[0]) + "\n  null\n")
    assert_agrees(path)


def test_randomly_corrupted_lines_agree_with_the_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(data_jsonl, "BLOCK_BYTES", 300)
    rng = random.Random(0)
    base = [json.dumps(r) for r in good_rows(3)] + [json.dumps(openai(("user", "q"), ("assistant", "a")))]
    alphabet = '{}[]":,nul0123.tfae \\'
    lines = []
    for _ in range(600):
        chars = list(rng.choice(base))
        for _ in range(rng.randint(0, 3)):
            pos = rng.randrange(1, len(chars) - 1)
            op = rng.random()
            if op < 0.4:
                del chars[pos]
            elif op < 0.8:
                chars[pos] = rng.choice(alphabet)
            else:
                chars.insert(pos, rng.choice(alphabet))
        lines.append("".join(chars))
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert_agrees(path)
