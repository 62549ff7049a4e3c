"""A judge for tests and benchmarks that scores by how much of the reference a candidate contains.

Served by :class:`tests.judge_server.JudgeServer`. The rubric shows the reference inside
``<reference>…</reference>``; a pointwise request shows the candidate inside ``<candidate>…</candidate>`` and
gets ``<score>N</score>`` (1..10), a group request lists ``<candidate id="i">…</candidate>`` (with an optional
``<shared_prefix>``) and gets ``{"scores": {"i": N}}``. Containment is the share of the reference's words
that a candidate matches in order (difflib's matching blocks), so truncating, shuffling or swapping lowers it
while padding does not.
"""
from __future__ import annotations

import json
import re
from difflib import SequenceMatcher
from typing import Callable

from tests.judge_server import Reply, Request

REFERENCE_RE = re.compile(r"<reference>(.*?)</reference>", re.S)
CANDIDATE_RE = re.compile(r"<candidate>(.*?)</candidate>", re.S)
CANDIDATES_RE = re.compile(r'<candidate id="(\d+)">(.*?)</candidate>', re.S)
PREFIX_RE = re.compile(r"<shared_prefix>(.*?)</shared_prefix>", re.S)

SOUND_RUBRIC = """- role: system
  content: "Score how much of the reference answer the candidate states, in order. End with <score>N</score>, N from 1 to 10."
- role: user
  content: "Question: {input_text}\\n<reference>{answer}</reference>\\n<candidate>{output_text}</candidate>"
"""
BROKEN_RUBRIC = """- role: system
  content: "Score the answer. End with <score>N</score>, N from 1 to 10."
- role: user
  content: "Question: {input_text}\\n<reference>{answer}</reference>"
"""
GROUP_RUBRIC = """- role: system
  content: "Score each candidate by how much of the reference answer it states, from {score_min} to {score_max}. Reply with JSON {{\\"scores\\": {{\\"1\\": N, ...}}}}."
- role: user
  content: "Question: {input_text}\\n<reference>{answer}</reference>\\n{candidates}"
"""
SCORE_1_10 = [{"name": "score", "type": "score", "min": 1, "max": 10}]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def containment(reference: str, candidate: str) -> float:
    """Share of the reference's words the candidate matches in order (0..1)."""
    ref = _words(reference)
    if not ref:
        return 0.0
    blocks = SequenceMatcher(None, ref, _words(candidate), autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / len(ref)


def score_of(reference: str, candidate: str) -> int:
    return 1 + round(9 * containment(reference, candidate))


def scripted(score: Callable[[str, str, str], int], think: str = "<think>comparing</think>",
             delay_s: float = 0.0) -> Callable[[Request], Reply]:
    """A judge script answering pointwise (``<score>N</score>``) and group (``{"scores": ...}``) requests with
    ``score(reference, candidate text, candidate id)`` (id "" for a pointwise candidate)."""

    def script(req: Request) -> Reply:
        text = req.text
        ref = REFERENCE_RE.search(text)
        reference = ref.group(1) if ref else ""
        many = CANDIDATES_RE.findall(text)
        if many:
            prefix = PREFIX_RE.search(text)
            head = prefix.group(1) if prefix else ""
            scores = {i: score(reference, head + body, i) for i, body in many}
            return Reply(content=think + json.dumps({"scores": scores}), delay_s=delay_s)
        one = CANDIDATE_RE.search(text)
        return Reply(content=f"<score>{score(reference, one.group(1) if one else '', '')}</score>", delay_s=delay_s)

    return script


script = scripted(lambda reference, text, _id: score_of(reference, text))   # a pointwise or a group request
