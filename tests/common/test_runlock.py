"""One run per run dir (F3): an exclusive flock held for the run's life, refused at once with the holder's
PID, released by the kernel however the holder ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.common.runlock import LOCK_FILE, RunDirBusy, RunLock, busy_holder
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom pipelines.common.runlock import RunLock\nRunLock(sys.argv[1]).acquire()\n"
        "print('locked', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/out/busy; killed -9 by the test or at teardown."""
    run_dir = tmp_path / "out" / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().strip() == "locked"
    yield proc, run_dir
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_second_lock_names_the_holder_and_a_killed_holder_frees_it(holder):
    proc, run_dir = holder
    with pytest.raises(RunDirBusy) as err:
        RunLock(run_dir).acquire()
    assert f"PID {proc.pid}" in str(err.value)
    assert busy_holder(run_dir)["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)          # a crash: no cleanup code runs, the lock file stays behind
    proc.wait()
    assert (run_dir / LOCK_FILE).exists() and busy_holder(run_dir) is None
    with RunLock(run_dir) as lock:            # the stale file never blocks the next run (or a resume)
        assert busy_holder(run_dir)["pid"] == os.getpid() and lock.fd is not None
    assert busy_holder(run_dir) is None


def _record_pipeline(tmp_path: Path) -> Path:
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"run_name": "busy", "log": str(tmp_path / "log.jsonl")}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:record", "config": "n.yaml"}]}))
    return sc


@pytest.mark.parametrize("validate", [False, True])
def test_run_on_a_locked_run_dir_exits_2_naming_the_pid_and_writes_nothing(tmp_path, holder, capsys, validate):
    proc, run_dir = holder
    before = sorted(p.name for p in run_dir.iterdir())
    rc = main(["--super-config", str(_record_pipeline(tmp_path)), "--outputs", str(tmp_path / "out")]
              + (["--validate"] if validate else []))
    assert rc == 2 and f"in use by another run (PID {proc.pid}" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == before and not (tmp_path / "log.jsonl").exists()


def test_lock_is_released_after_a_failed_run(tmp_path):
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"run_name": "boom"}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:fail", "config": "n.yaml"}]}))
    assert main(["--super-config", str(sc), "--outputs", str(tmp_path / "out")]) == 1
    assert busy_holder(tmp_path / "out" / "boom") is None


def test_other_machines_of_a_multi_machine_run_join_machine_0s_lock(tmp_path, holder):
    """Every machine runs the same command on a shared run dir: only machine_rank 0 takes the lock."""
    proc, run_dir = holder
    sc = _record_pipeline(tmp_path)
    args = ["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--set", "launch.machine_rank=1"]
    assert main(args + ["--validate"]) == 0
    assert main(args) == 0 and (tmp_path / "log.jsonl").exists()
    assert busy_holder(run_dir)["pid"] == proc.pid          # machine 0's lock is untouched


def test_a_busy_run_dir_is_not_reported_as_an_invalid_configuration(tmp_path, holder, capsys):
    proc, run_dir = holder
    assert main(["--super-config", str(_record_pipeline(tmp_path)), "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Run dir in use by another run; nothing was written:" in err
    assert "Wait for that run to end, or choose another run_name." in err
    assert "Configuration invalid" not in err and "Fix them and run again" not in err
