"""Every rule for reading a judge's answer (pipelines/rewards/judge/parse.py)."""
from __future__ import annotations

import pytest

from pipelines.rewards.judge.parse import (format_instructions, last_tag_value, parse_judgement,
                                                parse_number, score_bounds, strip_judge_reasoning)
from pipelines.rewards.judge.rubric import ScoreType

HELP = ScoreType("helpfulness", "score", 1, 10)
STYLE = [ScoreType("in_character", "autofail", 0, 1), ScoreType("warmth", "score", 0, 5, 1.0),
         ScoreType("concision", "score", 0, 5, 0.5)]


def test_plain_score():
    r = parse_judgement("Good answer.\n<helpfulness>7</helpfulness>", [HELP])
    assert r.ok and r.reward == 7.0 and r.values == {"helpfulness": 7.0}


def test_judge_think_block_is_ignored():
    text = "<think>maybe <helpfulness>2</helpfulness></think>final: <helpfulness>8</helpfulness>"
    assert parse_judgement(text, [HELP]).reward == 8.0


def test_tag_only_inside_think_is_missing():
    r = parse_judgement("<think>I would say <helpfulness>9</helpfulness></think>No tags here.", [HELP])
    assert not r.ok and "no <helpfulness> tag" in r.error


def test_prefilled_think_without_opening_tag():
    # a template prefilled "<think>": the answer starts inside the reasoning and has only the closing tag
    text = "I weigh it <helpfulness>3</helpfulness> hmm</think>\n<helpfulness>6</helpfulness>"
    assert parse_judgement(text, [HELP]).reward == 6.0


def test_unclosed_think_is_a_parse_failure():
    r = parse_judgement("<think>still thinking <helpfulness>5</helpfulness>", [HELP])
    assert not r.ok and "never closed" in r.error
    assert strip_judge_reasoning("<THINK>x</THINK>answer") == "answer"


def test_last_tag_wins_and_case_insensitive():
    text = "<helpfulness>4</helpfulness> on reflection <HELPFULNESS>9</HELPFULNESS>"
    assert parse_judgement(text, [HELP]).reward == 9.0
    assert last_tag_value("<a>1</a><a> 2 </a>", "a") == " 2 "
    assert last_tag_value("<a>1</b>", "a") is None


@pytest.mark.parametrize("raw,value", [("7", 7.0), (" 7.5 ", 7.5), ("**8**", 8.0), ("7/10", 7.0), ("+3", 3.0),
                                       (".5", 0.5), ("\n 10\n", 10.0)])
def test_number_forms(raw, value):
    assert parse_number(raw) == value


@pytest.mark.parametrize("raw", ["seven", "7 out of 10 because", "", "7, 8", "nan", "inf", "1e999", "7 8"])
def test_not_numbers(raw):
    assert parse_number(raw) is None


def test_not_a_number_is_a_parse_failure():
    r = parse_judgement("<helpfulness>very</helpfulness>", [HELP])
    assert not r.ok and "not a number" in r.error and r.reward is None


@pytest.mark.parametrize("value", ["11", "0", "-1", "10.5"])
def test_out_of_range_is_a_parse_failure_not_clamped_or_dropped(value):
    r = parse_judgement(f"<helpfulness>{value}</helpfulness>", [HELP])
    assert not r.ok and "outside [1, 10]" in r.error and r.reward is None


def test_range_bounds_are_inclusive():
    assert parse_judgement("<helpfulness>1</helpfulness>", [HELP]).reward == 1.0
    assert parse_judgement("<helpfulness>10</helpfulness>", [HELP]).reward == 10.0


def test_autofail_zero_zeroes_whatever_the_scores():
    text = "<in_character>0</in_character><warmth>5</warmth><concision>5</concision>"
    r = parse_judgement(text, STYLE)
    assert r.ok and r.reward == 0.0 and r.autofailed == "in_character"


def test_autofail_zero_needs_no_other_tags():
    r = parse_judgement("Broke character. <in_character>0</in_character>", STYLE)
    assert r.ok and r.reward == 0.0


def test_nonzero_autofail_adds_nothing_and_weights_apply():
    text = "<in_character>1</in_character><warmth>4</warmth><concision>2</concision>"
    r = parse_judgement(text, STYLE)
    assert r.reward == pytest.approx(4 * 1.0 + 2 * 0.5)


def test_missing_autofail_tag_is_a_parse_failure():
    r = parse_judgement("<warmth>4</warmth><concision>2</concision>", STYLE)
    assert not r.ok and "in_character" in r.error


def test_out_of_range_autofail_is_a_parse_failure():
    r = parse_judgement("<in_character>2</in_character><warmth>4</warmth><concision>2</concision>", STYLE)
    assert not r.ok and "outside" in r.error


def test_missing_score_tag_after_passing_autofail():
    r = parse_judgement("<in_character>1</in_character><warmth>4</warmth>", STYLE)
    assert not r.ok and "concision" in r.error


def test_normalize_maps_to_unit_interval():
    assert parse_judgement("<helpfulness>1</helpfulness>", [HELP], normalize=True).reward == 0.0
    assert parse_judgement("<helpfulness>10</helpfulness>", [HELP], normalize=True).reward == 1.0
    assert parse_judgement("<helpfulness>4</helpfulness>", [HELP], normalize=True).reward == pytest.approx(1 / 3)
    text = "<in_character>1</in_character><warmth>5</warmth><concision>0</concision>"
    assert parse_judgement(text, STYLE, normalize=True).reward == pytest.approx(5 / 7.5)


def test_negative_weight_bounds():
    st = [ScoreType("a", "score", 0, 2, -1.0), ScoreType("b", "score", 0, 1, 1.0)]
    assert score_bounds(st) == (-2.0, 1.0)
    assert parse_judgement("<a>0</a><b>1</b>", st, normalize=True).reward == 1.0


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_empty_answer(text):
    r = parse_judgement(text, [HELP])
    assert not r.ok and "no text" in r.error


def test_format_instructions_name_every_tag():
    text = format_instructions(STYLE)
    assert "<in_character>N</in_character>" in text and "0 (fail) or 1 (pass)" in text
    assert "<concision>N</concision> with N a number from 0 to 5" in text
