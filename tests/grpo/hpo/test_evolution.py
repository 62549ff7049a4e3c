"""Selection and mutation of the evolutionary search, as pure seeded functions (AgileRL's rules by default)."""
from __future__ import annotations

import functools
import math
import random
from collections import Counter

import pytest

from pipelines.common.schema import validate_model
from pipelines.grpo.hpo.config import HPOSection, mutation_notes
from pipelines.grpo.hpo.evolution import (generation_rng, initial_hparams, mutate, perturb, snap_group_size,
                                          tournament_select)
from tests.grpo.hpo.hpo_cfg import hpo_section


hpo = functools.partial(hpo_section, generations=2, lr_min=1e-5)


def test_elitism_keeps_the_best_first():
    fitness = [0.1, 0.9, 0.5, 0.3]
    for seed in range(20):
        assert tournament_select(fitness, 2, random.Random(seed))[0] == 1


def test_tournament_contenders_are_drawn_with_replacement():
    fitness = [0.0, 1.0, 2.0, 3.0]
    counts = Counter()
    for seed in range(400):
        counts.update(tournament_select(fitness, 2, random.Random(seed))[1:])   # the tournaments, not the elite
    total = sum(counts.values())
    # with replacement, member i wins a tournament of 2 with probability ((i+1)^2 - i^2) / 16: the worst one
    # wins when drawn twice (1/16); drawn without replacement it could never win
    assert counts[3] > counts[2] > counts[1] > counts[0] > 0
    assert 0.03 < counts[0] / total < 0.10 and 0.37 < counts[3] / total < 0.51
    # a tournament as large as the population does not always contain the best member
    full = [w for s in range(100) for w in tournament_select(fitness, 4, random.Random(s))[1:]]
    assert 3 in full and any(w != 3 for w in full)
    # and it may even be larger than the population
    assert len(tournament_select(fitness, 9, random.Random(0))) == 4


def test_selection_is_deterministic_for_a_seed():
    fitness = [0.3, 0.2, 0.8, 0.5]
    assert tournament_select(fitness, 2, generation_rng(7, 1)) == tournament_select(fitness, 2, generation_rng(7, 1))


def test_multiplicative_mutation_multiplies_by_0_8_or_1_2_half_and_half():
    h = hpo(search_space={"learning_rate": {"min": 1e-5, "max": 1e-1, "log": True}})
    rng = random.Random(0)
    ratios = [mutate({"learning_rate": 1e-3}, h, rng)[0]["learning_rate"] / 1e-3 for _ in range(1000)]
    assert {round(r, 12) for r in ratios} == {0.8, 1.2}
    assert 0.45 < sum(r < 1 for r in ratios) / len(ratios) < 0.55


def test_multiplicative_mutation_is_clipped_to_the_bounds():
    h = hpo(search_space={"beta": {"min": 0.01, "max": 0.1}})
    rng = random.Random(1)
    at_max = {round(perturb("beta", 0.1, h, rng)[0], 12) for _ in range(200)}
    assert at_max == {0.08, 0.1}                                  # x1.2 clipped to max, x0.8 moves
    near_min = {round(perturb("beta", 0.011, h, rng)[0], 12) for _ in range(200)}
    assert near_min == {0.01, round(0.011 * 1.2, 12)}             # 0.0088 clipped to min


def test_factors_are_configurable_per_section_and_per_range():
    h = hpo(shrink_factor=0.5, grow_factor=2.0,
            search_space={"learning_rate": {"min": 1e-6, "max": 1.0}, "beta": {"min": 1e-6, "max": 1.0,
                                                                               "shrink_factor": 0.9,
                                                                               "grow_factor": 1.1}})
    rng = random.Random(2)
    lr = {round(perturb("learning_rate", 0.01, h, rng)[0] / 0.01, 12) for _ in range(100)}
    beta = {round(perturb("beta", 0.01, h, rng)[0] / 0.01, 12) for _ in range(100)}
    assert lr == {0.5, 2.0} and beta == {0.9, 1.1}
    assert perturb("beta", 0.01, h, random.Random(3))[1] in ("x0.9", "x1.1")


@pytest.mark.parametrize("bad", [{"shrink_factor": 1.2}, {"shrink_factor": 0}, {"grow_factor": 0.9}])
def test_factors_must_shrink_and_grow(bad):
    _, problems = validate_model(HPOSection, dict(search_space={"beta": {"min": 0.1, "max": 1}}, **bad),
                                 "c.yaml", "hpo")
    key = next(iter(bad))
    assert [p.key for p in problems] == [f"hpo.{key}"]
    _, problems = validate_model(HPOSection, {"search_space": {"beta": {"min": 0.1, "max": 1, **bad}}},
                                 "c.yaml", "hpo")
    assert [p.key for p in problems] == [f"hpo.search_space.beta.{key}"]


def test_int_mutation_moves_by_at_least_one_and_group_sizes_snap_in_its_direction():
    h = hpo(search_space={"max_completion_length": {"min": 1, "max": 10, "type": "int"},
                          "num_generations": {"min": 2, "max": 8, "type": "int"}})
    rng = random.Random(4)
    # 4 x 0.8 = 3.2 and 4 x 1.2 = 4.8: rounding would keep 4 at 4 half of the time; the mutation moves it
    assert {perturb("max_completion_length", 4, h, rng)[0] for _ in range(100)} == {3, 5}
    assert {perturb("max_completion_length", 10, h, rng)[0] for _ in range(100)} == {8, 10}
    # group sizes must divide the generation batch (8): 4 shrinks to 2 and grows to 8
    sizes = {perturb("num_generations", 4, h, rng, generation_batch=8)[0] for _ in range(100)}
    assert sizes == {2, 8} and all(isinstance(v, int) for v in sizes)


