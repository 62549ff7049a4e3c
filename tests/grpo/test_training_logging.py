"""Logging: wandb offline without an account (and no secret in any artifact), tensorboard event files, and a
sample prompt with its completions in run.log every N steps."""
from __future__ import annotations

import os
import re

import pytest

from tests.grpo.training_runs import (outputs, quickstart_config, run_node, text_files,  # noqa: F401
                                      tiny_cache, write_super)

SECRET_ENV = "GRPO_TEST_SERVICE_KEY"
SECRET = "sk-live-5ecret-do-not-log-7731"
DEAD = "http://127.0.0.1:9"          # nothing listens on the discard port: any network use would fail


def keyed_keyword(keyword: str, service_api_key: str):
    """A reward that needs an API key (as a judge or a remote scorer would): 1.0 when ``keyword`` is present."""
    if service_api_key != os.environ.get(SECRET_ENV):
        raise ValueError("the factory did not receive the key from the environment")

    def reward(prompts, completions, **kwargs):
        return [1.0 if keyword in (c[-1]["content"] if isinstance(c, list) else c) else 0.0 for c in completions]

    return reward


@pytest.mark.slow
def test_wandb_offline_without_account_and_secrets_never_written(outputs, tmp_path, monkeypatch,  # noqa: F811
                                                                 capsys):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)   # the node's own defaults are under test
    monkeypatch.setenv("HOME", str(tmp_path / "home"))            # no ~/.netrc, no wandb settings: no account
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_BASE_URL", DEAD)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, DEAD)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    cfg = quickstart_config(max_steps=2, save_steps=2)
    cfg["run_name"] = "wb"
    cfg["logging"].update(report_to="wandb", project="grpo-tests", log_completions_every=1)
    cfg["reward"]["score_save_threshold"] = 0.0
    cfg["datasets"][0]["reward_funcs"] = [{"name": "tests.grpo.test_training_logging:keyed_keyword",
                                           "keyword": "Joy", "service_api_key": "${%s}" % SECRET_ENV}]
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    run = outputs / "wb"
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("run-*.wandb"))
    assert os.environ.get("WANDB_MODE") is None                   # the node restored the environment
    captured = capsys.readouterr()

    assert (run / "high_scoring_examples.jsonl").stat().st_size > 0
    assert "service_api_key: '***'" in (run / "resolved_config.yaml").read_text()
    assert SECRET not in text_files(run)       # run.log, resolved_config.yaml, metrics.jsonl, high scores, ...
    assert SECRET not in captured.out + captured.err
    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path      # wandb's binary files, checkpoints too


@pytest.mark.slow
def test_tensorboard_events_and_sample_completions_in_run_log(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=4, save_steps=4)
    cfg["run_name"] = "tb"
    cfg["logging"].update(report_to="tensorboard", log_completions_every=2)
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    run = outputs / "tb"
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert not (run / "runs").exists()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "train/rewards/combined/mean" in scalars and "train/rewards/quickstart/keyword/mean" in scalars
    assert [e.step for e in acc.Scalars("train/rewards/combined/mean")] == [1, 2, 3, 4]

    log_text = (run / "run.log").read_text()
    assert re.findall(r"step (\d+): sample prompt and its completions", log_text) == ["2", "4"]
    block = log_text.split("step 2: sample prompt and its completions", 1)[1]
    lines = block.splitlines()
    assert lines[1].startswith("  prompt: ") and "cheerful assistant" in lines[1]
    completions = [line for line in lines[2:6] if line.startswith("  [")]
    assert len(completions) == 4                                  # num_generations completions of that prompt
