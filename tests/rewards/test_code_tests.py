"""The code_tests reward: block extraction, test splitting, the harness's result, and scoring in the sandbox."""
from __future__ import annotations

import pytest

from pipelines.common import sandbox
from pipelines.common.sandbox import SandboxResult
from pipelines.rewards.catalog import lookup_reward
from pipelines.rewards.code_tests import last_python_block, read_outcome, split_tests

needs_bwrap = pytest.mark.skipif(sandbox.probe() is not None, reason=f"bwrap cannot start here: {sandbox.probe()}")
FAST = {"wall_s": 3, "cpu_s": 2, "memory_mb": 512, "output_bytes": 64_000}
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def fenced(code: str, lang: str = "python") -> str:
    return f"Here it is:\n```{lang}\n{code}\n```\nDone."


def test_last_python_block():
    text = "```python\nold = 1\n```\ntext\n```py\nnew = 2\n```\n```\nplain = 3\n```\n```bash\nls\n```"
    assert last_python_block(text) == "new = 2"
    assert last_python_block("```\nplain = 3\n```") == "plain = 3"
    assert last_python_block("  ```python\n  x = 1\n    y = 2\n  ```") == "x = 1\n  y = 2"
    assert last_python_block("```python\nnever closed") is None
    assert last_python_block("no code") is None
    assert last_python_block("```python\n" * 20_000) is None      # many unclosed fences: one linear pass


def test_split_tests():
    assert split_tests(TESTS) == TESTS
    assert split_tests("assert f(1) == 1\nfor i in range(3):\n    assert f(i) >= 0\n") == [
        "assert f(1) == 1", "for i in range(3):\n    assert f(i) >= 0"]
    assert split_tests('["assert f(1) == 1", "assert f(2) == 2"]') == ["assert f(1) == 1", "assert f(2) == 2"]
    assert split_tests("[1, 2]") == ["[1, 2]"]                  # not a list of test strings: one (odd) statement
    with pytest.raises(ValueError, match="do not parse"):
        split_tests("assert (")
    with pytest.raises(ValueError, match="list of Python statements"):
        split_tests([1, 2])


def outcome(stdout: str, killed=None) -> SandboxResult:
    return SandboxResult(stdout, "", None if killed else 0, killed == "wall_time", killed, False, 0.1, "bwrap")


def test_read_outcome_trusts_only_the_harness_last_line():
    m = "@@m@@"
    assert read_outcome(outcome(f"hi\n{m}{{\"passed\": [true, false]}}\n"), m, 2) == (0.5, None)
    assert read_outcome(outcome(f"{m}{{\"passed\": [true, true]}}\n{m}{{\"passed\": [false, false]}}\n"), m, 2) == \
        (0.0, "no_result")                       # a forged line before the real one
    assert read_outcome(outcome(f"{m}{{\"passed\": [true, true]}}\nlater\n"), m, 2) == (0.0, "no_result")
    assert read_outcome(outcome(f"{m}{{\"passed\": [true]}}\n"), m, 2) == (0.0, "no_result")
    assert read_outcome(outcome(f"{m}{{\"error\": \"crash\"}}\n"), m, 2) == (0.0, "crash")
    assert read_outcome(outcome("", "wall_time"), m, 2) == (0.0, "timeout")
    assert read_outcome(outcome("", "output_limit"), m, 2) == (0.0, "output_limit")
    assert read_outcome(outcome("", "signal:SIGKILL"), m, 2) == (0.0, "killed")


def make_reward(**kwargs):
    return lookup_reward("code_tests").obj(sandbox=FAST, **kwargs)


@needs_bwrap
def test_scores_share_of_tests_and_counts_zero_reasons():
    reward = make_reward()
    completions = [fenced("def add(a, b):\n    return a + b"),
                   fenced("def add(a, b):\n    return 3"),                      # passes the first test only
                   fenced("def add(a, b):\n    return a - b"),
                   "no code at all",
                   fenced("def add(a, b) return"),
                   fenced("raise RuntimeError('boom')"),
                   fenced("def add(a, b):\n    return a + b\nwhile True:\n    pass"),
                   fenced("print('x' * 10 ** 6)\ndef add(a, b):\n    return a + b"),
                   fenced("def add(a, b):\n    return a + b"),
                   fenced("import os\nos._exit(0)")]
    tests = [TESTS] * 9 + ["assert add(1, 2) == 3\nassert add(0, 0) == 0"]
    tests[8] = []                                                               # a row without tests
    scores = reward(None, completions, tests=tests)
    assert scores == [1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 0.0]
    metrics = reward.pop_metrics()
    assert metrics["runs"] == 9 and metrics["tests_run"] == 18 and metrics["tests_passed"] == 3
    assert {k: v for k, v in metrics.items() if k.startswith("zero/") and v} == {
        "zero/no_code": 1, "zero/syntax_error": 1, "zero/crash": 1, "zero/output_limit": 1, "zero/no_result": 1,
        "zero/cpu_time" if metrics["zero/cpu_time"] else "zero/timeout": 1}
    assert 0 < metrics["sandbox_latency_p50_s"] <= metrics["sandbox_latency_p95_s"]
    assert reward.pop_metrics() == {}


def test_a_row_without_the_tests_column_is_an_error():
    with pytest.raises(KeyError, match="tests_column"):
        make_reward()(None, [fenced("x = 1")], answer=["1"])


def test_validate_reports_bad_sandbox_settings():
    record = lookup_reward("code_tests")
    problems = record.kwarg_problems({"sandbox": {"mode": "docker", "wall_s": -1}, "workers": 0})
    assert any(p.startswith("sandbox.mode") for p in problems) and any(p.startswith("sandbox.wall_s") for p in problems)
    assert any("workers" in p for p in problems)
    assert record.needed_columns({"tests_column": "checks"}) == ["checks"]


@needs_bwrap
def test_metrics_reach_the_reward_stack():
    from pipelines.data.config import DatasetEntry
    from pipelines.rewards.config import RewardSection
    from pipelines.rewards.engine import RewardStack

    dataset = DatasetEntry.model_validate({"path": "code.jsonl", "percentage": 1.0,
                                           "reward_funcs": [{"name": "code_tests", "sandbox": FAST}]})
    stack = RewardStack(RewardSection(), [dataset])
    try:
        rows = [{"prompt": [{"role": "user", "content": "add"}], "tests": TESTS, "dataset_index": 0}] * 2
        results = stack.score_batch(None, [fenced("def add(a, b):\n    return a + b"), "no code"], rows)
        metrics = stack.pop_metrics()
    finally:
        stack.close()
    assert [r.combined for r in results] == [1.0, 0.0]
    assert metrics["rewards/code/code_tests/runs"] == 2 and metrics["rewards/code/code_tests/zero/no_code"] == 1
    assert metrics["rewards/code/code_tests/sandbox_latency_p50_s"] > 0
