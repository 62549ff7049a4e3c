"""Selection and mutation of the evolutionary search, as pure seeded functions."""
from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from pipelines.common.schema import validate_model
from pipelines.grpo.hpo.config import HPOSection
from pipelines.grpo.hpo.evolution import (generation_rng, initial_hparams, mutate, snap_group_size,
                                          tournament_select)


def hpo(**kw) -> HPOSection:
    base = dict(population_size=4, generations=2, steps_per_generation=2, tournament_size=2, elitism=True,
                no_mutation=0.0, hp_mutation=1.0, mutation_sd=0.2,
                search_space={"learning_rate": {"min": 1e-5, "max": 1e-1, "log": True},
                              "beta": {"min": 0.0, "max": 0.1},
                              "num_generations": {"min": 2, "max": 8, "type": "int"}})
    base.update(kw)
    return HPOSection.model_validate(base)


def test_elitism_keeps_the_best_first():
    fitness = [0.1, 0.9, 0.5, 0.3]
    for seed in range(20):
        assert tournament_select(fitness, 2, True, random.Random(seed))[0] == 1


def test_without_elitism_the_best_is_not_guaranteed_a_slot():
    fitness = [0.1, 0.9, 0.5, 0.3]
    picks = [tournament_select(fitness, 1, False, random.Random(s)) for s in range(50)]
    assert any(1 not in p for p in picks)  # tournament size 1 is a uniform draw


def test_tournaments_pick_by_fitness():
    fitness = [0.0, 1.0, 2.0, 3.0]
    counts = Counter()
    for seed in range(300):
        counts.update(tournament_select(fitness, 2, False, random.Random(seed)))
    # with tournaments of 2 out of 4, the worst can never win; the best wins every tournament it enters
    assert counts[0] == 0
    assert counts[3] > counts[2] > counts[1] > 0
    # full-size tournaments always pick the best
    assert tournament_select(fitness, 4, False, random.Random(0)) == [3, 3, 3, 3]


def test_selection_is_deterministic_for_a_seed():
    fitness = [0.3, 0.2, 0.8, 0.5]
    assert tournament_select(fitness, 2, True, generation_rng(7, 1)) == \
        tournament_select(fitness, 2, True, generation_rng(7, 1))


def test_mutation_respects_bounds_and_types():
    h = hpo()
    params = {"learning_rate": 1e-3, "beta": 0.05, "num_generations": 4}
    rng = random.Random(0)
    seen = set()
    for _ in range(400):
        new, desc = mutate(params, h, rng, generation_batch=8)
        changed = [k for k in params if new[k] != params[k]]
        assert len(changed) <= 1
        seen.update(changed)
        assert 1e-5 <= new["learning_rate"] <= 1e-1
        assert 0.0 <= new["beta"] <= 0.1
        assert isinstance(new["num_generations"], int) and new["num_generations"] in (2, 4, 8)
        params = new
    assert seen == {"learning_rate", "beta", "num_generations"}


def test_no_mutation_probability():
    h = hpo(no_mutation=1.0, hp_mutation=0.0)
    params = {"learning_rate": 1e-3, "beta": 0.05, "num_generations": 4}
    assert mutate(params, h, random.Random(1)) == (params, "none")


def test_log_space_mutation_moves_by_factors():
    h = hpo(search_space={"learning_rate": {"min": 1e-6, "max": 1e-2, "log": True}}, mutation_sd=0.05)
    rng = random.Random(3)
    ratios = [mutate({"learning_rate": 1e-4}, h, rng)[0]["learning_rate"] / 1e-4 for _ in range(200)]
    logs = [math.log(r) for r in ratios]
    assert min(logs) < -0.1 and max(logs) > 0.1  # symmetric in log space, not additive


def test_snap_group_size():
    assert snap_group_size(5, 2, 8, 8) == 4
    assert snap_group_size(7, 2, 8, 8) == 8
    with pytest.raises(ValueError):
        snap_group_size(3, 3, 3, 8)


def test_initial_population_starts_from_config_values():
    h = hpo()
    first = initial_hparams(h, {"learning_rate": 2e-2, "beta": 0.0, "num_generations": 4}, 0, random.Random(0), 8)
    assert first == {"beta": 0.0, "learning_rate": 2e-2, "num_generations": 4}
    other = initial_hparams(h, {}, 1, random.Random(0), 8)
    assert 1e-5 <= other["learning_rate"] <= 1e-1 and other["num_generations"] in (2, 4, 8)


def test_search_space_validation_messages():
    _, problems = validate_model(HPOSection, {"search_space": {"beta": {"min": 1, "max": 0}}}, "c.yaml", "hpo")
    assert any(p.key == "hpo.search_space.beta" and "must be below max" in p.message for p in problems)
    _, problems = validate_model(HPOSection, {"tournament_size": 5, "population_size": 3,
                                              "search_space": {"beta": {"min": 0, "max": 1}}}, "c.yaml", "hpo")
    assert any("exceeds population_size" in p.message for p in problems)
