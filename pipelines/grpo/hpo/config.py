"""Config of the ``grpo_hpo`` node: a GRPO config plus an ``hpo`` section (and a required evaluation).

The defaults follow AgileRL's evolutionary HPO for LLMs (``agilerl.hpo``, the seed tutorial's MUTATION_PARAMS):
multiplicative ×0.8 / ×1.2 mutation, an optimizer reset when the learning rate mutates, tournaments drawn with
replacement, elitism required, and relative mutation probabilities 0.1 (none) : 0.6 (one hyperparameter).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from pipelines.common.schema import Seed, StrictModel
from pipelines.grpo.config import EvaluationSection, GRPOConfigFile

_SHRINK = "Factor a shrinking mutation multiplies the value by (0 < factor < 1); AgileRL's default 0.8."
_GROW = "Factor a growing mutation multiplies the value by (> 1); AgileRL's default 1.2."


class SearchRange(StrictModel):
    min: float = Field(description="Lower bound (inclusive); mutated values are clipped to it.")
    max: float = Field(description="Upper bound (inclusive); mutated values are clipped to it.")
    log: bool = Field(False, description="Draw the initial members log-uniformly (for learning rates); with "
                                         "`mutation_operator: gaussian` also perturb in log space. The "
                                         "multiplicative operator is scale-free and does not use it.")
    type: Literal["float", "int"] = Field("float", description="Value type; int values are rounded, and an int "
                                                               "mutation always moves by at least 1 (within bounds).")
    shrink_factor: Optional[float] = Field(None, gt=0, lt=1, description="This range's own shrink factor "
                                           "(multiplicative operator); default: hpo.shrink_factor.")
    grow_factor: Optional[float] = Field(None, gt=1, description="This range's own grow factor (multiplicative "
                                         "operator); default: hpo.grow_factor.")

    @model_validator(mode="after")
    def _bounds(self) -> "SearchRange":
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.log and self.min <= 0:
            raise ValueError("log: true needs min > 0")
        return self


class HPOSection(StrictModel):
    population_size: int = Field(4, ge=2, description="Members (LoRA adapters) trained side by side.")
    generations: int = Field(3, ge=1, description="Train-evaluate-select-mutate rounds, numbered from 1 in logs, "
                                                  "hpo_history.jsonl, the plot and hpo/gen-NNNN folders.")
    steps_per_generation: int = Field(10, ge=1, description="Optimizer steps each member trains per generation.")
    tournament_size: int = Field(2, ge=1, description="Contenders per tournament, drawn with replacement (as in "
                                                      "AgileRL); the fittest wins. May exceed population_size.")
    elitism: bool = Field(True, description="The fittest member goes on unchanged. Must be true: AgileRL refuses "
                                            "`elitism: false` for LLM populations, and so does this node.")
    no_mutation: float = Field(0.1, ge=0, description="Relative probability that a clone keeps its parent's "
                                                      "hyperparameters (AgileRL's NO_MUT).")
    hp_mutation: float = Field(0.6, ge=0, description="Relative probability that one hyperparameter, picked "
                                                      "uniformly, is mutated (AgileRL's RL_HP_MUT). The two are "
                                                      "normalised by their sum: 0.1 and 0.6 give no mutation 1/7.")
    mutation_operator: Literal["multiplicative", "gaussian"] = Field(
        "multiplicative", description="multiplicative (AgileRL): multiply by shrink_factor or grow_factor, 50/50, "
                                      "then clip to the bounds. gaussian: add N(0, mutation_sd x (max - min)) "
                                      "noise (of log(max) - log(min) in log space with log: true), then clip.")
    shrink_factor: float = Field(0.8, gt=0, lt=1, description=_SHRINK)
    grow_factor: float = Field(1.2, gt=1, description=_GROW)
    mutation_sd: float = Field(0.1, gt=0, description="gaussian operator only: noise sd as a fraction of the "
                                                      "range's width. Unused (with a warning) by multiplicative.")
    reset_optimizer_on_lr_mutation: bool = Field(
        True, description="When a clone's learning_rate is mutated, it starts with a fresh optimizer (Adam moments "
                          "and step counts cleared), as AgileRL reinitialises it; its adapter weights and the "
                          "schedule position still come from the parent. false keeps the parent's moments.")
    seed: Optional[Seed] = Field(None, description="Seed of selection and mutation; default: the config's seed.")
    search_space: dict[str, SearchRange] = Field(min_length=1, description="Bounds per tunable GRPOConfig field, "
                                                 "e.g. learning_rate: {min: 1e-6, max: 1e-4, log: true}.")

    @field_validator("elitism")
    @classmethod
    def _elitism_required(cls, value: bool) -> bool:
        if not value:
            raise ValueError("elitism: false is refused for LLM populations (AgileRL refuses it too): without it "
                             "the fittest adapter, the product of all the compute so far, can be dropped by the "
                             "tournaments and the search can end worse than it was; remove the key or set it true")
        return value

    @model_validator(mode="after")
    def _probabilities(self) -> "HPOSection":
        if self.no_mutation + self.hp_mutation <= 0:
            raise ValueError("no_mutation + hp_mutation must be > 0")
        return self

    def factors(self, name: str) -> tuple[float, float]:
        """The (shrink, grow) factors of a searched field: its range's own, else the section's."""
        space = self.search_space[name]
        return (space.shrink_factor if space.shrink_factor is not None else self.shrink_factor,
                space.grow_factor if space.grow_factor is not None else self.grow_factor)


def mutation_notes(hpo: HPOSection) -> list[str]:
    """Settings that have no effect with the chosen operator, and ranges the operator cannot move through;
    each message names the effective behaviour (shown by --validate and logged as a warning at run time)."""
    notes = []
    if hpo.mutation_operator == "multiplicative":
        if "mutation_sd" in hpo.model_fields_set:
            notes.append(f"hpo.mutation_sd ({hpo.mutation_sd:g}) is unused: the multiplicative operator multiplies "
                         f"by shrink_factor/grow_factor instead (set mutation_operator: gaussian to use it)")
        for name, space in sorted(hpo.search_space.items()):
            if space.type == "float" and space.min <= 0:
                notes.append(f"hpo.search_space.{name}: a value at 0 stays at 0 under x{hpo.factors(name)[0]:g} / "
                             f"x{hpo.factors(name)[1]:g} mutation (AgileRL's rule); set min > 0 to let it move")
    else:
        unused = [key for key in ("shrink_factor", "grow_factor") if key in hpo.model_fields_set]
        unused += [f"search_space.{n}.{k}" for n, s in sorted(hpo.search_space.items())
                   for k in ("shrink_factor", "grow_factor") if k in s.model_fields_set]
        if unused:
            notes.append(f"hpo.{', hpo.'.join(unused)} unused: mutation_operator is gaussian (additive noise, sd "
                         f"{hpo.mutation_sd:g} x range)")
    return notes


class GRPOHPOConfigFile(GRPOConfigFile):
    """A GRPO config plus `hpo`; `evaluation` is required because fitness is its mean combined reward."""

    hpo: HPOSection = Field(description="Evolutionary search settings.")
    evaluation: Optional[EvaluationSection] = Field(None, validate_default=True, description="Held-out evaluation: "
                                                    "REQUIRED here, the fitness is its mean combined reward.")

    @field_validator("evaluation")
    @classmethod
    def _needs_evaluation(cls, value: Optional[EvaluationSection]) -> Optional[EvaluationSection]:
        # A field validator (not a model one) so that the problem is reported at the key `evaluation`.
        if value is None:
            raise ValueError("an `evaluation` section is required for hyperparameter search: a member's fitness is "
                             "the mean combined reward on its held-out prompts (add e.g. evaluation: {rows: 8})")
        return value
