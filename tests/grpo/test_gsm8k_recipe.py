"""TRL's accuracy_reward on GSM8K-shaped rows (`question`, `answer` ending in `#### N`): its required `solution`
parameter is checked against the drawn rows at --validate, and `columns: {solution: answer}` feeds it."""
from __future__ import annotations

import re

import pytest
import yaml

from pipelines.common.schema import validate_model
from pipelines.data.config import DatasetEntry
from pipelines.data.prompts import prepare_prompt
from pipelines.runner import main
from tests.grpo.training_runs import REPO, outputs, run_node, step_records, tiny_cache, write_super  # noqa: F401

CONFIG = REPO / "pipelines/grpo/configs/gsm8k.yaml"
SUPER = REPO / "pipelines/grpo/configs/super_config_gsm8k.yaml"


def _config(**dataset) -> dict:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["datasets"][0].update(dataset)
    return cfg


def test_the_shipped_recipe_validates_and_names_what_the_reward_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["--super-config", str(SUPER), "--validate", "--outputs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("rewards of dataset[0]: accuracy_reward -> pipelines.rewards.trl_rewards:accuracy_reward (trl, a "
            "reward function; reads solution)") in out
    columns = re.search(r"columns: (.*)", out).group(1)
    assert "solution" in columns and "dataset_path" not in columns


@pytest.mark.parametrize("name", ["accuracy_reward", "trl.rewards:accuracy_reward"])
def test_a_required_reward_parameter_no_row_has_is_exit_2_naming_reward_and_parameter(tmp_path, monkeypatch,
                                                                                     capsys, name):
    monkeypatch.chdir(REPO)
    cfg = _config(columns={"prompt": "question"}, reward_funcs=[{"name": name}])
    sc = write_super(tmp_path, cfg)
    assert main(["--super-config", str(sc), "--validate", "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"datasets[0].reward_funcs[0]: {name} needs `solution` on every row, but none of the 24 rows" in err
    assert "`columns: {solution: <your column>}`" in err and "Traceback" not in err


def test_columns_passes_a_row_column_to_rewards_under_another_name():
    ds, problems = validate_model(DatasetEntry, {"path": "x.jsonl", "percentage": 1, "reward_funcs": [{"name": "k"}],
                                                 "columns": {"prompt": "question", "solution": "answer"}}, "c.yaml")
    assert problems == []
    row = prepare_prompt({"question": "2+2?", "answer": "2+2=4\n#### 4"}, ds, 0, "x.jsonl", "x:1", 0)
    assert row["solution"] == "2+2=4\n#### 4" and row["answer"] == "2+2=4\n#### 4"


@pytest.mark.parametrize("columns,needle", [
    ({"promt": "question"}, "unknown key 'promt' (did you mean \"prompt\"?)"),
    ({"completions": "answer"}, "'completions' cannot name a reward argument"),
    ({"solution": 3}, "solution: 3 must be the name of a column"),
])
def test_columns_refuses_typos_reserved_names_and_non_names(columns, needle):
    _, problems = validate_model(DatasetEntry, {"path": "x.jsonl", "percentage": 1, "reward_funcs": [{"name": "k"}],
                                                "columns": columns}, "c.yaml")
    assert any(needle in p.message for p in problems), problems


def test_a_mapped_column_the_rows_lack_is_exit_2_listing_the_columns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    sc = write_super(tmp_path, _config(columns={"prompt": "question", "solution": "final"}))
    assert main(["--super-config", str(sc), "--validate", "--outputs", str(tmp_path / "out")]) == 2
    assert "datasets[0].columns.solution: no column 'final' in inputs/gsm8k_sample.jsonl" in capsys.readouterr().err


def test_the_readme_recipe_is_the_shipped_config():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### GSM8K with TRL's accuracy_reward", 1)[1].split("\n## ", 1)[0]
    block = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    shipped = yaml.safe_load(CONFIG.read_text())["datasets"][0]
    entry = block["datasets"][0]
    assert entry["columns"] == shipped["columns"] and entry["reward_funcs"] == shipped["reward_funcs"]
    assert ".venv/bin/grpo-pipelines run --super-config pipelines/grpo/configs/super_config_gsm8k.yaml" in section


@pytest.mark.slow
def test_the_recipe_trains_two_steps_on_cpu(outputs):  # noqa: F811
    assert run_node(outputs, SUPER, "run_name=gsm8k", "training_parameters.max_steps=2") == 0
    records = step_records(outputs / "gsm8k")
    assert [r["step"] for r in records] == [1, 2]
    assert all("rewards/gsm8k_sample/accuracy_reward/mean" in r for r in records)


@pytest.mark.slow
def test_prompts_too_long_for_the_budget_say_how_long_they_are_and_what_fits(outputs, capsys):  # noqa: F811
    assert run_node(outputs, SUPER, "training_parameters.max_prompt_length=96") == 2   # before any model loads
    err = capsys.readouterr().err
    found = re.search(r"no usable rows among 24 read: 24 prompt\(s\) were longer than max_prompt_length 96 tokens "
                      r"\(the shortest (\d+) tokens, the longest (\d+), counted with the chat template\); a "
                      r"max_prompt_length of (\d+) would keep the ones counted", err)
    assert found, err
    assert 96 < int(found.group(1)) <= int(found.group(2)) == int(found.group(3))
    assert "rows need `conversations`" not in err         # the format lecture is not the cause here
