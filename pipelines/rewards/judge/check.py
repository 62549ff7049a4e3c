"""``run_pipeline.py --validate --check-judges``: one tiny request to each LLM-judge endpoint of a config.

For every distinct judge (endpoint, model, rubric, score types) the rubric is filled with a made-up sample and
sent once, with at most one retry and a timeout of at most 60 s. A judge that answers in the rubric's format
prints a line; one that is unreachable, rejects the request or answers in a form that does not parse becomes a
:class:`Problem` (exit code 2).
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional, Sequence

from pipelines.common.problems import Problem

PROBE_VALUES = {"input_text": "What is 2 + 2?", "conversation": "User: What is 2 + 2?",
                "output_text": "2 + 2 = 4.", "answer": "4"}
PROBE_TIMEOUT_S = 60.0


def _judge_entries(datasets: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key path, kwargs) of every llm_judge and generic_llm_reward entry, first occurrence of each distinct
    judge only. A generic_llm_reward entry's kwargs are mapped onto llm_judge's (its transport and rubric are
    the same; the probe only asks whether the answer carries every score tag)."""
    from pipelines.rewards.catalog import entry_kwargs, get_reward_factory
    from pipelines.rewards.judge.generic import generic_llm_reward, judge_settings
    from pipelines.rewards.judge.reward import llm_judge

    out, seen = [], set()
    for i, ds in enumerate(datasets):
        for j, entry in enumerate(ds.reward_funcs):
            try:
                factory = get_reward_factory(entry.name)
            except KeyError:
                continue          # reported by the config checks
            if factory is generic_llm_reward:
                kwargs = _generic_as_llm_judge(entry_kwargs(entry), judge_settings)
            elif factory is llm_judge:
                kwargs = entry_kwargs(entry)
            else:
                continue
            ident = json.dumps([kwargs.get(k) for k in ("eval_llm_base_url", "eval_llm_name", "system_prompt_path",
                                                        "score_types", "mode", "group_prompt_path")],
                               sort_keys=True, default=str)
            if ident not in seen:
                seen.add(ident)
                out.append((f"datasets[{i}].reward_funcs[{j}]", kwargs))
    return out


def _generic_as_llm_judge(kwargs: dict[str, Any], judge_settings: Any) -> dict[str, Any]:
    import inspect

    from pipelines.rewards.judge.generic import generic_llm_reward
    from pipelines.rewards.judge.reward import llm_judge

    bound = inspect.signature(generic_llm_reward).bind(**kwargs)
    bound.apply_defaults()
    allowed = inspect.signature(llm_judge).parameters
    return {k: v for k, v in judge_settings(dict(bound.arguments)).items() if k in allowed}


async def probe(settings: dict[str, Any]) -> tuple[Optional[float], Optional[str], float]:
    """Send the probe sample through a judge built from ``settings``: (reward, error, seconds)."""
    from pipelines.rewards.judge.reward import build_judge

    settings = dict(settings, cache=None, format_retries=0, max_failure_rate=1.0, on_error="skip",
                    max_retries=min(1, settings["max_retries"]), timeout_s=min(PROBE_TIMEOUT_S, settings["timeout_s"]),
                    backoff_max_s=min(5.0, settings["backoff_max_s"]))
    judge = build_judge(settings)
    values = dict(PROBE_VALUES)
    values.update({name: f"(example {name})" for name in judge.rubric.column_placeholders})
    started = time.monotonic()
    try:
        outcome = await judge.judge_one(judge.messages_for(values), None)
    finally:
        await judge.aclose()
        judge.close()
    error = outcome.error
    if error is None and settings.get("mode") == "group":
        error = await probe_group(settings)
    return outcome.reward, error, time.monotonic() - started


async def probe_group(settings: dict[str, Any]) -> Optional[str]:
    """A group judge's group rubric (``mode: group``): two probe candidates in one request; the error, or None
    when the reply parsed."""
    from pipelines.rewards.judge.reward import build_group_judge

    judge = build_group_judge(settings)
    columns = {name: [f"(example {name})"] * 2 for name in judge.group_rubric.placeholders}
    columns["answer"] = [PROBE_VALUES["answer"]] * 2
    prompt = [{"role": "user", "content": PROBE_VALUES["input_text"]}]
    try:
        outcome = await judge.judge_group(prompt, [PROBE_VALUES["output_text"], "5"], columns, 0)
    finally:
        await judge.aclose()
        judge.close()
    if outcome.error is not None:
        return f"group request: {outcome.error}"
    if outcome.scores is None:
        last = (outcome.exchanges or [{}])[-1].get("parse_error") or "unparseable"
        return f"group reply could not be parsed: {last}"
    return None


async def _probe_all(entries: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    from pipelines.rewards.judge.reward import resolve_settings

    return await asyncio.gather(*(probe(resolve_settings(kwargs)) for _, kwargs in entries), return_exceptions=True)


def check_judges(datasets: Sequence[Any], config_file: str) -> list[Problem]:
    """Probe every judge of the validated ``datasets`` entries; print a line per reachable judge, return the
    problems."""
    from pipelines.rewards.judge.reward import default_label, resolve_settings

    entries = _judge_entries(datasets)
    if not entries:
        print("    judges: none configured")
        return []
    problems = []
    results = asyncio.run(_probe_all(entries))
    for (key, kwargs), result in zip(entries, results):
        settings = resolve_settings(kwargs)
        where = f"judge {default_label(settings)!r} ({settings['eval_llm_name']} at {settings['eval_llm_base_url']})"
        if isinstance(result, BaseException):
            problems.append(Problem(config_file, key, f"{where}: check failed: {type(result).__name__}: {result}"))
            continue
        reward, error, seconds = result
        if error is not None:
            hint = _hint(error)
            problems.append(Problem(config_file, key, f"{where}: {error}; {hint}"))
        else:
            print(f"    {where}: reachable, answer parsed (reward {reward:g}) in {seconds:.1f}s")
    return problems


def judge_entries(datasets: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key path, llm_judge kwargs) of every distinct judge of ``datasets`` (the probe's list; the spend
    projection prices the same judges)."""
    return _judge_entries(datasets)


def _hint(error: str) -> str:
    """What to change for a failed probe: the rubric's range, its tags, or the endpoint."""
    if "is outside [" in error:
        return ("the judge answered with a score outside the score type's [min, max]: make the rubric state the "
                "range it scores in (e.g. 'a number from 1 to 10'), or set min/max in score_types to the range the "
                "rubric asks for; -v logs its answer")
    if "group reply could not be parsed" in error:
        return 'the group rubric must make the judge end with {"scores": {"1": N, ...}}'
    if "could not be parsed" in error:
        return "the rubric must make the judge end with the score tags; -v logs its answer"
    return "check the URL, that the server is up, the model name and the API key"
