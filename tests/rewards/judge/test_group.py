"""``mode: group`` on llm_judge: one call per prompt group over real HTTP, with the containment judge."""
from __future__ import annotations

import asyncio
import re

import pytest

from pipelines.rewards.errors import CircuitBreakerOpen
from pipelines.rewards.judge.group import (candidate_order, candidates_block, group_settings_problems,
                                           parse_group_reply, prompt_groups, shared_prefix)
from tests.containment_judge import GROUP_RUBRIC, SCORE_1_10, SOUND_RUBRIC, score_of, script
from tests.judge_server import JudgeServer, Reply
from tests.rewards.judge.judge_helpers import make_judge, write_rubric

REF = ["Paris is the capital of France and its largest city.", "Water boils at one hundred degrees at sea level."]
ANSWERS = [["Paris is the capital of France and its largest city.", "Paris is the capital.", "I like cheese.",
            "Paris is the capital of France."],
           ["Water boils at one hundred degrees at sea level.", "Water boils.", "",
            "At sea level water boils at one hundred degrees."]]


def group_judge(tmp_path, base_url, **over):
    pointwise = write_rubric(tmp_path, SOUND_RUBRIC, "pointwise.yaml")
    group = write_rubric(tmp_path, GROUP_RUBRIC, "group.yaml")
    return make_judge(base_url, pointwise, score_types=SCORE_1_10, mode="group", group_prompt_path=group, label="g",
                      **over)


def grpo_batch(answers=ANSWERS, refs=REF):
    """TRL's layout: the K completions of each prompt next to each other, with the row's columns."""
    prompts, completions, answer_col = [], [], []
    for i, (group, ref) in enumerate(zip(answers, refs)):
        for text in group:
            prompts.append([{"role": "user", "content": f"question {i}"}])
            completions.append([{"role": "assistant", "content": text}])
            answer_col.append(ref)
    return prompts, completions, {"answer": answer_col}


def test_one_request_per_group_and_scores_match_the_judge(tmp_path):
    with JudgeServer(script) as srv:
        reward = group_judge(tmp_path, srv.base_url)
        prompts, completions, cols = grpo_batch()
        scores = asyncio.run(reward(prompts, completions, **cols))
        assert len(srv.requests) == 2
        sent = [r.text for r in srv.requests]
    expected = [score_of(ref, a) for ref, group in zip(REF, ANSWERS) for a in group]
    assert scores == expected
    for text in sent:
        assert re.findall(r'<candidate id="(\d+)">', text) == ["1", "2", "3", "4"]
    metrics = reward.pop_metrics()
    assert metrics["judge/g/groups"] == 2 and metrics["judge/g/calls"] == 2
    assert metrics["judge/g/group_fallbacks"] == 0 and metrics["judge/g/samples"] == 8


def test_unparseable_group_reply_is_retried_then_scored_pointwise(tmp_path):
    def bad_groups(req):
        return Reply("I cannot decide.") if 'candidate id="1"' in req.text else script(req)

    with JudgeServer(bad_groups) as srv:
        reward = group_judge(tmp_path, srv.base_url, format_retries=1)
        prompts, completions, cols = grpo_batch()
        scores = asyncio.run(reward(prompts, completions, **cols))
        group_calls = sum('candidate id="1"' in r.text for r in srv.requests)
        point_calls = len(srv.requests) - group_calls
    assert group_calls == 4 and point_calls == 8        # 2 groups x (1 + 1 retry), then 8 pointwise
    assert scores == [score_of(ref, a) for ref, group in zip(REF, ANSWERS) for a in group]
    metrics = reward.pop_metrics()
    assert metrics["judge/g/group_fallbacks"] == 2 and metrics["judge/g/parse_failures"] == 4


def test_cache_hits_and_normalize(tmp_path):
    with JudgeServer(script) as srv:
        reward = group_judge(tmp_path, srv.base_url, cache=str(tmp_path / "c.sqlite"), normalize=True)
        prompts, completions, cols = grpo_batch()
        first = asyncio.run(reward(prompts, completions, **cols))
        second = asyncio.run(reward(prompts, completions, **cols))
        assert len(srv.requests) == 2
    assert first == second == [(score_of(r, a) - 1) / 9 for r, g in zip(REF, ANSWERS) for a in g]


def test_a_dead_judge_trips_the_breaker(tmp_path):
    with JudgeServer() as dead:
        url = dead.base_url
    reward = group_judge(tmp_path, url, max_retries=0, timeout_s=2)
    prompts, completions, cols = grpo_batch()
    with pytest.raises(CircuitBreakerOpen):
        asyncio.run(reward(prompts, completions, **cols))


