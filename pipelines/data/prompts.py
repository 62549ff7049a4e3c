"""One input row -> one training prompt: conversation formats, system prompt, the cut, the prompt budget.

A row holds a conversation in one of two formats, detected per row (so shards and mixed files work):
ShareGPT ``conversations: [{from, value}]`` or OpenAI ``messages: [{role, content}]``. :func:`classify` is the
single definition of a usable row; the Parquet fast path in :mod:`pipelines.data.readers` mirrors it with
vectorised pyarrow code, and a test keeps the two in agreement.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Optional

from pipelines.data.config import DatasetEntry

# Conversation key -> (role key, content key), in detection order.
FORMATS: dict[str, tuple[str, str]] = {"conversations": ("from", "value"), "messages": ("role", "content")}
FORMAT_NAMES = {"conversations": "ShareGPT (conversations: from/value)",
                "messages": "OpenAI (messages: role/content)"}
# Accepted role names (compared lower-cased and stripped) -> normalised role.
ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
SYSTEM_ROLES = frozenset(r for r, v in ROLES.items() if v == "system")
ASSISTANT_ROLES = frozenset(r for r, v in ROLES.items() if v == "assistant")

# Why a row was skipped; the keys appear in --validate summaries and in SampleResult.stats.
REASONS = {
    "invalid_json": "invalid JSON line",
    "not_an_object": "row is not a JSON object",
    "missing_conversations": "no `conversations` / `messages` (missing or null)",
    "empty_conversations": "empty conversation",
    "conversations_wrong_type": "conversation is not a list of message objects",
    "unknown_role": "message with a missing or unknown role",
    "non_string_content": "message content missing or not a string",
    "no_assistant_turn": "no assistant turn",
    "empty_prompt": "empty prompt before every assistant turn",
    "prompt_too_long": "prompt longer than max_prompt_length even with old turns dropped",
}
# Row keys the data layer sets, plus the keyword names TRL passes to reward functions itself: a data column
# with one of these names is passed through as ``data_<name>`` instead (see :func:`passthrough_columns`).
RESERVED_KEYS = frozenset({"prompt", "answer", "dataset_index", "dataset_path", "row_id", "prompts",
                           "completions", "completion", "completion_ids", "trainer_state"})

TokenCounter = Callable[[list[dict]], int]


class BadRow(ValueError):
    """A row that cannot become a prompt; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{REASONS.get(reason, reason)}{': ' + detail if detail else ''}")


def conversation_key(raw: dict) -> Optional[str]:
    """The key holding this row's conversation: the first of ``conversations``/``messages`` that is not null,
    else the first present, else None."""
    present = [key for key in FORMATS if key in raw]
    return next((key for key in present if raw[key] is not None), present[0] if present else None)


def classify(raw: Any) -> Optional[str]:
    """The reason this row is unusable, or None. Checks run in a fixed order over the whole conversation
    (message types, then roles, then contents, then turns) so every reader reports the same reason."""
    if not isinstance(raw, dict):
        return "not_an_object"
    key = conversation_key(raw)
    conv = raw.get(key) if key else None
    if conv is None:
        return "missing_conversations"
    if not isinstance(conv, list):
        return "conversations_wrong_type"
    if not conv:
        return "empty_conversations"
    role_key, content_key = FORMATS[key]
    if not all(isinstance(m, dict) for m in conv):
        return "conversations_wrong_type"
    roles = [m.get(role_key) for m in conv]
    if not all(isinstance(r, str) and r.strip().lower() in ROLES for r in roles):
        return "unknown_role"
    if not all(isinstance(m.get(content_key), str) for m in conv):
        return "non_string_content"
    seen_content = has_assistant = has_cut = False
    for role, message in zip(roles, conv):
        role = role.strip().lower()
        if role in ASSISTANT_ROLES:
            has_assistant = True
            has_cut = has_cut or seen_content
        if role not in SYSTEM_ROLES and message[content_key].strip():
            seen_content = True
    if not has_assistant:
        return "no_assistant_turn"
    return None if has_cut else "empty_prompt"


