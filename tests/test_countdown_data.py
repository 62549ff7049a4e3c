"""cli_utils.make_countdown_data, the shipped inputs/countdown.jsonl and pipelines/grpo/configs/countdown.yaml."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils import make_countdown_data as mcd
from pipelines.rewards.catalog import get_reward_factory

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "inputs" / "countdown.jsonl"
CONFIG = REPO / "pipelines" / "grpo" / "configs" / "countdown.yaml"


def equation_scores(rows: list[dict], solutions: list[str]) -> list[float]:
    """The countdown_equation reward, as the config builds it, on ``<answer>solution</answer>`` completions."""
    fn = get_reward_factory("countdown_equation")(target_column="target", nums_column="nums")
    completions = [[{"role": "assistant", "content": f"<think>x</think>\n<answer>{s}</answer>"}] for s in solutions]
    return fn(prompts=[[]] * len(rows), completions=completions, nums=[r["nums"] for r in rows],
              target=[r["target"] for r in rows])


def test_generator_is_deterministic():
    assert mcd.generate(300, seed=7) == mcd.generate(300, seed=7)
    assert mcd.generate(300, seed=7) != mcd.generate(300, seed=8)


def test_every_generated_task_is_solved_by_its_expression():
    rows = mcd.generate(3000, seed=123)
    assert equation_scores(rows, [r["solution"] for r in rows]) == [1.0] * len(rows)
    # The check can fail: a target off by one is not reached.
    wrong = [{**r, "target": r["target"] + 1} for r in rows[:50]]
    assert equation_scores(wrong, [r["solution"] for r in wrong]) == [0.0] * 50
    assert {len(r["nums"]) for r in rows} == {3, 4}
    assert all(1 <= r["target"] <= mcd.MAX_TARGET for r in rows)
    assert all(all(1 <= n <= mcd.MAX_NUMBER for n in r["nums"]) for r in rows)
    assert any("/" in r["solution"] for r in rows) and any("*" in r["solution"] for r in rows)


def test_rows_are_columns_only_and_the_config_template_writes_the_question():
    """No fake assistant turn: the config's prompt_template builds the user message from nums and target."""
    from pipelines.common.config_io import load_yaml
    from pipelines.data.config import DatasetEntry
    from pipelines.data.prompts import prepare_prompt

    rows = mcd.generate(20, seed=5)
    assert all(set(r) == {"nums", "target", "solution"} for r in rows)
    ds = DatasetEntry.model_validate(load_yaml(CONFIG)["datasets"][0])
    row = prepare_prompt(rows[0], ds, 0, ds.path, "r", 0)
    assert row["prompt"][0]["role"] == "system" and row["answer"] is None
    assert row["prompt"][1] == {"role": "user", "content": f"Using the numbers {rows[0]['nums']}, create an "
                                                           f"equation that equals {rows[0]['target']}."}
    assert row["nums"] == rows[0]["nums"] and row["target"] == rows[0]["target"]


def test_cli_writes_the_same_rows(tmp_path):
    out = tmp_path / "sub" / "cd.jsonl"
    assert mcd.main(["--output", str(out), "--rows", "40", "--seed", "3"]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == mcd.generate(40, 3)


def test_shipped_file_is_reproducible_small_and_solvable():
    assert SHIPPED.stat().st_size < 1_000_000
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()]
    assert rows == mcd.generate(len(rows), seed=0), "regenerate: python -m cli_utils.make_countdown_data --seed 0"
    assert equation_scores(rows, [r["solution"] for r in rows]) == [1.0] * len(rows)


def test_help():
    proc = subprocess.run([sys.executable, "-m", "cli_utils.make_countdown_data", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--rows" in proc.stdout and "--seed" in proc.stdout


def test_config_chat_template_prefills_think(tiny_model_dir):
    """The config's template opens <think>, which is what think_answer_format(prefilled_think=True) assumes."""
    from transformers import AutoTokenizer

    from pipelines.common.config_io import load_yaml

    cfg = load_yaml(CONFIG)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = cfg["training_parameters"]["chat_template"]
    text = tok.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
                    "<|im_start|>assistant\nLet me solve this step by step.\n<think>")
    entry = next(e for e in cfg["datasets"][0]["reward_funcs"] if e["name"] == "think_answer_format")
    fmt = get_reward_factory("think_answer_format")(prefilled_think=entry["prefilled_think"])
    # A completion as vLLM returns it with the config's stop string kept.
    assert fmt(prompts=[[]], completions=["50 - 4 = 46</think>\n<answer>50 - 4</answer>"]) == [1.0]
    assert cfg["training_parameters"]["model_stop_sequences"] == ["</answer>"]


@pytest.mark.parametrize("sets", [[], ["--set", "model.backend=transformers"]])
def test_countdown_config_validates_on_cpu(tmp_path, sets):
    """--validate on a CPU box: static checks only, the hub model need not be downloaded."""
    super_config = tmp_path / "super.yaml"
    super_config.write_text(f"pipeline_order:\n  - node: grpo\n    config: {CONFIG}\n")
    proc = subprocess.run([sys.executable, "run_pipeline.py", "--validate", "--super-config", str(super_config),
                           "--outputs", str(tmp_path / "outputs"), *sets],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: 1 node(s) valid" in proc.stdout
    assert "2000 rows" in proc.stdout and "usable: 2000, skipped: none; format: prompt_template" in proc.stdout
    assert "not on this machine" in proc.stdout


@pytest.mark.slow
def test_countdown_config_trains_on_cpu_with_the_tiny_model(tmp_path, tiny_model_dir):
    """The GPU config, shrunk with --set, runs end to end here: both rewards logged, evaluation, the prefilled
    chat template saved with the adapter."""
    from pipelines.common.io import read_jsonl
    from pipelines.runner import main

    super_config = tmp_path / "super.yaml"
    super_config.write_text(f"pipeline_order:\n  - node: grpo\n    config: {CONFIG}\n")
    sets = {"model.base_model_name": str(tiny_model_dir), "model.backend": "transformers",
            "model.max_seq_length": 512, "training_parameters.optim": "adamw_torch",
            "training_parameters.max_steps": 2, "training_parameters.save_steps": 2,
            "training_parameters.gradient_accumulation_steps": 1, "training_parameters.max_completion_length": 24,
            "training_parameters.max_prompt_length": 448,   # the tiny tokenizer spends more tokens per prompt
            "dataset_settings.total_rows": 16, "evaluation.rows": 2, "evaluation.interval_steps": 5,  # at the end
            "logging.report_to": "none", "run_name": "cd"}
    args = [item for key, value in sets.items() for item in ("--set", f"{key}={value}")]
    assert main(["--super-config", str(super_config), "--outputs", str(tmp_path / "out"), *args]) == 0
    run = tmp_path / "out" / "cd"
    records = list(read_jsonl(run / "metrics.jsonl"))
    train = [r for r in records if "loss" in r]
    assert len(train) == 2
    for name in ("countdown_equation", "think_answer_format"):
        assert f"rewards/countdown/{name}/mean" in train[0]
        assert any(f"eval/rewards/countdown/{name}/mean" in r for r in records)
    template = (run / "final_adapter" / "chat_template.jinja").read_text()
    assert template.endswith("Let me solve this step by step.\\n<think>' }}{%- endif %}")
