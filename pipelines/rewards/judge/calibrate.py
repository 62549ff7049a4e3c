"""``run_pipeline.py --validate --calibrate-judges``: score reference answers, degraded copies and golden
examples with every LLM judge of a config, before any model loads, and hold each rubric to the floors of its
``calibration:`` settings (judge/calibration.py has the measures; judge/degrade.py the degradations).

The node hands over the rows it drew from each dataset (this layer reads no data). For each distinct judge the
plan (samples, calls, estimated tokens) is printed first, then the samples are sent through the judge's own
transport (retries, breaker; its cache for the first scoring, never for the re-test). A judge below a floor is
a :class:`Problem` naming its rubric file and the failing measure (exit 2).
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from pipelines.common.problems import Problem
from pipelines.rewards.judge.calibration import CalibrationSettings, Sample, failures, load_examples, measure, \
    report_lines
from pipelines.rewards.judge.degrade import variants
from pipelines.rewards.judge.projection import Projection, projected_calls

log = logging.getLogger(__name__)
JUDGE_FACTORIES = ("llm_judge", "generic_llm_reward")
NON_COLUMNS = ("prompt", "completion", "completion_ids")


@dataclass
class JudgeEntry:
    """One judge reward entry of a config."""

    key: str                   # datasets[i].reward_funcs[j]
    dataset: int
    name: str                  # llm_judge | generic_llm_reward
    kwargs: dict[str, Any]
    label: str
    settings: CalibrationSettings


@dataclass
class Plan:
    """What one judge's calibration sends."""

    entry: JudgeEntry
    judge: Any
    samples: list[Sample]
    prompts: list[Any]
    columns: dict[str, list[Any]]
    retest: list[int]
    other: Optional[Any] = None            # the compare_with judge
    requests: list[list[dict[str, str]]] = field(default_factory=list)   # rendered, for the projection


def judge_entries(datasets: Sequence[Any]) -> list[JudgeEntry]:
    """Every judge reward entry whose calibration settings validate (bad ones are reported by --validate)."""
    from pipelines.rewards.catalog import entry_kwargs
    from pipelines.rewards.judge.reward import default_label

    out = []
    for i, ds in enumerate(datasets):
        if isinstance(ds, dict):
            continue
        for j, entry in enumerate(ds.reward_funcs):
            if entry.name not in JUDGE_FACTORIES:
                continue
            kwargs = entry_kwargs(entry)
            try:
                settings = CalibrationSettings.model_validate(kwargs.get("calibration") or {})
            except ValueError:
                continue
            label = default_label({"label": kwargs.get("label"),
                                   "system_prompt_path": kwargs.get("system_prompt_path", "judge")})
            out.append(JudgeEntry(f"datasets[{i}].reward_funcs[{j}]", i, entry.name, kwargs, label, settings))
    return out


def rows_needed(datasets: Sequence[Any]) -> dict[int, int]:
    """Dataset index -> rows the calibration of its judges draws (the node samples them)."""
    need: dict[int, int] = {}
    for e in judge_entries(datasets):
        need[e.dataset] = max(need.get(e.dataset, 0), e.settings.rows)
    return need


def build_calibration_judge(entry: JudgeEntry) -> Any:
    """The entry's judge as training builds it (a group judge for ``mode: group``), failures scored None; the
    rubric's content is not checked (a rubric that hides the answer is what calibration measures). ValueError
    if unusable."""
    import inspect

    from pipelines.rewards.judge.generic import build_generic_judge, generic_llm_reward
    from pipelines.rewards.judge.reward import build_group_judge, build_judge, resolve_settings

    try:
        if entry.name == "generic_llm_reward":
            bound = inspect.signature(generic_llm_reward).bind(**entry.kwargs)
            bound.apply_defaults()
            return build_generic_judge(dict(bound.arguments, on_error="skip"), lenient=True)
        settings = dict(resolve_settings(entry.kwargs), on_error="skip")
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if settings["mode"] == "group":
        return build_group_judge(settings, lenient=True)
    return build_judge(settings, lenient=True)


def rendered_requests(judge: Any, samples: Sequence[Sample], prompts: Sequence[Any], columns: dict[str, list[Any]]
                      ) -> list[list[dict[str, str]]]:
    """The requests scoring ``samples`` sends once (for the projection): one per sample the judge asks about,
    or, for a group judge, one per run of samples of one prompt (a lone sample is asked pointwise)."""
    from pipelines.rewards.judge.group import prompt_groups

    if getattr(judge, "group_rubric", None) is None:
        return [judge.messages_for(judge.sample_values(prompts[n], s.text, columns, n))
                for n, s in enumerate(samples) if judge.precheck(s.text) is None]
    out = []
    for group in prompt_groups(prompts):
        if len(group) == 1:
            n = group[0]
            out.append(judge.messages_for(judge.sample_values(prompts[n], samples[n].text, columns, n)))
        else:
            texts = [judge.judged_text(samples[n].text) for n in group]
            out.append(judge.group_request(prompts[group[0]], texts, columns, group[0], 0)[0])
    return out


