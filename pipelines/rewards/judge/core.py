"""The LLM judge at work: build each completion's judge request, call, parse, re-ask, fall back, break.

One :class:`LLMJudge` exists per ``llm_judge`` entry of a config (the factory is called once per run). Its
``score`` coroutine follows TRL's batch contract and issues every judge call of the batch at once; the
transport's semaphore keeps at most ``max_concurrency`` in flight.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

from pipelines.rewards.errors import CircuitBreakerOpen
from pipelines.rewards.judge.cache import JudgeCache, cache_key
from pipelines.rewards.judge.metrics import JudgeMetrics
from pipelines.rewards.judge.parse import ParseResult, format_instructions, parse_judgement
from pipelines.rewards.judge.rubric import (BUILTIN_PLACEHOLDERS, Rubric, ScoreType, column_text,
                                                 strip_reasoning)
from pipelines.rewards.judge.transport import JudgeCallFailed, JudgeTransport

log = logging.getLogger(__name__)


class JudgeFailed(CircuitBreakerOpen):
    """A judge call failed with ``on_error: fail``: the run stops like an open circuit breaker."""


class JudgeInputError(ValueError):
    """The batch lacks what the rubric needs (a data column); a configuration mistake, not a judge failure."""


@dataclass
class JudgeOptions:
    """The behaviour knobs of one judge (validated kwargs of the factory)."""

    label: str
    score_types: list[ScoreType]
    cot_start: Optional[str] = "<think>"
    cot_end: Optional[str] = "</think>"
    judge_reasoning: bool = False
    params: Optional[dict[str, Any]] = None       # sampling params sent with every request
    format_retries: int = 1
    on_error: Union[str, float] = "skip"
    max_failure_rate: float = 0.5
    normalize: bool = False
    # Augmentoolkit's generic_llm_reward: an answer that cannot be read scores this (no re-ask); None: re-ask,
    # then on_error (llm_judge).
    format_score: Optional[float] = None


@dataclass
class _Outcome:
    reward: Optional[float]
    error: Optional[str] = None
    exchanges: list[dict[str, Any]] | None = None   # each judge reply and how it was read, for an observer


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):   # multimodal parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def completion_text(completion: Any) -> str:
    """A completion as text: TRL gives a string, or a list of assistant messages in conversational mode."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, list):
        return "".join(_content_text(m.get("content")) for m in completion if isinstance(m, dict))
    return str(completion)


