"""The reward stack: routing, the three forms, None and error handling, concurrency, metrics."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pipelines.rewards.components import component_names
from pipelines.rewards.errors import CircuitBreakerOpen, RewardFunctionError
from pipelines.rewards.forms import per_sample
from pipelines.rewards.registry import register_reward_function
from tests.rewards.reward_cfg import make_cfg, row, stack_for

HERE = "tests.rewards.test_engine"
CALLS: dict[str, int] = {}


# --- test reward factories, named by import path (module:function), so nothing is registered globally
def counting(tag: str = "x"):
    CALLS[tag] = CALLS.get(tag, 0) + 1

    def counting(prompts, completions, **kw):
        return [float(len(kw["dataset_index"]))] * len(completions)
    return counting


def sync_len():
    def sync_len(prompts, completions, **kw):
        assert isinstance(completions[0], list)  # TRL's chat form reaches batch functions unchanged
        return [float(len(c[0]["content"])) for c in completions]
    return sync_len


def async_upper():
    async def async_upper(prompts, completions, **kw):
        await asyncio.sleep(0)
        return [1.0 if c[0]["content"].isupper() else 0.0 for c in completions]
    return async_upper


def sample_form():
    @per_sample
    def sample_form(prompt, completion, answer, **row):
        assert isinstance(completion, str) and prompt[0]["role"] == "user"
        return None if answer == "skip" else float(completion == answer)
    return sample_form


def async_sample_form():
    @per_sample
    async def async_sample_form(prompt, completion, row_id):  # only declared names are passed
        await asyncio.sleep(0)
        return float(row_id.endswith("1"))
    return async_sample_form


def sleeper(seconds: float = 0.3):
    async def sleeper(prompts, completions, **kw):
        await asyncio.sleep(seconds)
        return [1.0] * len(completions)
    return sleeper


def blocking_sleeper(seconds: float = 0.3):
    def blocking_sleeper(prompts, completions, **kw):
        time.sleep(seconds)
        return [1.0] * len(completions)
    return blocking_sleeper


def fails_on(word: str = "bad"):
    def fails_on(prompts, completions, **kw):
        for c in completions:
            if word in c[0]["content"]:
                raise ValueError(f"cannot score {word!r}")
        return [1.0] * len(completions)
    return fails_on


def breaker():
    async def breaker(prompts, completions, **kw):
        raise CircuitBreakerOpen("judge down: 5 of 5 calls failed")
    return breaker


def always_none():
    return lambda prompts, completions, **kw: [None] * len(completions)


def wrong_length():
    return lambda prompts, completions, **kw: [1.0]


def with_metrics():
    def with_metrics(prompts, completions, **kw):
        return [1.0] * len(completions)
    with_metrics.pop_metrics = lambda: {"calls": 3.0}
    return with_metrics


def ref(name: str, **kwargs):
    return {"name": f"{HERE}:{name}", **kwargs}


def trl_call(stack, texts, rows, step=None):
    """Call the TRL callable exactly as GRPOTrainer does (keyword arguments, columns as lists)."""
    class State:
        global_step = step
    cols = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    return stack.reward_func(prompts=[r["prompt"] for r in rows],
                             completions=[[{"role": "assistant", "content": t}] for t in texts],
                             completion_ids=[[1, 2]] * len(rows), trainer_state=State(),
                             log_metric=lambda *a: None, **cols)


def test_reward_func_is_sync_for_trl():
    """TRL calls a sync reward on its main thread: the stack's wait there runs the main-thread rewards."""
    from trl.trainer.utils import is_async_callable
    stack = stack_for(make_cfg([{"name": "keyword", "keywords": ["a"]}]))
    assert not is_async_callable(stack.reward_func) and stack.reward_func.__name__ == "reward_stack"


