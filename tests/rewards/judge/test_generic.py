"""generic_llm_reward (Augmentoolkit's scoring) against llm_judge (ours), on the same judge replies, over real
HTTP to the local judge server: each documented difference, the transport rules they share, and F20."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipelines.rewards.catalog import check_reward_kwargs, get_reward_factory
from pipelines.rewards.errors import CircuitBreakerOpen
from pipelines.rewards.judge.generic import parse_reference, reasoning_precheck, tag_text
from pipelines.rewards.judge.rubric import ScoreType
from tests.judge_server import Reply
from tests.rewards.judge.judge_helpers import FAST, Router, answer_of, make_judge, rubric, run, server  # noqa: F401

RUBRIC = """- role: system
  content: "Grade. Answer <score>N</score> (0-10) and <sense>0 or 1</sense>."
- role: user
  content: "Q: {input_text}\\nA: {output_text}"
"""
TYPES = [{"name": "score", "type": "score", "min": 0, "max": 10}, {"name": "sense", "type": "autofail"}]


@pytest.fixture
def two_rubric(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(RUBRIC, encoding="utf-8")
    return str(path)


def make_generic(base_url: str, rubric_path: str, **over: Any):
    kwargs = dict(eval_llm_name="test-judge", eval_llm_base_url=base_url, eval_llm_api_key="sk-test-secret-123",
                  eval_llm_mode="api", system_prompt_path=rubric_path, score_types=TYPES, timeout_s=5,
                  max_retries=1, **FAST)
    kwargs.update(over)
    return get_reward_factory("generic_llm_reward")(**kwargs)


def both(server, rubric_path: str, **over: Any):
    """(generic_llm_reward, llm_judge) on the same server, rubric and score types."""
    return (make_generic(server.base_url, rubric_path, **over),
            make_judge(server.base_url, rubric_path, score_types=TYPES, max_failure_rate=1.0, **over))


@pytest.mark.parametrize("reply, generic, ours", [
    ("<score>7</score> <sense>1</sense>", 8.0, 7.0),        # a non-zero autofail is added to the sum
    ("<score>7</score> <sense>0</sense>", 0.0, 0.0),        # a zero autofail fails both
    ("<score>12</score> <sense>1</sense>", 1.0, None),      # out of range: skipped / a parse failure
    ("It reads well.", 0.1, None),                          # unreadable: format_score / re-ask then on_error
    ("<score>**7**</score> <sense>1</sense>", 0.1, 7.0),    # markdown around the number: float() fails there
])
def test_same_reply_scored_as_documented(server, two_rubric, reply, generic, ours):
    server.script = Router({}, default=Reply(content=reply))
    g, j = both(server, two_rubric)
    assert run(g, ["an answer"]) == [generic]
    assert run(j, ["an answer"]) == [ours]


def test_format_score_is_configurable_and_not_re_asked(server, two_rubric):
    server.script = Router({}, default=Reply(content="no tags at all"))
    g = make_generic(server.base_url, two_rubric, format_score=0.25)
    assert run(g, ["x"]) == [0.25]
    assert len(server.requests) == 1                        # Augmentoolkit returns at once, no re-ask
    m = g.pop_metrics()
    assert m["judge/two/format_scored"] == 1 and m["judge/two/failures"] == 0 and m["judge/two/failure_rate"] == 0


def test_reasoning_is_shown_to_the_judge(server, two_rubric):
    server.script = Router({}, default=Reply(content="<score>5</score><sense>1</sense>"))
    g, j = both(server, two_rubric)
    completion = "<think>I feel nervous</think>Paris, I think!"
    run(g, [completion])
    run(j, [completion])
    assert answer_of(server.requests[0]) == completion                # generic: the whole completion
    assert answer_of(server.requests[1]) == "Paris, I think!"         # llm_judge: reasoning stripped


def test_bad_reasoning_format_scores_zero_without_a_call(server, two_rubric):
    server.script = Router({}, default=Reply(content="<score>5</score><sense>1</sense>"))
    markers = dict(cot_start="Thought Process:", cot_end="Response:")
    g, j = both(server, two_rubric, **markers)
    bad = ["Hmm, no marker at all",                                   # no cot_end
           "thinking Response: one Response: two",                    # cot_end twice
           "Thought Process: again\nthinking Response: answer"]       # cot_start repeated (it is prefilled)
    assert run(g, bad) == [0.0, 0.0, 0.0]
    assert server.requests == []
    assert g.pop_metrics()["judge/two/prechecked"] == 3
    assert run(j, ["thinking Response: one Response: two"]) == [5.0]   # llm_judge judges it


def test_near_duplicate_reasoning_scores_point_one(server, two_rubric):
    server.script = Router({}, default=Reply(content="<score>9</score><sense>1</sense>"))
    g, j = both(server, two_rubric, cot_start="<think>", cot_end="</think>")
    same = "I love rainy days so much, they calm me.</think>I love rainy days so much, they calm me!"
    different = "Rain makes me think of home.</think>Honestly? I adore storms, they make me feel alive."
    assert run(g, [same, different]) == [0.1, 10.0]
    assert len(server.requests) == 1
    assert run(j, [same]) == [9.0]


def test_empty_completion_scores_zero(server, two_rubric):
    g = make_generic(server.base_url, two_rubric)
    assert run(g, [""]) == [0.0]
    assert server.requests == []


def test_sampling_defaults_are_augmentoolkits(server, two_rubric):
    server.script = Router({}, default=Reply(content="<score>5</score><sense>1</sense>"))
    g, j = both(server, two_rubric)
    run(g, ["a"])
    run(j, ["a"])
    sent_g, sent_j = server.requests[0].body, server.requests[1].body
    assert (sent_g["temperature"], sent_g["top_p"], sent_g["max_tokens"]) == (0.7, 0.9, 5000)
    assert not {"temperature", "top_p", "max_tokens"} & set(sent_j)   # llm_judge keeps the server's defaults


def test_transport_failure_is_never_format_score(server, two_rubric):
    server.script = Router({"down": [Reply(status=503)]}, default=Reply(content="<score>5</score><sense>1</sense>"))
    g = make_generic(server.base_url, two_rubric, max_retries=2, max_failure_rate=1.0)
    assert run(g, ["down", "fine"]) == [None, 6.0]
    assert server.count("down") == 3                                   # retried by the transport
    m = g.pop_metrics()
    assert m["judge/two/failures"] == 1 and m["judge/two/format_scored"] == 0
    fixed = make_generic(server.base_url, two_rubric, max_retries=0, on_error=0.0, max_failure_rate=1.0)
    assert run(fixed, ["down"]) == [0.0]                               # on_error, as for llm_judge


def test_transport_failures_trip_the_circuit_breaker(server, two_rubric):
    server.script = Router({}, default=Reply(status=500))
    g = make_generic(server.base_url, two_rubric, max_retries=0, max_failure_rate=0.5)
    with pytest.raises(CircuitBreakerOpen):
        run(g, ["a", "b", "c", "d"])


def test_broken_json_body_is_retried_like_other_malformed_replies(server, two_rubric):
    broken = Reply(raw=b'{"choices": [{"message": ', raw_content_type="application/json")
    server.script = Router({"flaky": [broken, Reply(content="<score>4</score><sense>1</sense>")]})
    g = make_generic(server.base_url, two_rubric, max_retries=2)
    assert run(g, ["flaky"]) == [5.0]
    assert g.pop_metrics()["judge/two/retries"] == 1


def test_reference_parser_rules():
    types = [ScoreType("a", "score", 0, 1), ScoreType("ok", "autofail", 0, 1)]
    assert tag_text("<think><a>9</a></think> x <a>1</a> <a> 0.5 </a>", "a") == "0.5"   # last tag, think removed
    assert tag_text("0.5", "a") == "0.5"                                                # no tag: whole text
    assert parse_reference("<a>0.5</a><ok>2</ok>", types).reward == 2.5
    assert parse_reference("0.5", [ScoreType("a", "score", 0, 1)]).reward == 0.5
    assert parse_reference("<a>nan</a><ok>1</ok>", types).error is not None             # never a nan reward
    assert parse_reference("<a>x</a><ok>0</ok>", types).error is not None               # order matters: a first
    assert parse_reference(None, types).error is not None
    assert reasoning_precheck("text", None, "Response:") is None                        # both markers needed


def test_validation_of_each_judge_kwargs(two_rubric):
    base = dict(eval_llm_name="m", eval_llm_base_url="http://127.0.0.1:9/v1", system_prompt_path=two_rubric,
                score_types=TYPES)
    assert check_reward_kwargs("generic_llm_reward", dict(base, format_score=0.1, eval_llm_mode="api")) == []
    assert any("format_score" in m for m in check_reward_kwargs("llm_judge", dict(base, format_score=0.1)))
    assert any("format_score" in m for m in check_reward_kwargs("generic_llm_reward", dict(base, format_score="x")))
    missing = check_reward_kwargs("generic_llm_reward", {k: v for k, v in base.items() if k != "eval_llm_name"})
    assert any("eval_llm_name" in m for m in missing)
    assert get_reward_factory("generic_llm_reward") is not get_reward_factory("llm_judge")


def test_generic_reward_is_async_and_named(server, two_rubric):
    g = make_generic(server.base_url, two_rubric, label="emotion")
    assert asyncio.iscoroutinefunction(g) and g.__name__ == "llm_judge_emotion"
