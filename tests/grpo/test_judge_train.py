"""GRPO training of the tiny model with an LLM-judge reward over real HTTP: judge metrics reach metrics.jsonl;
a judge outage trips the breaker, the run saves a checkpoint and stops naming the endpoint; resume finishes."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

from pipelines.common.io import read_jsonl
from pipelines.runner import main
from tests.rewards.judge.judge_helpers import FAST, SCORE, answer_of, write_rubric
from tests.judge_server import JudgeServer, Reply, Request

REPO = Path(__file__).resolve().parents[2]
PER_STEP = 8            # 2 prompts x 4 generations: judge calls per optimizer step


class FlakyJudge:
    """Scores 10 for answers containing "Joy", else 2; answers 500 once ``down_after`` calls were served."""

    def __init__(self, down_after: int | None):
        self.down_after = down_after
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, req: Request) -> Reply:
        with self.lock:
            self.count += 1
            down = self.down_after is not None and self.count > self.down_after
        if down:
            return Reply(status=500, error="judge overloaded")
        return Reply(content=f"<score>{10 if 'Joy' in answer_of(req) else 2}</score>")


def write_config(tmp_path: Path, base_url: str) -> Path:
    cfg = yaml.safe_load((REPO / "pipelines/grpo/configs/quickstart.yaml").read_text())
    cfg["run_name"] = "judged"
    cfg["training_parameters"].update(max_steps=4, save_steps=2, per_device_train_batch_size=PER_STEP,
                                      num_generations=4)
    cfg["datasets"][0]["reward_funcs"] = [
        {"name": "keyword", "keywords": ["Joy"]},
        {"name": "llm_judge", "label": "quick", "eval_llm_name": "test-judge", "eval_llm_base_url": base_url,
         "eval_llm_api_key": "${TEST_JUDGE_KEY}", "system_prompt_path": write_rubric(tmp_path),
         "score_types": SCORE, "normalize": True, "max_retries": 1, "timeout_s": 30, **FAST}]
    node_cfg = tmp_path / "judged.yaml"
    node_cfg.write_text(yaml.safe_dump(cfg, sort_keys=False))
    super_cfg = tmp_path / "super.yaml"
    super_cfg.write_text(f"pipeline_order:\n  - node: grpo\n    config: {node_cfg}\n")
    return super_cfg


@pytest.mark.slow
def test_judge_outage_checkpoints_stops_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-train-secret-42")
    judge = FlakyJudge(down_after=3 * PER_STEP)         # steps 1-3 are judged, step 4 meets the outage
    out = tmp_path / "out"
    with JudgeServer(judge) as server:
        args = ["--super-config", str(write_config(tmp_path, server.base_url)), "--outputs", str(out)]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "CircuitBreakerOpen" in err and server.base_url in err and "HTTP 500" in err
        assert "then resume with --set training_parameters.resume_from_checkpoint=auto" in err   # the node's hint
        run = out / "judged"
        state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())   # the emergency save
        assert state["global_step"] == 3
        logged = [r for r in read_jsonl(run / "metrics.jsonl") if "rewards/combined/mean" in r]
        calls = [v for r in logged for k, v in r.items() if k.endswith("judge/quick/calls")]
        assert calls == [PER_STEP] * 3
        assert "sk-train-secret-42" not in err + "".join(p.read_text(errors="replace") for p in run.rglob("*")
                                                         if p.is_file() and p.suffix in (".log", ".json", ".jsonl",
                                                                                          ".yaml"))

        judge.down_after = None                                         # the judge is back
        before = judge.count
        assert main(args + ["--set", "training_parameters.resume_from_checkpoint=auto"]) == 0
        assert judge.count - before == PER_STEP                         # only step 4 was judged again
    state = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
