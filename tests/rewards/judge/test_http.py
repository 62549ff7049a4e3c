"""The judge over real HTTP on 127.0.0.1 through the real openai client: scoring, request shape, retries,
timeouts, garbage, re-asks, fallbacks, secrets."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from pipelines.rewards.errors import CircuitBreakerOpen
from pipelines.rewards.judge.core import JudgeFailed, JudgeInputError
from tests.rewards.judge.judge_helpers import (FULL_RUBRIC, Router, batch, make_judge, rubric, run,  # noqa: F401
                                     server, write_rubric)
from tests.judge_server import JudgeServer, Reply

OK7 = Reply(content="<score>7</score>")


def test_scores_each_completion_in_both_completion_forms(server, rubric):
    server.script = Router({f"ans{i}": [Reply(content=f"Fine.\n<score>{i}</score>")] for i in range(6)})
    reward = make_judge(server.base_url, rubric)
    answers = [f"ans{i}" for i in range(6)]
    assert run(reward, answers) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    prompts, completions = batch(answers, conversational=False)
    assert asyncio.run(reward(prompts, completions)) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert asyncio.iscoroutinefunction(reward) and reward.__name__ == "llm_judge_grader"


def test_request_shape_placeholders_and_policy_reasoning(server, tmp_path):
    rubric = write_rubric(tmp_path, FULL_RUBRIC, "full.yaml")
    server.script = Router({}, default=OK7)
    reward = make_judge(server.base_url, rubric, temperature=0.3, top_p=0.9, max_tokens=64,
                        extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital of France?"}]]
    completions = [[{"role": "assistant", "content": "<think>secret plan</think>Paris."}]]
    scores = asyncio.run(reward(prompts, completions, answer=["Paris"], topic=["geography"], dataset_index=[0]))
    assert scores == [7.0]
    body = server.requests[0].body
    assert body["model"] == "test-judge" and body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["max_tokens"] == 64 and body["chat_template_kwargs"] == {"enable_thinking": False}
    user = body["messages"][1]["content"]
    assert user == ("CONV: System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Capital of France?\n"
                    "Q: Capital of France?\nREF: Paris\nTOPIC: geography\nA: Paris.")
    assert "secret plan" not in str(body)
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-secret-123"

    with_reasoning = make_judge(server.base_url, rubric, judge_reasoning=True)
    asyncio.run(with_reasoning(prompts, completions, answer=["Paris"], topic=["geography"]))
    assert "A: <think>secret plan</think>Paris." in server.requests[-1].body["messages"][1]["content"]
    assert "temperature" not in server.requests[-1].body      # unset sampling params keep the server's defaults


def test_missing_data_column_is_an_input_error_before_any_call(server, tmp_path):
    reward = make_judge(server.base_url, write_rubric(tmp_path, FULL_RUBRIC, "full.yaml"))
    with pytest.raises(JudgeInputError, match="no column 'topic'"):
        run(reward, ["x"], answer=["r"])
    assert server.requests == []


def test_429_honours_retry_after(server, rubric):
    server.script = Router({"busy": [Reply(status=429, headers={"Retry-After": "0.4"}), OK7]})
    reward = make_judge(server.base_url, rubric)
    run(reward, ["warm-up"])             # the first call imports openai; time only the retry
    reward.pop_metrics()
    started = time.monotonic()
    assert run(reward, ["busy"]) == [7.0]
    assert 0.4 <= time.monotonic() - started < 0.4 * 1.1 + 0.6
    m = reward.pop_metrics()
    assert m["judge/grader/calls"] == 2 and m["judge/grader/retries"] == 1 and m["judge/grader/failures"] == 0


def test_retry_after_is_capped_by_backoff_max(server, rubric):
    server.script = Router({"busy": [Reply(status=429, headers={"Retry-After": "30"}), OK7]})
    reward = make_judge(server.base_url, rubric, backoff_max_s=0.2)
    run(reward, ["warm-up"])
    started = time.monotonic()
    assert run(reward, ["busy"]) == [7.0]
    assert 0.2 <= time.monotonic() - started < 2.0        # not the 30 s asked for


@pytest.mark.parametrize("bad", [Reply(status=500), Reply(status=503), Reply(raw=b"<html>proxy error</html>"),
                                 Reply(raw=b'{"unexpected": true}')])
def test_server_errors_and_garbage_are_retried(server, rubric, bad):
    server.script = Router({"flaky": [bad, bad, OK7]})
    reward = make_judge(server.base_url, rubric, max_retries=2)
    assert run(reward, ["flaky"]) == [7.0]
    assert reward.pop_metrics()["judge/grader/retries"] == 2


def test_retries_exhausted_scores_none_and_counts_a_failure(server, rubric):
    server.script = Router({"down": [Reply(status=500)]})
    reward = make_judge(server.base_url, rubric, max_retries=2, max_failure_rate=1.0)
    assert run(reward, ["down", "fine"]) == [None, 5.0]
    m = reward.pop_metrics()
    assert m["judge/grader/calls"] == 4 and m["judge/grader/failures"] == 1 and m["judge/grader/fallbacks"] == 1
    assert m["judge/grader/failure_rate"] == 0.5


def test_client_errors_are_not_retried(server, rubric):
    server.script = Router({"x": [Reply(status=401, error="invalid key")]})
    reward = make_judge(server.base_url, rubric, max_retries=3, on_error=0.0, max_failure_rate=1.0)
    assert run(reward, ["x"]) == [0.0]
    assert len(server.requests) == 1


def test_hang_past_timeout_is_bounded_then_retried(server, rubric):
    server.script = Router({"slow": [Reply(hang=True), OK7]})
    reward = make_judge(server.base_url, rubric, timeout_s=0.5, max_retries=1)
    run(reward, ["warm-up"])
    started = time.monotonic()
    assert run(reward, ["slow"]) == [7.0]
    assert 0.5 <= time.monotonic() - started < 2.5


def test_permanent_hang_gives_up_within_its_bounds(server, rubric):
    server.script = Router({"slow": [Reply(hang=True)]})
    reward = make_judge(server.base_url, rubric, timeout_s=0.3, max_retries=2, max_failure_rate=1.0)
    run(reward, ["warm-up"])
    reward.pop_metrics()
    started = time.monotonic()
    assert run(reward, ["slow"]) == [None]
    # 3 attempts x 0.3 s + backoff (<= 0.01 + 0.02 s) + slack
    assert 0.9 <= time.monotonic() - started < 3.0        # the server would hang 10 s
    m = reward.pop_metrics()
    assert m["judge/grader/failures"] == 1 and m["judge/grader/calls"] == 3


def test_connection_refused_is_a_failure(rubric):
    with JudgeServer() as srv:
        url = srv.base_url
    reward = make_judge(url, rubric, max_retries=1, max_failure_rate=1.0)
    assert run(reward, ["a"]) == [None]


def test_reasoning_wrapped_judge_answer(server, rubric):
    server.script = Router({}, default=Reply(content="<think>Draft: <score>2</score>. No.</think>\n<score>9</score>"))
    assert run(make_judge(server.base_url, rubric), ["a"]) == [9.0]


def test_out_of_range_is_re_asked_then_accepted(server, rubric):
    server.script = Router({"q": [Reply(content="<score>11</score>"), Reply(content="<score>8</score>")]})
    reward = make_judge(server.base_url, rubric, format_retries=1)
    assert run(reward, ["q"]) == [8.0]
    reask = server.requests[1].body["messages"]
    assert reask[-2] == {"role": "assistant", "content": "<score>11</score>"}
    assert "outside [0, 10]" in reask[-1]["content"] and "<score>N</score>" in reask[-1]["content"]
    m = reward.pop_metrics()
    assert m["judge/grader/parse_failures"] == 1 and m["judge/grader/unparsed"] == 0


@pytest.mark.parametrize("on_error,expected", [("skip", None), (0.25, 0.25), (-1, -1.0)])
def test_unparseable_falls_back_to_on_error(server, rubric, on_error, expected):
    server.script = Router({"q": [Reply(content="I refuse to use tags.")]})
    reward = make_judge(server.base_url, rubric, format_retries=2, on_error=on_error, max_failure_rate=1.0)
    assert run(reward, ["q", "other"]) == [expected, 5.0]
    assert server.count("A: q") == 3
    m = reward.pop_metrics()
    assert m["judge/grader/parse_failures"] == 3 and m["judge/grader/unparsed"] == 1
    assert m["judge/grader/fallbacks"] == 1


def test_on_error_fail_stops_the_run(server, rubric):
    server.script = Router({"bad": [Reply(content="<score>99</score>")]})
    reward = make_judge(server.base_url, rubric, format_retries=0, on_error="fail")
    with pytest.raises(JudgeFailed, match="outside") as err:
        run(reward, ["ok", "bad"])
    assert isinstance(err.value, CircuitBreakerOpen)


def test_format_retries_zero_means_one_ask(server, rubric):
    server.script = Router({"q": [Reply(content="<score>x</score>")]})
    reward = make_judge(server.base_url, rubric, format_retries=0, max_failure_rate=1.0)
    assert run(reward, ["q"]) == [None]
    assert len(server.requests) == 1


def test_api_key_never_logged_or_raised(server, rubric, caplog):
    secret = "sk-test-secret-123"
    server.script = Router({}, default=Reply(status=401, error=f"Incorrect API key provided: {secret}"))
    reward = make_judge(server.base_url, rubric, max_failure_rate=0.5)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CircuitBreakerOpen) as err:
        run(reward, ["a", "b"])
    assert secret not in str(err.value) and "***" in str(err.value)
    assert secret not in caplog.text
    assert secret not in repr(reward.judge.transport)
