"""Bounded cost on hostile rows (issue 16): F7 a huge row is skipped unparsed as `too_large`, and prompt budgeting
never tokenizes more than it needs; F8 a deeply nested row is a `malformed` bad row, not a RecursionError;
F13 a .json file that is not UTF-8 is a clear error (exit 2), not a traceback."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.common.problems import ConfigError
from pipelines.data.readers import scan_dataset
from pipelines.data.sampling import sample_datasets
from pipelines.data.summary import inspect_datasets
from tests.data.data_rows import good_rows, make_spec, sharegpt, write_jsonl

NESTED = '{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}], "meta": ' + \
         "[" * 100_000 + "]" * 100_000 + "}"


def test_f7_a_row_over_the_byte_limit_is_skipped_unparsed_jsonl_and_parquet(tmp_path):
    big = sharegpt(("human", "x" * 5000), ("gpt", "y"))
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(4) + [big])
    spec = make_spec([{"path": str(path)}], total_rows=5, shortfall="take_all")
    spec.settings.max_row_bytes = 4096
    res = sample_datasets(spec, None)
    assert len(res.train) == 4 and res.stats[0].skipped == Counter({"too_large": 1})
    assert scan_dataset(str(path), max_row_bytes=4096).skipped == Counter({"too_large": 1})
    pq.write_table(pa.Table.from_pylist(good_rows(4) + [big]), tmp_path / "d.parquet", row_group_size=2)
    spec = make_spec([{"path": str(tmp_path / "d.parquet")}], total_rows=5, shortfall="take_all")
    spec.settings.max_row_bytes = 4096
    assert sample_datasets(spec, None).stats[0].skipped == Counter({"too_large": 1})


def test_f7_limit_is_configurable_with_a_documented_default():
    from pipelines.data.config import DEFAULT_MAX_ROW_BYTES, DatasetSettings
    assert DatasetSettings(total_rows=1).max_row_bytes == DEFAULT_MAX_ROW_BYTES == 4 * 1024 * 1024
    assert "4 MiB" in DatasetSettings.model_fields["max_row_bytes"].description


def test_f7_prompt_budgeting_does_not_tokenize_a_huge_prompt(tiny_model_dir):
    from pipelines.data.prompts import BadRow, fit_budget
    from pipelines.data.tokenization import make_token_counter

    counter = make_token_counter(tiny_model_dir)
    calls = []

    def counting(messages):
        calls.append(sum(len(m["content"]) for m in messages))
        return counter(messages)
    counting.max_token_chars = counter.max_token_chars
    assert counter.max_token_chars and counter.max_token_chars < 100
    huge = [{"role": "user", "content": "word " * 2_000_000}]
    with pytest.raises(BadRow, match="longer than max_prompt_length"):
        fit_budget(huge, counting, 512)
    assert calls == []                                          # proven too long from its length alone
    small = [{"role": "user", "content": "hello there"}]
    assert fit_budget(small, counting, 512) == small and calls  # normal prompts are still counted


F7_SCRIPT = """
import json, sys, time
from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.data.sampling import DataSpec, sample_datasets
from pipelines.data.tokenization import make_token_counter
path, tok, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = DataSpec(datasets=[DatasetEntry(path=path, percentage=1.0, reward_funcs=[{"name": "keyword", "keywords": ["x"]}])],
                settings=DatasetSettings(total_rows=11, shortfall="take_all", max_row_bytes=limit), seed=1,
                max_prompt_length=512)
counter = make_token_counter(tok)
started = time.time()
res = sample_datasets(spec, counter)
took = time.time() - started
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print("RESULT", json.dumps({"s": took, "mb": hwm, "rows": len(res.train), "skipped": dict(res.stats[0].skipped)}))
"""


@pytest.mark.parametrize("limit, reason", [(4 << 20, "too_large"), (64 << 20, "prompt_too_long")])
def test_f7_a_50_mb_row_costs_seconds_and_megabytes(tmp_path, tiny_model_dir, limit, reason):
    """Skipped before parsing (default limit), or, with the limit raised, parsed but never tokenized."""
    path = tmp_path / "hostile.jsonl"
    with open(path, "w") as fh:
        for row in good_rows(10):
            fh.write(json.dumps(row) + "\n")
        fh.write(json.dumps(sharegpt(("human", "word " * 10_000_000), ("gpt", "x"))) + "\n")
    assert path.stat().st_size > 50_000_000
    proc = subprocess.run([sys.executable, "-c", F7_SCRIPT, str(path), str(tiny_model_dir), str(limit)],
                          capture_output=True, text=True, timeout=120)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout + proc.stderr
    got = json.loads(line[7:])
    assert got["rows"] == 10 and got["skipped"] == {reason: 1}
    assert got["s"] < 5 and got["mb"] < 1024, got    # before: 131 s and 10.1 GB (issue 16)


def test_f8_deeply_nested_row_is_malformed_in_sampling_and_full_scan(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(3), [NESTED])
    res = sample_datasets(make_spec([{"path": str(path)}], total_rows=4, shortfall="take_all"), None)
    assert len(res.train) == 3 and res.stats[0].skipped == Counter({"malformed": 1})
    assert scan_dataset(str(path)).skipped == Counter({"malformed": 1})
    text = "\n".join(inspect_datasets(make_spec([{"path": str(path)}], total_rows=3), "c.yaml", full_scan=True))
    assert "1 nested too deeply to parse (malformed)" in text


def test_f8_score_completions_reports_a_nested_line_and_goes_on(tmp_path):
    cfg = yaml.safe_load(open("pipelines/grpo/configs/quickstart.yaml"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    good = {**sharegpt(("human", "hi")), "completion": "Joy!"}
    (tmp_path / "in.jsonl").write_text(NESTED + "\n" + json.dumps(good) + "\n")
    proc = subprocess.run([sys.executable, "-m", "cli_utils.score_completions", "--config", str(tmp_path / "c.yaml"),
                           "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert "RecursionError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    scored = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert any(r.get("completion") == "Joy!" and r.get("rewards") for r in scored), scored


def test_f13_a_json_file_that_is_not_utf8_is_a_clear_config_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps([sharegpt(("human", "caf\u00e9"), ("gpt", "x"))]).encode("utf-8")
                     .replace("caf\\u00e9".encode(), b"caf\xe9"))
    with pytest.raises(ConfigError) as info:
        sample_datasets(make_spec([{"path": str(path)}], total_rows=1), None)
    (problem,) = info.value.problems
    assert "datasets[0].path" in str(problem) and "not UTF-8 text (byte 0xe9 at offset" in str(problem)
    script = textwrap.dedent(f"""
        import yaml
        from pipelines.runner import main
        cfg = yaml.safe_load(open("pipelines/grpo/configs/quickstart.yaml"))
        cfg["datasets"][0]["path"] = {str(path)!r}
        open({str(tmp_path / 'n.yaml')!r}, "w").write(yaml.safe_dump(cfg))
        open({str(tmp_path / 's.yaml')!r}, "w").write("pipeline_order:\\n  - node: grpo\\n    config: n.yaml\\n")
        raise SystemExit(main(["--validate", "--super-config", {str(tmp_path / 's.yaml')!r},
                               "--outputs", {str(tmp_path / 'o')!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "not UTF-8 text" in proc.stdout + proc.stderr
