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
    from pipelines.rewards.catalog import reward_entry_problems

    problems = []
    for i, ds in enumerate(datasets):
        if isinstance(ds, dict):
            continue
        for j, entry in enumerate(ds.reward_funcs):
            where = f"datasets[{i}].reward_funcs[{j}]"
            for key, msg in reward_entry_problems(entry.name, entry.kwargs):
                problems.append(Problem(file, f"{where}.{key}" if key else where, msg))
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


def _post_processors_rule(cfg: Any, file: str) -> list[Problem]:
    return check_post_processors(cfg.reward, file)


def check_judges(cfg: Any, ctx: Any) -> list[Problem]:
    """The --check-judges hook of a node with `datasets`: one request to each LLM judge they use."""
    from pipelines.rewards.judge.check import check_judges as probe

    return probe(cfg.datasets, ctx.config_file)


# The reward rules every node with `datasets` (and their `reward_funcs`) and a `reward` section runs.
RULES: tuple[Rule, ...] = (
    Rule(_reward_funcs_rule, ("datasets",), partial_lists=True),
    Rule(_post_processors_rule, ("reward",)),
    Rule(_export_path_rule, ("reward",)),
)
