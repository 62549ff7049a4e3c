"""Rows and configs for the data-layer tests: good conversations and every kind of bad row."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Iterable

from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.data.sampling import DataSpec
from pipelines.rewards.catalog import required_columns


def sharegpt(*turns: tuple[str, Any], **extra: Any) -> dict:
    return {"conversations": [{"from": r, "value": c} for r, c in turns], **extra}


def openai(*turns: tuple[str, Any], **extra: Any) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


def good_rows(n: int, start: int = 0) -> list[dict]:
    return [sharegpt(("human", f"question {i}"), ("gpt", f"answer {i}"), nums=[i, i + 1], target=i)
            for i in range(start, start + n)]


# (JSONL line, reason) for every skip reason the scan reports. Lines are raw text: some are not JSON at all.
BAD_LINES: list[tuple[str, str]] = [
    ('{"conversations": [{"from": "human", "value": "hi"}', "invalid_json"),
    ("not json at all", "invalid_json"),
    ("[1, 2, 3]", "not_an_object"),
    ('"just a string"', "not_an_object"),
    ("null", "not_an_object"),
    ('{"text": "no conversation here"}', "missing_conversations"),
    ('{"conversations": null}', "missing_conversations"),
    ('{"conversations": []}', "empty_conversations"),
    ('{"messages": []}', "empty_conversations"),
    ('{"conversations": "human: hi"}', "conversations_wrong_type"),
    ('{"conversations": {"from": "human", "value": "hi"}}', "conversations_wrong_type"),
    ('{"conversations": ["hi", "hello"]}', "conversations_wrong_type"),
    ('{"conversations": [null, {"from": "gpt", "value": "x"}]}', "conversations_wrong_type"),
    (json.dumps(sharegpt(("human", "hi"), ("robot", "beep"))), "unknown_role"),
    ('{"conversations": [{"value": "hi"}, {"from": "gpt", "value": "x"}]}', "unknown_role"),
    (json.dumps(sharegpt((5, "hi"), ("gpt", "x"))), "unknown_role"),
    (json.dumps(sharegpt(("human", 5), ("gpt", "x"))), "non_string_content"),
    (json.dumps(sharegpt(("human", None), ("gpt", "x"))), "non_string_content"),
    ('{"conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]}', "non_string_content"),
    (json.dumps(openai(("user", [{"type": "text", "text": "hi"}]), ("assistant", "x"))), "non_string_content"),
    (json.dumps(sharegpt(("system", "only a system message"))), "no_assistant_turn"),
    (json.dumps(openai(("system", "s"), ("user", "hi"), ("system", "s2"))), "no_assistant_turn"),
    (json.dumps(sharegpt(("system", "s"), ("human", " "))), "empty_prompt"),
    ('{"prompt": "  "}', "empty_prompt"),
    ('{"prompt": 5}', "prompt_wrong_type"),
    ('{"prompt": {"role": "user", "content": "hi"}}', "prompt_wrong_type"),
    ('{"prompt": null, "messages": null}', "missing_conversations"),
    ('{"prompt": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]}', "unknown_role"),
    (json.dumps(sharegpt(("human", ""), ("gpt", "x"))), "empty_prompt"),
    (json.dumps(sharegpt(("human", "  \n "), ("gpt", "x"))), "empty_prompt"),
    (json.dumps(sharegpt(("system", "only system"), ("gpt", "x"))), "empty_prompt"),
    (json.dumps(sharegpt(("gpt", "I speak first"))), "empty_prompt"),
]


def write_jsonl(path: Path, rows: Iterable[Any], raw_lines: Iterable[str] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_spec(datasets: list[dict], total_rows: int, seed: int = 42, *, eval_rows: int = 0,
              max_prompt_length: int = 512, shortfall: str = "error", model_name: str = "builtin:tiny",
              chat_template: Optional[str] = None) -> DataSpec:
    """The data layer's view of a config around the given dataset entries (reward funcs filled in)."""
    entries = [DatasetEntry.model_validate({"percentage": 1.0, "reward_funcs": [{"name": "keyword",
                                                                              "keywords": ["x"]}], **d})
               for d in datasets]
    return DataSpec(datasets=entries, settings=DatasetSettings(total_rows=total_rows, shortfall=shortfall),
                    seed=seed, max_prompt_length=max_prompt_length, eval_rows=eval_rows, model_name=model_name,
                    chat_template=chat_template, required_columns=required_columns)
