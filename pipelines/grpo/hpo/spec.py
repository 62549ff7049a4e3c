"""Registration of the ``grpo_hpo`` node: a GRPO config plus ``hpo`` (and a required ``evaluation``)."""
from __future__ import annotations

from pipelines.common.node import NodeContext, NodeSpec
from pipelines.grpo import checks as grpo_checks
from pipelines.grpo import spec as grpo_spec
from pipelines.grpo.checks import generation_batch
from pipelines.grpo.config import RESUME_HINT
from pipelines.grpo.hpo.checks import RULES, search_seed
from pipelines.grpo.hpo.config import GRPOHPOConfigFile
from pipelines.rewards.checks import check_judges


def inspect(cfg: GRPOHPOConfigFile, ctx: NodeContext) -> list[str]:
    """The grpo summary of the data, then the search: its size, ranges and what it fixes."""
    hpo = cfg.hpo
    ranges = ", ".join(f"{name} [{s.min:g}, {s.max:g}]{' log' if s.log else ''}{' int' if s.type == 'int' else ''}"
                       for name, s in sorted(hpo.search_space.items()))
    lines = grpo_spec.inspect(cfg, ctx, with_steps=False)
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
                rules=grpo_checks.RULES + RULES, check=grpo_spec.check_run_dir, normalize=grpo_spec.NODE.normalize,
                check_needs=("training_parameters",), inspect=inspect,
                check_judges=check_judges, resume_hint=RESUME_HINT,
                preflight="pipelines.grpo.preflight:run_member_preflight",
                outputs=("elite_adapter", "hpo_history", "hpo_fitness"))
