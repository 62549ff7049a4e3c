"""One input row -> prompt messages: row formats, system prompt, the cut, the prompt budget.

A row's prompt comes from one of these, detected per row (so shards and mixed files work): a ShareGPT
``conversations: [{from, value}]`` or OpenAI ``messages: [{role, content}]`` conversation; else a ``prompt``
column holding a string or a message list (TRL's prompt-only format). A dataset entry may name other columns
(``columns``) or build the user message from row columns (``prompt_template``); :class:`RowFormat` holds that
choice. :func:`classify` is the single definition of a usable row; the vectorised pyarrow rules in
:mod:`pipelines.data.arrow` mirror it for the default format, and a test keeps the two in agreement.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

from pipelines.data.config import RESERVED_KEYS, DatasetEntry, template_fields

# Conversation key -> (role key, content key), in detection order.
FORMATS: dict[str, tuple[str, str]] = {"conversations": ("from", "value"), "messages": ("role", "content")}
FORMAT_NAMES = {"conversations": "ShareGPT (conversations: from/value)",
                "messages": "OpenAI (messages: role/content)",
                "prompt": "prompt-only (prompt: text or messages)",
                "template": "prompt_template"}
# Accepted role names (compared lower-cased and stripped) -> normalised role.
ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
SYSTEM_ROLES = frozenset(r for r, v in ROLES.items() if v == "system")
ASSISTANT_ROLES = frozenset(r for r, v in ROLES.items() if v == "assistant")
USER_ROLES = frozenset(r for r, v in ROLES.items() if v == "user")

# Why a row was skipped; the keys appear in --validate summaries and in SampleResult.stats.
REASONS = {
    "invalid_json": "invalid JSON line",
    "malformed": "nested too deeply to parse",
    "too_large": "row larger than dataset_settings.max_row_bytes (not parsed)",
    "not_an_object": "row is not a JSON object",
    "missing_conversations": "no conversation or prompt column (missing or null)",
    "missing_column": "a prompt_template column is missing or null",
    "prompt_wrong_type": "prompt is neither a string nor a list of messages",
    "empty_conversations": "empty conversation",
    "conversations_wrong_type": "conversation is not a list of message objects",
    "unknown_role": "message with a missing or unknown role",
    "non_string_content": "message content missing or not a string",
    "no_assistant_turn": "neither an assistant turn nor a final user turn",
    "empty_prompt": "empty prompt before every assistant turn and at the end",
    "prompt_too_long": "prompt longer than max_prompt_length even with old turns dropped",
    "invalid_unicode": "text with a lone surrogate (e.g. \\ud800), which no tokenizer or file can encode",
}

TokenCounter = Callable[[list[dict]], int]


class BadRow(ValueError):
    """A row that cannot become a prompt; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "", tokens: Optional[int] = None):
        self.reason = reason
        self.tokens = tokens   # prompt_too_long: the prompt's length in tokens at its shortest (None: not counted)
        super().__init__(f"{REASONS.get(reason, reason)}{': ' + detail if detail else ''}")


@dataclass(frozen=True)
class RowFormat:
    """Where a dataset's rows keep their prompt: conversation columns (in detection order), a prompt column,
    or a template over columns; and the column holding the reference answer."""

    conversation_keys: tuple[str, ...] = tuple(FORMATS)
    prompt_key: Optional[str] = "prompt"
    answer_key: str = "answer"
    answer_mapped: bool = False
    template: Optional[str] = None
    fields: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()   # (reward argument, row column) from the dataset's ``columns``

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_FORMAT

    def columns(self) -> list[str]:
        """Every column this format reads a prompt from (for messages about unknown columns)."""
        return list(self.fields) if self.template else [*self.conversation_keys, *([self.prompt_key] if self.prompt_key else [])]


DEFAULT_FORMAT = RowFormat()


@lru_cache(maxsize=64)
def _format(prompt: Optional[str], answer: Optional[str], messages: Optional[str],
            template: Optional[str], renames: tuple[tuple[str, str], ...] = ()) -> RowFormat:
    answer_fields = dict(answer_key=answer or "answer", answer_mapped=answer is not None, renames=renames)
    if template:
        return RowFormat((), None, template=template, fields=tuple(template_fields(template)), **answer_fields)
    if messages:
        return RowFormat((messages,), None, **answer_fields)
    if prompt:
        return RowFormat((), prompt, **answer_fields)
    return RowFormat(**answer_fields)


