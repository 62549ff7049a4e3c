"""The quickstart as 2 processes (torchrun + gloo on the CPU; two GPUs where two are visible): steps, one adapter,
both ranks' rewards recorded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.common.io import read_jsonl
from pipelines.runner import main
from tests.grpo.training_runs import two_process_device

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_two_processes(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    steps, per_device = 6, 8
    rc = main(["--outputs", str(out), "--num-processes", "2", "--set", "run_name=mp",
               "--set", f"training_parameters.max_steps={steps}", "--set", "training_parameters.save_steps=3",
               "--set", f"training_parameters.per_device_train_batch_size={per_device}",
               "--set", "reward.score_save_threshold=0.0", "--set", f"launch.device={two_process_device()}"])
    assert rc == 0
    run = out / "mp"
    state = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    adapters = [p for p in run.rglob("adapter_config.json") if "checkpoint-" not in str(p)]
    assert [p.parent.name for p in adapters] == ["final_adapter"]
    step_logs = [r for r in read_jsonl(run / "metrics.jsonl") if "rewards/combined/mean" in r]
    assert [r["step"] for r in step_logs] == list(range(1, steps + 1))
    # each rank scores its own per-device batch; the logged statistics cover both ranks
    assert all(r["rewards/combined/count"] == 2 * per_device for r in step_logs)
    ranks = {r["rank"] for r in read_jsonl(run / "high_scoring_examples.jsonl")}
    assert ranks == {0, 1}
    records = list(read_jsonl(run / "high_scoring_examples.jsonl"))
    assert len(records) == 2 * per_device * steps  # threshold 0: every completion, none lost or doubled
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
