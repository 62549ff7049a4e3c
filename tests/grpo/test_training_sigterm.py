"""SIGTERM during training (what `timeout`, `docker stop`, systemd and SLURM preemption send) saves a checkpoint of
the last completed step as Ctrl-C does, exits 143 with a line in run.log, and a resume ends where an
uninterrupted run ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.grpo.checkpoints import COMPLETE_MARKER
from tests.grpo.test_training_resume import HANG_ENV, resume_config
from tests.grpo.training_runs import (REPO, outputs, run_node, step_records, tiny_cache,  # noqa: F401
                                      trainer_state, write_super)


@pytest.mark.slow
def test_sigterm_at_step_6_saves_checkpoint_5_exits_143_and_resumes_to_the_end(outputs, tmp_path):  # noqa: F811
    steps = 7
    super_cfg = write_super(tmp_path / "term", resume_config("term", steps))
    flag, out = tmp_path / "hanging", tmp_path / "child.out"
    env = {**os.environ, HANG_ENV: "6", HANG_ENV + "_FLAG": str(flag), "PYTHONPATH": str(REPO)}
    with open(out, "wb") as sink:
        child = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config", str(super_cfg),
                                  "--outputs", str(outputs)], cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            deadline = time.time() + 180
            while not flag.exists():
                assert child.poll() is None, out.read_text()[-3000:]
                assert time.time() < deadline, "the child never reached step 6"
                time.sleep(0.2)
            time.sleep(0.5)
            child.send_signal(signal.SIGTERM)             # what `kill PID` sends
            code = child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    text = out.read_text()
    run = outputs / "term"
    assert code == 143, text[-3000:]
    assert (run / "checkpoint-5" / COMPLETE_MARKER).is_file(), text[-3000:]   # steps 1-5 done, step 6 was scoring
    log = (run / "run.log").read_text()
    assert "terminated (SIGTERM) at step 5: checkpoint saved to" in log
    assert "node grpo terminated (SIGTERM); this run dir keeps what was written" in log
    assert "node 'grpo' terminated (SIGTERM)" in text and "resume with" in text

    assert run_node(outputs, super_cfg, "training_parameters.resume_from_checkpoint=auto") == 0
    assert trainer_state(run / f"checkpoint-{steps}")["global_step"] == steps       # the uninterrupted run's end
    assert [r["step"] for r in step_records(run)] == list(range(1, steps + 1))     # no step twice, none missing
