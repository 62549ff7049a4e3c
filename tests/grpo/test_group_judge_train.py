"""GRPO training of the tiny model with a group judge (``mode: group``) over real HTTP: one judge request per
prompt group, counted at the server."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pipelines.common.io import read_jsonl
from pipelines.runner import main
from tests.judge_server import JudgeServer, Reply, Request
from tests.rewards.judge.judge_helpers import FAST, SCORE, write_rubric

REPO = Path(__file__).resolve().parents[2]
GROUP_RUBRIC = """- role: system
  content: "Score each candidate from {score_min} to {score_max}. Reply {{\\"scores\\": {{\\"1\\": N}}}}."
- role: user
  content: "Q: {input_text}\\n{candidates}"
"""
STEPS, BATCH, K = 2, 8, 4


def joy_groups(req: Request) -> Reply:
    """10 for candidates containing "Joy", else 2; a pointwise request gets a <score> tag."""
    found = re.findall(r'<candidate id="(\d+)">(.*?)</candidate>', req.text, re.S)
    if not found:
        return Reply(content="<score>5</score>")
    return Reply(content=json.dumps({"scores": {i: 10 if "Joy" in text else 2 for i, text in found}}))


def test_group_mode_sends_one_request_per_prompt_group(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = yaml.safe_load((REPO / "pipelines/grpo/configs/quickstart.yaml").read_text())
    cfg["run_name"] = "grouped"
    cfg["training_parameters"].update(max_steps=STEPS, save_steps=STEPS, per_device_train_batch_size=BATCH,
                                      num_generations=K)
    with JudgeServer(joy_groups) as server:
        cfg["datasets"][0]["reward_funcs"] = [
            {"name": "llm_judge", "label": "grp", "eval_llm_name": "test-judge", "eval_llm_base_url": server.base_url,
             "system_prompt_path": write_rubric(tmp_path), "score_types": SCORE, "mode": "group",
             "group_prompt_path": write_rubric(tmp_path, GROUP_RUBRIC, "group.yaml"), "normalize": True,
             "max_retries": 1, "timeout_s": 30, **FAST}]
        (tmp_path / "node.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (tmp_path / "super.yaml").write_text("pipeline_order:\n  - node: grpo\n    config: node.yaml\n")
        out = tmp_path / "out"
        assert main(["--super-config", str(tmp_path / "super.yaml"), "--outputs", str(out)]) == 0
        requests = list(server.requests)
    assert len(requests) == STEPS * BATCH // K                      # one per prompt group, none pointwise
    assert all(len(re.findall(r'<candidate id="\d+">', r.text)) == K for r in requests)
    logged = [r for r in read_jsonl(out / "grouped" / "metrics.jsonl") if "rewards/combined/mean" in r]
    groups = [v for r in logged for k, v in r.items() if k.endswith("judge/grp/groups")]
    calls = [v for r in logged for k, v in r.items() if k.endswith("judge/grp/calls")]
    assert groups == calls == [BATCH // K] * STEPS
