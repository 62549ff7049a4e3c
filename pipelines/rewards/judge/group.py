"""The group judge (``mode: group`` on ``llm_judge``): one judge call scores every completion of a prompt.

GRPO uses rewards relative to the prompt's group, so one call that compares the K completions replaces K
calls. How one batch is scored:

1. Completions are grouped by prompt: consecutive completions with the same prompt are one group (TRL puts
   the K completions of a prompt next to each other; a caller scoring offline keeps them together).
2. Each group's request is the group rubric (``group_prompt_path``) with ``{candidates}`` filled by
   ``<candidate id="1">…</candidate>`` … ``<candidate id="K">…</candidate>`` in a random order (seeded by the
   candidates and the attempt: a fresh order on a retry, the same request for the same group, so the cache
   works). A prefix all candidates share (16+ characters) is shown once, in ``<shared_prefix>``, and trimmed from
   each. Other placeholders: ``{input_text}``, ``{conversation}``, ``{answer}``, ``{count}``, ``{score_min}``,
   ``{score_max}`` and data columns.
3. The reply must hold a JSON object ``{"scores": {"1": s1, …, "K": sK}}`` (checked with pydantic): every id
   once, each score a number within the score range (the lowest and highest weighted sum of ``score_types``;
   ``normalize`` maps it onto [0, 1] as for pointwise). The judge's ``<think>`` block is ignored.
4. A reply that does not parse is asked again (``format_retries`` times, a fresh order each); then the group
   is scored pointwise with ``system_prompt_path`` (metric ``group_fallbacks``). A group of one is scored
   pointwise. A transport failure after the retries scores ``on_error`` and feeds the circuit breaker.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from pydantic import BaseModel, ValidationError

from pipelines.rewards.errors import CircuitBreakerOpen
from pipelines.rewards.judge.cache import cache_key
from pipelines.rewards.judge.core import JudgeFailed, LLMJudge, gather_or_cancel, prompt_texts
from pipelines.rewards.judge.metrics import JudgeMetrics
from pipelines.rewards.judge.parse import score_bounds, strip_judge_reasoning
from pipelines.rewards.judge.rubric import Rubric, RubricError, column_text, load_rubric
from pipelines.rewards.judge.transport import JudgeCallFailed

log = logging.getLogger(__name__)
MODES = ("pointwise", "group")
GROUP_PLACEHOLDERS = ("input_text", "conversation", "answer", "candidates", "count", "score_min", "score_max")
MIN_SHARED_PREFIX = 16


class GroupReply(BaseModel):
    """The JSON a group judge answers with."""

    scores: dict[str, float]


def group_settings_problems(settings: dict[str, Any]) -> list[str]:
    """Problems with ``mode`` and ``group_prompt_path`` (the group rubric must show ``{candidates}``)."""
    mode, path = settings.get("mode", "pointwise"), settings.get("group_prompt_path")
    if mode not in MODES:
        return [f"mode: {mode!r} is not pointwise (one judge call per completion) or group (one call per prompt "
                "group)"]
    if mode == "pointwise":
        return ["group_prompt_path: only used with mode: group"] if path else []
    if not isinstance(path, str) or not path.strip():
        return ["group_prompt_path: mode: group needs the group rubric, e.g. prompts/helpfulness_group.yaml "
                "(system_prompt_path stays the pointwise rubric, used for groups of one and as the fallback)"]
    try:
        rubric = load_rubric(path)
    except RubricError as exc:
        return [p.replace("system_prompt_path:", "group_prompt_path:", 1) for p in exc.problems]
    if "candidates" not in rubric.placeholders:
        return [f"group_prompt_path: {rubric.path}: the group rubric never shows the candidates: add {{candidates}}"]
    if "scores" not in rubric.text:
        return [f"group_prompt_path: {rubric.path}: tell the judge to answer with JSON "
                '{"scores": {"1": s1, ...}} (the word `scores` never appears)']
    return []


def shared_prefix(texts: Sequence[str]) -> str:
    """The prefix every text shares, cut back to whitespace; '' when shorter than MIN_SHARED_PREFIX."""
    if len(texts) < 2:
        return ""
    prefix = os.path.commonprefix(list(texts))
    if len(prefix) < min(len(t) for t in texts):   # cut inside a word: back to the last whitespace
        cut = max(prefix.rfind(" "), prefix.rfind("\n"))
        prefix = prefix[:cut + 1] if cut >= 0 else ""
    return prefix if len(prefix.strip()) >= MIN_SHARED_PREFIX else ""


def candidate_order(texts: Sequence[str], attempt: int) -> list[int]:
    """A permutation of the candidates, seeded by their texts and the attempt number."""
    digest = hashlib.sha256(json.dumps([list(texts), attempt], ensure_ascii=False).encode("utf-8")).hexdigest()
    order = list(range(len(texts)))
    random.Random(int(digest[:16], 16)).shuffle(order)
    return order


def candidates_block(texts: Sequence[str], order: Sequence[int]) -> str:
    """``{candidates}``: the shared prefix once, then each candidate under its id (position in ``order``)."""
    prefix = shared_prefix(texts)
    parts = []
    if prefix:
        parts.append("Every candidate begins with this same text, shown once here and left out below:\n"
                     f"<shared_prefix>{prefix}</shared_prefix>")
    parts += [f'<candidate id="{pos}">{texts[idx][len(prefix):]}</candidate>' for pos, idx in enumerate(order, 1)]
    return "\n".join(parts)


def _json_objects(text: str) -> list[Any]:
    decoder, out, start = json.JSONDecoder(), [], text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        out.append(value)
        start = text.find("{", end)
    return out


def parse_group_reply(text: Optional[str], count: int, lo: float, hi: float) -> tuple[Optional[dict[int, float]], str]:
    """The module's rule 3: ({id: score}, '') or (None, why not)."""
    if text is None or not text.strip():
        return None, "the judge returned no text"
    answer = strip_judge_reasoning(text)
    if answer is None:
        return None, "the judge's <think> block was never closed (raise max_tokens?)"
    found = [o for o in _json_objects(answer) if isinstance(o, dict) and "scores" in o]
    if not found:
        return None, 'no JSON object with "scores"'
    try:
        reply = GroupReply.model_validate(found[-1])
    except ValidationError as exc:
        return None, f"scores are not numbers by id: {exc.errors()[0]['msg']}"
    want = {str(i) for i in range(1, count + 1)}
    if set(reply.scores) != want:
        return None, f"scores must have ids 1..{count} exactly, got {', '.join(sorted(reply.scores)) or 'none'}"
    bad = [k for k, v in reply.scores.items() if not (math.isfinite(v) and lo <= v <= hi)]
    if bad:
        return None, f"score of candidate {bad[0]} ({reply.scores[bad[0]]:g}) is outside [{lo:g}, {hi:g}]"
    return {int(k): v for k, v in reply.scores.items()}, ""


