"""Prompt building: conversation formats, system-prompt modes, the cut, the prompt budget, pass-through."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from pipelines.grpo.config import DatasetEntry
from pipelines.data.sampling import BadRow, prepare_prompt
from pipelines.data.prompts import classify, drop_oldest_turn, fit_budget
from tests.data.data_rows import BAD_LINES, openai, sharegpt


def entry(**kw) -> DatasetEntry:
    return DatasetEntry(path="x.jsonl", percentage=1.0, reward_funcs=[{"name": "keyword"}], **kw)


def prep(raw, seed=0, row_id="f.jsonl:1", **kw):
    counter = kw.pop("token_counter", None)
    limit = kw.pop("max_prompt_length", None)
    return prepare_prompt(raw, entry(**kw), 3, "data/*.jsonl", row_id, seed, counter, limit)


THREE_TURNS = sharegpt(("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "a2"), ("human", "q3"),
                       ("gpt", "a3"))


def test_sharegpt_and_openai_give_the_same_row():
    a = prep(sharegpt(("system", "sys"), ("human", "hi"), ("gpt", "hello")))
    b = prep(openai(("system", "sys"), ("user", "hi"), ("assistant", "hello")))
    assert a["prompt"] == b["prompt"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert a["answer"] == b["answer"] == "hello"


def test_roles_are_matched_case_insensitively_and_user_assistant_accepted_in_sharegpt():
    row = prep(sharegpt((" Human ", "hi"), ("ASSISTANT", "yo")))
    assert row["prompt"] == [{"role": "user", "content": "hi"}] and row["answer"] == "yo"


def test_row_dict_carries_dataset_and_passes_other_columns_unchanged():
    raw = sharegpt(("human", "Use [1, 2]"), ("gpt", "3"), nums=[1, 2], target=3, meta={"k": [1]})
    row = prep(raw)
    assert row["nums"] == [1, 2] and row["target"] == 3 and row["meta"] == {"k": [1]}
    assert row["dataset_index"] == 3 and row["dataset_path"] == "data/*.jsonl" and row["row_id"] == "f.jsonl:1"
    assert set(row) == {"prompt", "answer", "dataset_index", "dataset_path", "row_id", "nums", "target", "meta"}
    assert "conversations" not in row


def test_columns_named_like_row_or_trl_keys_are_prefixed_not_lost():
    raw = sharegpt(("human", "hi"), ("gpt", "yo"), answer="gold", completions=[1], prompt="p")
    row = prep(raw)
    assert row["answer"] == "yo" and row["data_answer"] == "gold"
    assert row["data_completions"] == [1] and row["data_prompt"] == "p" and "completions" not in row


@pytest.mark.parametrize("mode, expected", [
    ("prepend", [{"role": "system", "content": "CFG\n\nROW"}]),
    ("insert", [{"role": "system", "content": "CFG"}, {"role": "system", "content": "ROW"}]),
    ("replace", [{"role": "system", "content": "CFG"}]),
])
def test_system_prompt_modes_with_an_existing_system_message(mode, expected):
    row = prep(sharegpt(("system", "ROW"), ("human", "hi"), ("gpt", "yo")), system_prompt="CFG",
               system_prompt_mode=mode)
    assert row["prompt"] == expected + [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("mode", ["prepend", "insert", "replace"])
def test_system_prompt_is_inserted_when_the_row_has_none(mode):
    row = prep(sharegpt(("human", "hi"), ("gpt", "yo")), system_prompt="CFG", system_prompt_mode=mode)
    assert row["prompt"] == [{"role": "system", "content": "CFG"}, {"role": "user", "content": "hi"}]


def test_no_system_prompt_leaves_messages_alone():
    row = prep(sharegpt(("system", "ROW"), ("human", "hi"), ("gpt", "yo")))
    assert row["prompt"][0] == {"role": "system", "content": "ROW"}


def _cut_positions(n_rows: int, seed: int = 7, **kw) -> Counter:
    return Counter(prep(THREE_TURNS, seed=seed, row_id=f"f.jsonl:{i}", **kw)["answer"] for i in range(n_rows))


def test_ratio_one_and_force_single_turn_always_cut_at_the_first_assistant_turn():
    assert _cut_positions(200, single_turn_ratio=1.0) == Counter({"a1": 200})
    assert _cut_positions(200, single_turn_ratio=0.0, force_single_turn=True) == Counter({"a1": 200})


def test_ratio_zero_never_cuts_at_the_first_turn_and_spreads_over_later_ones():
    counts = _cut_positions(2000, single_turn_ratio=0.0)
    assert counts["a1"] == 0
    assert 850 < counts["a2"] < 1150 and 850 < counts["a3"] < 1150


def test_ratio_in_between_matches_the_distribution():
    counts = _cut_positions(4000, single_turn_ratio=0.3)
    assert abs(counts["a1"] / 4000 - 0.3) < 0.03
    assert abs(counts["a2"] / 4000 - 0.35) < 0.03 and abs(counts["a3"] / 4000 - 0.35) < 0.03


def test_later_cut_keeps_earlier_turns_in_the_prompt():
    rows = [prep(THREE_TURNS, row_id=f"r{i}", single_turn_ratio=0.0) for i in range(20)]
    row = next(r for r in rows if r["answer"] == "a3")
    assert [m["content"] for m in row["prompt"]] == ["q1", "a1", "q2", "a2", "q3"]


def test_cut_is_deterministic_for_seed_and_row_but_varies_with_seed():
    a = _cut_positions(300, seed=1, single_turn_ratio=0.5)
    b = _cut_positions(300, seed=1, single_turn_ratio=0.5)
    assert a == b
    per_row = [[prep(THREE_TURNS, seed=s, row_id=f"r{i}", single_turn_ratio=0.5)["answer"] for i in range(50)]
               for s in (1, 2)]
    assert per_row[0] != per_row[1]


def test_single_candidate_row_is_cut_there_even_at_ratio_zero():
    row = prep(sharegpt(("gpt", "greeting"), ("human", "hi"), ("gpt", "yo")), single_turn_ratio=0.0)
    assert row["answer"] == "yo"
    assert row["prompt"] == [{"role": "assistant", "content": "greeting"}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("line, reason", BAD_LINES)
def test_every_bad_row_is_classified_and_refused(line, reason):
    try:
        raw = json.loads(line)
    except ValueError:
        assert reason == "invalid_json"
        return
    assert classify(raw) == reason
    with pytest.raises(BadRow) as info:
        prep(raw)
    assert info.value.reason == reason


def words(messages):
    """A token counter: one token per whitespace-separated word, plus 2 per message."""
    return sum(len(m["content"].split()) + 2 for m in messages)


def test_budget_drops_oldest_exchanges_keeping_system_and_alternation():
    raw = sharegpt(("system", "sys"), ("human", "one two three four"), ("gpt", "five six"),
                   ("human", "q"), ("gpt", "a"), ("human", "last question"), ("gpt", "final"))
    row = prep(raw, single_turn_ratio=0.0, row_id="r1", token_counter=words, max_prompt_length=12)
    roles = [m["role"] for m in row["prompt"]]
    assert roles[0] == "system" and roles[1] == "user"
    assert words(row["prompt"]) <= 12
    full = prep(raw, single_turn_ratio=0.0, row_id="r1")
    assert row["answer"] == full["answer"] and words(full["prompt"]) > 12
    assert len(row["prompt"]) < len(full["prompt"]) and row["prompt"][-1] == full["prompt"][-1]


def test_budget_that_cannot_be_met_raises_prompt_too_long():
    raw = sharegpt(("human", "a very long question indeed"), ("gpt", "x"))
    with pytest.raises(BadRow) as info:
        prep(raw, token_counter=words, max_prompt_length=3)
    assert info.value.reason == "prompt_too_long"


def test_fit_budget_without_a_counter_is_a_no_op_and_drop_never_empties_the_prompt():
    prompt = [{"role": "user", "content": "x " * 100}]
    assert fit_budget(prompt, None, 1) == prompt
    assert drop_oldest_turn([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]) is None
    two = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
           {"role": "user", "content": "u2"}]
    assert drop_oldest_turn(two) == [{"role": "user", "content": "u2"}]
