"""Projected judge spend: calls x tokens per call x the user's prices, before any training.

Calls: every completion a judge sees is one call (``mode: group`` judges one prompt group per call), so a node
gives the number of completions it will generate per dataset. Tokens per call are *measured* when
``--check-judges`` runs (one request per judge, sized like a real one: a drawn row's prompt and answer with a
completion as long as ``max_completion_length``; the provider's ``usage`` gives its prompt and completion
tokens), else *estimated* by :mod:`pipelines.rewards.judge.projection` (the one home of judge call and token
estimates, shared with the calibration gate). Both assume every completion uses its full length budget and nothing comes from the judge cache,
so a model that stops early or a warm cache costs less.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

FILLER = "The answer follows from the steps above, checked once more against the question. "


@dataclass
class JudgeSpend:
    """The projection for one judge: ``calls`` in the run, tokens per call, and USD when priced."""

    key: str
    label: str
    model: str
    calls: int
    prompt_tokens: float
    completion_tokens: float
    measured: bool
    usd: Optional[float] = None

    def line(self) -> str:
        how = "measured at --check-judges" if self.measured else "estimated; --check-judges measures it"
        cost = f" = {self.usd:.2f} USD" if self.usd is not None else " (no price in budget.judge_prices)"
        return (f"judge {self.label!r} ({self.model}): {self.calls} calls x ~{self.prompt_tokens:.0f} in + "
                f"~{self.completion_tokens:.0f} out tokens{cost} ({how})")


def judge_models(datasets: Sequence[Any]) -> list[str]:
    """The eval_llm_name of every judge of ``datasets`` (for checking ``budget.judge_prices``)."""
    from pipelines.rewards.judge.check import judge_entries
    from pipelines.rewards.judge.reward import resolve_settings

    return sorted({str(resolve_settings(kwargs)["eval_llm_name"]) for _, kwargs in judge_entries(datasets)})


def _dataset_of(key: str) -> int:
    return int(key.split("[", 1)[1].split("]", 1)[0])


def sized_values(judge: Any, row: Optional[Mapping[str, Any]], completion_tokens: int) -> dict[str, str]:
    """Placeholder values shaped like a real call: the row's prompt and columns, a completion of the budget."""
    from pipelines.rewards.judge.check import PROBE_VALUES
    from pipelines.rewards.judge.core import prompt_texts
    from pipelines.rewards.judge.projection import CHARS_PER_TOKEN
    from pipelines.rewards.judge.rubric import column_text

    values = dict(PROBE_VALUES)
    if row is not None:
        last, convo = prompt_texts(row.get("prompt"))
        values.update(input_text=last, conversation=convo)
        if row.get("answer") is not None:
            values["answer"] = column_text(row["answer"])
    chars = int(completion_tokens * CHARS_PER_TOKEN)
    values["output_text"] = (FILLER * (chars // len(FILLER) + 1))[:chars]
    for name in judge.rubric.column_placeholders:
        values[name] = column_text(row[name]) if row is not None and row.get(name) is not None else f"({name})"
    return values


def _judge(settings: dict[str, Any], **overrides: Any) -> Any:
    from pipelines.rewards.judge.reward import build_group_judge, build_judge

    settings = dict(settings, cache=None, **overrides)
    # lenient: a rubric the checks refuse (reported by them) is still priced
    if settings.get("mode") == "group":
        return build_group_judge(settings, lenient=True)
    return build_judge(settings, lenient=True)


def estimated_call(settings: dict[str, Any], row: Optional[Mapping[str, Any]], completion_tokens: int,
                   group_size: int) -> tuple[float, float]:
    """(prompt, reply) tokens of one call, estimated from characters (:mod:`.projection`): a pointwise request
    is rendered from ``row`` with a full-length completion; a group request is the group rubric plus
    ``group_size`` full-length candidates."""
    from pipelines.rewards.judge import projection

    judge = _judge(settings)
    try:
        if getattr(judge, "group_rubric", None) is not None:
            one = projection.training_projection(judge, group_size, group_size, policy_tokens=completion_tokens)
            return float(one.prompt_tokens), float(one.completion_tokens)
        messages = judge.messages_for(sized_values(judge, row, completion_tokens))
        return float(projection.estimate_tokens(messages)), float(projection.reply_tokens(judge))
    finally:
        judge.close()


async def measure_call(settings: dict[str, Any], row: Optional[Mapping[str, Any]],
                       completion_tokens: int) -> tuple[float, float]:
    """(prompt, reply) tokens of one real pointwise call sized like a training call, from the response's
    ``usage``.

    Raises:
        JudgeCallFailed: the request failed after the judge's retries.
    """
    judge = _judge(dict(settings, mode="pointwise"), max_retries=min(1, settings["max_retries"]))
    try:
        answer = await judge.transport.complete(judge.messages_for(sized_values(judge, row, completion_tokens)),
                                                judge.options.params or {})
    finally:
        await judge.aclose()
        judge.close()
    return float(answer.prompt_tokens), float(answer.completion_tokens)


def project_spend(datasets: Sequence[Any], completions: Sequence[int], completion_tokens: int,
                  prices: Optional[Mapping[str, Any]] = None, rows: Optional[Mapping[int, Mapping[str, Any]]] = None,
                  measure: bool = False, group_size: int = 1) -> list[JudgeSpend]:
    """One :class:`JudgeSpend` per distinct judge of ``datasets``.

    ``completions[i]``: completions dataset ``i`` will generate in the run; ``completion_tokens``: their length
    budget; ``rows[i]``: a drawn row of dataset ``i`` (to size the call); ``measure``: send one sized request per
    judge; ``group_size``: completions per prompt (a ``mode: group`` judge makes one call per group). A measurement that fails falls back to the estimate.
    """
    from pipelines.rewards.judge.check import judge_entries
    from pipelines.rewards.judge.projection import training_calls
    from pipelines.rewards.judge.reward import default_label, resolve_settings

    out = []
    for key, kwargs in judge_entries(datasets):
        settings = resolve_settings(kwargs)
        index = _dataset_of(key)
        row = (rows or {}).get(index)
        group = settings.get("mode") == "group"
        tokens, measured = None, False
        if measure and not group:      # a group request is estimated: its size is the group rubric's
            try:
                tokens, measured = asyncio.run(measure_call(settings, row, completion_tokens)), True
            except Exception:  # noqa: BLE001 - the probe reports an unreachable judge; here fall back to the estimate
                tokens = None
        if tokens is None:
            try:
                tokens = estimated_call(settings, row, completion_tokens, group_size)
            except (ValueError, KeyError, OSError):  # a judge config --validate reports as a problem: not priced
                continue
        calls = training_calls(completions[index] if index < len(completions) else 0, group_size,
                               "group" if group else "pointwise")
        model = str(settings["eval_llm_name"])
        price = (prices or {}).get(model)
        usd = price.usd(calls * tokens[0], calls * tokens[1]) if price is not None else None
        out.append(JudgeSpend(key, default_label(settings), model, calls, tokens[0], tokens[1], measured, usd))
    return out


def spend_lines(spends: Sequence[JudgeSpend]) -> list[str]:
    """The --validate lines: one per judge, then the total when every judge is priced."""
    if not spends:
        return []
    lines = [f"spend: {s.line()}" for s in spends]
    if all(s.usd is not None for s in spends):
        lines.append(f"spend: judges in all ~{sum(s.usd or 0.0 for s in spends):.2f} USD "
                     f"({sum(s.calls for s in spends)} calls)")
    return lines