def test_mutation_respects_bounds_and_types_and_changes_one_field():
    h = hpo()
    params = {"learning_rate": 1e-3, "beta": 0.05, "num_generations": 4}
    rng = random.Random(0)
    seen = set()
    for _ in range(400):
        new, desc, lr_mutated = mutate(params, h, rng, generation_batch=8)
        field = desc.split(":")[0]
        assert {k for k in params if new[k] != params[k]} <= {field}
        assert lr_mutated == (field == "learning_rate")
        seen.add(field)
        assert 1e-5 <= new["learning_rate"] <= 1e-1
        assert 0.001 <= new["beta"] <= 0.1
        assert isinstance(new["num_generations"], int) and new["num_generations"] in (2, 4, 8)
        params = new
    assert seen == {"learning_rate", "beta", "num_generations"}


def test_the_seeds_mutation_probabilities_are_the_defaults():
    section = HPOSection.model_validate({"search_space": {"beta": {"min": 0.01, "max": 0.1}}})
    assert (section.no_mutation, section.hp_mutation) == (0.1, 0.6)   # the tutorial's NO_MUT, RL_HP_MUT
    rng = random.Random(5)
    none = sum(mutate({"beta": 0.05}, section, rng)[1] == "none" for _ in range(7000))
    assert abs(none / 7000 - 1 / 7) < 0.015        # normalised by their sum, as AgileRL does
    assert mutate({"beta": 0.05}, hpo(no_mutation=1.0, hp_mutation=0.0), rng) == ({"beta": 0.05}, "none", False)


def test_gaussian_operator_adds_noise_scaled_to_the_range():
    h = hpo(mutation_operator="gaussian", mutation_sd=0.05, search_space={"beta": {"min": 0.0, "max": 1.0}})
    rng = random.Random(3)
    steps = [perturb("beta", 0.5, h, rng)[0] - 0.5 for _ in range(2000)]
    assert abs(sum(steps) / len(steps)) < 0.005                         # additive, centred
    sd = math.sqrt(sum(s * s for s in steps) / len(steps))
    assert 0.045 < sd < 0.055                                           # mutation_sd x (max - min)
    logh = hpo(mutation_operator="gaussian", mutation_sd=0.05,
               search_space={"learning_rate": {"min": 1e-6, "max": 1e-2, "log": True}})
    logs = [math.log(perturb("learning_rate", 1e-4, logh, rng)[0] / 1e-4) for _ in range(200)]
    assert min(logs) < -0.1 and max(logs) > 0.1 and len({round(x, 6) for x in logs}) > 100


def test_snap_group_size():
    assert snap_group_size(5, 2, 8, 8) == 4
    assert snap_group_size(7, 2, 8, 8) == 8
    assert snap_group_size(5, 2, 8, 8, direction=1) == 8 and snap_group_size(3, 2, 8, 8, direction=-1) == 2
    assert snap_group_size(9, 2, 8, 8, direction=1) == 8 and snap_group_size(1, 2, 8, 8, direction=-1) == 2
    with pytest.raises(ValueError):
        snap_group_size(3, 3, 3, 8)


def test_initial_population_starts_from_config_values():
    h = hpo()
    first = initial_hparams(h, {"learning_rate": 2e-2, "beta": 0.01, "num_generations": 4}, 0, random.Random(0), 8)
    assert first == {"beta": 0.01, "learning_rate": 2e-2, "num_generations": 4}
    other = initial_hparams(h, {}, 1, random.Random(0), 8)
    assert 1e-5 <= other["learning_rate"] <= 1e-1 and other["num_generations"] in (2, 4, 8)


def test_elitism_false_is_refused_with_the_reason():
    _, problems = validate_model(HPOSection, {"elitism": False, "search_space": {"beta": {"min": 0.1, "max": 1}}},
                                 "c.yaml", "hpo")
    assert [p.key for p in problems] == ["hpo.elitism"]
    assert "refused for LLM populations" in problems[0].message and "AgileRL" in problems[0].message


def test_search_space_validation_messages():
    _, problems = validate_model(HPOSection, {"search_space": {"beta": {"min": 1, "max": 0}}}, "c.yaml", "hpo")
    assert any(p.key == "hpo.search_space.beta" and "must be below max" in p.message for p in problems)
    # drawn with replacement, a tournament may be larger than the population (as in AgileRL)
    _, problems = validate_model(HPOSection, {"tournament_size": 5, "population_size": 3,
                                              "search_space": {"beta": {"min": 0, "max": 1}}}, "c.yaml", "hpo")
    assert problems == []


def test_mutation_notes_name_settings_without_effect():
    assert mutation_notes(hpo()) == []
    notes = mutation_notes(hpo(mutation_sd=0.2, search_space={"beta": {"min": 0.0, "max": 0.1}}))
    assert any("hpo.mutation_sd (0.2) is unused" in n for n in notes)
    assert any("hpo.search_space.beta: a value at 0 stays at 0" in n for n in notes)
    gauss = mutation_notes(hpo(mutation_operator="gaussian", grow_factor=1.5,
                               search_space={"beta": {"min": 0.0, "max": 0.1, "shrink_factor": 0.5}}))
    assert gauss == ["hpo.grow_factor, hpo.search_space.beta.shrink_factor unused: mutation_operator is gaussian "
                     "(additive noise, sd 0.1 x range)"]
