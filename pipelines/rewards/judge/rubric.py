"""LLM-judge rubrics: score types, the rubric YAML file, its placeholders and rendering.

A rubric is a YAML list of ``{role, content}`` messages. Contents may use these placeholders:

- ``{input_text}``: the last user message of the prompt;
- ``{conversation}``: the whole prompt conversation as text (``Role: content`` blocks);
- ``{output_text}``: the completion being judged, with the policy's reasoning removed (unless judge_reasoning);
- ``{answer}``: the row's reference answer;
- ``{any_column}``: any other data column of the row, by name.

Only ``{identifier}`` is a placeholder; other braces (JSON examples) are left as they are, and ``{{``/``}}``
write a literal brace.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from pipelines.common.config_io import load_yaml_text, read_text_capped
from pipelines.common.problems import ConfigError
from pipelines.rewards.textscan import strip_blocks

MAX_RUBRIC_BYTES = 256 << 10   # a rubric is a few KiB; YAML parses about 1 MB/s, and it is read at every --validate
BUILTIN_PLACEHOLDERS = ("input_text", "conversation", "output_text", "answer")
# Keys TRL passes to reward functions that are not data columns: a rubric cannot use them.
RESERVED_NAMES = ("prompt", "prompts", "completion", "completions", "completion_ids", "trainer_state",
                  "log_extra", "log_metric", "environments")
_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TAG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
SCORE_TYPE_KINDS = ("score", "autofail")
# Relative rubric paths are tried from the working directory first, then from pipelines/grpo/ (where the shipped
# rubrics live, in prompts/, beside the user-editable reward files), so `prompts/helpfulness.yaml` names a
# shipped rubric as it does in Augmentoolkit configs. A folder, not an import: this layer imports no node.
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "grpo"


class RubricError(ValueError):
    """A rubric or score-type definition is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ScoreType:
    """One tag the judge must answer: a ``score`` in [min, max] (weighted), or an ``autofail`` (0 fails)."""

    name: str
    type: str = "score"
    min: float = 0.0
    max: float = 1.0
    weight: float = 1.0

    @property
    def is_autofail(self) -> bool:
        return self.type == "autofail"


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _one_score_type(i: int, raw: Any) -> tuple[Optional[ScoreType], list[str]]:
    key = f"score_types[{i}]"
    if not isinstance(raw, Mapping):
        return None, [f"{key}: expected a mapping {{name, type: score|autofail, min, max, weight}}, got {raw!r}"]
    problems = []
    unknown = [k for k in raw if k not in ("name", "type", "min", "max", "weight")]
    problems += [f"{key}: unknown key {k!r}; allowed: name, type, min, max, weight" for k in unknown]
    name = raw.get("name")
    if not isinstance(name, str) or not _TAG_NAME_RE.match(name):
        problems.append(f"{key}.name: {name!r} is not a usable tag name (letters, digits, _ . -; e.g. helpfulness)")
    kind = raw.get("type", "score")
    if kind not in SCORE_TYPE_KINDS:
        problems.append(f"{key}.type: {kind!r} is not one of: score, autofail")
    default_min, default_max = (0.0, 1.0)
    values = {}
    for field_name, default in (("min", default_min), ("max", default_max), ("weight", 1.0)):
        value = raw.get(field_name, default if (kind == "autofail" or field_name == "weight") else None)
        number = _number(value)
        if number is None:
            problems.append(f"{key}.{field_name}: expected a finite number, got {value!r}"
                            + (" (score types need min and max)" if value is None else ""))
        values[field_name] = number
    if values.get("min") is not None and values.get("max") is not None and values["min"] >= values["max"]:
        problems.append(f"{key}: min ({values['min']:g}) must be less than max ({values['max']:g})")
    if kind == "autofail" and values.get("min") is not None and values["min"] > 0:
        problems.append(f"{key}: an autofail's range must include 0 (0 means fail); min is {values['min']:g}")
    if problems:
        return None, problems
    return ScoreType(name=name, type=kind, min=values["min"], max=values["max"], weight=values["weight"]), []


def parse_score_types(raw: Any) -> tuple[list[ScoreType], list[str]]:
    """Score types from the ``score_types`` kwarg, and every problem with it."""
    if not isinstance(raw, list) or not raw:
        return [], ["score_types: expected a non-empty list of {name, type: score|autofail, min, max, weight}"]
    out, problems, seen = [], [], set()
    for i, item in enumerate(raw):
        st, item_problems = _one_score_type(i, item)
        problems += item_problems
        if st is None:
            continue
        if st.name.lower() in seen:
            problems.append(f"score_types[{i}].name: {st.name!r} is listed twice")
        seen.add(st.name.lower())
        out.append(st)
    if out and not problems and not any(not st.is_autofail for st in out):
        problems.append("score_types: add at least one `type: score` entry; autofails alone always sum to 0")
    return out, problems