def row_format(ds: Optional[DatasetEntry]) -> RowFormat:
    """The row format a dataset entry asks for (its ``columns`` and ``prompt_template``)."""
    if ds is None:
        return DEFAULT_FORMAT
    c = ds.columns
    return _format(c.prompt, c.answer, c.messages, ds.prompt_template, tuple(sorted(c.reward_columns().items())))


def message_keys(key: str, conv: list) -> tuple[str, str]:
    """(role key, content key) of a conversation: fixed for ``conversations``/``messages``; for any other
    column, ShareGPT's when its first message has ``from`` or ``value``, else OpenAI's."""
    if key in FORMATS:
        return FORMATS[key]
    first = conv[0] if conv and isinstance(conv[0], dict) else {}
    return FORMATS["conversations"] if ("from" in first or "value" in first) else FORMATS["messages"]


def source_key(raw: dict, fmt: RowFormat = DEFAULT_FORMAT) -> Optional[str]:
    """The column holding this row's prompt source: the first conversation column that is not null, else the
    prompt column when not null, else the first of them present (null), else None."""
    candidates = [*fmt.conversation_keys, *([fmt.prompt_key] if fmt.prompt_key else [])]
    present = [key for key in candidates if key in raw]
    return next((key for key in present if raw[key] is not None), present[0] if present else None)


def source_label(key: Optional[str], fmt: RowFormat = DEFAULT_FORMAT) -> Optional[str]:
    """The format name of rows whose prompt comes from column ``key``: the key of a conversation column,
    ``prompt`` for the prompt column (whatever its name), ``template`` for a template format."""
    if fmt.template:
        return "template"
    return "prompt" if key == fmt.prompt_key and key not in fmt.conversation_keys else key


def conversation_key(raw: dict, fmt: RowFormat = DEFAULT_FORMAT) -> Optional[str]:
    """The format name of a valid row, for summaries: its conversation key, ``prompt`` or ``template``."""
    return source_label(source_key(raw, fmt), fmt)


def _classify_conversation(conv: Any, role_key: str, content_key: str) -> Optional[str]:
    if not isinstance(conv, list):
        return "conversations_wrong_type"
    if not conv:
        return "empty_conversations"
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
    ends_user = roles[-1].strip().lower() in USER_ROLES
    if has_cut or (ends_user and seen_content):
        return None
    return "empty_prompt" if (has_assistant or ends_user) else "no_assistant_turn"


def classify(raw: Any, fmt: RowFormat = DEFAULT_FORMAT) -> Optional[str]:
    """The reason this row is unusable, or None. Checks run in a fixed order over the whole conversation
    (message types, then roles, then contents, then turns) so every reader reports the same reason."""
    if not isinstance(raw, dict):
        return "not_an_object"
    reason = _classify_shape(raw, fmt)
    if reason is None and not _encodable(raw):
        return "invalid_unicode"
    return reason


def _classify_shape(raw: dict, fmt: RowFormat) -> Optional[str]:
    if fmt.template:
        return "missing_column" if any(raw.get(f) is None for f in fmt.fields) else None
    key = source_key(raw, fmt)
    value = raw.get(key) if key else None
    if value is None:
        return "missing_conversations"
    if key == fmt.prompt_key and key not in fmt.conversation_keys and not isinstance(value, list):
        if isinstance(value, str):
            return None if value.strip() else "empty_prompt"
        return "prompt_wrong_type"
    conv_ok = isinstance(value, list) and value
    role_key, content_key = message_keys(key, value if conv_ok else [])
    return _classify_conversation(value, role_key, content_key)


def _encodable(value: Any, depth: int = 0) -> bool:
    """Whether every string in the row (keys included) encodes as UTF-8: JSON allows a lone surrogate
    (``"\\ud800"``) that the tokenizer, the judges' HTTP requests and every output file would fail on."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return True
        except UnicodeEncodeError:
            return False
    if depth > 64:
        return True
    if isinstance(value, dict):
        return all(_encodable(k, depth + 1) and _encodable(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_encodable(v, depth + 1) for v in value)
    return True


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def normalize(raw: dict, fmt: RowFormat = DEFAULT_FORMAT) -> tuple[Optional[str], list[dict[str, str]]]:
    """(source column, role/content messages) of a row; raises :class:`BadRow`."""
    reason = classify(raw, fmt)
    if reason is not None:
        raise BadRow(reason)
    if fmt.template:
        text = fmt.template.format_map({f: _as_text(raw[f]) for f in fmt.fields})
        return None, [{"role": "user", "content": text}]
    key = source_key(raw, fmt)
    value = raw[key]
    if isinstance(value, str):
        return key, [{"role": "user", "content": value}]
    role_key, content_key = message_keys(key, value)
    return key, [{"role": ROLES[m[role_key].strip().lower()], "content": m[content_key]} for m in value]


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
    """Where a prompt may end: each assistant turn preceded by a non-empty non-system message, and the end of
    a conversation whose last turn is the user's (a prompt as it stands)."""
    out, seen = [], False
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and seen:
            out.append(i)
        if m["role"] != "system" and m["content"].strip():
            seen = True
    if messages and messages[-1]["role"] == "user" and seen:
        out.append(len(messages))
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