def test_routing_across_datasets_with_different_rewards():
    cfg = make_cfg([{"name": "keyword", "keywords": ["Joy"]}],
                   [ref("sync_len"), ref("async_upper")],
                   [ref("sample_form"), {"name": "keyword", "keywords": ["x"]}])
    stack = stack_for(cfg)
    rows = [row(0), row(1), row(2, answer="yes"), row(0), row(1), row(2, answer="skip")]
    texts = ["Joy", "ABC", "yes", "none", "abcd", "x"]
    out = trl_call(stack, texts, rows)
    assert out == [1.0, 3.0 + 1.0, 1.0 + 0.0, 0.0, 4.0 + 0.0, 0.0 + 1.0]
    results = stack.score_batch(None, texts, rows)
    assert [r.rewards for r in results][:3] == [{"ds0/keyword": 1.0}, {"ds1/sync_len": 3.0, "ds1/async_upper": 1.0},
                                                {"ds2/sample_form": 1.0, "ds2/keyword": 0.0}]
    assert results[5].rewards == {"ds2/sample_form": None, "ds2/keyword": 1.0}


def test_each_function_sees_only_its_datasets_rows():
    cfg = make_cfg([ref("counting")], [ref("counting", tag="y")])
    stack = stack_for(cfg)
    out = trl_call(stack, ["a"] * 5, [row(0), row(1), row(1), row(0), row(1)])
    assert out == [2.0, 3.0, 3.0, 2.0, 3.0]


def test_factories_called_once_per_run():
    CALLS.clear()
    stack = stack_for(make_cfg([ref("counting", tag="once")], [ref("counting", tag="once")]))
    for _ in range(3):
        trl_call(stack, ["a", "b"], [row(0), row(1)])
    assert CALLS == {"once": 2}  # one per entry, none per batch or row


def test_per_sample_passes_declared_names_only():
    stack = stack_for(make_cfg([ref("async_sample_form")]))
    rows = [row(0, row_id="a1"), row(0, row_id="a2")]
    assert trl_call(stack, ["x", "y"], rows) == [1.0, 0.0]


def test_component_names_unique_and_contain_function_name():
    cfg = make_cfg([{"name": "keyword", "keywords": ["a"]}, {"name": "keyword", "keywords": ["b"]},
                    ref("sync_len")], [{"name": "keyword", "keywords": ["a"]}])
    assert component_names(cfg.datasets) == [["ds0/keyword", "ds0/keyword_2", "ds0/sync_len"], ["ds1/keyword"]]


def test_async_rewards_run_concurrently():
    cfg = make_cfg([ref("sleeper"), ref("sleeper"), ref("blocking_sleeper")], [ref("sleeper")])
    stack = stack_for(cfg)
    start = time.perf_counter()
    trl_call(stack, ["a", "b"], [row(0), row(1)])
    assert time.perf_counter() - start < 0.75  # four 0.3 s rewards, sequential would take 1.2 s


def test_all_none_gives_none_and_metrics_skip_it():
    stack = stack_for(make_cfg([ref("always_none")], [{"name": "keyword", "keywords": ["a"]}]))
    out = trl_call(stack, ["a", "a"], [row(0), row(1)])
    assert out == [None, 1.0]
    m = stack.pop_metrics()
    assert "rewards/ds0/always_none/mean" not in m and m["rewards/ds0/always_none/none_ratio"] == 1.0
    assert m["rewards/combined/mean"] == 1.0 and m["rewards/combined/std"] == 0.0


def test_raising_reward_names_dataset_and_function():
    stack = stack_for(make_cfg([{"name": "keyword", "keywords": ["a"]}], [ref("fails_on")]))
    with pytest.raises(RewardFunctionError, match=r"fails_on.*datasets\[1\].*ds1.*cannot score"):
        trl_call(stack, ["fine", "bad one"], [row(0), row(1)])


def test_errors_collected_per_completion_when_asked():
    stack = stack_for(make_cfg([ref("fails_on"), {"name": "keyword", "keywords": ["o"]}]))
    results = stack.score_batch(None, ["good", "bad", "ok"], [row(0)] * 3, raise_errors=False)
    assert [r.rewards[f"ds0/fails_on"] for r in results] == [1.0, None, 1.0]
    assert results[1].errors and "cannot score" in results[1].errors[0] and not results[0].errors
    assert results[1].combined == 0.0  # the keyword still counts


def test_circuit_breaker_propagates_unchanged():
    stack = stack_for(make_cfg([ref("breaker"), ref("fails_on")]))
    with pytest.raises(CircuitBreakerOpen, match="judge down"):
        trl_call(stack, ["bad"], [row(0)])
    with pytest.raises(CircuitBreakerOpen):
        stack.score_batch(None, ["x"], [row(0)], raise_errors=False)


