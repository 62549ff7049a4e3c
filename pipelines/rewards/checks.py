"""Checks of the reward configuration that call nothing: every ``reward_funcs`` entry names a registered (or
importable) factory whose signature takes its kwargs, and the ``reward`` section's post-processors exist and
take theirs. Each takes the sections it reads; nodes wrap them as rules."""
from __future__ import annotations

from typing import Any, Sequence

from pipelines.common.node import Rule
from pipelines.common.problems import Problem
from pipelines.rewards.config import NamedFunction, RewardSection


def check_reward_funcs(datasets: Sequence[Any], file: str) -> list[Problem]:
    """Every reward entry of every dataset; a dataset entry that did not validate (a raw dict) is skipped."""
    from pipelines.rewards.catalog import entry_kwargs, reward_entry_problems

    problems = []
    for i, ds in enumerate(datasets):
        if isinstance(ds, dict):
            continue
        for j, entry in enumerate(ds.reward_funcs):
            where = f"datasets[{i}].reward_funcs[{j}]"
            for key, msg in reward_entry_problems(entry.name, entry_kwargs(entry)):
                problems.append(Problem(file, f"{where}.{key}" if key else where, msg))
    return problems


def reward_lines(datasets: Sequence[Any]) -> list[str]:
    """For the --validate summary: what each dataset's reward entries resolved to (the registered object, where
    it comes from, its form, and the row columns it reads), so a name that meant something else shows."""
    from pipelines.rewards.catalog import entry_kwargs, required_columns, resolve_reward

    lines = []
    for i, ds in enumerate(datasets):
        parts = []
        for entry in ds.reward_funcs:
            try:
                resolved = resolve_reward(entry.name)
            except (KeyError, TypeError):
                continue   # reported as a problem
            needs = required_columns(entry.name, entry_kwargs(entry))
            parts.append(f"{entry.name} -> {resolved.record.qualified_name} ({resolved.record.origin}, "
                         f"{'a factory' if resolved.kind == 'factory' else 'a reward function'}"
                         + (f"; reads {', '.join(needs)}" if needs else "") + ")")
        lines.append(f"rewards of dataset[{i}]: " + ("; ".join(parts) or "none resolved"))
    return lines


def check_labels(datasets: Sequence[Any], file: str) -> list[Problem]:
    """Labels name metrics, so two datasets may not share a ``label``, nor two rewards of one dataset."""
    problems = []
    valid = [(i, ds) for i, ds in enumerate(datasets) if not isinstance(ds, dict)]
    first: dict[str, int] = {}
    for i, ds in valid:
        if ds.label is not None and ds.label in first:
            problems.append(Problem(file, f"datasets[{i}].label", f"{ds.label!r} is also the label of "
                                    f"datasets[{first[ds.label]}]; labels name the metrics, give each its own"))
        elif ds.label is not None:
            first[ds.label] = i
        seen: dict[str, int] = {}
        for j, entry in enumerate(ds.reward_funcs):
            if entry.label is not None and entry.label in seen:
                problems.append(Problem(file, f"datasets[{i}].reward_funcs[{j}].label", f"{entry.label!r} is also "
                                        f"the label of reward_funcs[{seen[entry.label]}] of this dataset; labels name "
                                        "the metrics, give each its own"))
            elif entry.label is not None:
                seen[entry.label] = j
    return problems


JUDGE_FACTORIES = ("llm_judge", "generic_llm_reward")


def check_rubric_columns(datasets: Sequence[Any], columns: dict[int, set[str]], file: str) -> list[Problem]:
    """Every data-column placeholder of a judge's rubric (``{topic}``, ``{answer}``) names a column of the rows
    sampled from that judge's dataset (``columns``: dataset index -> column names of a prepared row). A miss
    would fail every judge call of the run with JudgeInputError."""
    from pipelines.common.problems import did_you_mean
    from pipelines.rewards.judge.rubric import RubricError, load_rubric

    problems = []
    for i, ds in enumerate(datasets):
        if i not in columns or isinstance(ds, dict):
            continue
        for j, entry in enumerate(ds.reward_funcs):
            path = entry.kwargs.get("system_prompt_path")
            if entry.name not in JUDGE_FACTORIES or not isinstance(path, str):
                continue
            try:
                rubric = load_rubric(path)
            except RubricError:
                continue      # reported by the reward checks
            needed = rubric.column_placeholders | ({"answer"} & rubric.placeholders)
            for name in sorted(needed - columns[i]):
                have = sorted(columns[i] - {"prompt", "dataset_index", "row_id"})
                problems.append(Problem(file, f"datasets[{i}].reward_funcs[{j}].system_prompt_path",
                                        f"rubric {path} uses {{{name}}}, but the rows of {ds.path} have no column "
                                        f"{name!r}{did_you_mean(name, have)}; columns: {', '.join(have) or '(none)'}"
                                        "; every judge call would fail"))
    return problems


def check_post_processors(reward: RewardSection, file: str) -> list[Problem]:
    from pipelines.rewards.catalog import check_function_kwargs, combinations, scalings

    problems = []
    for key, registry in (("combination_function", combinations()), ("scaling_function", scalings())):
        spec = getattr(reward, key)
        named = spec if isinstance(spec, NamedFunction) else NamedFunction(name=spec)
        for msg in check_function_kwargs(registry, named.name, named.kwargs):
            problems.append(Problem(file, f"reward.{key}", msg))
    return problems


def check_export_path(reward: RewardSection, file: str) -> list[Problem]:
    """``high_scoring_save_path`` names a file of its own inside the run dir (see common.rundir)."""
    from pipelines.common.rundir import run_file_problem

    path = reward.high_scoring_save_path
    problem = run_file_problem(path) if path else None
    return [Problem(file, "reward.high_scoring_save_path", problem)] if problem else []


def _export_path_rule(cfg: Any, file: str) -> list[Problem]:
    return check_export_path(cfg.reward, file)


def _reward_funcs_rule(cfg: Any, file: str) -> list[Problem]:
    return check_reward_funcs(cfg.datasets, file)


def _labels_rule(cfg: Any, file: str) -> list[Problem]:
    return check_labels(cfg.datasets, file)


def _post_processors_rule(cfg: Any, file: str) -> list[Problem]:
    return check_post_processors(cfg.reward, file)


def _budget_rule(cfg: Any, file: str) -> list[Problem]:
    from pipelines.common.budget import check_budget
    from pipelines.rewards.judge.spend import judge_models

    return check_budget(getattr(cfg, "budget", None), judge_models(cfg.datasets), file)


def check_judges(cfg: Any, ctx: Any) -> list[Problem]:
    """The --check-judges hook of a node with `datasets`: one request to each LLM judge they use."""
    from pipelines.rewards.judge.check import check_judges as probe

    return probe(cfg.datasets, ctx.config_file)


# The reward rules every node with `datasets` (and their `reward_funcs`) and a `reward` section runs.
RULES: tuple[Rule, ...] = (
    Rule(_reward_funcs_rule, ("datasets",), partial_lists=True),
    Rule(_labels_rule, ("datasets",), partial_lists=True),
    Rule(_post_processors_rule, ("reward",)),
    Rule(_export_path_rule, ("reward",)),
    Rule(_budget_rule, ("budget", "datasets")),
)
