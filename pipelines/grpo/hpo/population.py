"""The search's persistent state: the population of the next generation to train, and the history so far.

``hpo/state.json`` is rewritten atomically after every completed generation, so a killed search resumes at
the start of the generation it was in. Members' adapters and optimizer states live in checkpoint folders
(``hpo/gen-NNNN/<member id>/checkpoint-<step>``); the state refers to them by paths relative to the run dir.
No torch here: selection, mutation and bookkeeping are plain Python.

Numbering: generations count from 1 everywhere (log, hpo_history.jsonl, metrics.jsonl, member ids ``g<gen>m<i>``,
``hpo/gen-NNNN`` folders, the plot, summary.json); ``state.json``'s ``generation`` is the number of the last
completed generation (0: none yet). Members are indexed from 0 within their generation (member 0 of
generation 1 starts from the config's own values).
"""
from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from pipelines.common.io import atomic_write_text
from pipelines.common.problems import ConfigError, Problem
from pipelines.grpo.hpo.config import HPOSection
from pipelines.grpo.hpo.evolution import generation_rng, initial_hparams, mutate, tournament_select

log = logging.getLogger(__name__)

HPO_DIR = "hpo"
STATE_FILE = "state.json"
HISTORY_FILE = "hpo_history.jsonl"
STATE_VERSION = 2   # 1: generations numbered from 0 in ids and history (migrated on load)
# Settings a resumed search must share with the one that wrote the state (the rest may change).
_FIXED_ON_RESUME = ("population_size", "steps_per_generation", "search_space")


@dataclass
class Slot:
    """A member of the generation about to train: who it is and the checkpoint it starts from."""

    id: str
    hparams: dict[str, Any]
    parent: Optional[str] = None
    mutation: str = "init"
    start: Optional[str] = None      # checkpoint folder relative to the run dir; None: the fresh adapter
    reset_optimizer: bool = False    # start with a fresh optimizer (a learning-rate mutation, as in AgileRL)


@dataclass
class SearchState:
    generation: int                  # the last completed generation (= generations completed; 0: none)
    population: list[Slot]
    seed: int
    hpo: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        data = {"version": STATE_VERSION, "generation": self.generation, "seed": self.seed, "hpo": self.hpo,
                "population": [asdict(s) for s in self.population], "history": self.history}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SearchState":
        data = json.loads(text)
        if data.get("version") == 1:
            data = _from_version_1(data)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        return cls(generation=int(data["generation"]), population=[Slot(**s) for s in data["population"]],
                   seed=int(data["seed"]), hpo=data["hpo"], history=list(data.get("history") or []))


_V1_ID = re.compile(r"^g(\d+)m(\d+)$")


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 state (generations numbered from 0) renumbered from 1: history generations and member ids
    move up by one; checkpoint paths stay what they are on disk."""
    def shift(member: Optional[str]) -> Optional[str]:
        match = _V1_ID.match(member or "")
        return member_id(int(match[1]) + 1, int(match[2])) if match else member

    history = [dict(r, generation=r["generation"] + 1, id=shift(r["id"]), parent=shift(r.get("parent")))
               for r in data.get("history") or []]
    population = [dict(s, id=shift(s["id"]), parent=shift(s.get("parent"))) for s in data["population"]]
    log.info("search state of version 1 renumbered: generations now count from 1")
    return dict(data, version=STATE_VERSION, history=history, population=population)


def member_id(generation: int, index: int) -> str:
    """``g<generation>m<index>``: generation from 1, member index from 0."""
    return f"g{generation}m{index}"


def generation_dir(run_dir: Path, generation: int) -> Path:
    """``hpo/gen-NNNN`` of a generation numbered from 1."""
    return Path(run_dir) / HPO_DIR / f"gen-{generation:04d}"


def initial_state(hpo: HPOSection, seed: int, defaults: dict[str, Any], generation_batch: int) -> SearchState:
    """Generation 1: member 0 starts from the config's values, the others from seeded draws within the bounds."""
    rng = generation_rng(seed, 0)
    slots = [Slot(member_id(1, i), initial_hparams(hpo, defaults, i, rng, generation_batch))
             for i in range(hpo.population_size)]
    return SearchState(0, slots, seed, hpo.model_dump(mode="json"))


def _fitness_key(value: Optional[float]) -> float:
    return float("-inf") if value is None else float(value)


def best_index(fitness: Sequence[Optional[float]]) -> int:
    """The fittest member (ties: the lower index; a member without a fitness counts as the worst)."""
    return max(range(len(fitness)), key=lambda i: (_fitness_key(fitness[i]), -i))


