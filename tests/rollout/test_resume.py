"""A killed rollout resumes without regenerating the prompts it finished."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.common.io import read_jsonl
from pipelines.rollout.selection import group_by_prompt
from tests.rollout.test_node import K, rollout_config, run_rollout, write_yaml

REPO = Path(__file__).resolve().parents[2]


def check_complete(run_dir: Path, prompts: int) -> list[dict]:
    records = list(read_jsonl(run_dir / "scored.jsonl"))
    keys = [(r["row_id"], r["completion_index"]) for r in records]
    assert len(keys) == len(set(keys)) == prompts * K
    groups = group_by_prompt(records)
    assert len(groups) == prompts
    assert all([r["completion_index"] for r in g] == list(range(K)) for g in groups.values())
    assert len(list(read_jsonl(run_dir / "sft.jsonl"))) == len(
        [g for g in groups.values() if max(r["reward"] for r in g) >= 1.0])
    return records


def test_resume_keeps_finished_prompts_and_redoes_a_half_written_one(tiny_model_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cfg = rollout_config(tmp_path, tiny_model_dir)
    assert run_rollout(tmp_path, cfg) == 0
    run_dir = tmp_path / "out" / "roll"
    lines = (run_dir / "scored.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:3 * K]
    # as a kill leaves it: 3 finished prompts, 2 of the 4th prompt's completions, a torn line; no manifest
    (run_dir / "scored.jsonl").write_text("".join(kept + lines[3 * K:3 * K + 2]) + lines[3 * K + 2][:25])
    for name in ("manifest.json", "sft.jsonl", "preferences.jsonl", "scored.parquet", "summary.json"):
        (run_dir / name).unlink()
    assert run_rollout(tmp_path, cfg, "--set", "resume=true") == 0
    records = check_complete(run_dir, 12)
    assert (run_dir / "scored.jsonl").read_text().splitlines(keepends=True)[:3 * K] == kept
    log = (run_dir / "run.log").read_text()
    assert "9 prompt(s) to generate (3 already done)" in log
    assert "dropping 2 record(s) of 1 unfinished prompt(s)" in log
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    assert [r["row_id"] for r in records[::K]][:3] == [json.loads(x)["row_id"] for x in kept[::K]]
    # batches are fixed and seeded by index: the untouched batches 1 and 2 (prompts 4-11) come out the same
    original = [json.loads(x) for x in lines]
    by_key = {(r["row_id"], r["completion_index"]): r["completion"] for r in records}
    assert [by_key[(r["row_id"], r["completion_index"])] for r in original[4 * K:]] == \
           [r["completion"] for r in original[4 * K:]]


@pytest.mark.slow
def test_kill_9_then_resume(tiny_model_dir, tmp_path):
    """A real SIGKILL mid-run, then `--set resume=true`: finished prompts are kept byte for byte."""
    cfg = rollout_config(tmp_path, tiny_model_dir, generation={"batch_size": 1, "max_new_tokens": 24},
                         dataset_settings={"total_rows": 16})
    cfg["datasets"][1]["percentage"] = 0.5
    write_yaml(tmp_path / "rollout.yaml", cfg)
    sc = write_yaml(tmp_path / "super.yaml", {"pipeline_order": [{"node": "rollout", "config": "rollout.yaml"}]})
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--super-config", str(sc), "--outputs", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scored = tmp_path / "out" / "roll" / "scored.jsonl"
    child_log = tmp_path / "killed_run.stderr"
    with open(child_log, "wb") as sink:   # kept: a run that ends by itself says why (it exited 1 on a CUDA box)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                if scored.exists() and scored.read_text().count("\n") >= 2 * K:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.01)
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f"the run should still have been going when it was killed; it exited {proc.returncode}:\n"
        + child_log.read_text(errors="replace")[-3000:])
    before = [line for line in scored.read_text().splitlines(keepends=True) if line.endswith("\n")]
    finished_prompts = len(before) // K
    assert 2 <= finished_prompts < 16
    done = subprocess.run(cmd + ["--set", "resume=true"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = scored.parent
    check_complete(run_dir, 16)
    assert scored.read_text().splitlines(keepends=True)[:finished_prompts * K] == before[:finished_prompts * K]
    assert f"({finished_prompts} already done)" in (run_dir / "run.log").read_text()
    # one prompt per batch, each seeded by its index: the same data as a run that was never interrupted
    cfg["run_name"] = "uninterrupted"
    write_yaml(tmp_path / "rollout.yaml", cfg)
    clean = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    resumed = {(r["row_id"], r["completion_index"]): r["completion"] for r in read_jsonl(scored)}
    fresh = {(r["row_id"], r["completion_index"]): r["completion"]
             for r in read_jsonl(tmp_path / "out" / "uninterrupted" / "scored.jsonl")}
    assert resumed == fresh


@pytest.mark.slow
def test_sigterm_exits_143_saying_what_is_kept_and_resume_finishes(tiny_model_dir, tmp_path):
    """SIGTERM (kill PID) mid-rollout: exit 143, the console and run.log say the run dir keeps what was written
    and how to resume; `--set resume=true` then completes it without redoing finished prompts."""
    cfg = rollout_config(tmp_path, tiny_model_dir, generation={"batch_size": 1, "max_new_tokens": 24},
                         dataset_settings={"total_rows": 16})
    cfg["datasets"][1]["percentage"] = 0.5
    write_yaml(tmp_path / "rollout.yaml", cfg)
    sc = write_yaml(tmp_path / "super.yaml", {"pipeline_order": [{"node": "rollout", "config": "rollout.yaml"}]})
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--super-config", str(sc), "--outputs", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scored = tmp_path / "out" / "roll" / "scored.jsonl"
    child_log = tmp_path / "terminated.stderr"
    with open(child_log, "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                if scored.exists() and scored.read_text().count("\n") >= 2 * K:
                    proc.send_signal(signal.SIGTERM)
                    break
                time.sleep(0.01)
        finally:
            proc.wait(timeout=60)
    err = child_log.read_text(errors="replace")
    assert proc.returncode == 143, err[-3000:]
    assert "node 'rollout' terminated (SIGTERM); its run dir" in err and "resume with --set resume=true" in err
    assert "Traceback" not in err
    log = (scored.parent / "run.log").read_text()
    assert "node rollout terminated (SIGTERM); this run dir keeps what was written" in log
    finished = len([ln for ln in scored.read_text().splitlines(keepends=True) if ln.endswith("\n")]) // K
    done = subprocess.run(cmd + ["--set", "resume=true"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    check_complete(scored.parent, 16)
    assert f"({finished} already done)" in log + (scored.parent / "run.log").read_text()
