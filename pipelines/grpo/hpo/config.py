"""Config of the ``grpo_hpo`` node: a GRPO node config plus an ``hpo`` section (and a required evaluation)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from pipelines.common.schema import Seed, StrictModel
from pipelines.grpo.config import EvaluationSection, GRPOConfigFile


class SearchRange(StrictModel):
    min: float = Field(description="Lower bound (inclusive).")
    max: float = Field(description="Upper bound (inclusive).")
    log: bool = Field(False, description="Mutate and sample in log space (for learning rates).")
    type: Literal["float", "int"] = Field("float", description="Value type; int values are rounded.")

    @model_validator(mode="after")
    def _bounds(self) -> "SearchRange":
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.log and self.min <= 0:
            raise ValueError("log: true needs min > 0")
        return self


class HPOSection(StrictModel):
    population_size: int = Field(4, ge=2, description="Members (LoRA adapters) trained side by side.")
    generations: int = Field(3, ge=1, description="Train-evaluate-select-mutate rounds.")
    steps_per_generation: int = Field(10, ge=1, description="Optimizer steps each member trains per generation.")
    tournament_size: int = Field(2, ge=1, description="Members drawn per tournament; the fittest wins.")
    elitism: bool = Field(True, description="Keep the fittest member unchanged in the next generation.")
    no_mutation: float = Field(0.1, ge=0, description="Relative probability that a selected member is not mutated.")
    hp_mutation: float = Field(0.9, ge=0, description="Relative probability that one hyperparameter is perturbed.")
    mutation_sd: float = Field(0.1, gt=0, description="Std of the multiplicative (log-space if log) perturbation.")
    seed: Optional[Seed] = Field(None, description="Seed of selection and mutation; default: the config's seed.")
    search_space: dict[str, SearchRange] = Field(min_length=1, description="Bounds per tunable GRPOConfig field, "
                                                 "e.g. learning_rate: {min: 1e-6, max: 1e-4, log: true}.")

    @model_validator(mode="after")
    def _probabilities(self) -> "HPOSection":
        if self.no_mutation + self.hp_mutation <= 0:
            raise ValueError("no_mutation + hp_mutation must be > 0")
        if self.tournament_size > self.population_size:
            raise ValueError(f"tournament_size ({self.tournament_size}) exceeds population_size "
                             f"({self.population_size})")
        return self


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
