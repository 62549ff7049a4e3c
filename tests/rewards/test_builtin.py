"""Every built-in reward on inline completions, including the seeds' own examples and nasty inputs."""
from __future__ import annotations

import asyncio

import pytest

from pipelines.rewards.catalog import check_reward_kwargs, get_reward_factory


def score(name, completions, **kwargs):
    """Build the reward from config-style kwargs (columns given as lists go to the call)."""
    columns = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("col_")}
    fn = get_reward_factory(name)(**kwargs)
    prompts = [[{"role": "user", "content": "q"}]] * len(completions)
    out = fn(prompts=prompts, completions=completions, **{k[4:]: v for k, v in columns.items()})
    return asyncio.run(out) if asyncio.iscoroutine(out) else out


def chat(text):
    return [{"role": "assistant", "content": text}]


# -------------------------------------------------------------------------------------------------- keyword
def test_keyword_any_is_the_quickstart_default():
    assert score("keyword", ["Joy: the sea", "the sea", "joy", chat("Much Joy")], keywords=["Joy"]) == \
        [1.0, 0.0, 0.0, 1.0]


def test_keyword_modes_and_case():
    comps = ["apple and pear", "apple", "PEAR"]
    assert score("keyword", comps, keywords=["apple", "pear"], mode="all") == [1.0, 0.0, 0.0]
    assert score("keyword", comps, keywords=["apple", "pear"], mode="any") == [1.0, 1.0, 0.0]
    assert score("keyword", comps, keywords=["apple", "pear"], case_sensitive=False) == [1.0, 1.0, 1.0]
    assert score("keyword", comps, keywords="pear") == [1.0, 0.0, 0.0]


def test_keyword_config_checks():
    assert check_reward_kwargs("keyword", {"keywords": ["Joy"]}) == []
    assert check_reward_kwargs("keyword", {"keywords": []})
    assert check_reward_kwargs("keyword", {"keywords": ["a"], "mode": "most"})
    msgs = check_reward_kwargs("keyword", {"keyword": ["Joy"]})
    assert any('"keywords"' in m for m in msgs)


# ---------------------------------------------------------------------------------------------------- regex
def test_regex_match_modes():
    comps = ["Answer: 42", "The Answer: 42", "answer: 42\n"]
    assert score("regex_match", comps, pattern=r"Answer: \d+") == [1.0, 1.0, 0.0]
    assert score("regex_match", comps, pattern=r"Answer: \d+", mode="match") == [1.0, 0.0, 0.0]
    assert score("regex_match", comps, pattern=r"answer: \d+", mode="fullmatch", ignore_case=True) == \
        [1.0, 0.0, 0.0]
    assert score("regex_match", comps, pattern=r"\d+", score=0.5) == [0.5, 0.5, 0.5]


def test_regex_config_checks():
    assert check_reward_kwargs("regex_match", {"pattern": "a+"}) == []
    assert "not a valid regular expression" in check_reward_kwargs("regex_match", {"pattern": "(unclosed"})[0]
    assert check_reward_kwargs("regex_match", {})  # pattern is required


# ------------------------------------------------------------------------------------------- length_target
def test_length_target_matches_course_notes():
    # the HF course: -abs(ideal_length - len(completion))
    comps = ["x" * 20, "x" * 5, "x" * 50]
    assert score("length_target", comps, ideal_length=20) == [0.0, -15.0, -30.0]
    assert score("length_target", comps, ideal_length=20, normalize=True) == [1.0, 0.25, 0.0]
    assert score("length_target", ["one two three"], ideal_length=3, unit="words") == [0.0]


def test_length_target_config_checks():
    assert check_reward_kwargs("length_target", {"ideal_length": 50}) == []
    assert check_reward_kwargs("length_target", {"ideal_length": 0})
    assert check_reward_kwargs("length_target", {"ideal_length": 5, "unit": "tokens"})
    assert check_reward_kwargs("length_target", {})


# ------------------------------------------------------------------------------------- think_answer_format
SEED_OK = "Let me add them.</think>\n<answer>(1 + 2) / 3</answer>"


