"""Tournament selection and mutation as pure, seeded functions (after AgileRL's evolutionary HPO).

AgileRL's rules (``agilerl.hpo.tournament``, ``agilerl.hpo.mutation``, ``RLParameter.mutate``), written here for
our config: the elite first, then one tournament per remaining slot with contenders drawn *with replacement*;
each clone is left alone or has one hyperparameter, picked uniformly, multiplied by a shrink or a grow factor
(50/50) and clipped to its bounds. The additive Gaussian operator is kept as an option.
"""
from __future__ import annotations

import math
import random
from typing import Any, Optional, Sequence

from pipelines.grpo.hpo.config import HPOSection, SearchRange

LEARNING_RATE = "learning_rate"


def generation_rng(seed: int, generation: int) -> random.Random:
    """One RNG per generation, so a resumed search makes the same draws as an uninterrupted one."""
    return random.Random(seed * 1_000_003 + generation)


def tournament_select(fitness: Sequence[float], tournament_size: int, rng: random.Random) -> list[int]:
    """Indices of the members that seed the next generation (as many as there are members).

    The fittest member comes first (elitism); each remaining slot goes to the fittest of ``tournament_size``
    contenders drawn with replacement, so a member may meet itself and even the least fit one can win a
    tournament made only of itself. Ties go to the lower index.
    """
    n = len(fitness)

    def fittest(indices: Sequence[int]) -> int:
        return max(indices, key=lambda i: (fitness[i], -i))

    chosen = [fittest(range(n))]
    while len(chosen) < n:
        chosen.append(fittest([rng.randrange(n) for _ in range(tournament_size)]))
    return chosen


def valid_group_sizes(lo: int, hi: int, batch: int) -> list[int]:
    """num_generations values within [lo, hi] that TRL accepts: at least 2 and dividing the generation batch."""
    return [g for g in range(max(2, lo), hi + 1) if batch % g == 0]


def snap_group_size(value: int, lo: int, hi: int, batch: int, direction: int = 0) -> int:
    """The valid num_generations (divides the generation batch, within bounds) for ``value``: the closest one, or
    with ``direction`` +1 / -1 the nearest at or above / at or below it (the last valid one in that direction
    when none is left), so that a grown or shrunk group size really moves when it can."""
    valid = valid_group_sizes(lo, hi, batch)
    if not valid:
        raise ValueError(f"no num_generations in [{lo}, {hi}] divides the generation batch ({batch})")
    if direction > 0:
        return min((g for g in valid if g >= value), default=valid[-1])
    if direction < 0:
        return max((g for g in valid if g <= value), default=valid[0])
    return min(valid, key=lambda g: (abs(g - value), g))


def _gaussian(value: float, space: SearchRange, sd: float, rng: random.Random) -> float:
    if space.log:
        width = math.log(space.max) - math.log(space.min)
        return math.exp(math.log(max(value, space.min)) + rng.gauss(0.0, sd) * width)
    return value + rng.gauss(0.0, sd) * (space.max - space.min)


def _to_int(old: float, new: float, space: SearchRange) -> int:
    """Round; a mutation that rounding would undo moves by one in its direction (AgileRL's int() truncation
    would keep e.g. a group size of 4 at 4 under x1.2 forever)."""
    value = int(round(new))
    if value == int(old) and new != old:
        value += 1 if new > old else -1
    return int(min(max(value, math.ceil(space.min)), math.floor(space.max)))


def perturb(name: str, value: float, hpo: HPOSection, rng: random.Random,
            generation_batch: Optional[int] = None) -> tuple[float, str]:
    """One mutated value of ``name`` within its bounds, and how it was obtained (e.g. ``x1.2``)."""
    space = hpo.search_space[name]
    if hpo.mutation_operator == "multiplicative":
        shrink, grow = hpo.factors(name)
        factor = shrink if rng.random() < 0.5 else grow
        new, how = value * factor, f"x{factor:g}"
    else:
        new, how = _gaussian(value, space, hpo.mutation_sd, rng), "gaussian"
    new = min(max(new, space.min), space.max)
    if space.type == "float":
        return new, how
    value_int = _to_int(value, new, space)
    if name == "num_generations" and generation_batch:
        direction = 0 if hpo.mutation_operator == "gaussian" else (1 if new > value else -1 if new < value else 0)
        value_int = snap_group_size(value_int, int(space.min), int(space.max), generation_batch, direction)
    return value_int, how


def mutate(hparams: dict[str, Any], hpo: HPOSection, rng: random.Random,
           generation_batch: Optional[int] = None) -> tuple[dict[str, Any], str, bool]:
    """New hyperparameters, a description, and whether the learning rate was the mutated field (AgileRL then
    reinitialises the optimizer). No mutation, or one field, picked uniformly, mutated within its bounds."""
    total = hpo.no_mutation + hpo.hp_mutation
    if rng.random() < hpo.no_mutation / total:
        return dict(hparams), "none", False
    name = rng.choice(sorted(hpo.search_space))
    value, how = perturb(name, float(hparams[name]), hpo, rng, generation_batch)
    new = dict(hparams, **{name: value})
    return new, f"{name}: {hparams[name]:.6g} -> {value:.6g} ({how})", name == LEARNING_RATE


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
