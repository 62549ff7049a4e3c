"""The search state: next generation from fitness, persistence, pruning, the elite table and the fitness plot."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from pipelines.common.problems import ConfigError
from pipelines.grpo.hpo.config import HPOSection
from pipelines.grpo.hpo.population import (SearchState, Slot, best_index, check_resumable, history_records,
                                           initial_state, load_state, next_population, prune_checkpoints,
                                           referenced, save_state)
from pipelines.grpo.hpo.report import elite_table, lineage, plot_fitness, plot_x

REPO = Path(__file__).resolve().parents[3]
from tests.grpo.hpo.hpo_cfg import hpo_section


hpo = functools.partial(hpo_section, generations=3, lr_min=1e-4)


DEFAULTS = {"learning_rate": 0.02, "beta": 0.001, "num_generations": 4}


def population(h: HPOSection) -> list[Slot]:
    return initial_state(h, 7, DEFAULTS, 8).population


def test_initial_population_is_seeded_and_starts_from_the_config():
    h = hpo()
    a, b = initial_state(h, 7, DEFAULTS, 8), initial_state(h, 7, DEFAULTS, 8)
    assert [s.hparams for s in a.population] == [s.hparams for s in b.population]
    assert a.population[0].hparams == DEFAULTS
    assert a.generation == 0                                   # none completed; the first is generation 1
    assert [s.id for s in a.population] == ["g1m0", "g1m1", "g1m2", "g1m3"]
    assert all(s.start is None and s.mutation == "init" and not s.reset_optimizer for s in a.population)
    assert initial_state(h, 8, DEFAULTS, 8).population[1].hparams != a.population[1].hparams


def test_next_population_elite_first_clones_start_from_their_parents_checkpoint():
    h = hpo()
    pop = population(h)
    fitness = [0.2, 0.9, None, 0.5]
    ckpts = [f"hpo/gen-0001/g1m{i}/checkpoint-2" for i in range(4)]
    nxt = next_population(pop, fitness, ckpts, h, seed=7, generation=1, generation_batch=8)
    assert len(nxt) == 4 and [s.id for s in nxt] == ["g2m0", "g2m1", "g2m2", "g2m3"]
    elite = nxt[0]
    assert (elite.parent, elite.mutation, elite.start, elite.reset_optimizer) == ("g1m1", "elite", ckpts[1], False)
    assert elite.hparams == pop[1].hparams
    by_id = {s.id: (s, c) for s, c in zip(pop, ckpts)}
    for child in nxt[1:]:
        parent, ckpt = by_id[child.parent]
        assert child.start == ckpt
        field = child.mutation.split(":")[0]       # one field perturbed (rounding may land on the old value)
        assert field in child.hparams
        assert {k: v for k, v in child.hparams.items() if k != field} == \
            {k: v for k, v in parent.hparams.items() if k != field}
        assert child.hparams["num_generations"] in (2, 4, 8)


def test_same_seed_and_fitness_give_the_same_generation():
    h = hpo(no_mutation=0.3, hp_mutation=0.7)
    pop = population(h)
    fitness, ckpts = [0.3, 0.1, 0.3, 0.25], [f"c{i}" for i in range(4)]
    runs = [next_population(pop, fitness, ckpts, h, 7, 1, 8) for _ in range(2)]
    assert runs[0] == runs[1]
    others = [next_population(pop, fitness, ckpts, h, s, 1, 8) for s in range(8, 14)]
    assert any(o != runs[0] for o in others)
    assert any(o != runs[0] for o in [next_population(pop, fitness, ckpts, h, 7, g, 8) for g in (2, 3, 4)])


def test_a_learning_rate_mutation_resets_the_optimizer_unless_turned_off():
    h = hpo(search_space={"learning_rate": {"min": 1e-4, "max": 1e-1, "log": True},
                          "beta": {"min": 0.001, "max": 0.1}})
    defaults = {"learning_rate": 0.02, "beta": 0.01}
    pop = initial_state(h, 7, defaults, 8).population
    seen = set()
    for g in range(1, 30):
        for child in next_population(pop, [0.1, 0.4, 0.3, 0.2], list("abcd"), h, 7, g, 8)[1:]:
            lr_mutated = child.mutation.startswith("learning_rate:")
            assert child.reset_optimizer == lr_mutated
            seen.add(lr_mutated)
    assert seen == {True, False}
    off = hpo(search_space=h.model_dump()["search_space"], reset_optimizer_on_lr_mutation=False)
    children = [c for g in range(1, 30) for c in next_population(pop, [0.1, 0.4, 0.3, 0.2], list("abcd"), off, 7,
                                                                 g, 8)]
    assert any(c.mutation.startswith("learning_rate:") for c in children)
    assert not any(c.reset_optimizer for c in children)


def test_best_index_ties_and_missing():
    assert best_index([0.5, 0.7, 0.7]) == 1
    assert best_index([None, None]) == 0
    assert best_index([None, -3.0]) == 1


def test_state_round_trip_and_history_file(tmp_path):
    h = hpo()
    state = initial_state(h, 7, DEFAULTS, 8)
    ckpts = [f"hpo/gen-0001/g1m{i}/checkpoint-2" for i in range(4)]
    fitness = [0.1, 0.4, 0.3, 0.2]
    state.history += history_records(state, fitness, [{"eval/reward_mean": f} for f in fitness], ckpts, 2)
    state.population = next_population(state.population, fitness, ckpts, h, 7, 1, 8)
    state.generation = 1
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    assert loaded == state
    lines = [json.loads(x) for x in (tmp_path / "hpo_history.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["g1m0", "g1m1", "g1m2", "g1m3"]
    assert {r["generation"] for r in lines} == {1} and not any(r["optimizer_reset"] for r in lines)
    assert [r["best"] for r in lines] == [False, True, False, False]
    assert lines[1]["hparams"] == state.history[1]["hparams"] and lines[1]["checkpoint"] == ckpts[1]
    assert load_state(tmp_path / "nothing") is None


def test_a_version_1_state_is_renumbered_from_1(tmp_path):
    """A search saved before generations counted from 1 resumes with the one convention."""
    v1 = {"version": 1, "generation": 1, "seed": 7, "hpo": {},
          "population": [{"id": "g1m0", "hparams": {"beta": 0.01}, "parent": "g0m1", "mutation": "elite",
                          "start": "hpo/gen-0000/g0m1/checkpoint-2"}],
          "history": [{"generation": 0, "member": i, "id": f"g0m{i}", "parent": None, "mutation": "init",
                       "checkpoint": f"hpo/gen-0000/g0m{i}/checkpoint-2"} for i in range(2)]}
    (tmp_path / "hpo").mkdir()
    (tmp_path / "hpo" / "state.json").write_text(json.dumps(v1))
    state = load_state(tmp_path)
    assert state.generation == 1
    assert [(r["generation"], r["id"]) for r in state.history] == [(1, "g1m0"), (1, "g1m1")]
    slot = state.population[0]
    assert (slot.id, slot.parent, slot.start, slot.reset_optimizer) == ("g2m0", "g1m1",
                                                                        "hpo/gen-0000/g0m1/checkpoint-2", False)
    assert referenced(state, complete=True) == {"hpo/gen-0000/g0m0/checkpoint-2", "hpo/gen-0000/g0m1/checkpoint-2"}


def test_resume_refuses_a_different_search(tmp_path):
    h = hpo()
    state = initial_state(h, 7, DEFAULTS, 8)
    check_resumable(state, hpo(generations=5, grow_factor=1.5), 7, "c.yaml")   # may change
    with pytest.raises(ConfigError) as err:
        check_resumable(state, hpo(population_size=3, tournament_size=2), 8, "c.yaml")
    keys = {p.key for p in err.value.problems}
    assert keys == {"hpo.population_size", "hpo.seed"}


def test_prune_keeps_only_referenced_checkpoints(tmp_path):
    for gen, member in [(1, "g1m0"), (1, "g1m1"), (2, "g2m0"), (2, "g2m1"), (2, "g2m2")]:
        (tmp_path / "hpo" / f"gen-{gen:04d}" / member / f"checkpoint-{2 * gen}").mkdir(parents=True)
    state = SearchState(2, [Slot("g3m0", {}, "g2m1", "elite", "hpo/gen-0002/g2m1/checkpoint-4"),
                            Slot("g3m1", {}, "g2m1", "none", "hpo/gen-0002/g2m1/checkpoint-4"),
                            Slot("g3m2", {}, "g2m2", "x", "hpo/gen-0002/g2m2/checkpoint-4")], 7, {})
    prune_checkpoints(tmp_path, referenced(state, complete=False))
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("hpo/*/*"))
    assert left == ["hpo/gen-0002/g2m1", "hpo/gen-0002/g2m2"]
    # search complete: the last generation's checkpoints stay (the elite is exported from them)
    (tmp_path / "hpo" / "gen-0003" / "g3m0" / "checkpoint-6").mkdir(parents=True)
    (tmp_path / "hpo" / "gen-0003" / "g3m1" / "checkpoint-6").mkdir(parents=True)
    done = SearchState(3, [Slot("g4m0", {}, "g3m1", "elite", "hpo/gen-0003/g3m1/checkpoint-6")], 7, {},
                       history=[{"generation": 3, "checkpoint": f"hpo/gen-0003/g3m{i}/checkpoint-6"} for i in (0, 1)])
    assert referenced(done, complete=False) == {"hpo/gen-0003/g3m1/checkpoint-6"}
    prune_checkpoints(tmp_path, referenced(done, complete=True))
    assert sorted(p.name for p in tmp_path.glob("hpo/*/*")) == ["g3m0", "g3m1"]


HISTORY = [
    {"generation": 1, "member": 0, "id": "g1m0", "parent": None, "mutation": "init", "fitness": 0.2, "best": False,
     "hparams": {"learning_rate": 0.02, "num_generations": 4}},
    {"generation": 1, "member": 1, "id": "g1m1", "parent": None, "mutation": "init", "fitness": 0.6, "best": True,
     "hparams": {"learning_rate": 0.005, "num_generations": 2}},
    {"generation": 2, "member": 0, "id": "g2m0", "parent": "g1m1", "mutation": "elite", "fitness": 0.7,
     "best": False, "hparams": {"learning_rate": 0.005, "num_generations": 2}},
    {"generation": 2, "member": 1, "id": "g2m1", "parent": "g1m1",
     "mutation": "learning_rate: 0.005 -> 0.006 (x1.2)", "fitness": 0.8, "best": True,
     "hparams": {"learning_rate": 0.006, "num_generations": 2}},
]


def test_elite_table_lists_hparams_ranges_and_lineage():
    assert [r["id"] for r in lineage("g2m1", HISTORY)] == ["g1m1", "g2m1"]
    text = elite_table(HISTORY[3], HISTORY, hpo())
    assert "member g2m1 of generation 2, fitness 0.8000" in text   # the number hpo_history.jsonl holds
    assert any(line.split()[:2] == ["learning_rate", "0.006"] and "log" in line for line in text.splitlines())
    assert "g1m1 [init] -> g2m1 [learning_rate: 0.005 -> 0.006 (x1.2)]" in text


def test_fitness_plot(tmp_path):
    out = plot_fitness(HISTORY, tmp_path / "hpo_fitness.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_fitness([dict(r, fitness=None) for r in HISTORY], tmp_path / "none.png") is None
    # the x axis shows the generation numbers the file holds (from 1), members within +-0.15 of them
    assert [round(plot_x(r, 2)) for r in HISTORY] == [r["generation"] for r in HISTORY] == [1, 1, 2, 2]
    assert all(abs(plot_x(r, 2) - r["generation"]) <= 0.15 for r in HISTORY)


def test_backend_auto_means_transformers_for_the_search():
    from pipelines.common.config_io import load_yaml
    from pipelines.grpo.hpo.config import GRPOHPOConfigFile
    from pipelines.grpo.hpo.node import member_backend

    raw = load_yaml(REPO / "pipelines" / "grpo" / "configs" / "quickstart_hpo.yaml")
    raw["model"]["backend"] = "auto"
    cfg = GRPOHPOConfigFile.model_validate(raw)
    assert member_backend(cfg).model.backend == "transformers" and cfg.model.backend == "auto"
    raw["model"]["backend"] = "unsloth"
    assert member_backend(GRPOHPOConfigFile.model_validate(raw)).model.backend == "unsloth"