def normalize(raw: dict) -> tuple[str, list[dict[str, str]]]:
    """(conversation key, role/content messages) of a row; raises :class:`BadRow`."""
    reason = classify(raw)
    if reason is not None:
        raise BadRow(reason)
    key = conversation_key(raw)
    role_key, content_key = FORMATS[key]
    return key, [{"role": ROLES[m[role_key].strip().lower()], "content": m[content_key]} for m in raw[key]]


def apply_system_prompt(messages: list[dict], system_prompt: Optional[str], mode: str) -> list[dict]:
    """Add the dataset's system prompt: inserted first when the row has no leading system message; with one,
    ``prepend`` joins it before the existing text, ``insert`` adds a separate message, ``replace`` swaps it."""
    if not system_prompt:
        return list(messages)
    new = {"role": "system", "content": system_prompt}
    if not messages or messages[0]["role"] != "system":
        return [new] + messages
    if mode == "prepend":
        return [{"role": "system", "content": f"{system_prompt}\n\n{messages[0]['content']}"}] + messages[1:]
    if mode == "replace":
        return [new] + messages[1:]
    return [new] + messages


def cut_candidates(messages: list[dict]) -> list[int]:
    """Indices of assistant turns preceded by a non-empty non-system message: the places a prompt may end."""
    out, seen = [], False
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and seen:
            out.append(i)
        if m["role"] != "system" and m["content"].strip():
            seen = True
    return out


def choose_cut(candidates: list[int], ds: DatasetEntry, seed: int, row_id: str) -> int:
    """First candidate with probability ``single_turn_ratio`` (always when ``force_single_turn``), else a
    later one uniformly; the draw depends only on the seed and the row id, so it is the same on every run."""
    if ds.force_single_turn or len(candidates) == 1:
        return candidates[0]
    rng = random.Random(f"{seed}:{row_id}")  # str seeds are hashed with sha512: stable across processes
    if rng.random() < ds.single_turn_ratio:
        return candidates[0]
    return rng.choice(candidates[1:])


def drop_oldest_turn(prompt: list[dict]) -> Optional[list[dict]]:
    """The prompt without its oldest exchange (first non-system message and the replies up to the next user
    turn), or None when that would leave no user content. Keeps system messages and role alternation."""
    first = next((i for i, m in enumerate(prompt) if m["role"] != "system"), None)
    if first is None:
        return None
    end = first + 1
    while end < len(prompt) and prompt[end]["role"] != "user":
        end += 1
    rest = prompt[:first] + prompt[end:]
    if not any(m["role"] != "system" and m["content"].strip() for m in rest):
        return None
    return rest


def fit_budget(prompt: list[dict], token_counter: Optional[TokenCounter],
               max_prompt_length: Optional[int]) -> list[dict]:
    """Drop oldest turns until the prompt fits ``max_prompt_length`` tokens; raises BadRow if it never does."""
    if token_counter is None or max_prompt_length is None:
        return prompt
    while token_counter(prompt) > max_prompt_length:
        shorter = drop_oldest_turn(prompt)
        if shorter is None:
            raise BadRow("prompt_too_long", f"limit {max_prompt_length} tokens")
        prompt = shorter
    return prompt


def passthrough_columns(raw: dict, conv_key: str) -> dict[str, Any]:
    """Every data column except the conversation, unchanged; reserved names get a ``data_`` prefix."""
    return {(f"data_{k}" if k in RESERVED_KEYS else k): v for k, v in raw.items() if k != conv_key}


def prepare_prompt(raw_row: dict, ds: DatasetEntry, ds_index: int, ds_path: str, row_id: str, seed: int,
                   token_counter: Optional[TokenCounter] = None, max_prompt_length: Optional[int] = None
                   ) -> dict[str, Any]:
    """The trainer row for one raw row: prompt messages before the cut, the cut turn as ``answer``, the
    dataset's index/path, the row id and every other column. Raises :class:`BadRow`."""
    conv_key, messages = normalize(raw_row)
    messages = apply_system_prompt(messages, ds.system_prompt, ds.system_prompt_mode)
    cut = choose_cut(cut_candidates(messages), ds, seed, row_id)
    prompt = fit_budget(messages[:cut], token_counter, max_prompt_length)
    row = passthrough_columns(raw_row, conv_key)
    row.update(prompt=prompt, answer=messages[cut]["content"], dataset_index=ds_index, dataset_path=ds_path,
               row_id=row_id)
    return row
