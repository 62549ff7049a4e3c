"""Resume after an interruption: a real SIGKILL after a checkpoint, then `resume_from_checkpoint: auto` finishes
the run at the right step, with no duplicated metrics or high-score records, replaying the uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipelines.common.io import current_umask
from pipelines.common.problems import ConfigError
from pipelines.grpo.checkpoints import COMPLETE_MARKER, latest_checkpoint, resolve_resume
from tests.grpo.training_runs import (REPO, high_scores, outputs, quickstart_config, run_node,  # noqa: F401
                                      step_records, tiny_cache, trainer_state, write_super)

HANG_ENV = "GRPO_TEST_HANG_AT_STEP"
PER_STEP = 8          # completions per optimizer step (2 prompts x 4 generations)


def hanging_keyword(keyword: str = "Joy"):
    """1.0 when ``keyword`` is in the completion. With $GRPO_TEST_HANG_AT_STEP=N, the scoring of step N hangs
    (after writing ``hanging`` next to the run's checkpoints), so a test can kill the run at a known point."""
    hang_at = int(os.environ.get(HANG_ENV, "0"))

    def reward(prompts, completions, trainer_state=None, **kwargs):
        step = trainer_state.global_step + 1
        if hang_at and step >= hang_at:
            Path(os.environ[HANG_ENV + "_FLAG"]).write_text(str(step))
            while True:
                time.sleep(1)
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if keyword in t else 0.0 for t in texts]

    return reward


def resume_config(run_name: str, max_steps: int = 7) -> dict:
    cfg = quickstart_config(max_steps=max_steps, save_steps=2, save_total_limit=None)
    cfg["run_name"] = run_name
    cfg["reward"]["score_save_threshold"] = 0.0          # every completion is recorded: duplicates show
    cfg["datasets"][0]["reward_funcs"] = [{"name": "tests.grpo.test_training_resume:hanging_keyword"}]
    cfg["logging"]["log_completions_every"] = 0
    return cfg


def by_step(records: list[dict]) -> dict[int, list]:
    out: dict[int, list] = {}
    for rec in records:
        out.setdefault(rec["step"], []).append(rec)
    return out


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_auto(outputs, tmp_path):  # noqa: F811
    steps = 7
    # the uninterrupted reference
    assert run_node(outputs, write_super(tmp_path / "ref", resume_config("ref", steps))) == 0
    ref = outputs / "ref"

    super_cfg = write_super(tmp_path / "killed", resume_config("killed", steps))
    flag = tmp_path / "hanging"
    env = {**os.environ, HANG_ENV: "6", HANG_ENV + "_FLAG": str(flag)}
    with open(tmp_path / "child.out", "wb") as sink:
        child = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config", str(super_cfg),
                                  "--outputs", str(outputs)], cwd=REPO, env=env, stdout=sink, stderr=sink)
        try:
            deadline = time.time() + 120
            while not flag.exists():
                assert child.poll() is None, (tmp_path / "child.out").read_text()[-3000:]
                assert time.time() < deadline, "the child never reached step 6"
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    run = outputs / "killed"
    assert (run / "checkpoint-4" / COMPLETE_MARKER).is_file() and not (run / "checkpoint-6").exists()
    assert max(r["step"] for r in step_records(run)) == 5         # step 5 was logged after checkpoint-4
    assert 5 in by_step(high_scores(run))
    # a half-written save of a later step (no completeness marker) is never picked
    half = run / "checkpoint-5"
    shutil.copytree(run / "checkpoint-4", half)
    (half / COMPLETE_MARKER).unlink()
    state = json.loads((half / "trainer_state.json").read_text())
    (half / "trainer_state.json").write_text(json.dumps({**state, "global_step": 5}))
    assert latest_checkpoint(run) == run / "checkpoint-4"

    assert run_node(outputs, super_cfg, "training_parameters.resume_from_checkpoint=auto") == 0
    assert trainer_state(run / f"checkpoint-{steps}")["global_step"] == steps
    logged = [r["step"] for r in step_records(run)]
    assert logged == list(range(1, steps + 1))                       # no step twice, none missing
    records = by_step(high_scores(run))
    assert {s: len(v) for s, v in records.items()} == {s: PER_STEP for s in range(1, steps + 1)}
    # the same data order as the uninterrupted run, and (seeded, RNG state restored) the very same rollouts
    reference = by_step(high_scores(ref))
    for step in range(1, steps + 1):
        assert Counter(r["row_id"] for r in records[step]) == Counter(r["row_id"] for r in reference[step])
        assert [r["completion"] for r in records[step]] == [r["completion"] for r in reference[step]], step
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps and summary["resumed_from"].endswith("checkpoint-4")


