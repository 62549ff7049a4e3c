"""SIGTERM (kill PID, timeout, docker stop, SLURM preemption) ends a run as Ctrl-C does, with exit code 143 and a
line in run.log; a multi-process launcher passes it on to its ranks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipelines.common.termination import EXIT_TERMINATED, Terminated, sigterm_as_interrupt
from pipelines.launch import wait_for_launcher

REPO = Path(__file__).resolve().parents[1]


def _wait_for(path: Path, child: subprocess.Popen, out: Path, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert child.poll() is None, out.read_text()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_sigterm_during_a_node_exits_143_and_says_so_in_run_log(tmp_path):
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"run_name": "slow"}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:wait_for_signal",
                                                      "name": "slow", "config": "n.yaml"}]}))
    run_dir, out = tmp_path / "out" / "slow", tmp_path / "child.out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(out, "wb") as sink:
        child = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config", str(sc), "--outputs",
                                  str(tmp_path / "out")], cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            _wait_for(run_dir / "waiting.0", child, out)
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
    text = out.read_text()
    assert code == EXIT_TERMINATED == 143, text[-3000:]
    assert "node 'slow' terminated (SIGTERM); its run dir" in text and "Traceback" not in text
    assert "node slow terminated (SIGTERM); this run dir keeps what was written" in (run_dir / "run.log").read_text()
    from pipelines.common.runlock import busy_holder
    assert busy_holder(run_dir) is None                      # the lock went with the process


def test_sigterm_while_waiting_for_ranks_is_passed_on_to_the_launcher(tmp_path):
    """Only the runner gets `kill PID`: it forwards SIGTERM to the launcher (which forwards it to the ranks), waits
    for it and re-raises, so the runner ends with 143 after the ranks have stopped."""
    flag = tmp_path / "got-sigterm"
    code = ("import signal, sys, time, pathlib\n"
            f"def h(*a):\n    pathlib.Path({str(flag)!r}).write_text('1'); sys.exit(143)\n"
            "signal.signal(signal.SIGTERM, h)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert launcher.stdout.readline().strip() == "ready"
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    with sigterm_as_interrupt():
        timer.start()
        started = time.time()
        with pytest.raises(Terminated):
            wait_for_launcher(launcher, 2, grace_s=30)
    assert flag.read_text() == "1" and launcher.returncode == 143
    assert time.time() - started < 20


def test_sigterm_handler_is_restored_after_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_to_a_multi_process_runner_ends_every_rank_and_exits_143(tmp_path):
    """`kill PID` of the runner of a two-rank (torchrun, CPU) node: the ranks get SIGTERM through the launcher,
    stop, and the runner exits 143 saying that a multi-process run saves no checkpoint on an interrupt."""
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"run_name": "multi", "launch": {"device": "cpu"}}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:wait_for_signal",
                                                      "name": "multi", "config": "n.yaml"}]}))
    run_dir, out = tmp_path / "out" / "multi", tmp_path / "child.out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(out, "wb") as sink:
        child = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config", str(sc), "--outputs",
                                  str(tmp_path / "out"), "--num-processes", "2"], cwd=REPO, env=env, stdout=sink,
                                 stderr=sink)
        try:
            for rank in (0, 1):
                _wait_for(run_dir / f"waiting.{rank}", child, out, seconds=120)
            ranks = [int((run_dir / f"waiting.{rank}").read_text()) for rank in (0, 1)]
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=90)
        finally:
            if child.poll() is None:
                child.kill()
    text = out.read_text()
    assert code == 143, text[-3000:]
    assert "terminated (SIGTERM): passing SIGTERM on to the 2 ranks; a multi-process run saves no checkpoint" in text
    deadline = time.time() + 10
    while not all(_gone(pid) for pid in ranks) and time.time() < deadline:
        time.sleep(0.2)
    assert all(_gone(pid) for pid in ranks), "a rank outlived the run"
    from pipelines.common.runlock import busy_holder
    assert busy_holder(run_dir) is None
