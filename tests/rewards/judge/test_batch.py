"""The judge across a batch over real HTTP: the concurrency bound, the circuit breaker, the SQLite cache,
metrics, and event loops (TRL's daemon loop, one asyncio.run per batch)."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from pipelines.rewards.errors import CircuitBreakerOpen
from pipelines.rewards.judge.cache import JudgeCache, cache_key
from tests.rewards.judge.judge_helpers import (Router, answer_of, batch, make_judge, rubric, run,  # noqa: F401
                                     server, write_rubric)
from tests.judge_server import Reply, fixed


# -------------------------------------------------------------------------------------------- concurrency
def test_concurrency_is_bounded_and_used(server, rubric):
    server.script = fixed("<score>6</score>", delay_s=0.1)
    reward = make_judge(server.base_url, rubric, max_concurrency=5)
    run(reward, ["warm-up"])
    server.reset_counters()
    started = time.monotonic()
    assert run(reward, [f"a{i}" for i in range(30)]) == [6.0] * 30
    elapsed = time.monotonic() - started
    assert server.max_in_flight == 5
    assert len(server.requests) == 30
    assert elapsed < 30 * 0.1 / 2          # concurrent: 6 waves of 0.1 s, far below 3 s sequential


def test_backoff_releases_the_concurrency_slot(server, rubric):
    # max_concurrency 1: while "busy" backs off on its 429, the other requests use the slot
    server.script = Router({"busy": [Reply(status=429, headers={"Retry-After": "0.5"}),
                                     Reply(content="<score>1</score>")]},
                           default=Reply(content="<score>2</score>", delay_s=0.02))
    reward = make_judge(server.base_url, rubric, max_concurrency=1)
    assert run(reward, ["busy", "b", "c", "d"]) == [1.0, 2.0, 2.0, 2.0]
    order = [answer_of(r) for r in server.requests]
    assert order[0] == "busy" and order[-1] == "busy" and sorted(order[1:4]) == ["b", "c", "d"]
    assert server.max_in_flight == 1


# -------------------------------------------------------------------------------------------- breaker
def test_breaker_opens_above_max_failure_rate(server, rubric):
    server.script = Router({"down": [Reply(status=503, error="model is overloaded")]})
    reward = make_judge(server.base_url, rubric, max_retries=1, max_failure_rate=0.5)
    with pytest.raises(CircuitBreakerOpen) as err:
        run(reward, ["down1", "down2", "down3", "ok1", "ok2"])
    msg = str(err.value)
    assert server.base_url in msg and "test-judge" in msg and "HTTP 503" in msg and "model is overloaded" in msg
    # the runner adds the node's own resume command for resumable errors; the judge (also used offline by
    # score_completions, where nothing resumes) does not mention resuming
    assert "max_failure_rate=0.5" in msg and "--check-judges" in msg and "resum" not in msg and err.value.resumable


def test_breaker_stays_closed_at_the_rate(server, rubric):
    server.script = Router({"down": [Reply(status=503)]})
    reward = make_judge(server.base_url, rubric, max_retries=0, max_failure_rate=0.5)
    assert run(reward, ["down1", "down2", "ok1", "ok2"]) == [None, None, 5.0, 5.0]


def test_breaker_counts_unparsed_answers(server, rubric):
    server.script = Router({}, default=Reply(content="no tags at all"))
    reward = make_judge(server.base_url, rubric, format_retries=0, max_failure_rate=0.5, on_error=0.0)
    with pytest.raises(CircuitBreakerOpen, match="could not be parsed: no <score> tag"):
        run(reward, ["a", "b"])


def test_breaker_trips_early_and_cancels_slow_calls(server, rubric):
    server.script = Router({"down": [Reply(status=500)]}, default=Reply(content="<score>1</score>", delay_s=5))
    reward = make_judge(server.base_url, rubric, max_retries=0, max_failure_rate=0.3)
    started = time.monotonic()
    with pytest.raises(CircuitBreakerOpen):
        run(reward, ["down1", "down2", "down3", "down4", "s1", "s2", "s3", "s4", "s5", "s6"])
    assert time.monotonic() - started < 3.0           # did not wait for the 5 s answers


def test_breaker_off_at_rate_one(server, rubric):
    server.script = Router({}, default=Reply(status=500))
    reward = make_judge(server.base_url, rubric, max_retries=0, max_failure_rate=1.0)
    assert run(reward, ["a", "b"]) == [None, None]


# -------------------------------------------------------------------------------------------- cache
def test_cache_hits_persist_and_key_covers_params(server, rubric, tmp_path):
    db = tmp_path / "cache" / "judge.sqlite"
    server.script = Router({}, default=Reply(content="<score>4</score>"))
    reward = make_judge(server.base_url, rubric, cache=str(db), temperature=0.0)
    assert run(reward, ["a", "b", "c"]) == [4.0] * 3
    assert len(server.requests) == 3
    assert run(reward, ["a", "b", "c", "d"]) == [4.0] * 4
    assert len(server.requests) == 4
    m = reward.pop_metrics()
    assert m["judge/grader/cache_hits"] == 3 and m["judge/grader/samples"] == 7 and m["judge/grader/calls"] == 4
    reward.close()

    again = make_judge(server.base_url, rubric, cache=str(db), temperature=0.0)     # a new run, same file
    assert run(again, ["a", "b"]) == [4.0, 4.0] and len(server.requests) == 4
    other = make_judge(server.base_url, rubric, cache=str(db), temperature=0.7)     # other sampling params
    assert run(other, ["a"]) == [4.0] and len(server.requests) == 5
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0]
    assert rows == 5


def test_identical_requests_in_a_batch_are_sent_once_with_a_cache(server, rubric, tmp_path):
    server.script = Router({"same": [Reply(content="<score>3</score>")]}, default=Reply(content="<score>6</score>"))
    prompts = [[{"role": "user", "content": "q"}]] * 4
    completions = [[{"role": "assistant", "content": t}] for t in ("same", "same", "other", "same")]
    cached = make_judge(server.base_url, rubric, cache=str(tmp_path / "c.sqlite"))
    assert asyncio.run(cached(prompts, completions)) == [3.0, 3.0, 6.0, 3.0]
    assert len(server.requests) == 2
    assert cached.pop_metrics()["judge/grader/cache_hits"] == 2
    uncached = make_judge(server.base_url, rubric)              # without a cache every completion is judged
    assert asyncio.run(uncached(prompts, completions)) == [3.0, 3.0, 6.0, 3.0]
    assert len(server.requests) == 6


def test_failed_and_unparsed_answers_are_not_cached(server, rubric, tmp_path):
    db = tmp_path / "judge.sqlite"
    server.script = Router({"bad": [Reply(content="garbled")], "down": [Reply(status=500)]})
    reward = make_judge(server.base_url, rubric, cache=str(db), format_retries=0, max_retries=0,
                        max_failure_rate=1.0)
    assert run(reward, ["bad", "down"]) == [None, None]
    assert run(reward, ["bad", "down"]) == [None, None]
    assert len(server.requests) == 4 and len(JudgeCache(db)) == 0


def test_cache_is_safe_from_concurrent_coroutines_and_threads(tmp_path):
    cache = JudgeCache(tmp_path / "c.sqlite")

    async def writer(i: int) -> None:
        await asyncio.sleep(0)
        cache.put(f"k{i}", f"<score>{i % 10}</score>", "m")
        assert cache.get(f"k{i}") == f"<score>{i % 10}</score>"

    async def many(offset: int) -> None:
        await asyncio.gather(*(writer(offset + i) for i in range(100)))

    threads = [threading.Thread(target=lambda o=o: asyncio.run(many(o))) for o in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 200
    assert cache_key("m", [{"role": "user", "content": "x"}], {"temperature": 0}) != \
        cache_key("m", [{"role": "user", "content": "x"}], {"temperature": 0.1})
    cache.close()
    assert cache.get("k1") is None


# -------------------------------------------------------------------------------------------- metrics & loops
def test_metrics_keys_values_and_reset(server, rubric):
    server.script = Router({"slow": [Reply(content="<score>3</score>", delay_s=0.2)]},
                           default=Reply(content="<score>5</score>"))
    reward = make_judge(server.base_url, rubric, label="helpful")
    assert reward.pop_metrics() == {}
    run(reward, ["slow", "a", "b", "c"])
    m = reward.pop_metrics()
    assert set(m) == {f"judge/helpful/{k}" for k in (
        "samples", "cache_hits", "calls", "retries", "failures", "parse_failures", "unparsed", "fallbacks",
        "prompt_tokens", "completion_tokens", "failure_rate", "latency_p50_s", "latency_p95_s")}
    assert m["judge/helpful/samples"] == 4 and m["judge/helpful/calls"] == 4
    assert m["judge/helpful/completion_tokens"] == 4 and m["judge/helpful/prompt_tokens"] > 20
    assert m["judge/helpful/latency_p95_s"] >= 0.15 > m["judge/helpful/latency_p50_s"] > 0
    assert reward.pop_metrics() == {}


def test_works_on_a_long_lived_daemon_loop_like_trl(server, rubric):
    reward = make_judge(server.base_url, rubric)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for step in range(3):
            prompts, completions = batch([f"s{step}-{i}" for i in range(4)])
            future = asyncio.run_coroutine_threadsafe(reward(prompts, completions, trainer_state=None), loop)
            assert future.result(timeout=10) == [5.0] * 4
            assert reward.pop_metrics()["judge/grader/samples"] == 4      # popped from the main thread
        assert reward.judge.transport.open_clients() == 1                 # one client for the whole run
        reward.close()
        assert reward.judge.transport.open_clients() == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_one_asyncio_run_per_batch(server, rubric):
    reward = make_judge(server.base_url, rubric)
    for _ in range(3):
        assert run(reward, ["a", "b"]) == [5.0, 5.0]
    assert reward.judge.transport.open_clients() <= 1          # clients of closed loops are dropped