def next_population(population: Sequence[Slot], fitness: Sequence[Optional[float]], checkpoints: Sequence[str],
                    hpo: HPOSection, seed: int, generation: int, generation_batch: int) -> list[Slot]:
    """The population of generation ``generation + 1``: the elite first, then tournament winners, mutated.

    A clone starts from its parent's checkpoint (adapter weights and optimizer state); the elite keeps its
    hyperparameters, every other clone may get one of them mutated. A clone whose learning rate is mutated
    starts with a fresh optimizer when ``hpo.reset_optimizer_on_lr_mutation``. Seeded per generation: the same
    seed and fitness values always give the same population.
    """
    rng: random.Random = generation_rng(seed, generation)
    chosen = tournament_select([_fitness_key(f) for f in fitness], hpo.tournament_size, rng)
    out = []
    for j, idx in enumerate(chosen):
        parent = population[idx]
        if j == 0:
            hparams, desc, lr_mutated = dict(parent.hparams), "elite", False
        else:
            hparams, desc, lr_mutated = mutate(parent.hparams, hpo, rng, generation_batch)
        out.append(Slot(member_id(generation + 1, j), hparams, parent=parent.id, mutation=desc,
                        start=checkpoints[idx], reset_optimizer=lr_mutated and hpo.reset_optimizer_on_lr_mutation))
    return out


def history_records(state: SearchState, fitness: Sequence[Optional[float]], evals: Sequence[dict[str, float]],
                    checkpoints: Sequence[str], steps: int) -> list[dict[str, Any]]:
    """One record per member of the generation just trained, ``state.generation + 1`` (hyperparameters,
    fitness, parent, mutation, whether it started with a fresh optimizer)."""
    best = best_index(fitness)
    return [{"generation": state.generation + 1, "member": i, "id": s.id, "parent": s.parent, "mutation": s.mutation,
             "optimizer_reset": s.reset_optimizer, "hparams": s.hparams, "fitness": fitness[i], "best": i == best,
             "steps": steps, "checkpoint": checkpoints[i], "eval": evals[i]} for i, s in enumerate(state.population)]


def save_state(run_dir: Path, state: SearchState) -> None:
    """state.json and hpo_history.jsonl, each replaced atomically (state first: it is what resume reads)."""
    atomic_write_text(Path(run_dir) / HPO_DIR / STATE_FILE, state.to_json())
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in state.history)
    atomic_write_text(Path(run_dir) / HISTORY_FILE, lines)


def load_state(run_dir: Path) -> Optional[SearchState]:
    path = Path(run_dir) / HPO_DIR / STATE_FILE
    if not path.exists():
        return None
    return SearchState.from_json(path.read_text(encoding="utf-8"))


def check_resumable(state: SearchState, hpo: HPOSection, seed: int, file: str) -> None:
    """ConfigError when the saved search cannot continue under the current settings."""
    now = hpo.model_dump(mode="json")
    problems = [Problem(file, f"hpo.{key}", f"differs from the search being resumed ({state.hpo.get(key)!r} -> "
                                            f"{now[key]!r}); restore it, or start a new run_name")
                for key in _FIXED_ON_RESUME if state.hpo.get(key) != now[key]]
    if state.seed != seed:
        problems.append(Problem(file, "hpo.seed", f"the search being resumed used seed {state.seed}, not {seed}; "
                                                  "restore it, or start a new run_name"))
    if problems:
        raise ConfigError(problems)


def referenced(state: SearchState, complete: bool) -> set[str]:
    """Checkpoints the saved state still needs: the next generation's starts and, once the search is
    ``complete``, all of the last generation's (the elite is exported from them; raising hpo.generations and
    resuming continues from the next generation's starts)."""
    keep = {s.start for s in state.population if s.start}
    if complete:
        keep |= {r["checkpoint"] for r in state.history if r["generation"] == state.generation}
    return keep


def prune_checkpoints(run_dir: Path, keep: set[str]) -> None:
    """Delete member folders (``hpo/gen-N/<id>``) that hold none of ``keep``; then empty generation folders.
    Call it only after :func:`save_state`, so a kill at any point leaves every referenced checkpoint."""
    run_dir = Path(run_dir)
    root = run_dir / HPO_DIR
    if not root.is_dir():
        return
    for folder in sorted(root.glob("gen-*/*")):
        rel = folder.relative_to(run_dir).as_posix()
        if folder.is_dir() and not any(k == rel or k.startswith(rel + "/") for k in keep):
            shutil.rmtree(folder, ignore_errors=True)
    for gen in sorted(root.glob("gen-*")):
        if gen.is_dir() and not any(gen.iterdir()):
            gen.rmdir()
