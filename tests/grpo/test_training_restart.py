"""A run that stopped before its first checkpoint does not block its own name: running the same command again
restarts it from step 0, keeping the earlier log."""
from __future__ import annotations

import json

import pytest

from pipelines.grpo.checkpoints import COMPLETE_MARKER, stopped_before_first_checkpoint
from tests.grpo.training_runs import (outputs, quickstart_config, run_node, step_records, tiny_cache,  # noqa: F401
                                      write_super)


def _dead_attempt(run, status="failed"):
    run.mkdir(parents=True)
    (run / "resolved_config.yaml").write_text("run_name: again\n")
    (run / "run.log").write_text("10:00:00 ERROR earlier attempt: the judge was down\n")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "rewards/combined/mean": 0.5}) + "\n")
    if status:
        (run / "manifest.json").write_text(json.dumps({"status": status}))


def test_what_counts_as_stopped_before_the_first_checkpoint(tmp_path):
    _dead_attempt(tmp_path / "a")
    assert stopped_before_first_checkpoint(tmp_path / "a")
    _dead_attempt(tmp_path / "killed", status=None)          # kill -9: no manifest; maybe live on another machine
    assert not stopped_before_first_checkpoint(tmp_path / "killed")
    _dead_attempt(tmp_path / "done", status="completed")
    assert not stopped_before_first_checkpoint(tmp_path / "done")
    _dead_attempt(tmp_path / "saved")
    ckpt = tmp_path / "saved" / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text('{"global_step": 2}')
    (ckpt / COMPLETE_MARKER).write_text("{}")
    assert not stopped_before_first_checkpoint(tmp_path / "saved")     # resumable: resume it instead


def test_validate_accepts_the_name_of_a_run_that_never_checkpointed(outputs, tmp_path, capsys):  # noqa: F811
    cfg = quickstart_config(max_steps=2)
    cfg["run_name"] = "again"
    sc = write_super(tmp_path, cfg)
    _dead_attempt(outputs / "again")
    assert run_node(outputs, sc, extra=["--validate"]) == 0, capsys.readouterr().err
    (outputs / "again" / "manifest.json").unlink()              # killed -9: refused, with how to restart it
    assert run_node(outputs, sc, extra=["--validate"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "resume_from_checkpoint=auto (it has no checkpoint yet: that starts " \
        "it again from step 0, keeping its run.log)" in err
    (outputs / "again" / "manifest.json").write_text(json.dumps({"status": "completed"}))
    assert run_node(outputs, sc, extra=["--validate"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.slow
def test_running_it_again_restarts_from_step_0_keeping_the_earlier_log(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=2, save_steps=10)
    cfg["run_name"] = "again"
    _dead_attempt(outputs / "again")
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    run = outputs / "again"
    log = (run / "run.log").read_text()
    assert log.startswith("10:00:00 ERROR earlier attempt: the judge was down")
    assert "holds an earlier attempt that stopped before its first checkpoint: starting again from step 0" in log
    assert [r["step"] for r in step_records(run)] == [1, 2]              # the dead attempt's record is gone
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