def test_auto_ignores_checkpoints_without_the_marker(tmp_path):
    """A checkpoint folder whose save was interrupted (no COMPLETE marker) is never picked by `auto`, even
    when its trainer_state.json, weights and optimizer files are there; an explicit path to one is refused."""
    run = tmp_path / "run"
    for step, marked in ((2, True), (4, False)):
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        (folder / "optimizer.pt").write_bytes(b"x")
        if marked:
            (folder / COMPLETE_MARKER).write_text(json.dumps({"global_step": step}))
    assert resolve_resume("auto", run, "cfg.yaml") == run / "checkpoint-2"
    (run / "checkpoint-2" / COMPLETE_MARKER).unlink()
    assert resolve_resume("auto", run, "cfg.yaml") is None
    # an explicit path may name an unmarked checkpoint whose files are all there (e.g. from plain transformers)
    assert resolve_resume(str(run / "checkpoint-4"), run, "cfg.yaml") == run / "checkpoint-4"
    (run / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')       # killed while writing it
    for bad in (run / "checkpoint-4", run / "checkpoint-9"):
        with pytest.raises(ConfigError) as err:
            resolve_resume(str(bad), run, "cfg.yaml")
        assert err.value.problems[0].key == "training_parameters.resume_from_checkpoint"
        assert "auto" in str(err.value.problems[0])


@pytest.mark.slow
def test_kill_while_rotating_checkpoints_leaves_a_resumable_one(outputs, tmp_path, monkeypatch):  # noqa: F811
    """save_total_limit deletes old checkpoints at the end of a save; a kill right then must leave the new one
    complete (marked), so `auto` resumes from it instead of from step 0."""
    import transformers.trainer
    import transformers.trainer_utils

    real = transformers.trainer_utils.rotate_checkpoints
    rotations = []

    def rotate_then_die(*args, **kwargs):
        real(*args, **kwargs)
        if kwargs.get("save_total_limit"):
            rotations.append(1)
            if len(rotations) == 2:                 # the save of step 4, which deleted checkpoint-2
                raise KeyboardInterrupt("killed right after deleting old checkpoints")

    monkeypatch.setattr(transformers.trainer_utils, "rotate_checkpoints", rotate_then_die)
    monkeypatch.setattr(transformers.trainer, "rotate_checkpoints", rotate_then_die)
    cfg = resume_config("rotating", max_steps=4)
    cfg["training_parameters"]["save_total_limit"] = 1
    assert run_node(outputs, write_super(tmp_path, cfg)) == 130          # interrupted in the second save
    run = outputs / "rotating"
    assert not (run / "checkpoint-2").exists()
    assert latest_checkpoint(run) == run / "checkpoint-4"


def test_resume_false_on_an_existing_run_dir_is_refused(outputs, tmp_path, capsys):  # noqa: F811
    cfg = resume_config("taken")
    (outputs / "taken").mkdir(parents=True)
    (outputs / "taken" / "resolved_config.yaml").write_text("seed: 1\n")
    super_cfg = write_super(tmp_path, cfg)
    assert run_node(outputs, super_cfg, "training_parameters.resume_from_checkpoint=false") == 2
    err = capsys.readouterr().err
    assert "run_name" in err and "resume_from_checkpoint=auto" in err
    assert sorted(p.name for p in (outputs / "taken").iterdir()) == ["resolved_config.yaml"]


@pytest.mark.slow
def test_resume_of_a_finished_run_trains_nothing_and_keeps_the_earlier_config(outputs, tmp_path, caplog):  # noqa: F811
    """Before: resuming a finished run trained one step past max_steps (checkpoint-(max_steps+1)), and a resume
    with a changed learning rate overwrote resolved_config.yaml silently."""
    cfg = quickstart_config(max_steps=2, save_steps=2, learning_rate=0.02)
    cfg["run_name"] = "done"
    relative = Path(os.path.relpath(outputs, REPO))        # as `--outputs outputs` is: relative to the repo
    assert run_node(relative, write_super(tmp_path, cfg)) == 0
    run = outputs / "done"
    for name in ("final_adapter/adapter_model.safetensors", "checkpoint-2/adapter_model.safetensors",
                 "summary.json", "resolved_config.yaml", "manifest.json"):   # were 0600 (temp-file writers)
        assert (run / name).stat().st_mode & 0o777 == 0o644 & ~current_umask(), name
    assert (run / "final_adapter").stat().st_mode & 0o777 == 0o755 & ~current_umask()
    assert_adapter_loads_from_anywhere(run, tmp_path)
    for record in step_records(run):   # one combined-reward key (TRL's copies are left out), named components
        assert {"reward", "reward_std", "rewards/reward_stack/mean"}.isdisjoint(record), sorted(record)
        assert "rewards/quickstart/keyword/mean" in record
    steps_before = [r["step"] for r in step_records(run)]
    shutil.rmtree(run / "final_adapter")          # as if killed after the last checkpoint, before the adapter
    caplog.clear()
    assert run_node(outputs, write_super(tmp_path, cfg), "training_parameters.resume_from_checkpoint=auto",
                    "training_parameters.learning_rate=0.01") == 0
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert [r["step"] for r in step_records(run)] == steps_before
    assert (run / "final_adapter" / "adapter_config.json").is_file()
    assert not (run / "final_adapter" / "optimizer.pt").exists()
    log_text = (run / "run.log").read_text()
    assert "is complete: checkpoint-2 is at step 2 and max_steps is 2, so there is nothing to train" in log_text
    assert "training_parameters.learning_rate: 0.02 -> 0.01" in log_text
    earlier = yaml.safe_load((run / "resolved_config.1.yaml").read_text())
    now = yaml.safe_load((run / "resolved_config.yaml").read_text())
    assert earlier["training_parameters"]["learning_rate"] == 0.02
    assert now["training_parameters"]["learning_rate"] == 0.01
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    # resuming again with the same config keeps no further copy
    assert run_node(outputs, write_super(tmp_path, cfg), "training_parameters.resume_from_checkpoint=auto",
                    "training_parameters.learning_rate=0.01") == 0
    assert sorted(p.name for p in run.glob("resolved_config*")) == ["resolved_config.1.yaml", "resolved_config.yaml"]


def assert_adapter_loads_from_anywhere(run: Path, elsewhere: Path) -> None:
    """Before: adapter_config.json recorded the base as outputs/.cache/... (relative), so loading the adapter
    from another folder failed, and the model card said "fine-tuned version of [None]"."""
    from peft import AutoPeftModelForCausalLM

    base = json.loads((run / "final_adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute() and Path(base).is_dir()
    card = (run / "README.md").read_text()
    assert "fine-tuned version of `builtin:tiny` (loaded from `" in card and "[None]" not in card
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        model = AutoPeftModelForCausalLM.from_pretrained(str(run / "final_adapter"))
    finally:
        os.chdir(cwd)
    assert model.peft_config["default"].base_model_name_or_path == base
