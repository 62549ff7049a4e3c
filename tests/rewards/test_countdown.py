"""countdown_equation and its safe arithmetic: the AgileRL seed's semantics without eval."""
from __future__ import annotations

import time

import pytest

from pipelines.rewards.builtin import countdown_score
from pipelines.rewards.catalog import get_reward_factory
from pipelines.rewards.safe_arith import MAX_CHARS, UnsafeExpression, evaluate


def ans(eq: str) -> str:
    return f"Let me think.</think>\n<answer>{eq}</answer>"


@pytest.mark.parametrize("eq, target, nums, expected", [
    ("(1 + 2) / 3", 1, [1, 2, 3], 1.0),          # the seed prompt's own example
    ("55 + 36 - 7 - 19", 65, [19, 36, 55, 7], 1.0),
    ("(95 - 21) / 2 + 4", 41, [95, 21, 2, 4], 1.0),
    ("44 - 19 + 35", 60, [44, 19, 35], 1.0),
    ("1 + 2 + 3", 7, [1, 2, 3], 0.0),            # wrong value
    ("1 + 2", 3, [1, 2, 3], 0.0),                # a number unused
    ("1 + 1 + 2", 4, [1, 2, 3], 0.0),            # a number used twice
    ("3 * 2 / 1", 6, [1, 2, 3], 1.0),
    ("-1 + 2 + 3", 4, [1, 2, 3], 1.0),           # unary minus, as the seed's eval allows
    ("10 / 3 * 3", 10, [10, 3, 3], 1.0),         # float result within 1e-5
    ("2 ** 3", 8, [2, 3], 0.0),                  # power refused (the seed would accept it)
    ("7 // 2", 3, [7, 2], 0.0),                  # floor division refused
    ("1 / 0 + 2", 2, [1, 0, 2], 0.0),            # division by zero
])
def test_countdown_cases(eq, target, nums, expected):
    assert countdown_score(ans(eq), target, nums) == expected


def test_answer_tag_must_be_single():
    assert countdown_score("no tags", 3, [1, 2]) == 0.0
    assert countdown_score(ans("1 + 2") + ans("1 + 2"), 3, [1, 2]) == 0.0


def test_columns_from_strings_and_factory_kwargs():
    fn = get_reward_factory("countdown_equation")(target_column="answer", nums_column="question")
    out = fn(prompts=[[]] * 2, completions=[[{"role": "assistant", "content": ans("6 - 1")}], ans("6 + 1")],
             answer=["5", 5], question=["[6, 1]", [6, 1]])
    assert out == [1.0, 0.0]
    with pytest.raises(KeyError, match="nums_column"):
        get_reward_factory("countdown_equation")()(prompts=[[]], completions=["x"], target=[1])


ADVERSARIAL = [
    "9**9**9", "9 ** 9 ** 9 ** 9", "__import__('os').system('echo hi')", "x + 1", "().__class__",
    "(1).__class__", "1 if 1 else 2", "[1, 2]", "lambda: 1", "'a' * 10", "9" * 5000, "1e400 - 1e400",
    "1e308 * 10", "99999999999 * 99999999999 * 99999999999", "(" * 300 + "1" + ")" * 300,
    "-" * 400 + "1", "+".join(["1"] * 200), "1 + ", "", "   ", "True + 1", "1_000 .real", "0x10",
    "1; 2", "abs(-1)", "1 < 2", "~1", "1 % 2", "1 << 64",
]


@pytest.mark.parametrize("expr", ADVERSARIAL)
def test_adversarial_expressions_refused_quickly(expr):
    start = time.perf_counter()
    with pytest.raises(UnsafeExpression):
        evaluate(expr)
    assert countdown_score(ans(expr), 1, [1]) == 0.0
    assert time.perf_counter() - start < 0.1


def test_bounds():
    assert evaluate("1000000 * 1000000").value == 1e12
    with pytest.raises(UnsafeExpression, match="bounds"):
        evaluate("1000000 * 1000000 * 10000")
    with pytest.raises(UnsafeExpression, match="characters"):
        evaluate("1" + " " * MAX_CHARS)
    assert evaluate("((1 + 2)) * -3").numbers == (1, 2, 3)


def test_huge_completion_is_fast():
    text = "<answer>" + "1+" * 500_000 + "1</answer>"
    start = time.perf_counter()
    assert countdown_score(text, 1, [1]) == 0.0
    assert time.perf_counter() - start < 0.5
