"""Rewards in real GRPO runs of the tiny model on CPU: TRL's own reward function named by import path (issue 13),
and a hanging sync reward (issue 16, F6): it times out as a reward error naming it, and Ctrl-C ends the run
with exit 130 and a checkpoint within seconds, whatever the reward is doing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines.grpo.checkpoints import COMPLETE_MARKER
from tests.grpo.training_runs import (REPO, outputs, quickstart_config, run_node, step_records,  # noqa: F401
                                      tiny_cache, write_super)

pytestmark = pytest.mark.slow
HANG_AT = "GRPO_TEST_REWARD_HANG_AT"


def hangs_at_step(keyword: str = "Joy"):
    """A plain ``def`` reward that never returns from step $GRPO_TEST_REWARD_HANG_AT on (after touching
    $GRPO_TEST_REWARD_HANG_AT_FLAG), ignoring everything, as a stuck sync call would."""
    hang_at = int(os.environ.get(HANG_AT, "0"))

    def hangs_at_step(prompts, completions, trainer_state=None, **kwargs):
        if hang_at and trainer_state.global_step + 1 >= hang_at:
            Path(os.environ[HANG_AT + "_FLAG"]).write_text("hanging")
            while True:
                time.sleep(0.5)
        return [1.0 if keyword in c[-1]["content"] else 0.0 for c in completions]

    return hangs_at_step


def test_trl_think_format_reward_by_import_path_validates_and_trains(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=2, save_steps=10)
    cfg["run_name"] = "trl_reward"
    cfg["datasets"][0]["reward_funcs"] = [{"name": "trl.rewards:think_format_reward"},
                                          {"name": "think_format_reward", "weight": 0.5}]
    super_cfg = write_super(tmp_path, cfg)
    assert run_node(outputs, super_cfg, extra=["--validate"]) == 0
    assert run_node(outputs, super_cfg) == 0
    records = step_records(outputs / "trl_reward")
    assert [r["step"] for r in records] == [1, 2]
    assert all("rewards/quickstart/think_format_reward/mean" in r
               and "rewards/quickstart/think_format_reward_2/mean" in r
               for r in records)
    log = (outputs / "trl_reward" / "run.log").read_text()
    assert "'trl.rewards:think_format_reward' (import path): a plain reward function" in log


@contextmanager
def _hanging_run(outputs: Path, tmp_path: Path, name: str, **reward: object):
    """A training subprocess whose reward hangs at step 3; yields (child, flag file, output file) and kills the
    child on the way out if it is still running."""
    cfg = quickstart_config(max_steps=6, save_steps=10)
    cfg["run_name"] = name
    cfg["reward"].update(reward)
    cfg["datasets"][0]["reward_funcs"] = [{"name": "tests.grpo.test_training_rewards:hangs_at_step"}]
    cfg["logging"]["log_completions_every"] = 0
    flag, out = tmp_path / f"{name}.hanging", tmp_path / f"{name}.out"
    env = {**os.environ, HANG_AT: "3", HANG_AT + "_FLAG": str(flag), "PYTHONPATH": str(REPO)}
    with open(out, "wb") as sink:
        child = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config",
                                  str(write_super(tmp_path, cfg, name)), "--outputs", str(outputs)],
                                 cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            yield child, flag, out
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def _wait_for(child: subprocess.Popen, flag: Path, out: Path, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while not flag.exists():
        assert child.poll() is None, out.read_text()[-3000:]
        assert time.time() < deadline, "the child never reached the hanging step"
        time.sleep(0.2)


def test_f6_ctrl_c_during_a_hung_sync_reward_saves_and_exits_130(outputs, tmp_path):  # noqa: F811
    with _hanging_run(outputs, tmp_path, "ctrl_c") as (child, flag, out):
        _wait_for(child, flag, out)
        time.sleep(1.0)                        # the reward is now stuck in its thread
        child.send_signal(signal.SIGINT)
        start = time.time()
        try:
            code = child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not end the run within 30 s:\n" + out.read_text()[-3000:])
        elapsed = time.time() - start
    text = out.read_text()
    assert code == 130, text[-3000:]
    assert elapsed < 15, elapsed
    run = outputs / "ctrl_c"
    assert (run / "checkpoint-2" / COMPLETE_MARKER).is_file(), text[-3000:]   # steps 1-2 done, step 3 hung
    assert "interrupted at step 2: checkpoint saved" in text and "resume with" in text


def test_f6_a_hung_sync_reward_times_out_naming_it(outputs, tmp_path):  # noqa: F811
    with _hanging_run(outputs, tmp_path, "timeout", sync_timeout_s=2) as (child, flag, out):
        _wait_for(child, flag, out)
        code = child.wait(timeout=60)
    text = out.read_text()
    assert code == 1, text[-3000:]
    assert "reward 'tests.grpo.test_training_rewards:hangs_at_step' of datasets[0]" in text
    assert "did not return within 2 s (reward.sync_timeout_s)" in text
    assert "time out after 2 s per call" in text                 # the limit in force is logged at the start
    assert (outputs / "timeout" / "checkpoint-2" / COMPLETE_MARKER).is_file()
    assert "fix the cause, then resume with" in text
