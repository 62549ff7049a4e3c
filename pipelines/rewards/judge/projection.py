"""How many judge calls and tokens some planned judge work takes: the calibration gate prints it before it
sends anything, and a budget prices it (calls x tokens x a judge's prices per million tokens).

Tokens are estimated from text (characters / 4) until a judge has answered; a caller with measured tokens per
call (``--check-judges``, the ``judge/<label>/prompt_tokens`` metrics) should use those instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

CHARS_PER_TOKEN = 4            # the usual estimate for English text with a BPE tokenizer
REPLY_TOKENS = 256             # estimated pointwise judge reply when max_tokens does not bound it lower
GROUP_REPLY_TOKENS_PER_CANDIDATE = 48   # a group reply: a score (and some reasoning) per candidate


@dataclass
class Projection:
    """Judge calls and estimated tokens."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: "Projection") -> "Projection":
        return Projection(self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
                          self.completion_tokens + other.completion_tokens)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost_usd(self, input_usd_per_mtok: float, output_usd_per_mtok: float) -> float:
        """The price of these tokens at a judge's prices (USD per million input / output tokens)."""
        return (self.prompt_tokens * input_usd_per_mtok + self.completion_tokens * output_usd_per_mtok) / 1e6


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Estimated prompt tokens of one chat request (characters / 4, plus a few per message)."""
    return sum(len(str(m.get("content") or "")) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)


def reply_tokens(judge: Any, candidates: int = 1) -> int:
    """Estimated completion tokens of one reply of ``judge`` (an LLMJudge): ``max_tokens`` bounds the estimate;
    a group reply (``candidates`` > 1) grows with the candidates."""
    guess = REPLY_TOKENS if candidates <= 1 else max(REPLY_TOKENS, GROUP_REPLY_TOKENS_PER_CANDIDATE * candidates)
    max_tokens = (judge.options.params or {}).get("max_tokens")
    return min(int(max_tokens), guess) if max_tokens else guess


def projected_calls(requests: Sequence[Sequence[dict[str, Any]]], judge: Any, repeats: int = 1) -> Projection:
    """The calls and estimated tokens of sending each rendered request (``judge.messages_for(...)``) of
    ``judge`` ``repeats`` times."""
    prompt = sum(estimate_tokens(r) for r in requests)
    return Projection(calls=len(requests) * repeats, prompt_tokens=prompt * repeats,
                      completion_tokens=len(requests) * repeats * reply_tokens(judge))


def training_calls(completions: int, num_generations: int, mode: str = "pointwise",
                   cache_hit_rate: float = 0.0) -> int:
    """Judge calls for ``completions`` completions in training: one per completion (``pointwise``), or one per
    prompt group of ``num_generations`` (``group``); ``cache_hit_rate`` of them answered from the cache.
    Format re-asks and transport retries are not counted (see the ``judge/<label>/calls`` metric)."""
    calls = completions if mode != "group" or num_generations <= 1 else math.ceil(completions / num_generations)
    return math.ceil(calls * (1.0 - cache_hit_rate))


def training_projection(judge: Any, completions: int, num_generations: int,
                        prompt_tokens_per_call: Optional[int] = None,
                        completion_tokens_per_call: Optional[int] = None, policy_tokens: int = 0) -> Projection:
    """Calls and tokens of judging ``completions`` training completions with ``judge`` (built by the llm_judge
    factory; ``judge.group_rubric`` set means group mode). Measured tokens per call (``--check-judges``, the
    ``judge/<label>/prompt_tokens`` metric / calls) win over the estimate, which is the rubric's own text plus
    ``policy_tokens`` (one policy completion and its question as the judge sees them, e.g. a mean measured in a
    rollout, or max_completion_length as a ceiling) per candidate the request shows."""
    group = getattr(judge, "group_rubric", None) is not None
    calls = training_calls(completions, num_generations, "group" if group else "pointwise")
    if prompt_tokens_per_call is None:
        rubric = judge.group_rubric if group else judge.rubric
        shown = num_generations if group else 1
        prompt_tokens_per_call = estimate_tokens([{"content": c} for _, c in rubric.messages]) + policy_tokens * shown
    if completion_tokens_per_call is None:
        completion_tokens_per_call = reply_tokens(judge, num_generations if group else 1)
    return Projection(calls, calls * prompt_tokens_per_call, calls * completion_tokens_per_call)
