"""Where sync rewards run (issue 16 F6, issue 13.4): a per-call timeout that names the reward, the main thread
for rewards whose timeouts are signal based (math-verify), and non-finite scores refused (F19)."""
from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time

import pytest

from pipelines.rewards.config import RewardSection
from pipelines.rewards import errors
from pipelines.rewards.errors import RewardFunctionError
from pipelines.rewards.registry import REWARD_REGISTRY, register_reward_function
from tests.rewards.reward_cfg import make_cfg, row, stack_for

HERE = "tests.rewards.test_reward_threads"
THREADS: dict[str, list[bool]] = {"main": [], "worker": []}


def sleepy(seconds: float = 5.0):
    def sleepy(prompts, completions, **kw):
        time.sleep(seconds)
        return [1.0] * len(completions)
    return sleepy


def worker_probe(prompts, completions, **kw):
    THREADS["worker"].append(threading.current_thread() is threading.main_thread())
    return [1.0] * len(completions)


def main_probe(prompts, completions, **kw):
    """Uses signal.alarm as math-verify does: only possible on the main thread."""
    THREADS["main"].append(threading.current_thread() is threading.main_thread())
    old = signal.signal(signal.SIGALRM, lambda *a: None)   # ValueError outside the main thread
    signal.signal(signal.SIGALRM, old)
    return [2.0] * len(completions)


def register_main_probe() -> str:
    """Register ``main_probe`` as a main-thread reward (once) and return its name."""
    if "test_threads_main_probe" not in REWARD_REGISTRY:
        register_reward_function("test_threads_main_probe", main_thread=True)(main_probe)
    return "test_threads_main_probe"


def returns(value: float = math.inf, word: str = "bad"):
    """``value`` for completions containing ``word``, else 1.0."""
    def returns(prompts, completions, **kw):
        return [value if word in c[0]["content"] else 1.0 for c in completions]
    return returns


# ------------------------------------------------------------------------------------------- F6: timeouts
def test_a_hanging_sync_reward_times_out_naming_the_reward():
    cfg = make_cfg([{"name": f"{HERE}:sleepy", "seconds": 30}], reward={"sync_timeout_s": 0.5})
    stack = stack_for(cfg)
    start = time.perf_counter()
    with pytest.raises(errors.RewardTimeout, match=r"reward 'tests.rewards.test_reward_threads:sleepy' of datasets\[0\]"
                                            r".*did not return within 0.5 s \(reward.sync_timeout_s\)"):
        stack.score_batch(None, ["a", "b"], [row(0), row(0)])
    assert time.perf_counter() - start < 5
    # collecting errors instead: every completion gets the error once, without waiting out the limit per sample
    start = time.perf_counter()
    results = stack.score_batch(None, ["a", "b", "c"], [row(0)] * 3, raise_errors=False)
    assert time.perf_counter() - start < 3
    assert [r.combined for r in results] == [None] * 3 and all("did not return" in r.errors[0] for r in results)
    stack.close()


def test_the_timeout_default_is_logged_and_bounded_in_the_schema(caplog):
    caplog.set_level(logging.INFO, logger="pipelines.rewards.engine")
    stack_for(make_cfg([{"name": "keyword", "keywords": ["a"]}])).close()
    assert any("time out after 300 s per call (reward.sync_timeout_s)" in r.getMessage() for r in caplog.records)
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError):
            RewardSection.model_validate({"sync_timeout_s": bad})
    assert RewardSection.model_validate({"sync_timeout_s": None}).sync_timeout_s is None


def test_a_hung_reward_thread_does_not_keep_the_process_alive():
    """Python joins non-daemon threads at exit: a hung reward in asyncio's pool kept Ctrl-C'd runs alive."""
    stack = stack_for(make_cfg([{"name": f"{HERE}:sleepy", "seconds": 30}], reward={"sync_timeout_s": 0.2}))
    with pytest.raises(errors.RewardTimeout):
        stack.score_batch(None, ["a"], [row(0)])
    hung = [t for t in threading.enumerate() if t.name.startswith("reward ")]
    assert hung and all(t.daemon for t in hung)
    stack.close()


# ------------------------------------------------------------------------------------ main-thread rewards
def test_main_thread_rewards_run_on_the_main_thread_others_in_workers():
    THREADS["main"].clear()
    THREADS["worker"].clear()
    cfg = make_cfg([{"name": register_main_probe()}, {"name": f"{HERE}:worker_probe"}])
    stack = stack_for(cfg)
    results = stack.score_batch(None, ["a", "b"], [row(0), row(0)])
    assert [r.combined for r in results] == [3.0, 3.0]
    assert THREADS["main"] == [True] and THREADS["worker"] == [False]
    # TRL's callable too: TRL calls it on the main thread
    stack.reward_func(prompts=[[{"role": "user", "content": "q"}]], completions=[[{"role": "assistant",
                      "content": "x"}]], dataset_index=[0], trainer_state=None)
    assert THREADS["main"] == [True, True]
    stack.close()


def test_main_thread_reward_scored_from_another_thread_falls_back_to_a_worker(caplog):
    THREADS["main"].clear()
    stack = stack_for(make_cfg([{"name": register_main_probe()}]))
    out: list = []
    worker = threading.Thread(target=lambda: out.append(stack.score_batch(None, ["a"], [row(0)],
                                                                          raise_errors=False)))
    worker.start()
    worker.join(30)
    # signal.signal refuses outside the main thread: the reward says so as a per-completion error
    assert THREADS["main"] == [False]
    assert out and "ValueError" in out[0][0].errors[0]
    assert any("asks for the main thread" in r.getMessage() for r in caplog.records)
    stack.close()


