"""The difficulty pool survives a SIGKILL: after a resume from the last checkpoint, difficulty.parquet equals the
uninterrupted run's, its attempts add up to the completions generated, and dynamic sampling drew the same fresh
rows at every step."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines.grpo.checkpoints import COMPLETE_MARKER
from tests.grpo.test_training_resume import HANG_ENV, by_step, resume_config
from tests.grpo.training_runs import REPO, high_scores, outputs, run_node, tiny_cache, write_super  # noqa: F401


def config(run_name: str, steps: int) -> dict:
    cfg = resume_config(run_name, steps)
    # the keyword is rarely written, so most groups are dead: one extra batch per step replaces some of them
    cfg["dataset_settings"]["dynamic_sampling"] = {"enabled": True, "max_extra_batches": 1}
    return cfg


def kill_at_step(outputs, tmp_path, super_cfg, step: int) -> None:  # noqa: F811
    """Run in a child process and SIGKILL it while it scores ``step``."""
    flag = tmp_path / "hanging"
    env = {**os.environ, HANG_ENV: str(step), HANG_ENV + "_FLAG": str(flag)}
    with open(tmp_path / "child.out", "wb") as sink:
        child = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config", str(super_cfg),
                                  "--outputs", str(outputs)], cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            deadline = time.time() + 180
            while not flag.exists():
                assert child.poll() is None, (tmp_path / "child.out").read_text()[-3000:]
                assert time.time() < deadline, f"the child never reached step {step}"
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()


@pytest.mark.slow
def test_difficulty_table_after_sigkill_and_resume_equals_the_uninterrupted_one(outputs, tmp_path):  # noqa: F811
    steps = 5
    assert run_node(outputs, write_super(tmp_path / "ref", config("ref", steps))) == 0
    ref = outputs / "ref"
    super_cfg = write_super(tmp_path / "killed", config("killed", steps))
    kill_at_step(outputs, tmp_path, super_cfg, 4)
    run = outputs / "killed"
    assert (run / "checkpoint-2" / COMPLETE_MARKER).is_file() and not (run / "checkpoint-4").exists()
    assert (run / "checkpoint-2" / "difficulty.parquet").is_file()
    # the run dir's table had moved past the checkpoint (step 3) before the kill
    assert pq.read_table(run / "difficulty.parquet") != pq.read_table(run / "checkpoint-2" / "difficulty.parquet")

    assert run_node(outputs, super_cfg, "training_parameters.resume_from_checkpoint=auto") == 0
    table, expected = pq.read_table(run / "difficulty.parquet"), pq.read_table(ref / "difficulty.parquet")
    assert table.to_pydict() == expected.to_pydict()
    # every completion is exported (score_save_threshold 0), extra batches included: attempts count them all
    generated = high_scores(run)
    assert sum(table["attempts"].to_pylist()) == len(generated) > steps * 8
    per_row = Counter((r["row_id"]) for r in generated)
    assert dict(zip(table["row_id"].to_pylist(), table["attempts"].to_pylist())) == dict(per_row)
    # the same fresh rows at every step as the uninterrupted run
    ours, theirs = by_step(generated), by_step(high_scores(ref))
    for step in range(1, steps + 1):
        assert Counter(r["row_id"] for r in ours[step]) == Counter(r["row_id"] for r in theirs[step]), step
    assert pq.read_table(run / "checkpoint-4" / "difficulty.parquet").num_rows > 0
