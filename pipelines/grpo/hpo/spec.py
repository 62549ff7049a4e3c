"""Registration of the ``grpo_hpo`` node: a GRPO config plus ``hpo`` (and a required ``evaluation``)."""
from __future__ import annotations

from types import SimpleNamespace

from pydantic import ValidationError

from pipelines.common.problems import Problem
from pipelines.grpo import spec as grpo_spec
from pipelines.grpo.checks import generation_batch
from pipelines.grpo.hpo.checks import RULES, check_hpo, search_seed
from pipelines.grpo.hpo.config import GRPOHPOConfigFile
from pipelines.registry import NodeContext, NodeSpec


def _check(cfg: GRPOHPOConfigFile, ctx: NodeContext) -> list[Problem]:
    return grpo_spec._check(cfg, ctx) + check_hpo(cfg, ctx.config_file)


def _check_partial(raw: dict, ctx: NodeContext) -> list[Problem]:
    """The grpo node's partial checks, then the hpo rules whose sections validated on their own."""
    from pipelines.grpo import config as C
    from pipelines.grpo.hpo.config import HPOSection

    problems = grpo_spec._check_partial(raw, ctx)

    def section(model, value):
        try:
            return model.model_validate(value if value is not None else {})
        except ValidationError:
            return None

    ns = SimpleNamespace(hpo=section(HPOSection, raw.get("hpo")),
                         training_parameters=section(C.TrainingParameters, raw.get("training_parameters")),
                         launch=section(C.LaunchSection, raw.get("launch")),
                         model=section(C.ModelSection, raw.get("model")))
    if ns.hpo is None:
        return problems
    for rule in RULES:
        try:
            problems += rule(ns, ctx.config_file)
        except (AttributeError, TypeError):
            continue  # a section this rule needs did not validate (already reported)
    return problems


def _inspect(cfg: GRPOHPOConfigFile, ctx: NodeContext) -> list[str]:
    hpo = cfg.hpo
    ranges = ", ".join(f"{name} [{s.min:g}, {s.max:g}]{' log' if s.log else ''}{' int' if s.type == 'int' else ''}"
                       for name, s in sorted(hpo.search_space.items()))
    lines = grpo_spec._inspect(cfg, ctx)
    lines += [f"hpo: {hpo.population_size} members x {hpo.generations} generations x {hpo.steps_per_generation} "
              f"steps ({hpo.population_size * hpo.generations * hpo.steps_per_generation} member-steps); "
              f"tournaments of {hpo.tournament_size}, elitism {'on' if hpo.elitism else 'off'}, seed "
              f"{search_seed(cfg)}",
              f"hpo: search space: {ranges}",
              f"hpo: generation batch {generation_batch(cfg)} completions per step; training_parameters.max_steps "
              f"is replaced by generations x steps_per_generation ({hpo.generations * hpo.steps_per_generation})"]
    if cfg.model.backend == "auto":
        lines.append("hpo: backend auto -> members train on the transformers backend")
    return lines


NODE = NodeSpec(name="grpo_hpo", config_model=GRPOHPOConfigFile, run="pipelines.grpo.hpo.node:run",
                check=_check, check_partial=_check_partial, inspect=_inspect,
                outputs=("elite_adapter", "hpo_history", "hpo_fitness"))