def test_trl_accuracy_reward_runs_with_math_verify_timeouts_on():
    """accuracy_reward turns math-verify's signal timeouts off in any thread but the main one."""
    pytest.importorskip("math_verify")
    cfg = make_cfg([{"name": "accuracy_reward"}])
    stack = stack_for(cfg)
    rows = [row(0, solution=r"\frac{1}{3}"), row(0, solution=r"\frac{1}{3}")]
    results = stack.score_batch(None, [r"It is \boxed{\frac{1}{3}}", r"It is \boxed{\frac{1}{2}}"], rows)
    assert [r.combined for r in results] == [1.0, 0.0]
    assert stack.components[0][0].main_thread
    # accuracy_reward lowers math_verify's log level only when it runs off the main thread
    assert logging.getLogger("math_verify.parser").level != logging.ERROR
    stack.close()


# ------------------------------------------------------------------------------------ F19: non-finite scores
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_f19_non_finite_rewards_are_errors_naming_the_function(value):
    stack = stack_for(make_cfg([{"name": f"{HERE}:returns", "value": value}]))
    with pytest.raises(RewardFunctionError, match=r"reward 'tests.rewards.test_reward_threads:returns' .*returned "
                                                  r".* for completion 1; a reward must be a finite number"):
        stack.score_batch(None, ["a", "bad"], [row(0), row(0)])
    # collected per completion: only the bad one is left out
    results = stack.score_batch(None, ["a", "bad"], [row(0), row(0)], raise_errors=False)
    assert results[0].combined == 1.0 and results[1].combined is None and "finite" in results[1].errors[0]


def test_f19_an_overflowing_combination_is_an_error_and_nothing_is_written(tmp_path):
    cfg = make_cfg([{"name": f"{HERE}:returns", "value": 1e200, "word": "x"},
                    {"name": f"{HERE}:returns", "value": 1e200, "word": "x"}],
                   reward={"combination_function": "product", "score_save_threshold": 0.0})
    stack = stack_for(cfg, tmp_path)
    with pytest.raises(RewardFunctionError, match="combination function 'product' returned inf"):
        stack.reward_func(prompts=[[{"role": "user", "content": "q"}]] * 2,
                          completions=[[{"role": "assistant", "content": "x"}]] * 2, dataset_index=[0, 0],
                          trainer_state=None)
    stack.close()
    export = tmp_path / "high_scoring_examples.jsonl"
    assert not export.exists() or export.read_text() == ""


def test_f19_the_high_score_file_stays_strict_json(tmp_path):
    cfg = make_cfg([{"name": f"{HERE}:returns", "value": math.inf}], reward={"score_save_threshold": 0.0})
    stack = stack_for(cfg, tmp_path)
    with pytest.raises(RewardFunctionError):
        stack.reward_func(prompts=[[{"role": "user", "content": "q"}]] * 2,
                          completions=[[{"role": "assistant", "content": t}] for t in ("ok", "bad")],
                          dataset_index=[0, 0], trainer_state=None)
    stack.score_batch(None, ["ok", "bad"], [row(0), row(0)], raise_errors=False, record=True)
    stack.close()

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    lines = (tmp_path / "high_scoring_examples.jsonl").read_text().splitlines()
    assert len(lines) == 1   # the finite one
    assert all(math.isfinite(json.loads(line, parse_constant=refuse)["reward"]) for line in lines)


# ------------------------------------------------------- a reward that raises KeyboardInterrupt or SystemExit
def raises_keyboard_interrupt(prompts, completions, **kw):
    raise KeyboardInterrupt


async def exits_async(prompts, completions, **kw):
    raise SystemExit(3)


async def exits_per_sample(prompt, completion, **kw):
    raise SystemExit(4)


def _score_within(stack, seconds: float, **kwargs):
    """score_batch in a thread; fails the test (instead of hanging it) if it does not return in time."""
    out: list = []

    def target():
        try:
            out.append(stack.score_batch(None, ["a", "b"], [row(0), row(0)], **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            out.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "scoring hung: the reward's exception killed the stack's event loop"
    return out[0]


@pytest.mark.parametrize("name", [f"{HERE}:raises_keyboard_interrupt", f"{HERE}:exits_async"])
def test_a_reward_raising_keyboard_interrupt_or_system_exit_is_its_error_not_a_hang(name):
    stack = stack_for(make_cfg([{"name": name}]))
    try:
        outcome = _score_within(stack, 20)
        assert isinstance(outcome, RewardFunctionError), outcome
        assert name in str(outcome) and ("KeyboardInterrupt" in str(outcome) or "SystemExit" in str(outcome))
        results = _score_within(stack, 20, raise_errors=False)    # the stack's loop survived: it scores again
        assert all(r.errors and list(r.rewards.values()) == [None] for r in results), results
    finally:
        stack.close()


def test_a_per_sample_async_reward_raising_system_exit_is_its_error_not_a_hang():
    from pipelines.rewards.forms import per_sample

    register = "test_threads_exits_per_sample"
    if register not in REWARD_REGISTRY:
        register_reward_function(register)(lambda: per_sample(exits_per_sample))
    stack = stack_for(make_cfg([{"name": register}]))
    try:
        outcome = _score_within(stack, 20)
        assert isinstance(outcome, RewardFunctionError) and "SystemExit" in str(outcome), outcome
    finally:
        stack.close()