def test_a_group_of_one_is_scored_pointwise(tmp_path):
    with JudgeServer(script) as srv:
        reward = group_judge(tmp_path, srv.base_url)
        prompts, completions, cols = grpo_batch([["Paris is the capital."]], REF[:1])
        assert asyncio.run(reward(prompts, completions, **cols)) == [score_of(REF[0], "Paris is the capital.")]
        assert "<candidate>" in srv.requests[0].text


def test_shared_prefix_is_shown_once_and_orders_are_fresh():
    texts = ["<think>Let me see the facts.</think> Paris", "<think>Let me see the facts.</think> Lyon",
             "<think>Let me see the facts.</think> Nice"]
    assert shared_prefix(texts) == "<think>Let me see the facts.</think> "
    block = candidates_block(texts, [2, 0, 1])
    assert block.count("Let me see") == 1 and '<candidate id="1">Nice</candidate>' in block
    assert shared_prefix(["short a", "short b"]) == ""
    orders = {tuple(candidate_order([f"c{i}" for i in range(6)], attempt)) for attempt in range(6)}
    assert len(orders) > 1 and candidate_order(["a", "b", "c"], 0) == candidate_order(["a", "b", "c"], 0)


def test_group_reply_parsing():
    assert parse_group_reply('<think>{"scores": {"1": 0}}</think> {"scores": {"1": 3, "2": 9.5}}', 2, 1, 10) \
        == ({1: 3.0, 2: 9.5}, "")
    assert parse_group_reply('```json\n{"scores": {"1": 3}}\n```', 2, 1, 10)[1].startswith("scores must have ids")
    assert "outside [1, 10]" in parse_group_reply('{"scores": {"1": 11}}', 1, 1, 10)[1]
    assert "not numbers" in parse_group_reply('{"scores": {"1": "good"}}', 1, 1, 10)[1]
    assert parse_group_reply("no json", 1, 1, 10)[1] == 'no JSON object with "scores"'


def test_prompt_groups_are_runs_of_equal_prompts():
    assert prompt_groups(["a", "a", "b", "b", "b", "a"]) == [[0, 1], [2, 3, 4], [5]]


def test_mode_and_group_rubric_are_validated(tmp_path):
    from pipelines.rewards.catalog import check_reward_kwargs

    base = dict(eval_llm_name="j", eval_llm_base_url="http://127.0.0.1:9/v1", score_types=SCORE_1_10,
                system_prompt_path=write_rubric(tmp_path, SOUND_RUBRIC, "p.yaml"))
    assert "is not pointwise" in check_reward_kwargs("llm_judge", {**base, "mode": "groups"})[0]
    assert "needs the group rubric" in check_reward_kwargs("llm_judge", {**base, "mode": "group"})[0]
    no_candidates = write_rubric(tmp_path, SOUND_RUBRIC, "g.yaml")
    assert "add {candidates}" in check_reward_kwargs("llm_judge", {**base, "mode": "group",
                                                                   "group_prompt_path": no_candidates})[0]
    assert "only used with mode: group" in check_reward_kwargs("llm_judge", {**base,
                                                                             "group_prompt_path": no_candidates})[0]
    assert group_settings_problems({"mode": "group", "group_prompt_path": "prompts/helpfulness_group.yaml"}) == []


def test_check_judges_probes_the_group_rubric_too(tmp_path):
    from pipelines.data.config import DatasetEntry
    from pipelines.rewards.judge.check import check_judges

    def entry(url):
        return {"name": "llm_judge", "label": "g", "eval_llm_name": "j", "eval_llm_base_url": url,
                "system_prompt_path": write_rubric(tmp_path, SOUND_RUBRIC, "p.yaml"), "score_types": SCORE_1_10,
                "mode": "group", "group_prompt_path": write_rubric(tmp_path, GROUP_RUBRIC, "g.yaml")}

    with JudgeServer(script) as srv:
        ok = [DatasetEntry.model_validate({"path": "d.jsonl", "percentage": 1.0,
                                           "reward_funcs": [entry(srv.base_url)]})]
        assert check_judges(ok, "cfg.yaml") == []
        assert [bool(re.search(r'<candidate id="2">', r.text)) for r in srv.requests] == [False, True]
    with JudgeServer(lambda req: Reply("I like both.") if "candidate id" in req.text else script(req)) as srv:
        bad = [DatasetEntry.model_validate({"path": "d.jsonl", "percentage": 1.0,
                                            "reward_funcs": [entry(srv.base_url)]})]
        problems = check_judges(bad, "cfg.yaml")
    assert len(problems) == 1 and 'group reply could not be parsed: no JSON object with "scores"' in problems[0].message
