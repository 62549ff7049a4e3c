"""The monitor on real training runs of the tiny model: the shipped reward-hacking config stops with exit 3, an
anchor_divergence alert with evidence and a checkpoint, and resumes with on_alert warn; the clean configs raise
no alert but dead_signal; every run logs signal metrics and draws the signal panel."""
from __future__ import annotations

import json

import pytest

from pipelines.common.io import read_jsonl
from tests.grpo.training_runs import (REPO, outputs, quickstart_config, run_node, step_records,  # noqa: F401
                                      tiny_cache, write_super)

HACKING = REPO / "pipelines/grpo/configs/super_config_reward_hacking.yaml"
STEPS = 16


@pytest.mark.slow
def test_reward_hacking_config_stops_with_evidence_and_resumes_with_warn(outputs):  # noqa: F811
    from PIL import Image

    steps = f"training_parameters.max_steps={STEPS}"
    assert run_node(outputs, HACKING, steps) == 3
    run = outputs / "reward-hacking-demo"
    alerts = list(read_jsonl(run / "alerts.jsonl"))
    stop = alerts[-1]
    assert stop["kind"] == "anchor_divergence" and stop["step"] < STEPS
    assert stop["statistic"] < stop["threshold"] and stop["details"]["anchor"] == ["secret/answer_match"]
    assert stop["evidence"] and all(e["completion"] and e["rewards"]["secret/keyword"] == 1.0
                                    and e["rewards"]["secret/answer_match"] == 0.0 for e in stop["evidence"])
    assert (run / f"checkpoint-{stop['step']}" / "COMPLETE").exists()
    assert [r["step"] for r in step_records(run)] == list(range(1, stop["step"] + 1))   # the stopped step's too
    assert json.loads((run / "manifest.json").read_text())["status"] == "stopped"
    assert "monitor alert at step" in (run / "run.log").read_text()
    assert Image.open(run / "reward_curve.png").size == (800, 800)     # drawn for a stopped run too: 2 panels
    with open(run / "alerts.jsonl", "a", encoding="utf-8") as f:       # as if written after the checkpoint
        f.write(json.dumps({"step": stop["step"] + 1, "kind": "stale"}) + "\n")

    assert run_node(outputs, HACKING, steps, "training_parameters.resume_from_checkpoint=auto",
                    "monitor.on_alert=warn") == 0
    after = list(read_jsonl(run / "alerts.jsonl"))
    assert after[:len(alerts)] == alerts and all(a["kind"] != "stale" for a in after)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["alerts"]["by_kind"]["anchor_divergence"] >= 1
    assert summary["signal"]["zero_spread"]["last"] >= 0
    assert summary["signal"]["completion_length"]["slope_per_step"] is not None
    records = step_records(run)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))      # each step once, across the resume
    for key in ("signal/zero_spread", "signal/all_solved", "signal/all_failed", "signal/completion_length",
                "signal/secret/zero_spread", "signal/repetition"):
        assert key in records[-1], key
    assert any("signal/secret/keyword/variance_share" in r for r in records)   # where the combined reward varied


def clean_quickstart(seed: int) -> dict:
    cfg = quickstart_config(max_steps=STEPS, save_steps=STEPS)
    cfg.update(seed=seed, run_name=f"clean-qs-{seed}", monitor={"on_alert": "stop", "window": 8})
    return cfg


def clean_countdown(seed: int) -> dict:
    """The shipped countdown config's data and rewards on the tiny CPU model."""
    import yaml

    cfg = quickstart_config(max_steps=10, save_steps=10, max_prompt_length=320, max_completion_length=16)
    countdown = yaml.safe_load((REPO / "pipelines/grpo/configs/countdown.yaml").read_text(encoding="utf-8"))
    cfg["model"]["max_seq_length"] = 384     # its system prompt is long in the tiny model's tokens
    cfg["datasets"] = countdown["datasets"]
    cfg["reward"] = {"combination_function": "sum", "scaling_function": "identity"}
    cfg["dataset_settings"] = {"total_rows": 40}
    cfg.update(seed=seed, run_name=f"clean-cd-{seed}",
               monitor={"on_alert": "stop", "window": 8, "anchor": "countdown_equation"})
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("make", [clean_quickstart, clean_countdown], ids=["quickstart", "countdown"])
def test_clean_configs_raise_no_alert_but_dead_signal(outputs, tmp_path, make):  # noqa: F811
    for seed in (1, 2, 3):
        cfg = make(seed)
        cfg["monitor"]["kinds"] = ["anchor_divergence", "heldout_divergence", "component_dominance",
                                   "length_drift", "judge_divergence"]          # every kind but dead_signal
        assert run_node(outputs, write_super(tmp_path / str(seed), cfg)) == 0, f"seed {seed}"
        run = outputs / cfg["run_name"]
        assert not (run / "alerts.jsonl").exists(), (run / "alerts.jsonl").read_text()
        assert all("signal/zero_spread" in r for r in step_records(run))
