"""The tool layer: the built-in calculator on nasty input, lookups, the schema check TRL needs, environment
checks, the timing wrappers and the metrics they feed (numpy percentiles)."""
from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest

from pipelines.grpo import reward_functions
from pipelines.rewards.safe_arith import UnsafeExpression
from pipelines.rewards.tools import (BUILTIN_TOOLS, ToolMetrics, bind_method, calculator, count_tool_calls,
                                     environment_problems, lookup_tool, register_tool, schema_problem, timed,
                                     tool_schema)


@pytest.mark.parametrize("expression, value", [("1 + 2", "3"), ("(25 - 5) * 4 + 3", "83"), ("7 / 2", "3.5"),
                                               ("-3 * -3", "9")])
def test_calculator_evaluates_arithmetic(expression, value):
    assert calculator(expression) == value


@pytest.mark.parametrize("expression", ["9**9**9", "__import__('os')", "().__class__", "1/0", "1" * 600, "x + 1"])
def test_calculator_refuses_everything_else(expression):
    with pytest.raises(UnsafeExpression):
        calculator(expression)


def test_builtin_and_registered_tools_resolve_and_have_schemas():
    assert lookup_tool("calculator") is BUILTIN_TOOLS["calculator"]
    assert lookup_tool("example_word_count") is reward_functions.word_count
    assert lookup_tool("pipelines.grpo.reward_functions:word_count") is reward_functions.word_count
    schema = tool_schema(calculator)["function"]
    assert schema["name"] == "calculator" and schema["parameters"]["required"] == ["expression"]
    with pytest.raises(KeyError, match='did you mean "calculator"'):
        lookup_tool("calculater")
    with pytest.raises(TypeError, match="a class"):
        lookup_tool("pipelines.grpo.reward_functions:GuessTheNumber")
    with pytest.raises(ValueError, match="already taken"):
        register_tool("calculator")(lambda: None)


def test_schema_problem_quotes_transformers_error():
    def no_hint(x):
        """Doc.

        Args:
            x: a value
        """
    def no_doc(x: int) -> int:
        return x
    assert "no docstring" in schema_problem(no_doc)
    assert "type hint" in schema_problem(no_hint)
    assert schema_problem(calculator) is None


def test_worked_environment_passes_the_checks_and_plays():
    factory, problems = environment_problems("pipelines.grpo.reward_functions:GuessTheNumber")
    assert problems == [] and factory is reward_functions.GuessTheNumber
    env = factory()
    env.reset(answer="5", prompt=[])
    assert [env.guess(3), env.guess(9), env.get_reward(), env.guess(5), env.get_reward()] == \
        ["higher", "lower", 0.0, "correct", 1.0]
    assert reward_functions.word_count("a b  c") == 3


def test_environment_problems_name_a_missing_reset_and_bad_methods():
    _, problems = environment_problems("tests.grpo.tool_fixtures:NoReset")
    assert len(problems) == 1 and "no `reset` method" in problems[0]
    _, problems = environment_problems("tests.grpo.tool_fixtures:nowhere")
    assert "has no attribute 'nowhere'" in problems[0]


def test_timed_tools_keep_their_schema_and_feed_the_metrics():
    metrics = ToolMetrics()
    tool = timed(calculator, metrics)
    assert tool_schema(tool) == tool_schema(calculator)
    assert tool("2 * 3") == "6"
    for bad in ({"expression": "1/0"}, {"expr": "1"}):
        with pytest.raises(Exception):
            tool(**bad)
    metrics.observe_completions([
        [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "calculator"}}] * 2},
         {"role": "tool", "name": "calculator", "content": "6"}, {"role": "assistant", "content": "done"}],
        [{"role": "assistant", "content": "no tools"}], "plain text"])
    out = metrics.pop()
    assert out["tools/calls"] == 3 and out["tools/calculator/calls"] == 3 and out["tools/errors"] == 2
    assert out["tools/errors/UnsafeExpression"] == 1 and out["tools/errors/bad_arguments"] == 1
    assert out["tools/calls_per_completion"] == pytest.approx(2 / 3)
    assert out["tools/completions_with_calls"] == pytest.approx(1 / 3)
    assert 0 < out["tools/latency_s/p50"] <= out["tools/latency_s/p95"]
    assert metrics.pop() == {}      # popped: the next log starts afresh


def test_latency_percentiles_are_numpy_percentiles():
    metrics = ToolMetrics()
    samples = [0.01 * i for i in range(1, 21)]
    for s in samples:
        metrics.record("t", s)
    out = metrics.pop()
    assert out["tools/latency_s/p50"] == pytest.approx(np.percentile(samples, 50))
    assert out["tools/latency_s/p95"] == pytest.approx(np.percentile(samples, 95))


def test_bound_tools_are_methods_with_the_tools_schema_sync_and_async():
    async def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: The key.
        """
        return key.upper()

    class Env:
        def reset(self, **row):
            return None

    env = Env()
    bind_method(env, calculator)
    bind_method(env, lookup)
    methods = dict(inspect.getmembers(env, predicate=inspect.ismethod))
    assert set(methods) == {"reset", "calculator", "lookup"}
    assert tool_schema(methods["calculator"]) == tool_schema(calculator)
    assert tool_schema(methods["lookup"]) == tool_schema(lookup)
    assert inspect.iscoroutinefunction(methods["lookup"]) and asyncio.run(env.lookup(key="a")) == "A"
    assert env.calculator(expression="1+1") == "2"


def test_count_tool_calls():
    assert count_tool_calls("text") == 0
    assert count_tool_calls([{"role": "assistant", "content": "x"}]) == 0
    assert count_tool_calls([{"role": "assistant", "tool_calls": [{}, {}]}, {"role": "tool", "content": "1"}]) == 2


def test_sandbox_runs_before_a_run_are_not_counted_in_its_first_step():
    """python_exec is module-level, so its sandbox counters outlive a run: watching it starts them from zero."""
    from pipelines.common.sandbox import probe
    from pipelines.rewards.tools import BUILTIN_TOOLS, ToolMetrics, timed

    if probe() is not None:
        pytest.skip(f"the sandbox cannot start here: {probe()}")
    python_exec = BUILTIN_TOOLS["python_exec"]
    python_exec("print(1)")                       # an earlier run's call, never popped
    metrics = ToolMetrics()
    tool = timed(python_exec, metrics)
    assert "42" in tool("print(6 * 7)")
    popped = metrics.pop()
    assert popped["tools/python_exec/calls"] == 1.0 and popped["tools/python_exec/sandbox/runs"] == 1.0
