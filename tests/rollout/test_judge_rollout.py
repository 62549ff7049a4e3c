"""A rollout scored by an LLM judge over real HTTP (127.0.0.1, the real openai client): judge scores land in
scored.jsonl; a judge that goes down stops the rollout (circuit breaker), and resume finishes it later."""
from __future__ import annotations

import json
import re
import threading

import pytest

from pipelines.common.io import read_jsonl
from tests.rewards.judge.judge_helpers import FAST, SCORE, answer_of, write_rubric
from tests.judge_server import JudgeServer, Reply, Request
from tests.rollout.test_node import rollout_config, run_rollout


class Judge:
    """Scores 9/10 when the completion holds an 'e', else 2/10; answers 500 while `down`."""

    def __init__(self, down_after: int | None = None):
        self.down_after, self.count, self.lock = down_after, 0, threading.Lock()

    def __call__(self, req: Request) -> Reply:
        with self.lock:
            self.count += 1
            if self.down_after is not None and self.count > self.down_after:
                return Reply(status=500, error="judge overloaded")
        return Reply(content="<score>9</score>" if "e" in answer_of(req) else "<score>2</score>")


def judge_config(tmp_path, tiny_model_dir, base_url: str) -> dict:
    cfg = rollout_config(tmp_path, tiny_model_dir, dataset_settings={"total_rows": 8},
                         generation={"num_completions": 2, "batch_size": 2},
                         selection={"sft_min_score": 0.9, "preference_min_margin": 0.5})
    cfg["datasets"] = [{**cfg["datasets"][0], "percentage": 1.0, "reward_funcs": [
        {"name": "llm_judge", "eval_llm_name": "test-judge", "eval_llm_base_url": base_url,
         "eval_llm_api_key": "sk-test-secret-123", "system_prompt_path": write_rubric(tmp_path),
         "score_types": SCORE, "normalize": True, "timeout_s": 5, "max_retries": 0, **FAST}]}]
    return cfg


def check_scores(records: list[dict]) -> None:
    for r in records:
        assert r["reward"] == (0.9 if "e" in r["completion"] else 0.2), r


def test_judge_scored_rollout_and_resume_after_the_judge_went_down(tiny_model_dir, tmp_path, capsys):
    judge = Judge(down_after=4)          # batch 0 (2 prompts x 2 completions) is judged, then it fails
    with JudgeServer(judge) as server:
        cfg = judge_config(tmp_path, tiny_model_dir, server.base_url)
        assert run_rollout(tmp_path, cfg) == 1                      # CircuitBreakerOpen stops the node
        err = capsys.readouterr().err
        assert "CircuitBreakerOpen" in err and "--set resume=true" in err
        assert "resume_from_checkpoint" not in err                 # the training hint is not a rollout's
        run_dir = tmp_path / "out" / "roll"
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"
        first = list(read_jsonl(run_dir / "scored.jsonl"))
        assert len(first) == 4
        check_scores(first)
        judge.down_after = None                                     # the judge is back
        sent_before = judge.count
        assert run_rollout(tmp_path, cfg, "--set", "resume=true") == 0
    records = list(read_jsonl(run_dir / "scored.jsonl"))
    assert records[:4] == first and len(records) == 16
    check_scores(records)
    assert judge.count - sent_before == 12                          # only the 6 unfinished prompts x 2
    assert "sk-test-secret-123" not in "".join(p.read_text() for p in run_dir.iterdir() if p.suffix != ".parquet")
    sft = list(read_jsonl(run_dir / "sft.jsonl"))
    assert all(s["score"] == 0.9 for s in sft)


def test_a_judge_budget_cap_stops_the_rollout_with_exit_3_and_resume_continues_the_spend(tiny_model_dir, tmp_path,
                                                                                         capsys):
    judge = Judge()
    with JudgeServer(judge) as server:
        cfg = judge_config(tmp_path, tiny_model_dir, server.base_url)
        cfg["datasets"][0]["reward_funcs"][0]["eval_llm_name"] = "judge-model"
        # 4 judge calls per batch; the test server counts words as tokens (a few dozen per call)
        cfg["budget"] = {"judge_prices": {"judge-model": {"input_usd_per_mtok": 1000.0, "output_usd_per_mtok": 0}},
                         "max_judge_usd": 0.0001}
        assert run_rollout(tmp_path, cfg, "--validate") == 0
        out = capsys.readouterr().out                                # 8 prompts x 2 completions, judged once each
        assert re.search(r"spend: judge '\w+' \(judge-model\): 16 calls x ~\d+ in", out) and "(estimated;" in out
        assert run_rollout(tmp_path, cfg) == 3                      # stopped after the first batch
        err = capsys.readouterr().err
        assert "stopped by a guard (budget.max_judge_usd) at step 0" in err and "--set resume=true" in err
        run_dir = tmp_path / "out" / "roll"
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "stopped"
        assert len(list(read_jsonl(run_dir / "scored.jsonl"))) == 4     # the batch that crossed it is kept
        first = json.loads((run_dir / "cost.json").read_text())
        assert first["cost/judge_usd"] > 0.0001 and first["cost/judge_prompt_tokens"] > 0
        sent = judge.count
        assert run_rollout(tmp_path, cfg, "--set", "resume=true", "--set", "budget.max_judge_usd=100") == 0
    assert len(list(read_jsonl(run_dir / "scored.jsonl"))) == 16 and judge.count - sent == 12
    final = json.loads((run_dir / "cost.json").read_text())
    assert final["cost/judge_usd"] == pytest.approx(first["cost/judge_usd"] * 4, rel=0.35)   # 4 batches in all
