"""Two real training runs started with one run_name (F3): the second exits 2 within 5 s naming the first's
PID, and the first finishes with every step and high-score record written once."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from pipelines.common.io import read_jsonl
from pipelines.common.runlock import busy_holder
from tests.grpo.training_runs import (REPO, outputs, quickstart_config, step_records, tiny_cache,  # noqa: F401
                                      write_super)

STEPS = 6


@pytest.mark.slow
def test_second_run_on_the_same_run_dir_exits_2_and_the_first_is_intact(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=STEPS, save_steps=3)
    cfg["run_name"] = "shared"
    cfg["reward"]["score_save_threshold"] = 0.0          # every completion is exported: duplicates would show
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--super-config", str(write_super(tmp_path, cfg)),
           "--outputs", str(outputs)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = outputs / "shared"
    # Started together, as in F3: both pass validation (the folder is empty); one takes the lock first.
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    started = time.monotonic()
    try:
        while all(p.poll() is None for p in procs):
            assert time.monotonic() - started < 5.0, "neither run was refused within 5 s"
            time.sleep(0.02)
        loser = next(p for p in procs if p.poll() is not None)
        first = next(p for p in procs if p is not loser)
        refusal = loser.communicate()[0]
        assert loser.returncode == 2, refusal
        assert f"in use by another run (PID {first.pid}" in refusal
        log, _ = first.communicate(timeout=600)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert first.returncode == 0, log[-3000:]
    assert [r["step"] for r in step_records(run)] == list(range(1, STEPS + 1))
    lines = [line for line in (run / "high_scoring_examples.jsonl").read_text().splitlines() if line]
    assert lines and not [line for line, n in Counter(lines).items() if n > 1]
    per_step = Counter(r["step"] for r in read_jsonl(run / "high_scoring_examples.jsonl"))
    assert max(per_step.values()) <= cfg["training_parameters"]["per_device_train_batch_size"]
    assert busy_holder(run) is None
