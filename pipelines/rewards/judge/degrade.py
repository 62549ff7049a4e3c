"""Automatic degradations of a reference answer, for the judge calibration gate (``--calibrate-judges``).

Each function takes the reference text (and what else it needs) and returns a worse answer, or None when the
degradation would not change it (a one-sentence answer cannot be shuffled). ``WRONG`` are the variants whose
content is worse than the reference: a sound judge scores them lower (the separation measure). ``padded`` keeps
the whole reference and adds filler: equal content at a greater length, the probe of the length-bias measure.
"""
from __future__ import annotations

import random
import re
from typing import Callable, Optional, Sequence

FILLER = ("It is worth noting that this is an important topic. ", "There are many aspects to consider here. ",
          "In general, one should always think carefully about such questions. ",
          "This is a point that many people find interesting. ", "As mentioned, context matters a great deal. ")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
WRONG = ("truncated", "shuffled", "swapped", "empty", "reasoning_only")
ALL = (*WRONG, "padded")


def sentences(text: str) -> list[str]:
    """The text split after ``.``, ``!`` or ``?`` followed by whitespace (empty pieces dropped)."""
    return [s for s in _SENTENCE_RE.split(text.strip()) if s]


def truncated(text: str) -> Optional[str]:
    """The first half of the words (at least one word removed)."""
    words = text.split()
    if len(words) < 2:
        return None
    return " ".join(words[:len(words) // 2])


def shuffled(text: str, rng: random.Random) -> Optional[str]:
    """The sentences in another order (None for fewer than two sentences)."""
    parts = sentences(text)
    if len(parts) < 2:
        return None
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return " ".join(parts[i] for i in order)


def swapped(text: str, others: Sequence[str], rng: random.Random) -> Optional[str]:
    """Another row's answer (None when every other answer is the same text)."""
    pool = [o for o in others if o and o.strip() != text.strip()]
    return rng.choice(pool) if pool else None


def empty(text: str) -> str:
    """No answer at all."""
    return ""


def padded(text: str, rng: random.Random, factor: float = 1.0) -> str:
    """The reference followed by filler sentences adding about ``factor`` times its length."""
    target = max(1, int(len(text) * factor))
    extra = ""
    while len(extra) < target:
        extra += rng.choice(FILLER)
    return f"{text.rstrip()} {extra.strip()}"


def reasoning_only(prompt_text: str, cot_start: Optional[str], cot_end: Optional[str]) -> str:
    """Reasoning about the question that never reaches an answer (inside the reasoning markers when set)."""
    thought = (f"Let me think about this question: {prompt_text.strip()[:300]} First I should recall what I know, "
               "then work out the steps one by one before answering.")
    if cot_start and cot_end:
        return f"{cot_start}{thought}{cot_end}"
    return thought


def variants(text: str, others: Sequence[str], prompt_text: str, seed: int, cot_start: Optional[str] = None,
             cot_end: Optional[str] = None) -> dict[str, str]:
    """Every degradation of ``text`` that changes it, by name (``ALL`` order; ones that do not apply left out)."""
    rng = random.Random(seed)
    made: dict[str, Callable[[], Optional[str]]] = {
        "truncated": lambda: truncated(text), "shuffled": lambda: shuffled(text, rng),
        "swapped": lambda: swapped(text, others, rng), "empty": lambda: empty(text),
        "reasoning_only": lambda: reasoning_only(prompt_text, cot_start, cot_end),
        "padded": lambda: padded(text, rng)}
    out = {}
    for name in ALL:
        value = made[name]()
        if value is not None and value != text:
            out[name] = value
    return out
