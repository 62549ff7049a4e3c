"""Rubric files, score types, placeholders, reasoning stripping and the judge's --validate hook."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.rewards.judge.reward import validate_judge_kwargs
from pipelines.rewards.judge.core import completion_text, prompt_texts
from pipelines.rewards.judge.rubric import (RubricError, check_rubric, load_rubric, parse_score_types,
                                                 resolve_rubric_path, strip_reasoning)
from pipelines.rewards.catalog import check_reward_kwargs, get_reward_factory

SHIPPED = {
    "prompts/helpfulness.yaml": [{"name": "helpfulness", "type": "score", "min": 1, "max": 10}],
    "prompts/factual.yaml": [{"name": "correct", "type": "autofail"},
                             {"name": "accuracy", "type": "score", "min": 0, "max": 5}],
    "prompts/style_autofail.yaml": [{"name": "in_character", "type": "autofail"},
                                    {"name": "warmth", "type": "score", "min": 0, "max": 5},
                                    {"name": "concision", "type": "score", "min": 0, "max": 5, "weight": 0.5}],
}


def kwargs(**over):
    base = dict(eval_llm_name="judge", eval_llm_base_url="http://127.0.0.1:9/v1",
                system_prompt_path="prompts/helpfulness.yaml", score_types=SHIPPED["prompts/helpfulness.yaml"])
    base.update(over)
    return base


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_rubrics_validate(path):
    assert validate_judge_kwargs(kwargs(system_prompt_path=path, score_types=SHIPPED[path])) == []


def test_both_judges_registered_with_their_hooks():
    assert get_reward_factory("generic_llm_reward") is not get_reward_factory("llm_judge")
    assert check_reward_kwargs("generic_llm_reward", kwargs()) == []
    msgs = check_reward_kwargs("llm_judge", kwargs(on_error="zero"))
    assert len(msgs) == 1 and "on_error" in msgs[0]
    msgs = check_reward_kwargs("llm_judge", kwargs(max_concurency=3))
    assert 'did you mean "max_concurrency"' in msgs[0]


def test_relative_path_resolves_from_cwd_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_rubric_path("prompts/helpfulness.yaml").parts[-3:] == ("grpo", "prompts", "helpfulness.yaml")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "helpfulness.yaml").write_text("- {role: user, content: '{output_text} <helpfulness>'}")
    assert resolve_rubric_path("prompts/helpfulness.yaml") == Path("prompts/helpfulness.yaml")
    assert resolve_rubric_path("prompts/nope.yaml") is None


def test_missing_file():
    msgs = validate_judge_kwargs(kwargs(system_prompt_path="prompts/nope.yaml"))
    assert len(msgs) == 1 and "not found" in msgs[0] and "nope.yaml" in msgs[0]


@pytest.mark.parametrize("text,needle", [
    ("- role: user\n  content: [unclosed", "cannot be read as YAML"),
    ("just a string", "expected a YAML list"),
    ("[]", "expected a YAML list"),
    ("- {role: user, text: hi}", "expected exactly keys role and content"),
    ("- {role: judge, content: hi}", "role 'judge'"),
    ("- {role: user, content: ''}", "non-empty text"),
    ("- {role: user, content: '{output_text} <helpfulness>'}\n- {role: assistant, content: ok}", "last message"),
])
def test_malformed_rubrics(tmp_path, text, needle):
    with pytest.raises(RubricError) as err:
        load_rubric(write(tmp_path, text))
    assert any(needle in p for p in err.value.problems), err.value.problems


def test_messages_mapping_form_and_render(tmp_path):
    rubric = load_rubric(write(tmp_path, "messages:\n  - role: system\n    content: 'JSON like {\"a\": 1} stays, "
                                         "{{literal}} braces'\n  - role: user\n    content: '{input_text}|{output_text}"
                                         "|{answer}|{topic} <helpfulness>'\n"))
    assert rubric.placeholders == {"input_text", "output_text", "answer", "topic"}
    assert rubric.column_placeholders == {"topic"}
    out = rubric.render({"input_text": "Q {x}", "output_text": "A", "answer": "R", "topic": "T"})
    assert out[0]["content"] == 'JSON like {"a": 1} stays, {literal} braces'
    assert out[1] == {"role": "user", "content": "Q {x}|A|R|T <helpfulness>"}
    with pytest.raises(KeyError):
        rubric.render({"input_text": "Q"})


def test_placeholder_typos_and_reserved_names(tmp_path):
    path = write(tmp_path, "- {role: user, content: '{ouput_text} {completion} {output_text} {difficulty} "
                           "<helpfulness>'}")
    msgs = validate_judge_kwargs(kwargs(system_prompt_path=path))
    assert any("{ouput_text} (did you mean {output_text}?)" in m for m in msgs)
    assert any("{completion} is not a data column" in m for m in msgs)
    assert not any("difficulty" in m for m in msgs)       # a data column: allowed
    assert len(msgs) == 2


def test_rubric_must_show_the_completion_and_mention_each_tag(tmp_path):
    path = write(tmp_path, "- {role: user, content: 'Rate {input_text} with <helpfulness>N</helpfulness>'}")
    rubric = load_rubric(path)
    st, _ = parse_score_types([{"name": "helpfulness", "min": 1, "max": 10}, {"name": "clarity", "min": 0, "max": 1}])
    msgs = check_rubric(rubric, st)
    assert any("never shows the judge the completion" in m for m in msgs)
    assert any("'clarity' is never mentioned as a tag" in m for m in msgs)
    assert not any("'helpfulness'" in m for m in msgs)


@pytest.mark.parametrize("raw,needle", [
    ([], "non-empty list"),
    ("helpfulness", "non-empty list"),
    (["helpfulness"], "expected a mapping"),
    ([{"name": "a b", "min": 0, "max": 1}], "not a usable tag name"),
    ([{"name": "a", "type": "scored", "min": 0, "max": 1}], "'scored' is not one of"),
    ([{"name": "a", "type": "score"}], "score types need min and max"),
    ([{"name": "a", "min": 5, "max": 5}], "min (5) must be less than max (5)"),
    ([{"name": "a", "min": 0, "max": "ten"}], "expected a finite number"),
    ([{"name": "a", "min": 0, "max": 1, "weight": True}], "weight: expected a finite number"),
    ([{"name": "a", "min": 0, "max": 1, "scale": 2}], "unknown key 'scale'"),
    ([{"name": "a", "min": 0, "max": 1}, {"name": "A", "min": 0, "max": 1}], "listed twice"),
    ([{"name": "ok", "type": "autofail", "min": 1, "max": 2}], "must include 0"),
    ([{"name": "ok", "type": "autofail"}], "at least one `type: score`"),
])
def test_bad_score_types(raw, needle):
    _, problems = parse_score_types(raw)
    assert any(needle in p for p in problems), problems


def test_autofail_defaults():
    st, problems = parse_score_types([{"name": "f", "type": "autofail"}, {"name": "s", "min": 1, "max": 3}])
    assert problems == [] and (st[0].min, st[0].max, st[0].is_autofail) == (0, 1, True)


@pytest.mark.parametrize("over,needle", [
    ({"eval_llm_name": ""}, "eval_llm_name"),
    ({"eval_llm_base_url": "localhost:8000"}, "not an http(s) URL"),
    ({"eval_llm_api_key": 123}, "eval_llm_api_key"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": 2.5}, "an integer"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"max_retries": -1}, "max_retries"),
    ({"format_retries": "1"}, "format_retries"),
    ({"max_failure_rate": 1.5}, "max_failure_rate"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"on_error": "ignore"}, "on_error"),
    ({"on_error": True}, "on_error"),
    ({"cot_start": "<t>", "cot_end": None}, "cot_end: needed"),
    ({"judge_reasoning": "yes"}, "judge_reasoning"),
    ({"cache": 5}, "cache"),
    ({"label": "my judge"}, "label"),
    ({"extra_body": "x"}, "extra_body"),
])
def test_bad_settings(over, needle):
    msgs = validate_judge_kwargs(kwargs(**over))
    assert any(needle in m for m in msgs), msgs


@pytest.mark.parametrize("over", [{"on_error": 0}, {"on_error": -1.5}, {"on_error": "fail"}, {"cache": "off"},
                                  {"cache": False}, {"cache": "x.sqlite"}, {"cot_start": None, "cot_end": None},
                                  {"eval_llm_mode": "api"}, {"temperature": 0, "top_p": 1, "max_tokens": 16}])
def test_good_settings(over):
    assert validate_judge_kwargs(kwargs(**over)) == []


def test_every_problem_is_reported_at_once(tmp_path):
    msgs = validate_judge_kwargs(kwargs(eval_llm_base_url="nope", on_error="x", score_types=[{"name": "a"}],
                                        system_prompt_path="missing.yaml"))
    assert len(msgs) >= 4


@pytest.mark.parametrize("text,expected", [
    ("<think>plan</think>Answer", "Answer"),
    ("plan only</think> Answer", "Answer"),              # cot_start prefilled in the prompt
    ("Answer <think>late", "Answer"),                    # unclosed: the rest is reasoning
    ("<think>a</think>x<think>b</think>y", "xy"),
    ("No reasoning", "No reasoning"),
])
def test_strip_policy_reasoning(text, expected):
    assert strip_reasoning(text, "<think>", "</think>") == expected


def test_strip_reasoning_disabled():
    assert strip_reasoning(" <think>a</think>b ", None, None) == "<think>a</think>b"


def test_prompt_and_completion_forms():
    prompt = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello"}, {"role": "user", "content": [{"type": "text", "text": "Q2"}]}]
    last, convo = prompt_texts(prompt)
    assert last == "Q2"
    assert convo == "System: Be kind.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Q2"
    assert prompt_texts("plain prompt") == ("plain prompt", "plain prompt")
    assert completion_text([{"role": "assistant", "content": "A"}]) == "A"
    assert completion_text("B") == "B"
