"""Tournament selection and mutation as pure, seeded functions (after AgileRL's evolutionary HPO)."""
from __future__ import annotations

import math
import random
from typing import Any, Optional, Sequence

from pipelines.grpo.hpo.config import HPOSection, SearchRange


def generation_rng(seed: int, generation: int) -> random.Random:
    """One RNG per generation, so a resumed search makes the same draws as an uninterrupted one."""
    return random.Random(seed * 1_000_003 + generation)


def tournament_select(fitness: Sequence[float], tournament_size: int, elitism: bool,
                      rng: random.Random) -> list[int]:
    """Indices of the members that seed the next generation (as many as there are members).

    With ``elitism`` the fittest member comes first; each remaining slot goes to the fittest of
    ``tournament_size`` members drawn without replacement. Ties go to the lower index.
    """
    n = len(fitness)
    best = max(range(n), key=lambda i: (fitness[i], -i))
    chosen = [best] if elitism else []
    while len(chosen) < n:
        contenders = rng.sample(range(n), min(tournament_size, n))
        chosen.append(max(contenders, key=lambda i: (fitness[i], -i)))
    return chosen


def _perturb(value: float, rng_: SearchRange, sd: float, rng: random.Random) -> float:
    if rng_.log:
        new = math.exp(math.log(max(value, rng_.min)) + rng.gauss(0.0, sd) * (math.log(rng_.max) - math.log(rng_.min)))
    else:
        new = value + rng.gauss(0.0, sd) * (rng_.max - rng_.min)
    new = min(max(new, rng_.min), rng_.max)
    return float(round(new)) if rng_.type == "int" else new


def valid_group_sizes(lo: int, hi: int, batch: int) -> list[int]:
    """num_generations values within [lo, hi] that TRL accepts: at least 2 and dividing the generation batch."""
    return [g for g in range(max(2, lo), hi + 1) if batch % g == 0]


def snap_group_size(value: int, lo: int, hi: int, batch: int) -> int:
    """The valid num_generations (divides the generation batch, within bounds) closest to ``value``."""
    valid = valid_group_sizes(lo, hi, batch)
    if not valid:
        raise ValueError(f"no num_generations in [{lo}, {hi}] divides the generation batch ({batch})")
    return min(valid, key=lambda g: (abs(g - value), g))


def mutate(hparams: dict[str, Any], hpo: HPOSection, rng: random.Random,
           generation_batch: Optional[int] = None) -> tuple[dict[str, Any], str]:
    """Return new hyperparameters and a description: no mutation, or one field perturbed within bounds."""
    total = hpo.no_mutation + hpo.hp_mutation
    if rng.random() < hpo.no_mutation / total:
        return dict(hparams), "none"
    name = rng.choice(sorted(hpo.search_space))
    space = hpo.search_space[name]
    new = dict(hparams)
    value = _perturb(float(hparams[name]), space, hpo.mutation_sd, rng)
    if space.type == "int":
        value = int(value)
        if name == "num_generations" and generation_batch:
            value = snap_group_size(value, int(space.min), int(space.max), generation_batch)
    new[name] = value
    return new, f"{name}: {hparams[name]:.6g} -> {value:.6g}"


def initial_hparams(hpo: HPOSection, defaults: dict[str, Any], index: int, rng: random.Random,
                    generation_batch: Optional[int] = None) -> dict[str, Any]:
    """Member 0 starts from the config's own values; the others are drawn uniformly (log-uniform) in bounds."""
    out = {}
    for name, space in sorted(hpo.search_space.items()):
        if index == 0 and name in defaults and defaults[name] is not None:
            value = min(max(float(defaults[name]), space.min), space.max)
        elif space.log:
            value = math.exp(rng.uniform(math.log(space.min), math.log(space.max)))
        else:
            value = rng.uniform(space.min, space.max)
        if space.type == "int":
            value = int(round(value))
            if name == "num_generations" and generation_batch:
                value = snap_group_size(value, int(space.min), int(space.max), generation_batch)
        out[name] = value
    return out
