"""The judge inside the reward stack (the contract with pipelines/rewards/engine.py): routed next to a
programmatic reward, its metrics merged, its breaker propagating, its clients closed."""
from __future__ import annotations


import pytest

from pipelines.rewards.errors import CircuitBreakerOpen
from tests.rewards.judge.judge_helpers import FAST, SCORE, Router, write_rubric
from tests.rewards.reward_cfg import make_cfg, row, stack_for
from tests.judge_server import JudgeServer, Reply


def judge(url: str, rubric: str, **over):
    entry = dict(name="llm_judge", eval_llm_name="j", eval_llm_base_url=url, system_prompt_path=rubric,
                 score_types=SCORE, timeout_s=5, max_retries=0, **FAST)
    entry.update(over)
    return entry


def test_judge_routed_combined_and_metrics_merged(tmp_path):
    rubric = write_rubric(tmp_path)
    with JudgeServer(Router({"good": [Reply(content="<score>9</score>")]},
                            default=Reply(content="<score>1</score>"))) as srv:
        cfg = make_cfg([judge(srv.base_url, rubric), {"name": "keyword", "keywords": ["good"]}],
                       [{"name": "keyword", "keywords": ["x"]}])
        stack = stack_for(cfg, None)
        try:
            rows = [row(0, "q1"), row(0, "q2"), row(1, "q3")]
            results = stack.score_batch(None, ["a good answer", "meh", "x"], rows)
            assert [r.combined for r in results] == [10.0, 1.0, 1.0]
            assert len(srv.requests) == 2          # only dataset 0's completions went to the judge
            # through the TRL-facing callable too, as TRL calls it (sync, on this thread)
            prompts = [r["prompt"] for r in rows]
            completions = [[{"role": "assistant", "content": c}] for c in ("good", "bad", "x")]
            columns = {k: [r[k] for r in rows] for k in ("answer", "dataset_index", "dataset_path", "row_id")}
            scaled = stack.reward_func(prompts, completions, trainer_state=None, **columns)
            assert scaled == [10.0, 1.0, 1.0]
            metrics = stack.pop_metrics()
            judge_keys = [k for k in metrics if "judge/grader/samples" in k]
            assert len(judge_keys) == 1 and metrics[judge_keys[0]] == 4
        finally:
            stack.close()


def test_breaker_propagates_through_the_stack(tmp_path):
    rubric = write_rubric(tmp_path)
    with JudgeServer(Router({}, default=Reply(status=502, error="bad gateway"))) as srv:
        cfg = make_cfg([judge(srv.base_url, rubric), {"name": "keyword", "keywords": ["x"]}])
        stack = stack_for(cfg, None)
        try:
            with pytest.raises(CircuitBreakerOpen, match="HTTP 502"):
                stack.score_batch(None, ["a", "b"], [row(0), row(0)])
            with pytest.raises(CircuitBreakerOpen):
                stack.score_batch(None, ["a", "b"], [row(0), row(0)], raise_errors=False)
        finally:
            stack.close()
