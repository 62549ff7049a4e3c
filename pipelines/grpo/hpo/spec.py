"""Registration of the ``grpo_hpo`` node: a GRPO config plus ``hpo`` (and a required ``evaluation``)."""
from __future__ import annotations

from pipelines.common.node import NodeContext, NodeSpec
from pipelines.grpo import checks as grpo_checks
from pipelines.grpo import spec as grpo_spec
from pipelines.grpo.checks import generation_batch
from pipelines.grpo.config import RESUME_HINT
from pipelines.grpo.hpo.checks import RULES, search_seed
from pipelines.grpo.hpo.config import GRPOHPOConfigFile, HPOSection, mutation_notes
from pipelines.grpo.calibration import calibrate_judges
from pipelines.rewards.checks import check_judges


def inspect(cfg: GRPOHPOConfigFile, ctx: NodeContext) -> list[str]:
    """The grpo summary of the data, then the search: its size, ranges and what it fixes."""
    hpo = cfg.hpo
    ranges = ", ".join(f"{name} [{s.min:g}, {s.max:g}]{' log' if s.log else ''}{' int' if s.type == 'int' else ''}"
                       for name, s in sorted(hpo.search_space.items()))
    lines = grpo_spec.inspect(cfg, ctx, with_steps=False)
    lines += [f"hpo: {hpo.population_size} members x {hpo.generations} generations x {hpo.steps_per_generation} "
              f"steps ({hpo.population_size * hpo.generations * hpo.steps_per_generation} member-steps); "
              f"generations numbered from 1; elite kept, tournaments of {hpo.tournament_size} drawn with "
              f"replacement, seed {search_seed(cfg)}",
              f"hpo: mutation: {describe_mutation(hpo)}",
              f"hpo: search space: {ranges}",
              f"hpo: generation batch {generation_batch(cfg)} completions per step; training_parameters.max_steps "
              f"is replaced by generations x steps_per_generation ({hpo.generations * hpo.steps_per_generation})"]
    if cfg.model.backend == "auto":
        lines.append("hpo: backend auto -> members train on the transformers backend")
    from pipelines.grpo.budget import spend_lines

    lines += spend_lines(cfg, hpo.population_size * hpo.generations * hpo.steps_per_generation)
    lines += [f"hpo: warning: {note}" for note in mutation_notes(hpo)]
    return lines


def describe_mutation(hpo: HPOSection) -> str:
    """The effective mutation rule in one line (operator, factors, probabilities, optimizer reset)."""
    total = hpo.no_mutation + hpo.hp_mutation
    if hpo.mutation_operator == "multiplicative":
        rule = f"multiplicative x{hpo.shrink_factor:g} / x{hpo.grow_factor:g} (50/50, clipped to the bounds)"
        own = [f"{n} x{hpo.factors(n)[0]:g} / x{hpo.factors(n)[1]:g}" for n, s in sorted(hpo.search_space.items())
               if s.shrink_factor is not None or s.grow_factor is not None]
        rule += f"; own factors: {', '.join(own)}" if own else ""
    else:
        rule = f"gaussian, sd {hpo.mutation_sd:g} x range width (log range with log: true), clipped to the bounds"
    reset = "on" if hpo.reset_optimizer_on_lr_mutation else "off"
    return (f"{rule}; a clone keeps its parent's values with probability {hpo.no_mutation / total:.3g}, else one "
            f"hyperparameter is mutated; optimizer reset on a learning_rate mutation: {reset}")


NODE = NodeSpec(name="grpo_hpo", config_model=GRPOHPOConfigFile, run="pipelines.grpo.hpo.node:run",
                rules=grpo_checks.RULES + RULES, check=grpo_spec.check_run_dir, normalize=grpo_spec.NODE.normalize,
                check_needs=("training_parameters",), inspect=inspect,
                check_judges=check_judges, calibrate_judges=calibrate_judges, resume_hint=RESUME_HINT,
                preflight="pipelines.grpo.hpo.node:run_member_preflight",
                outputs=("elite_adapter", "hpo_history", "hpo_fitness"))