def test_think_answer_format_seed_examples():
    # the AgileRL tutorial prefills "<think>" in the prompt and prepends it before matching
    assert score("think_answer_format", [SEED_OK], prefilled_think=True) == [1.0]
    assert score("think_answer_format", ["<think>" + SEED_OK]) == [1.0]
    bad = [
        SEED_OK,                                                  # no <think> and not prefilled
        "<think>a</think><answer>1</answer>",                     # newline missing
        "<think>a</think>\n<answer>1</answer> trailing",          # text after the answer
        "<think>a<think>b</think>\n<answer>1</answer>",           # nested think
        "<think>a</think>\n",                                     # no answer
        "",
    ]
    assert score("think_answer_format", bad) == [0.0] * len(bad)


def test_think_answer_format_is_linear_on_long_input():
    import time
    text = "<think>" + "<" * 200_000 + "</answer>" * 1000
    start = time.perf_counter()
    assert score("think_answer_format", [text]) == [0.0]
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------------------------------------ cot_format
@pytest.mark.parametrize("text, expected", [
    ("<think>plan</think>The answer is 4.", 1.0),
    ("  <think>plan</think>\nfinal", 1.0),
    ("<think>plan</think>", 0.0),                  # nothing after the reasoning
    ("<think></think>answer", 0.0),                # empty reasoning
    ("plan</think>answer", 0.0),                   # start missing
    ("<think>a</think>b<think>c</think>d", 0.0),   # twice
    ("<think>a</think>b</think>", 0.0),            # end twice
    ("answer <think>a</think>", 0.0),              # not at the start
])
def test_cot_format(text, expected):
    assert score("cot_format", [text]) == [expected]


def test_cot_format_options():
    assert score("cot_format", ["plan</think>answer"], prefilled=True) == [1.0]
    assert score("cot_format", ["<think>plan</think>answer"], prefilled=True) == [0.0]
    assert score("cot_format", ["<think>plan</think>"], require_answer=False) == [1.0]
    assert score("cot_format", ["[[a]]b"], cot_start="[[", cot_end="]]") == [1.0]
    assert check_reward_kwargs("cot_format", {"cot_start": "x", "cot_end": "x"})


# ---------------------------------------------------------------------------------------------- answer_match
def test_answer_match_modes():
    comps = ["<answer> Paris. </answer>", "<answer>paris</answer>", "I think it is Paris", "<answer>Lyon</answer>"]
    answers = ["Paris"] * 4
    assert score("answer_match", comps, col_answer=answers) == [1.0, 1.0, 0.0, 0.0]
    assert score("answer_match", comps, mode="exact", col_answer=answers) == [0.0, 0.0, 0.0, 0.0]
    assert score("answer_match", ["Paris"], mode="exact", col_answer=answers[:1]) == [1.0]
    assert score("answer_match", comps[2:3], extract_pattern=None, mode="normalized",
                 col_answer=["i think it is paris"]) == [1.0]


def test_answer_match_numeric_and_columns():
    comps = ["so the total is 1,234.0", "<answer>41.9999999</answer>", "no number", "<answer>7</answer>"]
    got = score("answer_match", comps, mode="numeric", col_solution=["1234", "42", "3", "8"], column="solution")
    assert got == [1.0, 1.0, 0.0, 0.0]
    # the last <answer> counts; require_extract refuses completions without one
    assert score("answer_match", ["<answer>1</answer><answer>2</answer>"], mode="numeric",
                 col_answer=["2"]) == [1.0]
    assert score("answer_match", ["2"], mode="numeric", require_extract=True, col_answer=["2"]) == [0.0]


def test_answer_match_none_reference_and_missing_column():
    assert score("answer_match", ["x"], col_answer=[None]) == [None]
    with pytest.raises(KeyError, match="no column 'gold'"):
        score("answer_match", ["x"], column="gold", col_answer=["x"])
    assert check_reward_kwargs("answer_match", {"mode": "fuzzy"})
    assert check_reward_kwargs("answer_match", {"extract_pattern": "("})


# ------------------------------------------------------------------------------------------ repetition_penalty
def test_repetition_penalty():
    fresh = "the quick brown fox jumps over the lazy dog"
    loop = " ".join(["I am stuck"] * 30)
    got = score("repetition_penalty", [fresh, loop, "too short", ""])
    assert got[0] == 0.0 and got[2] == 0.0 and got[3] == 0.0
    assert -1.0 <= got[1] < -0.9
    half = score("repetition_penalty", [loop], max_penalty=0.5, ngram_size=2)[0]
    assert -0.5 <= half < -0.45
    assert check_reward_kwargs("repetition_penalty", {"ngram_size": 0})