def test_wrong_output_length_is_an_error():
    stack = stack_for(make_cfg([ref("wrong_length")]))
    with pytest.raises(RewardFunctionError, match="returned 1 scores for 2"):
        trl_call(stack, ["a", "b"], [row(0), row(0)])


def test_factory_failure_names_the_entry():
    with pytest.raises(RewardFunctionError, match=r"datasets\[0\].reward_funcs\[0\].*regex_match"):
        stack_for(make_cfg([{"name": "regex_match", "pattern": "("}]))


def test_unknown_dataset_index_and_missing_index():
    stack = stack_for(make_cfg([ref("sync_len")], [ref("sync_len")]))
    with pytest.raises(RewardFunctionError, match="dataset_index 7"):
        trl_call(stack, ["a"], [row(7)])
    with pytest.raises(RewardFunctionError, match="no dataset_index"):
        stack.score_batch([[{"role": "user", "content": "q"}]], ["a"], [{"answer": ""}])
    single = stack_for(make_cfg([ref("sync_len")]))  # one dataset: rows without an index are fine
    assert single.score_batch([[{"role": "user", "content": "q"}]], ["abc"], [{}])[0].combined == 3.0


def test_weights_gates_and_scaling_from_config():
    cfg = make_cfg([{"name": "keyword", "keywords": ["a"], "weight": 2.0},
                    {"name": "keyword", "keywords": ["b"], "gate": True}],
                   reward={"combination_function": "weighted_sum",
                           "scaling_function": {"name": "clip", "kwargs": {"low": 0, "high": 2.5}}})
    stack = stack_for(cfg)
    results = stack.score_batch(None, ["ab", "a", "b"], [row(0)] * 3)
    assert [r.combined for r in results] == [3.0, 0.0, 1.0]
    assert [r.scaled for r in results] == [2.5, 0.0, 1.0]