def prompt_texts(prompt: Any) -> tuple[str, str]:
    """(last user message, whole conversation as ``Role: content`` blocks) of a prompt."""
    if isinstance(prompt, str):
        return prompt, prompt
    messages = [m for m in (prompt or []) if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    last_user = _content_text(users[-1].get("content")) if users else ""
    convo = "\n\n".join(f"{str(m.get('role', '')).capitalize()}: {_content_text(m.get('content'))}"
                        for m in messages)
    return last_user, convo


async def gather_or_cancel(coroutines: Sequence[Any]) -> list[Any]:
    """Run ``coroutines`` concurrently; the first to raise (a breaker, ``on_error: fail``) cancels the rest, whose
    requests are then awaited to their end before the error propagates."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class LLMJudge:
    """Scores batches of completions with one judge endpoint and rubric."""

    def __init__(self, rubric: Rubric, transport: JudgeTransport, options: JudgeOptions,
                 cache: Optional[JudgeCache] = None):
        self.rubric = rubric
        self.transport = transport
        self.options = options
        self.cache = cache
        self.metrics = JudgeMetrics(options.label, generic=options.format_score is not None)
        self._reask_text = ("Your answer could not be read ({error}). Answer again, ending with "
                            + format_instructions(options.score_types) + ".")
        # Called once per completion of a batch with what happened to it (reward, error, each reply and its
        # reading); the offline scorer shows it (score_completions --show-judge). None: nothing is kept.
        self.observer: Optional[Callable[[dict[str, Any]], None]] = None

    # -- request building ------------------------------------------------------------------------------------
    def judged_text(self, completion: Any) -> str:
        """``{output_text}``: the completion, its reasoning removed unless ``judge_reasoning``."""
        text = completion_text(completion)
        if not self.options.judge_reasoning:
            text = strip_reasoning(text, self.options.cot_start, self.options.cot_end)
        return text

    def input_text(self, prompt: Any) -> str:
        """``{input_text}``: the prompt's last user message."""
        return prompt_texts(prompt)[0]

    def precheck(self, completion: Any) -> Optional[float]:
        """A reward decided without asking the judge, or None (llm_judge asks about every completion)."""
        return None

    def parse(self, text: Optional[str]) -> ParseResult:
        """One judge answer read into a reward (the module docstring of judge/parse.py has the rules)."""
        return parse_judgement(text, self.options.score_types, self.options.normalize)

    def sample_values(self, prompt: Any, completion: Any, columns: dict[str, Any], i: int) -> dict[str, str]:
        """The placeholder values for completion ``i`` of a batch."""
        values = {"input_text": self.input_text(prompt), "conversation": prompt_texts(prompt)[1],
                  "output_text": self.judged_text(completion)}
        needed = self.rubric.column_placeholders | ({"answer"} & self.rubric.placeholders)
        for name in needed:
            column = columns.get(name)
            if not isinstance(column, (list, tuple)) or len(column) <= i:
                have = sorted(k for k, v in columns.items() if isinstance(v, (list, tuple)))
                raise JudgeInputError(
                    f"rubric {self.rubric.path} uses {{{name}}}, but the batch has no column {name!r}; built-in "
                    f"placeholders: {', '.join(BUILTIN_PLACEHOLDERS)}; data columns: {', '.join(have) or '(none)'}")
            values[name] = column_text(column[i])
        return values

    def messages_for(self, values: dict[str, str]) -> list[dict[str, str]]:
        return self.rubric.render(values)

    # -- one completion --------------------------------------------------------------------------------------
    def _cached(self, key: Optional[str]) -> Optional[float]:
        if self.cache is None or key is None:
            return None
        text = self.cache.get(key)
        if text is None:
            return None
        parsed = self.parse(text)
        return parsed.reward if parsed.ok else None

    async def judge_one(self, messages: list[dict[str, str]], key: Optional[str]) -> _Outcome:
        """Ask, re-ask on a parse failure, and report the reward or the reason there is none."""
        opts, conversation, last_error = self.options, messages, ""
        exchanges: list[dict[str, Any]] = []
        for _ in range(opts.format_retries + 1):
            try:
                answer = await self.transport.complete(conversation, opts.params or {})
            except JudgeCallFailed as exc:
                self.metrics.add(calls=exc.attempts, retries=exc.attempts - 1, failures=1)
                return _Outcome(None, f"judge call failed: {exc}", exchanges)
            self.metrics.add(calls=answer.attempts, retries=answer.attempts - 1,
                             prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
            self.metrics.latency(answer.latency_s)
            parsed = self.parse(answer.text)
            exchanges.append({"reply": answer.text, "parsed": parsed.reward if parsed.ok else None,
                              "parse_error": None if parsed.ok else (parsed.error or "unparseable")})
            if parsed.ok:
                if self.cache is not None and key is not None:
                    self.cache.put(key, answer.text or "", self.transport.model)
                return _Outcome(parsed.reward, exchanges=exchanges)
            self.metrics.add(parse_failures=1)
            last_error = parsed.error or "unparseable"
            log.debug("judge %s: unparseable answer (%s): %.500r", opts.label, last_error, answer.text)
            if opts.format_score is not None:
                self.metrics.add(format_scored=1)
                return _Outcome(opts.format_score, exchanges=exchanges)
            conversation = messages + [{"role": "assistant", "content": answer.text or ""},
                                       {"role": "user", "content": self._reask_text.format(error=last_error)}]
        self.metrics.add(unparsed=1)
        return _Outcome(None, f"judge answer could not be parsed: {last_error}", exchanges)

    # -- a batch ---------------------------------------------------------------------------------------------
    def _breaker_message(self, bad: int, sent: int, last_error: str) -> str:
        t = self.transport
        return (f"LLM judge {self.options.label!r} (model {t.model!r} at {t.base_url}): {bad} of {sent} judge calls "
                f"in this batch gave no score after {t.max_retries} retries and {self.options.format_retries} format "
                f"re-asks, more than max_failure_rate={self.options.max_failure_rate:g}. Last error: {last_error}. "
                "Check the endpoint (.venv/bin/python run_pipeline.py --validate --check-judges)")

    async def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[Optional[float]]:
        """TRL's batch contract: one reward (or None) per completion."""
        n = len(completions)
        if len(prompts) != n:
            raise JudgeInputError(f"got {len(prompts)} prompts for {n} completions")
        decided = [self.precheck(c) for c in completions]
        asked = [i for i in range(n) if decided[i] is None]
        requests: dict[int, list[dict[str, str]]] = {
            i: self.messages_for(self.sample_values(prompts[i], completions[i], columns, i)) for i in asked}
        keys = {i: cache_key(self.transport.model, requests[i], self.options.params or {})
                if self.cache is not None else None for i in asked}
        rewards: list[Optional[float]] = [decided[i] if decided[i] is not None else self._cached(keys[i])
                                          for i in range(n)]
        missing = [i for i in asked if rewards[i] is None]
        cached = set(asked) - set(missing)
        if n - len(asked):
            self.metrics.add(prechecked=n - len(asked))
        # With a cache, identical requests in one batch (GRPO often samples the same short completion twice)
        # are sent once and share the answer, as a later cache hit would.
        first: dict[Any, int] = {}
        for i in missing:
            first.setdefault(keys[i] if keys[i] is not None else i, i)
        todo = sorted(first.values())
        self.metrics.add(samples=len(asked), cache_hits=len(asked) - len(todo))
        outcomes = await self._run_all([requests[i] for i in todo], [keys[i] for i in todo])
        fallback = None if self.options.on_error == "skip" else float(self.options.on_error)
        by_index = dict(zip(todo, outcomes))
        for i in missing:
            outcome = by_index[first[keys[i] if keys[i] is not None else i]]
            rewards[i] = outcome.reward if outcome.error is None else fallback
        bad = [o for o in outcomes if o.error is not None]
        if bad:
            self.metrics.add(fallbacks=len(bad))
            log.warning("judge %s: %d of %d calls gave no score (scored %s); last error: %s", self.options.label,
                        len(bad), len(todo), "None" if fallback is None else f"{fallback:g}", bad[-1].error)
        if self.observer is not None:
            how = {i: "decided without asking the judge" for i in range(n) if decided[i] is not None}
            how.update({i: "cached answer" for i in cached})
            self._observe(rewards, columns, how, {i: by_index[first[keys[i] if keys[i] is not None else i]]
                                                  for i in missing})
        return rewards

    def _observe(self, rewards: list[Optional[float]], columns: dict[str, Any], how: dict[int, str],
                 outcomes: dict[int, _Outcome]) -> None:
        row_ids = columns.get("row_id")
        for i, reward in enumerate(rewards):
            outcome = outcomes.get(i)
            self.observer({"judge": self.options.label, "index": i, "reward": reward,
                           "row_id": row_ids[i] if isinstance(row_ids, (list, tuple)) and i < len(row_ids) else None,
                           "note": how.get(i), "error": outcome.error if outcome else None,
                           "exchanges": (outcome.exchanges or []) if outcome else []})

    async def _run_all(self, requests: list[list[dict[str, str]]], keys: list[Optional[str]]) -> list[_Outcome]:
        """Judge every request concurrently; trip the breaker as soon as the batch cannot stay under it."""
        sent, opts = len(requests), self.options
        state = {"bad": 0}

        async def guarded(messages: list[dict[str, str]], key: Optional[str]) -> _Outcome:
            outcome = await self.judge_one(messages, key)
            if outcome.error is not None:
                state["bad"] += 1
                if opts.on_error == "fail":
                    raise JudgeFailed(f"LLM judge {opts.label!r} at {self.transport.base_url}: {outcome.error} "
                                      "(on_error: fail stops the run at the first judge failure)")
                if opts.max_failure_rate < 1 and state["bad"] > opts.max_failure_rate * sent:
                    raise CircuitBreakerOpen(self._breaker_message(state["bad"], sent, outcome.error))
            return outcome

        return await gather_or_cancel([guarded(m, k) for m, k in zip(requests, keys)])

    # -- lifecycle -------------------------------------------------------------------------------------------
    def pop_metrics(self) -> dict[str, float]:
        return self.metrics.pop()

    async def aclose(self) -> None:
        await self.transport.aclose()

    def close(self) -> None:
        self.transport.close()
        if self.cache is not None:
            self.cache.close()
