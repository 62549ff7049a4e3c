"""Shared pieces of the judge tests: rubrics, a judge built through the registry, batches, a script router."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from pipelines.rewards.catalog import get_reward_factory
from tests.judge_server import Reply, Request

SIMPLE_RUBRIC = """- role: system
  content: "Grade the answer. End with <score>N</score>, N from 0 to 10."
- role: user
  content: "Q: {input_text}\\nA: {output_text}"
"""
FULL_RUBRIC = """- role: system
  content: "Grade. End with <score>N</score>."
- role: user
  content: "CONV: {conversation}\\nQ: {input_text}\\nREF: {answer}\\nTOPIC: {topic}\\nA: {output_text}"
"""
SCORE = [{"name": "score", "type": "score", "min": 0, "max": 10}]
FAST = dict(backoff_base_s=0.01, backoff_max_s=0.5)


def write_rubric(folder: Path, text: str = SIMPLE_RUBRIC, name: str = "grader.yaml") -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def make_judge(base_url: str, rubric: str, **over: Any) -> Callable[..., Any]:
    """The llm_judge reward function, built through the registry exactly as the reward stack does."""
    kwargs = dict(eval_llm_name="test-judge", eval_llm_base_url=base_url, eval_llm_api_key="sk-test-secret-123",
                  system_prompt_path=rubric, score_types=SCORE, timeout_s=5, max_retries=2, **FAST)
    kwargs.update(over)
    return get_reward_factory("llm_judge")(**kwargs)


def batch(answers: list[str], conversational: bool = True) -> tuple[list, list]:
    prompts = [[{"role": "system", "content": "sys"}, {"role": "user", "content": f"question {i}"}]
               for i in range(len(answers))]
    if conversational:
        completions = [[{"role": "assistant", "content": a}] for a in answers]
    else:
        completions = list(answers)
    return prompts, completions


def run(reward: Callable[..., Any], answers: list[str], **columns: Any) -> list:
    prompts, completions = batch(answers)
    return asyncio.run(reward(prompts, completions, **columns))


def answer_of(req: Request) -> str:
    """The completion text the judge was shown (after 'A: ' in the first user message)."""
    users = [m for m in req.messages if m.get("role") == "user"]
    content = str(users[0].get("content")) if users else ""
    return content.split("A: ", 1)[-1]


class Router:
    """A script answering by the completion text: ``rules`` maps a substring to a list of replies used in turn
    (the last one repeats), so "first a 429, then a score" is ``[Reply(status=429...), Reply(content=...)]``."""

    def __init__(self, rules: dict[str, list[Reply]], default: Reply | None = None):
        self.rules = rules
        self.default = default or Reply(content="<score>5</score>")
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, req: Request) -> Reply:
        text = answer_of(req)
        for needle, replies in self.rules.items():
            if needle in text:
                with self.lock:
                    n = self.seen.get(needle, 0)
                    self.seen[needle] = n + 1
                return replies[min(n, len(replies) - 1)]
        return self.default


# Fixtures shared by the HTTP judge tests (imported into their modules by name).
@pytest.fixture
def server():
    """A scriptable OpenAI-compatible server on 127.0.0.1; each test sets ``server.script``."""
    from tests.judge_server import JudgeServer
    with JudgeServer(Router({}), hang_limit_s=10) as srv:
        yield srv


@pytest.fixture
def rubric(tmp_path):
    return write_rubric(tmp_path)
