"""Prompt-only rows, TRL `prompt` rows, `columns` mapping and `prompt_template` (issue 13, part 1)."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from pydantic import ValidationError

from pipelines.common.problems import ConfigError
from pipelines.data.config import DatasetEntry, template_fields
from pipelines.data.prompts import BadRow, classify, prepare_prompt, row_format
from pipelines.data.sampling import sample_datasets
from pipelines.data.summary import inspect_datasets
from tests.data.data_rows import make_spec, openai, sharegpt, write_jsonl


def entry(**kw) -> DatasetEntry:
    return DatasetEntry(path="x.jsonl", percentage=1.0, reward_funcs=[{"name": "keyword"}], **kw)


def prep(raw, row_id="f.jsonl:1", **kw):
    return prepare_prompt(raw, entry(**kw), 0, "x.jsonl", row_id, 0)


def test_conversation_ending_with_the_user_is_a_prompt_as_it_stands():
    row = prep(openai(("system", "S"), ("user", "What is 2+2?"), solution="4"))
    assert row["prompt"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "What is 2+2?"}]
    assert row["answer"] is None and row["solution"] == "4"
    mapped = prep(openai(("user", "What is 2+2?"), solution="4"), columns={"answer": "solution"})
    assert mapped["answer"] == "4" and mapped["solution"] == "4"   # the column still reaches rewards by name
    with_answer = prep(openai(("user", "q"), answer=4))
    assert with_answer["answer"] == "4" and "data_answer" not in with_answer


def test_single_turn_ratio_still_applies_to_earlier_exchanges_of_a_prompt_only_conversation():
    raw = sharegpt(("human", "q1"), ("gpt", "a1"), ("human", "q2"))
    ends = Counter(len(prep(raw, row_id=f"r{i}", single_turn_ratio=0.5)["prompt"]) for i in range(400))
    assert set(ends) == {1, 3} and 150 < ends[1] < 250       # cut at a1 (answer a1) or the whole conversation
    assert {prep(raw, row_id=f"r{i}", single_turn_ratio=1.0)["answer"] for i in range(50)} == {"a1"}
    whole = [prep(raw, row_id=f"r{i}", single_turn_ratio=0.0) for i in range(50)]
    assert all(r["answer"] is None and r["prompt"][-1]["content"] == "q2" for r in whole)


@pytest.mark.parametrize("raw, prompt", [
    ({"prompt": "Solve x"}, [{"role": "user", "content": "Solve x"}]),
    ({"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Solve x"}]},
     [{"role": "system", "content": "S"}, {"role": "user", "content": "Solve x"}]),
    ({"prompt": [{"from": "human", "value": "Solve x"}]}, [{"role": "user", "content": "Solve x"}]),
])
def test_trl_prompt_column_holds_text_or_messages(raw, prompt):
    row = prep({**raw, "answer": "x", "id": 7})
    assert row["prompt"] == prompt and row["answer"] == "x" and row["id"] == 7
    assert "data_prompt" not in row and "data_answer" not in row


def test_columns_map_other_names():
    raw = {"problem": "What is 3*3?", "solution": "9", "level": 2}
    row = prep(raw, columns={"prompt": "problem", "answer": "solution"})
    assert row["prompt"] == [{"role": "user", "content": "What is 3*3?"}] and row["answer"] == "9"
    assert row["level"] == 2 and "problem" not in row and row["solution"] == "9"
    conv = {"dialog": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert prep(conv, columns={"messages": "dialog"})["answer"] == "yo"
    with pytest.raises(BadRow) as info:
        prep({"question": "q"}, columns={"prompt": "problem"})
    assert info.value.reason == "missing_conversations"


def test_prompt_template_builds_the_user_message_from_columns():
    row = prep({"nums": [3, 5, 7], "target": 22, "note": "x"}, prompt_template="Using the numbers {nums}, make "
               "{target}. {{literal}}", system_prompt="Rules.")
    assert row["prompt"] == [{"role": "system", "content": "Rules."},
                             {"role": "user", "content": "Using the numbers [3, 5, 7], make 22. {literal}"}]
    assert row["nums"] == [3, 5, 7] and row["target"] == 22 and row["answer"] is None
    assert classify({"nums": [1]}, row_format(entry(prompt_template="{nums} {target}"))) == "missing_column"


@pytest.mark.parametrize("template, message", [
    ("{}", "not a column name"), ("{0}", "not a column name"), ("{a.b}", "not a column name"),
    ("{x:>5}", "format specs"), ("no placeholder", "names no column"), ("{unclosed", "expected '}' before end"),
])
def test_malformed_templates_are_config_errors(template, message):
    with pytest.raises(ValidationError, match=message):
        entry(prompt_template=template)


def test_only_one_prompt_source_may_be_named():
    with pytest.raises(ValidationError, match="keep one"):
        entry(prompt_template="{a}", columns={"prompt": "q"})
    assert template_fields("{a} and {b} and {a}") == ["a", "b"]


def test_validate_names_unknown_template_and_mapped_columns_and_lists_those_found(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"nums": [1, 2], "target": 3, "solution": "1 + 2"}] * 5)
    cfg = make_spec([{"path": str(path), "prompt_template": "Use {numbers} to make {target}.",
                      "columns": {"answer": "soluton"}}], total_rows=2)
    with pytest.raises(ConfigError) as info:
        inspect_datasets(cfg, "c.yaml")
    messages = [str(p) for p in info.value.problems]
    assert messages == [
        f"c.yaml: datasets[0].prompt_template: no column 'numbers' in {path}; columns found: nums, target, solution",
        f"c.yaml: datasets[0].columns.answer: no column 'soluton' in {path}; columns found: nums, target, solution"]


def test_validate_says_when_a_reward_needs_an_answer_the_rows_lack(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [openai(("user", f"q{i}"), solution=str(i)) for i in range(6)])
    reward = [{"name": "answer_match"}]
    cfg = make_spec([{"path": str(path), "reward_funcs": reward}], total_rows=4)
    with pytest.raises(ConfigError) as info:
        inspect_datasets(cfg, "c.yaml")
    (problem,) = info.value.problems
    assert str(problem).startswith("c.yaml: datasets[0].reward_funcs[0]: answer_match needs `answer` on every "
                                   "row, but none of the 4 rows drawn has one; map one with columns.answer")
    mapped = make_spec([{"path": str(path), "reward_funcs": reward, "columns": {"answer": "solution"}}], total_rows=4)
    text = "\n".join(inspect_datasets(mapped, "c.yaml"))
    assert "format: OpenAI" in text and "answer: " in text and "(none" not in text
    plain = make_spec([{"path": str(path)}], total_rows=4)   # a reward that needs no answer: fine without one
    assert "answer: (none" in "\n".join(inspect_datasets(plain, "c.yaml"))


def test_countdown_reward_declares_its_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "target": i} for i in range(4)])
    cfg = make_spec([{"path": str(path), "reward_funcs": [{"name": "countdown_equation"}]}], total_rows=2)
    with pytest.raises(ConfigError, match="countdown_equation needs `nums` on every row"):
        inspect_datasets(cfg, "c.yaml")


def test_mixed_formats_in_one_file_are_sampled_and_counted(tmp_path):
    rows = [sharegpt(("human", "a"), ("gpt", "b")), openai(("user", "c")), {"prompt": "d"},
            {"prompt": [{"role": "user", "content": "e"}]}, {"text": "no prompt"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    res = sample_datasets(make_spec([{"path": str(path)}], total_rows=4), None)
    assert sorted(r["prompt"][-1]["content"] for r in res.train) == ["a", "c", "d", "e"]
    stats = res.stats[0]
    assert stats.formats == Counter({"conversations": 1, "messages": 1, "prompt": 2})
    assert stats.skipped == Counter({"missing_conversations": 1}) and stats.rows_read == 5
    assert json.dumps(stats.to_dict())