def resolve_rubric_path(path: str | Path) -> Optional[Path]:
    """The rubric file: absolute, or relative to the working directory, else relative to pipelines/grpo/."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and (PACKAGE_DIR / p).is_file():
        return PACKAGE_DIR / p
    return None


@dataclass(frozen=True)
class Rubric:
    """A loaded rubric file: its messages and the placeholders they use."""

    path: Path
    messages: tuple[tuple[str, str], ...]          # (role, content)

    @property
    def placeholders(self) -> set[str]:
        return {m.group(1) for _, content in self.messages for m in _PLACEHOLDER_RE.finditer(content)
                if m.group(1)}

    @property
    def column_placeholders(self) -> set[str]:
        return self.placeholders - set(BUILTIN_PLACEHOLDERS)

    @property
    def text(self) -> str:
        return "\n".join(content for _, content in self.messages)

    def render(self, values: Mapping[str, str]) -> list[dict[str, str]]:
        """The judge's messages with every placeholder filled from ``values`` (KeyError if one is missing)."""

        def sub(match: re.Match) -> str:
            token = match.group(0)
            if token == "{{":
                return "{"
            if token == "}}":
                return "}"
            return values[match.group(1)]

        return [{"role": role, "content": _PLACEHOLDER_RE.sub(sub, content)} for role, content in self.messages]


def load_rubric(path: str | Path) -> Rubric:
    """Read and structurally check a rubric file; RubricError lists what is wrong."""
    resolved = resolve_rubric_path(path)
    if resolved is None and Path(path).expanduser().exists():   # a folder, FIFO or device: never opened
        raise RubricError([f"system_prompt_path: {path}: the rubric file is not a regular file (a folder, FIFO or "
                           "device)"])
    if resolved is None:
        raise RubricError([f"system_prompt_path: rubric file {str(path)!r} not found (tried {Path.cwd()} and "
                           f"{PACKAGE_DIR}); give a path like prompts/helpfulness.yaml"])
    try:
        data = load_yaml_text(read_text_capped(resolved, MAX_RUBRIC_BYTES), str(resolved))
    except ValueError as exc:     # not a regular file, larger than the cap, not UTF-8
        raise RubricError([f"system_prompt_path: {resolved}: the rubric file {exc}"]) from None
    except OSError as exc:
        raise RubricError([f"system_prompt_path: {resolved}: cannot be read: {exc.strerror}"]) from None
    except ConfigError as exc:    # invalid YAML, aliases expanding past the bound
        raise RubricError([f"system_prompt_path: {resolved}: cannot be read as YAML: {p.message}"
                           for p in exc.problems]) from None
    if isinstance(data, Mapping) and "messages" in data:
        data = data["messages"]
    if not isinstance(data, list) or not data:
        raise RubricError([f"system_prompt_path: {resolved}: expected a YAML list of {{role, content}} messages"])
    problems, messages = [], []
    for i, msg in enumerate(data):
        if not isinstance(msg, Mapping) or set(msg) - {"role", "content"}:
            problems.append(f"system_prompt_path: {resolved}: message {i}: expected exactly keys role and content")
            continue
        role, content = msg.get("role"), msg.get("content")
        if role not in ("system", "user", "assistant"):
            problems.append(f"system_prompt_path: {resolved}: message {i}: role {role!r} is not system, user "
                            "or assistant")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"system_prompt_path: {resolved}: message {i}: content must be non-empty text")
            continue
        messages.append((str(role), content))
    if problems:
        raise RubricError(problems)
    if messages[-1][0] == "assistant":
        raise RubricError([f"system_prompt_path: {resolved}: the last message is an assistant turn; the judge "
                           "must be asked something (end with a user message)"])
    return Rubric(path=resolved, messages=tuple(messages))


def check_rubric(rubric: Rubric, score_types: Sequence[ScoreType]) -> list[str]:
    """Placeholder typos, reserved names, and score types whose tag the rubric never mentions."""
    problems = []
    where = f"system_prompt_path: {rubric.path}"
    for name in sorted(rubric.column_placeholders):
        close = difflib.get_close_matches(name, BUILTIN_PLACEHOLDERS, n=1, cutoff=0.75)
        if name in RESERVED_NAMES:
            problems.append(f"{where}: placeholder {{{name}}} is not a data column; use {{input_text}}, "
                            "{conversation} or {output_text}")
        elif close:
            problems.append(f"{where}: unknown placeholder {{{name}}} (did you mean {{{close[0]}}}?); "
                            f"built-in: {', '.join('{' + b + '}' for b in BUILTIN_PLACEHOLDERS)}, or a data column")
    if "output_text" not in rubric.placeholders:
        problems.append(f"{where}: the rubric never shows the judge the completion: add {{output_text}}")
    text = rubric.text.lower()
    for st in score_types:
        if f"<{st.name.lower()}>" not in text:
            problems.append(f"{where}: score type {st.name!r} is never mentioned as a tag; tell the judge to "
                            f"answer with <{st.name}>...</{st.name}>")
    return problems


def strip_reasoning(text: str, start: Optional[str], end: Optional[str]) -> str:
    """Remove reasoning between ``start`` and ``end`` markers (inclusive).

    An ``end`` without a ``start`` (the start was prefilled in the prompt) removes everything before it; a
    ``start`` that is never closed removes everything after it (the completion has no answer yet).
    """
    if not end:
        return text.strip()
    out = text
    if start:
        out = strip_blocks(out, start, end)   # linear, unlike re.sub(start.*?end)
        if start in out and end not in out[out.index(start):]:
            out = out[:out.index(start)]
    if end in out:
        out = out[out.rindex(end) + len(end):]
    return out.strip()


def column_text(value: Any) -> str:
    """A data column's value as rubric text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
