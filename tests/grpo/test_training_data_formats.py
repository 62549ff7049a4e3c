"""The data formats GRPO users already have (issue 13): each validates and trains 2 steps on CPU with the tiny
model: prompt-only `messages` with a `solution` column, TRL `prompt` rows, open-r1 `problem`/`solution` via
`columns`, and a local folder in the Hugging Face Hub layout via `hf:`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.grpo.training_runs import (outputs, quickstart_config, run_node, step_records,  # noqa: F401
                                      tiny_cache, write_super)

ROWS = 12


def _prompt_only_messages(folder: Path) -> dict:
    path = folder / "msgs.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say Joy {i}."}],
                                        "solution": "Joy"}) + "\n" for i in range(ROWS)))
    return {"path": str(path), "columns": {"answer": "solution"}}


def _trl_prompt(folder: Path) -> dict:
    path = folder / "trl.jsonl"
    lines = [{"prompt": f"Say Joy {i}."} if i % 2 else {"prompt": [{"role": "user", "content": f"Say Joy {i}."}]}
             for i in range(ROWS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return {"path": str(path)}


def _problem_solution(folder: Path) -> dict:
    path = folder / "r1.jsonl"
    path.write_text("".join(json.dumps({"problem": f"What is {i} + 1?", "solution": str(i + 1)}) + "\n"
                            for i in range(ROWS)))
    return {"path": str(path), "columns": {"prompt": "problem", "answer": "solution"}}


def _hub_folder(folder: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = folder / "hub" / "data"
    data.mkdir(parents=True)
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(ROWS)]
    pq.write_table(pa.Table.from_pylist(rows), data / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:2]), data / "test-00000-of-00001.parquet")
    return {"path": f"hf:{folder / 'hub'}", "split": "train", "columns": {"prompt": "question"}}


@pytest.mark.slow
@pytest.mark.parametrize("make", [_prompt_only_messages, _trl_prompt, _problem_solution, _hub_folder])
def test_format_validates_and_trains_two_steps(outputs, tmp_path, make, capsys):  # noqa: F811
    dataset = make(tmp_path)
    cfg = quickstart_config(max_steps=2, save_steps=2)
    cfg["dataset_settings"]["total_rows"] = 8
    rewards = [{"name": "keyword", "keywords": ["Joy"]}]
    if dataset.get("columns", {}).get("answer") or "hub" in dataset["path"]:
        rewards.append({"name": "answer_match", "mode": "numeric" if "columns" in dataset and
                        dataset["columns"].get("prompt") else "normalized"})
    cfg["datasets"] = [{**dataset, "label": "fmt", "percentage": 1.0, "reward_funcs": rewards}]
    cfg["run_name"] = "fmt"
    super_cfg = write_super(tmp_path / "cfg", cfg)
    assert run_node(outputs, super_cfg, extra=["--validate"]) == 0
    out = capsys.readouterr().out
    assert "usable: 8, skipped: none" in out and "OK: 1 node(s) valid" in out
    assert run_node(outputs, super_cfg) == 0
    steps = step_records(outputs / "fmt")
    assert len(steps) == 2
    assert all("rewards/fmt/keyword/mean" in s for s in steps)
    if len(rewards) == 2:   # the answer reached the reward: scored, not None
        assert all(s.get("rewards/fmt/answer_match/mean") is not None for s in steps)