def surely_too_long(prompt: list[dict], token_counter: TokenCounter, max_prompt_length: int) -> bool:
    """Whether the prompt's text alone proves it too long, without tokenizing it: no token covers more than
    the counter's ``max_token_chars`` characters (the longest vocabulary entry; x2 for normalizers that merge
    characters), so more characters than that times the limit cannot fit. Keeps a huge row cheap."""
    per_token = getattr(token_counter, "max_token_chars", None)
    if not per_token:
        return False
    return sum(len(m["content"]) for m in prompt) > 2 * per_token * max_prompt_length


def fit_budget(prompt: list[dict], token_counter: Optional[TokenCounter],
               max_prompt_length: Optional[int]) -> list[dict]:
    """Drop oldest turns until the prompt fits ``max_prompt_length`` tokens; raises BadRow if it never does.
    Tokenizes only when it must: a prompt whose length in characters proves it too long, or whose normalized
    bytes prove it fits (the counter's ``at_most``), is decided without tokenizing."""
    if token_counter is None or max_prompt_length is None:
        return prompt
    bound = getattr(token_counter, "at_most", None)
    if (bound is not None and not surely_too_long(prompt, token_counter, max_prompt_length)
            and (most := bound(prompt)) is not None and most <= max_prompt_length):
        return prompt                                   # fits whatever the tokenizer makes of it
    while True:
        tokens = None if surely_too_long(prompt, token_counter, max_prompt_length) else token_counter(prompt)
        if tokens is not None and tokens <= max_prompt_length:
            return prompt
        shorter = drop_oldest_turn(prompt)
        if shorter is None:
            raise BadRow("prompt_too_long", f"limit {max_prompt_length} tokens", tokens=tokens)
        prompt = shorter


def passthrough_columns(raw: dict, consumed: tuple[Optional[str], ...]) -> dict[str, Any]:
    """Every data column except the ``consumed`` ones, unchanged; reserved names get a ``data_`` prefix."""
    return {(f"data_{k}" if k in RESERVED_KEYS else k): v for k, v in raw.items() if k not in consumed}


def _answer(raw: dict, fmt: RowFormat, messages: list[dict], cut: int) -> tuple[Optional[str], bool]:
    """(reference answer as text or None, whether it came from the answer column). A mapped answer column
    always wins; otherwise the assistant turn at the cut, else the ``answer`` column, else none."""
    if not fmt.answer_mapped and cut < len(messages):
        return messages[cut]["content"], False
    value = raw.get(fmt.answer_key)
    return (None if value is None else _as_text(value)), value is not None


def prepare_prompt(raw_row: dict, ds: DatasetEntry, ds_index: int, ds_path: str, row_id: str, seed: int,
                   token_counter: Optional[TokenCounter] = None, max_prompt_length: Optional[int] = None
                   ) -> dict[str, Any]:
    """The trainer row for one raw row: prompt messages before the cut, the reference ``answer`` (None when the
    row has none), the dataset's index/path, the row id and every other column. Raises :class:`BadRow`."""
    fmt = row_format(ds)
    key, messages = normalize(raw_row, fmt)
    messages = apply_system_prompt(messages, ds.system_prompt, ds.system_prompt_mode)
    cut = choose_cut(cut_candidates(messages), ds, seed, row_id)
    prompt = fit_budget(messages[:cut], token_counter, max_prompt_length)
    answer, from_column = _answer(raw_row, fmt, messages, cut)
    consumed = (key, "answer") if from_column and fmt.answer_key == "answer" else (key,)
    row = passthrough_columns(raw_row, consumed)
    row.update({arg: raw_row[column] for arg, column in fmt.renames if column in raw_row})
    row.update(prompt=prompt, answer=answer, dataset_index=ds_index, dataset_path=ds_path, row_id=row_id)
    return row
