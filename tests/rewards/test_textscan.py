"""Issue 16 F9: built-in rewards parse in linear time. The tag scans give what the lazy regexes gave (checked on
random tag soup), and hostile text that took the regexes seconds to minutes is scored at once."""
from __future__ import annotations

import random
import re
import time

import pytest

from pipelines.rewards.builtin import countdown_score, think_answer_ok
from pipelines.rewards.catalog import get_reward_factory
from pipelines.rewards.judge.parse import last_tag_value, parse_number, strip_judge_reasoning
from pipelines.rewards.judge.rubric import strip_reasoning

OLD_THINK_ANSWER = re.compile(r"^<think>([^<]*(?:<(?!/?think>)[^<]*)*)</think>\n<answer>([\s\S]*?)</answer>$",
                              re.DOTALL)
OLD_NUMBER = re.compile(r"^\s*\**\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:/\s*\d+(?:\.\d*)?)?\s*\**\s*$")
TOKENS = ["<answer>", "</answer>", "<think>", "</think>", "<ANSWER>", "</Answer>", "\n", "a", "<", ">", "/", " "]


def soup(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(TOKENS) for _ in range(n))


def test_scans_agree_with_the_regexes_on_tag_soup():
    from pipelines.rewards.textscan import strip_blocks, tag_contents

    rng = random.Random(0)
    for _ in range(3000):
        text = soup(rng, rng.randint(0, 14))
        assert tag_contents(text, "<answer>", "</answer>") == re.findall(r"<answer>([\s\S]*?)</answer>", text)
        assert tag_contents(text, "<answer>", "</answer>", ignore_case=True) == \
            re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL | re.IGNORECASE)
        assert strip_blocks(text, "<think>", "</think>") == re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
        for prefilled in (False, True):
            full = ("<think>" + text) if prefilled else text
            assert think_answer_ok(text, prefilled) == (OLD_THINK_ANSWER.search(full) is not None), repr(text)


def test_think_answer_format_cases():
    assert think_answer_ok("<think>a</think>\n<answer>42</answer>")
    assert think_answer_ok("<think>a</think>\n<answer>42</answer>\n")
    assert not think_answer_ok("<think>a</think>\n<answer>42</answer>\n\n")
    assert not think_answer_ok("<think>a<think>b</think>\n<answer>42</answer>")
    assert think_answer_ok("a</think>\n<answer>42</answer>", prefilled_think=True)


def test_judge_numbers_parse_as_before():
    cases = ["7", " 7.5 ", "**7**", "7/10", " ** 8 / 10 ** ", "-3", ".5", "+2.", "7 /", "seven", "7 8", "* * 7",
             "7 * *", "", "  ", "1e3", "7\n", "\t**9**\t"]
    rng = random.Random(1)
    cases += ["".join(rng.choice(["1", "2", ".", "/", " ", "*", "-", "+", "\n"]) for _ in range(rng.randint(1, 9)))
              for _ in range(5000)]
    for case in cases:
        old = OLD_NUMBER.match(case)
        assert parse_number(case) == (float(old.group(1)) if old else None), repr(case)


HOSTILE_SIZE = 200_000    # the old regexes: countdown 33 s for a 200 KB line (issue 16), judge number > 60 s


@pytest.mark.parametrize("case", ["countdown", "answer_match", "think_answer", "judge_tags", "judge_number",
                                  "judge_reasoning", "rubric_reasoning"])
def test_f9_hostile_text_is_scored_in_linear_time(case):
    n = HOSTILE_SIZE
    unclosed = "<answer>" * (n // 8)
    answer_match = get_reward_factory("answer_match")()
    runs = {
        "countdown": lambda: countdown_score(unclosed, 1, [1]) == 0.0,
        "answer_match": lambda: answer_match([[]], [unclosed], answer=["x"]) == [0.0],
        "think_answer": lambda: not think_answer_ok("<think>" + "<" * n),
        "judge_tags": lambda: last_tag_value("<score>" * (n // 7), "score") is None,
        "judge_number": lambda: parse_number("1" + " " * n + "*" * n + " " * n + "x") is None,
        "judge_reasoning": lambda: strip_judge_reasoning("<think>" * (n // 7)) is None,
        "rubric_reasoning": lambda: strip_reasoning("<r>" * (n // 3), "<r>", "</r>") == "",
    }
    start = time.perf_counter()
    assert runs[case]()
    assert time.perf_counter() - start < 0.5
