"""The --validate data summary: counts, skip reasons, rows to sample, a rendered example; errors exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from pipelines.common.problems import ConfigError
from pipelines.data.summary import inspect_datasets
from pipelines.runner import main
from tests.data.data_rows import BAD_LINES, good_rows, make_spec, write_jsonl


def test_summary_lists_counts_reasons_sampling_and_a_rendered_example(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(30), [line for line, _ in BAD_LINES[:3]])
    cfg = make_spec([{"path": str(path), "system_prompt": "Be brief."}], total_rows=10,
                      model_name=str(tiny_model_dir), eval_rows=4)
    text = "\n".join(inspect_datasets(cfg, "c.yaml"))
    assert f"dataset[0] {path}: 1 file(s), 33 rows" in text
    # 14 of the 33 rows are drawn: bad ones among them are counted and replaced by further draws
    drawn = next(line for line in text.splitlines() if "drawn:" in line)
    assert "for 14 (10 training + 4 held out" in drawn and "usable: 14" in drawn and "format: ShareGPT" in drawn
    read = int(drawn.split("drawn: ")[1].split()[0])
    assert 14 <= read <= 17 and (read == 14) == ("skipped: none" in drawn)
    assert "prompt tokens), rendered prompt:" in text
    assert "| <|im_start|>system" in text and "| Be brief.<|im_end|>" in text and "<|im_start|>assistant" in text
    assert "answer: answer " in text


def test_hub_model_not_on_disk_still_reports_counts_and_notes_the_example(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(5))
    cfg = make_spec([{"path": str(path)}], total_rows=5, model_name="some-org/not-here-7b")
    text = "\n".join(inspect_datasets(cfg, "c.yaml"))
    assert "5 rows" in text and "drawn: 5 rows read for 5" in text and "usable: 5, skipped: none" in text
    assert "not on this machine" in text and "user: 'question" in text and "answer: answer" in text


def test_every_unusable_dataset_is_reported_at_once(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [], [line for line, _ in BAD_LINES])
    small = write_jsonl(tmp_path / "small.jsonl", good_rows(3))
    cfg = make_spec([{"path": str(bad), "percentage": 0.5}, {"path": str(small), "percentage": 0.5}],
                      total_rows=20)
    with pytest.raises(ConfigError) as info:
        inspect_datasets(cfg, "c.yaml")
    messages = [str(p) for p in info.value.problems]
    assert len(messages) == 2
    assert f"c.yaml: datasets[0].path: {bad}: no usable rows" in messages[0]
    assert "datasets[1]" in messages[1] and "only 3 rows in its files" in messages[1]


def _pipeline(tmp_path, data_path) -> str:
    cfg = yaml.safe_load(open("pipelines/grpo/configs/quickstart.yaml"))
    cfg["datasets"][0]["path"] = str(data_path)
    cfg["dataset_settings"]["total_rows"] = 3
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "super.yaml").write_text("pipeline_order:\n  - node: grpo\n    config: node.yaml\n")
    return str(tmp_path / "super.yaml")


def test_validate_exits_2_for_a_dataset_without_valid_rows(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [], [line for line, _ in BAD_LINES])
    rc = main(["--validate", "--super-config", _pipeline(tmp_path, bad), "--outputs", str(tmp_path / "out")])
    assert rc == 2
    assert f"{bad}: no usable rows" in capsys.readouterr().err


def test_validate_reads_data_without_importing_torch(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", good_rows(5))
    script = textwrap.dedent(f"""
        import sys
        from pipelines.runner import main
        rc = main(["--validate", "--super-config", {_pipeline(tmp_path, good)!r}, "--outputs", {str(tmp_path)!r}])
        heavy = [m for m in ("torch", "transformers", "trl", "pandas") if m in sys.modules]
        print("RC", rc, "HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=os.getcwd(),
                         timeout=120)
    assert "RC 0 HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "drawn: 3 rows read for 3" in out.stdout


def test_zero_percentage_dataset_is_listed_but_not_read(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", good_rows(5))
    cfg = make_spec([{"path": str(good), "percentage": 1.0},
                       {"path": str(tmp_path / "missing-but-unused.jsonl"), "percentage": 0.0}], total_rows=5)
    text = "\n".join(inspect_datasets(cfg, "c.yaml"))
    assert "dataset[1]" in text and "not read (percentage 0 gives 0 rows)" in text
