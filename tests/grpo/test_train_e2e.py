"""End to end through the runner on CPU with the tiny model: artifacts, metrics, learning, resume, evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.common.io import read_jsonl
from pipelines.runner import main

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def info_logging():
    """run_pipeline.py logs at INFO (basicConfig); under pytest the root logger stays at WARNING."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


def write_super(tmp: Path, repo: Path, overrides: dict | None = None) -> Path:
    cfg = yaml.safe_load((repo / "pipelines/grpo/configs/quickstart.yaml").read_text())
    cfg["datasets"][0]["path"] = str(repo / "inputs/quickstart.jsonl")
    node_cfg = tmp / "grpo.yaml"
    node_cfg.write_text(yaml.safe_dump(cfg))
    sup = tmp / "super.yaml"
    sup.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": str(node_cfg),
                                                       "overrides": overrides or {}}]}))
    return sup


def run(sup: Path, outputs: Path, *sets: str) -> int:
    args = ["--super-config", str(sup), "--outputs", str(outputs)]
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_quickstart_learns_and_writes_artifacts(tmp_path, repo_root):
    sup = write_super(tmp_path, repo_root)
    assert run(sup, tmp_path / "out", "run_name=q") == 0
    rd = tmp_path / "out" / "q"
    adapter = rd / "final_adapter"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "adapter_config.json").exists()
    assert "<|im_start|>" in (adapter / "chat_template.jinja").read_text()
    assert (rd / "reward_curve.png").stat().st_size > 1000
    records = list(read_jsonl(rd / "metrics.jsonl"))
    steps = [r for r in records if "reward_combined_mean" in r]
    assert [r["step"] for r in steps] == list(range(1, 41))
    assert all("rewards/d0/keyword/mean" in r and "rewards/d0/regex_match/mean" in r for r in steps)
    # The reward clearly rises with the fixed seed (max 2.0: both rewards).
    first = sum(r["reward_combined_mean"] for r in steps[:8]) / 8
    last = sum(r["reward_combined_mean"] for r in steps[-8:]) / 8
    assert first < 1.0 and last > 1.5, (first, last)
    summary = json.loads((rd / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["reward"]["last"] > summary["reward"]["first"] + 0.5
    # Evaluation every 10 steps on held-out rows, with accuracy against max_reward.
    evals = [r for r in records if "eval/reward_mean" in r]
    assert [r["step"] for r in evals] == [10, 20, 30, 40]
    assert evals[-1]["eval/accuracy"] > evals[0]["eval/accuracy"]
    assert "eval/rewards/d0/keyword/mean" in evals[-1]
    # Held-out prompts never reach the trainer: none of them appears in the high-scoring export.
    high = list(read_jsonl(rd / "high_scoring_examples.jsonl"))
    assert high and all(h["reward"] >= 2.0 for h in high)
    # The completions are cut at the stop sequence "." (kept in the text).
    assert all(h["completion"].count(".") <= 1 and (h["completion"].endswith(".") or "." not in h["completion"])
               for h in high)
    log_text = (rd / "run.log").read_text()
    assert "sample prompt and its completions" in log_text and "GRPO run finished: 40 steps" in log_text
    manifest = json.loads((rd / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["outputs"]["final_adapter"] == str(adapter)
    assert (rd / "checkpoint-40" / "COMPLETE").exists()


def test_resume_continues_at_the_right_step_without_duplicates(tmp_path, repo_root):
    sup = write_super(tmp_path, repo_root, {"training_parameters.max_steps": 12,
                                            "training_parameters.save_steps": 4,
                                            "training_parameters.save_total_limit": 5,
                                            "reward.score_save_threshold": 1.0, "evaluation": None})
    out = tmp_path / "out"
    # Reference: the same run without interruption.
    assert run(sup, out, "run_name=ref") == 0
    # An interrupted run: stops after step 8's checkpoint (max_steps 8), then a half-written checkpoint-12
    # (as if killed while saving) and metrics of steps the resume will redo.
    assert run(sup, out, "run_name=r", "training_parameters.max_steps=8") == 0
    rd = out / "r"
    (rd / "final_adapter").rename(rd / "old_adapter")
    (rd / "checkpoint-12").mkdir()
    (rd / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')
    with open(rd / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 9, "reward_combined_mean": 99.0}) + "\n")
    with open(rd / "high_scoring_examples.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 9, "reward": 2.0, "completion": "stale"}) + "\n")
    # A run dir that holds a run is refused without resume ...
    assert run(sup, out, "run_name=r") == 2
    # ... and continues from checkpoint-8 with it.
    assert run(sup, out, "run_name=r", "training_parameters.max_steps=12",
               "training_parameters.resume_from_checkpoint=auto") == 0
    summary = json.loads((rd / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["resumed_from"].endswith("checkpoint-8")
    metrics = [r for r in read_jsonl(rd / "metrics.jsonl") if "reward_combined_mean" in r]
    assert [r["step"] for r in metrics] == list(range(1, 13))
    ref = [r for r in read_jsonl(out / "ref" / "metrics.jsonl") if "reward_combined_mean" in r]
    # Same data order and RNG after the resume: the resumed steps see the same prompts and rewards.
    assert [r["reward_combined_mean"] for r in metrics] == pytest.approx([r["reward_combined_mean"] for r in ref])
    high = list(read_jsonl(rd / "high_scoring_examples.jsonl"))
    ref_high = list(read_jsonl(out / "ref" / "high_scoring_examples.jsonl"))
    assert all(h.get("completion") != "stale" for h in high)
    key = lambda h: (h["step"], h["row_id"], h["completion"])  # noqa: E731
    assert sorted(map(key, high)) == sorted(map(key, ref_high))
    assert len(set(map(key, high))) == len(high)
