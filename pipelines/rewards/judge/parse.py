"""Parsing an LLM judge's answer into one reward.

The rules, in order:

1. The judge's own reasoning is removed: every ``<think>…</think>`` block, and everything before a lone
   ``</think>`` (a template that prefilled ``<think>``). An unclosed ``<think>`` means the judge never finished.
2. For each score type, the value is the content of its *last* ``<name>…</name>`` tag (case-insensitive), so
   a judge that drafts a score and then revises it is read at its final word.
3. A value is a single number, optionally wrapped in ``*``/``**`` markdown or written ``7/10``.
4. Autofail types are read first: a 0 makes the reward 0 whatever the other scores say (they need not even be
   present). A non-zero autofail adds nothing.
5. A missing tag, a value that is not a number, or a value outside [min, max] is a parse failure: the caller
   re-asks the judge and then falls back to ``on_error``. Nothing is silently dropped or clamped.
6. The reward is the sum of score values times their weights; with ``normalize`` it is mapped from the
   lowest to the highest possible sum onto [0, 1].
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from pipelines.rewards.judge.rubric import ScoreType
from pipelines.rewards.textscan import strip_blocks, tag_contents

# A tag's content is read piece by piece with string strips and these two anchored patterns: the one-regex form
# (`^\s*\**\s*NUMBER\s*(?:/\s*NUMBER)?\s*\**\s*$`) backtracked cubically on long runs of spaces.
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_DENOMINATOR_RE = re.compile(r"\d+(?:\.\d*)?")


@dataclass
class ParseResult:
    """A judge answer read against the score types: ``reward`` is None when ``error`` says why."""

    reward: Optional[float] = None
    values: dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    autofailed: Optional[str] = None        # the autofail type that scored 0, if any

    @property
    def ok(self) -> bool:
        return self.error is None


def strip_judge_reasoning(text: str) -> Optional[str]:
    """The judge's answer without its reasoning; None when reasoning was opened and never closed."""
    out = strip_blocks(text, "<think>", "</think>", ignore_case=True)   # linear, unlike a lazy regex
    lower = out.lower()
    if "</think>" in lower:
        out = out[lower.rindex("</think>") + len("</think>"):]
        lower = out.lower()
    if "<think>" in lower:
        return None
    return out


def last_tag_value(text: str, name: str) -> Optional[str]:
    """The content of the last ``<name>…</name>`` tag in ``text``, or None."""
    found = tag_contents(text, f"<{name}>", f"</{name}>", ignore_case=True)
    return found[-1] if found else None


def parse_number(value: str) -> Optional[float]:
    """A tag's content as a finite number (``7``, `` 7.5 ``, ``**7**``, ``7/10``), else None."""
    core = value.strip().lstrip("*").lstrip().rstrip("*").rstrip()
    match = _NUMBER_RE.match(core)
    if not match:
        return None
    rest = core[match.end():].lstrip()
    if rest and not (rest[0] == "/" and _DENOMINATOR_RE.fullmatch(rest[1:].lstrip())):
        return None
    number = float(match.group(0))
    return number if math.isfinite(number) else None


def _read(text: str, st: ScoreType) -> tuple[Optional[float], Optional[str]]:
    raw = last_tag_value(text, st.name)
    if raw is None:
        return None, f"no <{st.name}> tag"
    number = parse_number(raw)
    if number is None:
        return None, f"<{st.name}> is not a number: {raw.strip()[:40]!r}"
    if not st.min <= number <= st.max:
        return None, f"<{st.name}> {number:g} is outside [{st.min:g}, {st.max:g}]"
    return number, None


def score_bounds(score_types: Sequence[ScoreType]) -> tuple[float, float]:
    """The lowest and highest weighted sums the score types allow."""
    lo = sum(min(st.weight * st.min, st.weight * st.max) for st in score_types if not st.is_autofail)
    hi = sum(max(st.weight * st.min, st.weight * st.max) for st in score_types if not st.is_autofail)
    return lo, hi


def parse_judgement(text: Optional[str], score_types: Sequence[ScoreType], normalize: bool = False) -> ParseResult:
    """Apply the module's rules to one judge answer."""
    if text is None or not text.strip():
        return ParseResult(error="the judge returned no text")
    answer = strip_judge_reasoning(text)
    if answer is None:
        return ParseResult(error="the judge's <think> block was never closed (raise max_tokens?)")
    result = ParseResult()
    for st in score_types:
        if not st.is_autofail:
            continue
        value, error = _read(answer, st)
        if error:
            return ParseResult(error=error)
        result.values[st.name] = value
        if value == 0:
            result.autofailed = st.name
    if result.autofailed:
        result.reward = 0.0
        return result
    total = 0.0
    for st in score_types:
        if st.is_autofail:
            continue
        value, error = _read(answer, st)
        if error:
            return ParseResult(values=result.values, error=error)
        result.values[st.name] = value
        total += st.weight * value
    if normalize:
        lo, hi = score_bounds(score_types)
        total = (total - lo) / (hi - lo) if hi > lo else 0.0
    result.reward = total
    return result


def format_instructions(score_types: Sequence[ScoreType]) -> str:
    """What a correct answer looks like, for the re-ask message."""
    parts = []
    for st in score_types:
        rng = "0 (fail) or 1 (pass)" if st.is_autofail and (st.min, st.max) == (0, 1) else f"{st.min:g} to {st.max:g}"
        parts.append(f"<{st.name}>N</{st.name}> with N a number from {rng}")
    return "; ".join(parts)
