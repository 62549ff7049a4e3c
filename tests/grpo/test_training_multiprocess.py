"""Two processes (torchrun + gloo on a CPU): run-level artifacts, the final adapter and the summary are written by
the main process only, and a resumed two-process run records every completion exactly once."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.grpo.training_runs import (high_scores, outputs, quickstart_config, run_node,  # noqa: F401
                                      step_records, tiny_cache, trainer_state, two_process_device,
                                      write_super)

PER_STEP = 2 * 8      # two ranks, each 2 prompts x 4 generations


def assert_rank1_wrote_no_run_artifacts(run) -> None:
    rank1 = (run / "run.rank1.log").read_text()
    assert "training rows" in rank1                      # rank 1 did log (its own file)
    for main_only in ("final adapter saved", "GRPO run finished", "dropped"):
        assert main_only not in rank1, main_only
    assert "GRPO run finished" in (run / "run.log").read_text()


@pytest.mark.slow
def test_two_processes_main_process_artifacts_and_resume(outputs, tmp_path):  # noqa: F811
    steps = 4
    cfg = quickstart_config(max_steps=steps, save_steps=2, save_total_limit=None)
    cfg["run_name"] = "mp2"
    cfg["reward"]["score_save_threshold"] = 0.0          # every completion of both ranks is recorded
    cfg["logging"]["log_completions_every"] = 0
    cfg["launch"] = {"device": two_process_device()}
    super_cfg = write_super(tmp_path, cfg)
    assert run_node(outputs, super_cfg, extra=["--num-processes", "2"]) == 0
    run = outputs / "mp2"
    assert_rank1_wrote_no_run_artifacts(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps and summary["reward"]["steps_logged"] == steps

    # as if killed after checkpoint-2 was saved: steps 3-4 are logged and recorded, but not checkpointed
    shutil.rmtree(run / "checkpoint-4")
    shutil.rmtree(run / "final_adapter")
    (run / "run.rank1.log").unlink()
    assert run_node(outputs, super_cfg, "training_parameters.resume_from_checkpoint=auto",
                    extra=["--num-processes", "2"]) == 0
    assert trainer_state(run / "checkpoint-4")["global_step"] == steps
    assert "high-scoring export: dropped 32 record(s) after step 2" in (run / "run.log").read_text()
    assert [r["step"] for r in step_records(run)] == list(range(1, steps + 1))
    counts: dict[tuple[int, int], int] = {}
    for rec in high_scores(run):
        counts[rec["step"], rec["rank"]] = counts.get((rec["step"], rec["rank"]), 0) + 1
    assert counts == {(s, r): PER_STEP // 2 for s in range(1, steps + 1) for r in (0, 1)}
    assert (run / "final_adapter" / "adapter_model.safetensors").is_file()
    assert_rank1_wrote_no_run_artifacts(run)
    assert json.loads((run / "summary.json").read_text())["resumed_from"].endswith("checkpoint-2")