def _prompt_text(prompt: Any) -> str:
    from pipelines.rewards.judge.core import prompt_texts

    return prompt_texts(prompt)[0]


def build_samples(entry: JudgeEntry, judge: Any, rows: Sequence[dict[str, Any]], seed: int
                  ) -> tuple[list[Sample], list[Any], list[dict[str, Any]]]:
    """Samples with their prompts and row columns: each row's reference and degradations, then the golden
    examples (against the first row's prompt and answer unless they give their own)."""
    rows = [r for r in rows if isinstance(r.get("answer"), str) and r["answer"].strip()][:entry.settings.rows]
    if len(rows) < 2:
        raise ValueError(f"needs at least 2 rows with a reference answer from datasets[{entry.dataset}], got "
                         f"{len(rows)}")
    answers = [r["answer"] for r in rows]
    samples, prompts, columns = [], [], []
    for k, row in enumerate(rows):
        cols = {c: v for c, v in row.items() if c not in NON_COLUMNS}
        made = {"reference": row["answer"], **variants(row["answer"], answers[:k] + answers[k + 1:],
                                                        _prompt_text(row["prompt"]), seed + k,
                                                        judge.options.cot_start, judge.options.cot_end)}
        for kind, text in made.items():
            samples.append(Sample(kind, k, text))
            prompts.append(row["prompt"])
            columns.append(cols)
    examples = list(entry.settings.examples)
    if entry.settings.examples_file:
        examples += load_examples(entry.settings.examples_file)
    first = rows[0]
    for ex in examples:
        cols = {c: v for c, v in first.items() if c not in NON_COLUMNS}
        if ex.answer is not None:
            cols["answer"] = ex.answer
        samples.append(Sample(f"golden_{ex.expect}", -1, ex.output))
        prompts.append([{"role": "user", "content": ex.prompt}] if ex.prompt is not None else first["prompt"])
        columns.append(cols)
    return samples, prompts, columns


