"""The high-scoring export: completions whose combined reward reaches a threshold, as ready-to-train JSONL.

One record per line, written whole and flushed (:class:`~pipelines.common.io.JsonlAppender`), so a kill
never leaves a partial line. On resume, :meth:`HighScoreExport.truncate_after_step` drops the records a
killed run wrote after the checkpoint it resumes from.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pipelines.common.io import JsonlAppender, atomic_write_text, read_jsonl
from pipelines.rewards.forms import completion_text

log = logging.getLogger(__name__)

SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}


def sharegpt_conversation(prompt: Any, completion: str) -> list[dict[str, str]]:
    """The prompt turns plus the completion as the final ``gpt`` turn (ShareGPT ``from``/``value``).

    If the prompt ends with an assistant turn (a prefill the model continued), the completion is appended to
    that turn rather than becoming a new one.
    """
    turns: list[dict[str, str]] = []
    if isinstance(prompt, str):
        turns.append({"from": "human", "value": prompt})
    else:
        for msg in prompt or []:
            role = msg.get("role", "user")
            turns.append({"from": SHAREGPT_ROLES.get(role, role), "value": completion_text(msg)})
    if turns and turns[-1]["from"] == "gpt":
        turns[-1] = {"from": "gpt", "value": turns[-1]["value"] + completion}
    else:
        turns.append({"from": "gpt", "value": completion})
    return turns


def is_multi_turn(completion: Any) -> bool:
    """Whether a completion holds more than one assistant text: tool calls, tool results, several turns."""
    return isinstance(completion, (list, tuple)) and (
        len(completion) > 1 or any(isinstance(m, dict) and m.get("tool_calls") for m in completion))


def transcript(prompt: Any, completion: Any) -> list[dict[str, Any]]:
    """The whole conversation as chat messages: the prompt's, then every message of the completion as TRL
    produced it (assistant turns with their ``tool_calls``, ``tool`` results), nothing flattened."""
    head = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt or []]
    if isinstance(completion, (list, tuple)):
        return head + [dict(m) if isinstance(m, dict) else {"role": "assistant", "content": str(m)}
                       for m in completion]
    return head + [{"role": "assistant", "content": completion_text(completion)}]


def sharegpt_transcript(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """ShareGPT turns of a tool-using conversation, in the tool-calling layout SFT trainers read (LLaMA-Factory's):
    a tool call is a ``function_call`` turn whose value is the call as JSON (``{"name", "arguments"}``; a list
    for several calls), a tool result an ``observation`` turn; other turns as :data:`SHAREGPT_ROLES` names them.
    An assistant's text before its tool call becomes a ``gpt`` turn of its own."""
    turns: list[dict[str, str]] = []
    for msg in messages:
        role, text = msg.get("role", "user"), completion_text(msg)
        calls = msg.get("tool_calls") or []
        if role == "assistant" and calls:
            if text:
                turns.append({"from": "gpt", "value": text})
            functions = [c.get("function", c) if isinstance(c, dict) else c for c in calls]
            value = functions[0] if len(functions) == 1 else functions
            turns.append({"from": "function_call", "value": json.dumps(value, ensure_ascii=False, default=str)})
        elif role == "tool":
            turns.append({"from": "observation", "value": text})
        else:
            turns.append({"from": SHAREGPT_ROLES.get(role, role), "value": text})
    return turns


def high_score_record(*, prompt: Any, completion: Any, reward: float, rewards: dict[str, float | None],
                      dataset: str, dataset_index: int, row_id: Any, step: int | None) -> dict[str, Any]:
    """One export record. Holds only the prompt, completion and scores: rows carry no secrets. A multi-turn
    completion (tool calls and results) also gets ``messages``, the whole transcript as chat messages, and its
    ``conversations`` keep every turn (:func:`sharegpt_transcript`)."""
    text = completion_text(completion)
    record = {"step": step, "dataset": dataset, "dataset_index": dataset_index, "row_id": row_id,
              "reward": reward, "rewards": rewards, "prompt": prompt, "completion": text,
              "conversations": sharegpt_conversation(prompt, text)}
    if is_multi_turn(completion):   # tool calls and results: the whole transcript, not the flattened text
        messages = transcript(prompt, completion)
        record.update(messages=messages, conversations=sharegpt_transcript(messages))
    return record


class HighScoreExport:
    """Appends records whose ``reward`` is at least ``threshold`` to ``path``."""

    def __init__(self, path: str | Path, threshold: float):
        self.path = Path(path)
        self.threshold = threshold
        self._appender: JsonlAppender | None = None
        self.written = 0
        self._seen: list[float] = []      # combined rewards seen until the threshold check has run
        self.threshold_checked = False

    def observe(self, rewards: list[float | None], check_after: int = 32) -> None:
        """Watch the first ``check_after`` combined rewards; if the threshold lies below all of them while they
        vary, every completion is being saved: warn once, with the range seen and a threshold that would keep
        only the best."""
        if self.threshold_checked:
            return
        self._seen += [r for r in rewards if r is not None]
        if len(self._seen) < check_after:
            return
        self.threshold_checked = True
        low, high = min(self._seen), max(self._seen)
        if self.threshold < low < high:
            log.warning("reward.score_save_threshold %g is below every combined reward of the first %d completions "
                        "(%g to %g): every completion is saved to %s. Raise it (e.g. to %g) to keep only the best",
                        self.threshold, len(self._seen), low, high, self.path.name, high)
        self._seen = []

    def _open(self) -> JsonlAppender:
        if self._appender is None:
            self._appender = JsonlAppender(self.path)
        return self._appender

    def offer(self, record: dict[str, Any]) -> bool:
        """Write ``record`` if its reward reaches the threshold; True if written."""
        reward = record.get("reward")
        if reward is None or reward < self.threshold:
            return False
        # which process scored it: in a multi-process run every rank appends to the same file
        self._open().write({**record, "rank": int(os.environ.get("RANK", "0"))})
        self.written += 1
        return True

    def truncate_after_step(self, step: int) -> int:
        """Atomically rewrite the file keeping records with ``step <= step`` (and those without a step).

        Call it when resuming from the checkpoint of ``step``: the trainer redoes the steps after it, so their
        records from the killed run would otherwise appear twice. Returns the number of records dropped.
        """
        self.close()
        if not self.path.exists():
            return 0
        kept, dropped = [], 0
        for record in read_jsonl(self.path):  # also skips a torn last line
            record_step = record.get("step")
            if record_step is not None and record_step > step:
                dropped += 1
            else:
                kept.append(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        atomic_write_text(self.path, "".join(kept))
        if dropped:
            log.info("high-scoring export: dropped %d record(s) after step %d (resume)", dropped, step)
        return dropped

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