def test_metrics_per_component_and_combined():
    cfg = make_cfg([{"name": "keyword", "keywords": ["a"]}, {"name": "keyword", "keywords": ["b"]}],
                   [ref("with_metrics")], reward={"scaling_function": "minmax"})
    stack = stack_for(cfg)
    trl_call(stack, ["ab", "a", "zzz"], [row(0), row(0), row(1)])
    trl_call(stack, ["b"], [row(0)])  # two calls in one logging step accumulate
    m = stack.pop_metrics()
    assert m["rewards/ds0/keyword/mean"] == pytest.approx(2 / 3)
    assert m["rewards/ds0/keyword_2/mean"] == pytest.approx(2 / 3)
    assert m["rewards/ds1/with_metrics/mean"] == 1.0 and m["rewards/ds1/with_metrics/std"] == 0.0
    assert m["rewards/combined/mean"] == pytest.approx((2 + 1 + 1 + 1) / 4) == m["rewards/combined/mean"]
    assert m["rewards/scaled/mean"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert m["rewards/ds1/with_metrics/calls"] == 3.0
    assert all(k.startswith("rewards/") or k == "rewards/combined/mean" for k in m)
    assert "rewards/combined/mean" not in stack.pop_metrics()  # popped


def test_score_batch_does_not_record_unless_asked():
    stack = stack_for(make_cfg([{"name": "keyword", "keywords": ["a"]}]))
    stack.score_batch(None, ["a"], [row(0)])
    assert "rewards/combined/mean" not in stack.pop_metrics()
    stack.score_batch(None, ["a"], [row(0)], record=True)
    assert stack.pop_metrics()["rewards/combined/mean"] == 1.0


def test_score_batch_from_another_thread_and_async():
    stack = stack_for(make_cfg([ref("async_upper")]))
    out = []
    t = threading.Thread(target=lambda: out.append(stack.score_batch(None, ["A", "b"], [row(0)] * 2)))
    t.start(); t.join()
    assert [r.combined for r in out[0]] == [1.0, 0.0]
    assert [r.combined for r in asyncio.run(stack.ascore_batch(None, ["A"], [row(0)]))] == [1.0]
    stack.close()


def test_registered_examples_in_reward_functions_work():
    cfg = make_cfg([{"name": "example_mentions_topic", "topic": "River"}, {"name": "example_async_length",
                    "max_chars": 10}, {"name": "example_echoes_answer"}])
    stack = stack_for(cfg)
    r = stack.score_batch(None, ["a river", "no " * 10], [row(0, answer="a river"), row(0, answer="")])
    assert r[0].rewards == {"ds0/example_mentions_topic": 1.0, "ds0/example_async_length": 1.0,
                            "ds0/example_echoes_answer": 1.0}
    assert r[1].rewards["ds0/example_echoes_answer"] is None and r[1].combined == 0.0
    # the plain-function example gets text (len counts characters) and its entry sets its own parameter
    plain = stack_for(make_cfg([{"name": "example_length_penalty", "ideal": 5}]))
    assert [x.combined for x in plain.score_batch(None, ["abc", "abcdefg"], [row(0), row(0)])] == [-2.0, -2.0]


def test_registry_refuses_duplicates_and_suggests():
    from pipelines.rewards.catalog import check_reward_kwargs, get_reward_factory
    with pytest.raises(ValueError, match="registered twice"):
        register_reward_function("keyword")(lambda: None)
    with pytest.raises(KeyError, match='did you mean "keyword"'):
        get_reward_factory("keywrd")
    assert "registered: " in check_reward_kwargs("nope_nothing", {})[0]
    assert "has no attribute" in check_reward_kwargs(f"{HERE}:sleepr", {})[0]
    assert "cannot import" in check_reward_kwargs("no_such_module_xyz:f", {})[0]
    msg = check_reward_kwargs(f"{HERE}:sleeper", {"second": 1})[0]
    assert '"seconds"' in msg and "accepts: seconds" in msg
    assert check_reward_kwargs(f"{HERE}:sleeper", {"seconds": 1}) == []


CLOSED: list[str] = []


def closable():
    async def closable(prompts, completions, **kw):
        return [1.0] * len(completions)

    async def aclose():
        CLOSED.append("aclose")

    closable.aclose = aclose
    closable.close = lambda: CLOSED.append("close")
    return closable


def test_close_closes_reward_functions_and_export(tmp_path):
    CLOSED.clear()
    cfg = make_cfg([ref("closable")], reward={"score_save_threshold": 0.0})
    stack = stack_for(cfg, tmp_path)
    stack.score_batch(None, ["a"], [row(0)], record=True)  # starts the private loop
    stack.close()
    assert CLOSED == ["aclose", "close"]
    assert (tmp_path / "high_scoring_examples.jsonl").read_text().count("\n") == 1


def test_components_are_named_by_dataset_and_reward_labels(tmp_path):
    """Before: components were named by position (d0/llm_judge_2) whatever their labels."""
    from pipelines.data.config import DatasetEntry
    from pipelines.rewards.catalog import entry_kwargs

    datasets = [DatasetEntry.model_validate(d) for d in (
        {"path": "inputs/chat.jsonl", "percentage": 0.3, "reward_funcs": [
            {"name": "keyword", "keywords": ["a"], "label": "cheer"}, {"name": "keyword", "keywords": ["b"]},
            {"name": "keyword", "keywords": ["c"]}]},
        {"path": "data/chat.jsonl", "percentage": 0.3, "reward_funcs": [{"name": "keyword", "keywords": ["a"]}]},
        {"path": "x.jsonl", "label": "math", "percentage": 0.3,
         "reward_funcs": [{"name": "llm_judge", "label": "cheer2", "system_prompt_path": "r.yaml"}]})]
    assert component_names(datasets) == [["chat/cheer", "chat/keyword", "chat/keyword_2"], ["chat_2/keyword"],
                                         ["math/cheer2"]]
    # the judge still receives its label (it names its own metrics by it); keyword takes none
    assert entry_kwargs(datasets[2].reward_funcs[0])["label"] == "cheer2"
    assert "label" not in entry_kwargs(datasets[0].reward_funcs[0])


def test_one_combined_reward_key():
    stack = stack_for(make_cfg([{"name": "keyword", "keywords": ["a"]}]))
    stack.score_batch(["p", "p"], ["a", "b"], [row(0), row(0)], record=True)
    m = stack.pop_metrics()
    assert m["rewards/combined/mean"] == 0.5
    assert not [k for k in m if "combined" in k and not k.startswith("rewards/combined/")]
