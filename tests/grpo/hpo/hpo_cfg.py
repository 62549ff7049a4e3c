"""The HPO section the unit tests build: a 4-member population searching learning rate, beta and group size."""
from __future__ import annotations

from pipelines.grpo.hpo.config import HPOSection


def hpo_section(generations: int = 3, lr_min: float = 1e-4, **kw) -> HPOSection:
    """A validated ``hpo`` section; ``kw`` replaces top-level keys (mutation always, by default)."""
    base = dict(population_size=4, generations=generations, steps_per_generation=2, tournament_size=2,
                no_mutation=0.0, hp_mutation=1.0,
                search_space={"learning_rate": {"min": lr_min, "max": 1e-1, "log": True},
                              "beta": {"min": 0.001, "max": 0.1},
                              "num_generations": {"min": 2, "max": 8, "type": "int"}})
    base.update(kw)
    return HPOSection.model_validate(base)