def _as_columns(per_sample: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    keys: dict[str, None] = {}
    for cols in per_sample:
        keys.update(dict.fromkeys(cols))
    return {k: [cols.get(k) for cols in per_sample] for k in keys}


def make_plan(entry: JudgeEntry, entries: Sequence[JudgeEntry], rows: Sequence[dict[str, Any]], seed: int) -> Plan:
    """Build the judge(s) and samples of one entry; ValueError says why it cannot be calibrated."""
    judge = build_calibration_judge(entry)
    samples, prompts, per_sample = build_samples(entry, judge, rows, seed)
    columns = _as_columns(per_sample)
    retest = [n for n, s in enumerate(samples) if 0 <= s.row < entry.settings.retest_rows]
    plan = Plan(entry, judge, samples, prompts, columns, retest)
    plan.requests = rendered_requests(judge, samples, prompts, columns)
    if entry.settings.compare_with:
        match = [e for e in entries if e.label == entry.settings.compare_with and e.key != entry.key]
        if not match:
            labels = sorted({e.label for e in entries if e.key != entry.key})
            raise ValueError(f"calibration.compare_with: no other judge is labelled "
                             f"{entry.settings.compare_with!r}; judges: {', '.join(labels) or '(none)'}")
        plan.other = build_calibration_judge(match[0])
    return plan


def plan_projection(plan: Plan) -> Projection:
    """Calls and tokens of a plan: every sample once, the re-test subset again, all again for compare_with."""
    total = projected_calls(plan.requests, plan.judge)
    if plan.retest:
        sub = plan.retest
        columns = {k: [v[n] for n in sub] for k, v in plan.columns.items()}
        total = total + projected_calls(rendered_requests(plan.judge, [plan.samples[n] for n in sub],
                                                          [plan.prompts[n] for n in sub], columns), plan.judge)
    if plan.other is not None:
        total = total + projected_calls(rendered_requests(plan.other, plan.samples, plan.prompts, plan.columns),
                                        plan.other)
    return total


async def _score(judge: Any, plan: Plan, indices: Sequence[int]) -> list[Optional[float]]:
    cols = {k: [v[n] for n in indices] for k, v in plan.columns.items()}
    return await judge.score([plan.prompts[n] for n in indices], [plan.samples[n].text for n in indices], **cols)


async def run_plan(plan: Plan) -> None:
    """Score every sample, re-score the re-test subset without the cache, and with compare_with's judge."""
    everything = list(range(len(plan.samples)))
    try:
        for n, score in zip(everything, await _score(plan.judge, plan, everything)):
            plan.samples[n].score = score
        if plan.retest:
            cache, plan.judge.cache = plan.judge.cache, None
            try:
                for n, score in zip(plan.retest, await _score(plan.judge, plan, plan.retest)):
                    plan.samples[n].retest = score
            finally:
                plan.judge.cache = cache
        if plan.other is not None:
            for n, score in zip(everything, await _score(plan.other, plan, everything)):
                plan.samples[n].other = score
    finally:
        for judge in (plan.judge, plan.other):
            if judge is not None:
                await judge.aclose()
                judge.close()


def _bounds(judge: Any) -> tuple[float, float]:
    from pipelines.rewards.judge.parse import score_bounds

    if judge.options.normalize:
        return 0.0, 1.0
    return score_bounds(judge.options.score_types)


async def _run_all(plans: Sequence[Plan]) -> list[Any]:
    return await asyncio.gather(*(run_plan(p) for p in plans), return_exceptions=True)


def _plans(entries: Sequence[JudgeEntry], rows_by_dataset: dict[int, list[dict[str, Any]]], seed: int,
           config_file: str) -> tuple[list[Plan], list[Problem]]:
    plans, problems, seen = [], [], set()
    for entry in entries:
        ident = json.dumps([entry.name, entry.kwargs], sort_keys=True, default=str)
        if ident in seen:
            continue
        seen.add(ident)
        try:
            plans.append(make_plan(entry, entries, rows_by_dataset.get(entry.dataset, []), seed))
        except ValueError as exc:
            problems.append(Problem(config_file, f"{entry.key}.calibration", f"judge {entry.label!r}: cannot be "
                                    f"calibrated: {exc}"))
    return plans, problems


def calibrate_with_rows(datasets: Sequence[Any], draw: Callable[[dict[int, int]], dict[int, list[dict[str, Any]]]],
                        config_file: str, seed: int = 0, prices: Optional[Mapping[str, Any]] = None) -> list[Problem]:
    """A node's ``--calibrate-judges`` hook: ``draw(rows needed per dataset index)`` gives the rows (the node
    reads its data), then :func:`calibrate_judges`.

    Raises:
        ConfigError: from ``draw``, when the rows cannot be drawn.
    """
    need = rows_needed(datasets)
    if not need:
        print("    calibration: no judges configured")
        return []
    return calibrate_judges(datasets, draw(need), config_file, seed, prices)


def calibrate_judges(datasets: Sequence[Any], rows_by_dataset: dict[int, list[dict[str, Any]]], config_file: str,
                     seed: int = 0, prices: Optional[Mapping[str, Any]] = None) -> list[Problem]:
    """Calibrate every judge of the validated ``datasets`` on the node's drawn rows; print the plan and each
    report, return the problems (a measure past its threshold, a judge that cannot be calibrated). ``prices``:
    ``budget.judge_prices`` (eval_llm_name -> JudgePrice), to print what the calls cost before sending them."""
    entries = judge_entries(datasets)
    if not entries:
        print("    calibration: no judges configured")
        return []
    plans, problems = _plans(entries, rows_by_dataset, seed, config_file)
    total, usd, priced = Projection(), 0.0, True
    for plan in plans:
        projection = plan_projection(plan)
        total = total + projection
        price = (prices or {}).get(str(plan.judge.transport.model))
        if price is None:
            priced = False
        else:
            usd += projection.cost_usd(price.input_usd_per_mtok, price.output_usd_per_mtok)
        print(f"    calibration of judge {plan.entry.label!r} (rubric {plan.judge.rubric.path}): "
              f"{len(plan.samples)} samples from {plan.entry.settings.rows} rows; {projection.calls} calls, "
              f"~{projection.prompt_tokens} prompt + ~{projection.completion_tokens} completion tokens (estimated)")
    if plans:
        print(f"    calibration sends {total.calls} judge calls, ~{total.prompt_tokens + total.completion_tokens} "
              + (f"tokens in all (estimated), ~{usd:.4f} USD at budget.judge_prices" if priced and prices else
                 "tokens in all (estimated; cost: tokens x your judge's prices, set budget.judge_prices to see it)"))
    results = asyncio.run(_run_all(plans))
    for plan, result in zip(plans, results):
        where = f"judge {plan.entry.label!r}, rubric {plan.judge.rubric.path}"
        if isinstance(result, BaseException):
            problems.append(Problem(config_file, plan.entry.key, f"{where}: calibration failed: "
                                    f"{type(result).__name__}: {result}"))
            continue
        report = measure(plan.samples, _bounds(plan.judge))
        compared = plan.other is not None
        print(f"    {where}:")
        for line in report_lines(report, plan.entry.settings, compared):
            print(f"      {line}")
        for failure in failures(report, plan.entry.settings, compared):
            problems.append(Problem(config_file, f"{plan.entry.key}.calibration",
                                    f"{where}: calibration failed: {failure}"))
    return problems