def prompt_groups(prompts: Sequence[Any]) -> list[list[int]]:
    """Positions grouped by prompt: runs of consecutive equal prompts."""
    groups: list[list[int]] = []
    last = None
    for i, prompt in enumerate(prompts):
        key = json.dumps(prompt, sort_keys=True, default=str)
        if groups and key == last:
            groups[-1].append(i)
        else:
            groups.append([i])
        last = key
    return groups


@dataclass
class _GroupOutcome:
    scores: Optional[list[float]] = None       # by member, in group order
    error: Optional[str] = None                # a transport failure
    exchanges: Optional[list[dict[str, Any]]] = None


class GroupJudge(LLMJudge):
    """An :class:`LLMJudge` that scores each prompt group in one call (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.metrics = JudgeMetrics(self.options.label, group=True)
        self.group_rubric: Optional[Rubric] = None

    @property
    def bounds(self) -> tuple[float, float]:
        return score_bounds(self.options.score_types)

    def group_request(self, prompt: Any, texts: Sequence[str], columns: dict[str, Any], first: int,
                      attempt: int) -> tuple[list[dict[str, str]], list[int]]:
        """The judge messages for one group and the candidate order they use."""
        assert self.group_rubric is not None, "build with build_group_judge"
        order = candidate_order(texts, attempt)
        lo, hi = self.bounds
        last_user, convo = prompt_texts(prompt)
        values = {"input_text": last_user, "conversation": convo, "candidates": candidates_block(texts, order),
                  "count": str(len(texts)), "score_min": f"{lo:g}", "score_max": f"{hi:g}"}
        for name in self.group_rubric.placeholders - set(values):
            column = columns.get(name)
            values[name] = column_text(column[first]) if isinstance(column, (list, tuple)) and len(column) > first \
                else ""
        return self.group_rubric.render(values), order

    def _reward(self, value: float) -> float:
        lo, hi = self.bounds
        return (value - lo) / (hi - lo) if self.options.normalize and hi > lo else value

    async def judge_group(self, prompt: Any, texts: list[str], columns: dict[str, Any], first: int) -> _GroupOutcome:
        """Ask (with format retries in a fresh order); scores None when no reply parsed (fall back)."""
        opts, lo_hi = self.options, self.bounds
        key0 = None
        exchanges: list[dict[str, Any]] = []
        for attempt in range(opts.format_retries + 1):
            messages, order = self.group_request(prompt, texts, columns, first, attempt)
            if attempt == 0 and self.cache is not None:
                key0, order0 = cache_key(self.transport.model, messages, opts.params or {}), order
                cached = self.cache.get(key0)
                parsed, _ = parse_group_reply(cached, len(texts), *lo_hi) if cached else (None, "")
                if parsed is not None:
                    self.metrics.add(cache_hits=len(texts))
                    return _GroupOutcome([self._reward(parsed[order.index(i) + 1]) for i in range(len(texts))])
            try:
                answer = await self.transport.complete(messages, opts.params or {})
            except JudgeCallFailed as exc:
                self.metrics.add(calls=exc.attempts, retries=exc.attempts - 1, failures=len(texts))
                return _GroupOutcome(error=f"judge call failed: {exc}", exchanges=exchanges)
            self.metrics.add(calls=answer.attempts, retries=answer.attempts - 1,
                             prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
            self.metrics.latency(answer.latency_s)
            parsed, error = parse_group_reply(answer.text, len(texts), *lo_hi)
            exchanges.append({"reply": answer.text, "parse_error": error or None})
            if parsed is not None:
                raw = [parsed[order.index(i) + 1] for i in range(len(texts))]
                if key0 is not None:      # stored in the first attempt's numbering, which a later hit reads
                    canonical = {str(order0.index(i) + 1): raw[i] for i in range(len(texts))}
                    self.cache.put(key0, json.dumps({"scores": canonical}), self.transport.model)
                return _GroupOutcome([self._reward(v) for v in raw], exchanges=exchanges)
            self.metrics.add(parse_failures=1)
            log.debug("group judge %s: unparseable answer (%s): %.500r", opts.label, error, answer.text)
        return _GroupOutcome(exchanges=exchanges)

    async def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[Optional[float]]:
        """TRL's batch contract, one call per prompt group (module docstring)."""
        from pipelines.rewards.judge.core import JudgeInputError

        n = len(completions)
        if len(prompts) != n:
            raise JudgeInputError(f"got {len(prompts)} prompts for {n} completions")
        groups = prompt_groups(prompts)
        big = [g for g in groups if len(g) > 1]
        rewards: list[Optional[float]] = [None] * n
        outcomes = await self._run_groups(big, prompts, completions, columns)
        pointwise = [i for g in groups if len(g) == 1 for i in g]
        fallback = None if self.options.on_error == "skip" else float(self.options.on_error)
        for group, outcome in zip(big, outcomes):
            if outcome.error is not None:
                self.metrics.add(fallbacks=len(group))
                for i in group:
                    rewards[i] = fallback
            elif outcome.scores is None:
                self.metrics.add(group_fallbacks=1)
                pointwise += group
            else:
                for i, value in zip(group, outcome.scores):
                    rewards[i] = value
            self._notify(group, rewards, columns, outcome)
        if pointwise:
            pointwise.sort()
            sub = {k: ([v[i] for i in pointwise] if isinstance(v, (list, tuple)) and len(v) == n else v)
                   for k, v in columns.items()}
            scored = await LLMJudge.score(self, [prompts[i] for i in pointwise],
                                          [completions[i] for i in pointwise], **sub)
            for i, value in zip(pointwise, scored):
                rewards[i] = value
        return rewards

    def _notify(self, group: list[int], rewards: list[Optional[float]], columns: dict[str, Any],
                outcome: _GroupOutcome) -> None:
        if self.observer is None or (outcome.error is None and outcome.scores is None):
            return
        row_ids = columns.get("row_id")
        for i in group:
            self.observer({"judge": self.options.label, "index": i, "reward": rewards[i],
                           "row_id": row_ids[i] if isinstance(row_ids, (list, tuple)) and i < len(row_ids) else None,
                           "note": f"group of {len(group)}", "error": outcome.error,
                           "exchanges": outcome.exchanges or []})

    async def _run_groups(self, groups: list[list[int]], prompts: Sequence[Any], completions: Sequence[Any],
                          columns: dict[str, Any]) -> list[_GroupOutcome]:
        """Judge every group concurrently; the breaker counts failed groups against the groups sent."""
        opts, state = self.options, {"bad": 0}

        async def guarded(group: list[int]) -> _GroupOutcome:
            texts = [self.judged_text(completions[i]) for i in group]
            self.metrics.add(samples=len(group), groups=1)
            outcome = await self.judge_group(prompts[group[0]], texts, columns, group[0])
            if outcome.error is not None:
                state["bad"] += 1
                if opts.on_error == "fail":
                    raise JudgeFailed(f"LLM judge {opts.label!r} at {self.transport.base_url}: {outcome.error} "
                                      "(on_error: fail stops the run at the first judge failure)")
                if opts.max_failure_rate < 1 and state["bad"] > opts.max_failure_rate * len(groups):
                    raise CircuitBreakerOpen(self._breaker_message(state["bad"], len(groups), outcome.error))
            return outcome

        return await gather_or_cancel([guarded(g) for g in groups])
