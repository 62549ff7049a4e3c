"""The ``grpo_hpo`` node: evolutionary hyperparameter search over a population of LoRA adapters.

Per generation every member trains ``hpo.steps_per_generation`` GRPO steps (the grpo node's trainer, reward
stack and GRPOConfig mapping, on one shared base model), is evaluated on the same held-out prompts (fitness =
mean combined reward), and then selection (elite + tournaments) and mutation make the next population.
Outputs in the run dir: hpo_history.jsonl, elite_adapter/, hpo_fitness.png, metrics.jsonl, summary.json;
hpo/state.json and hpo/gen-NNNN/ hold what a resumed search needs. Generations are numbered from 1 in all of them.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from pipelines.common.io import atomic_write_text, replace_dir
from pipelines.common.problems import ConfigError, Problem
from pipelines.common.node import NodeContext
from pipelines.common.stack import collect_stack
from pipelines.grpo.artifacts import EVAL_REWARD_KEY, METRICS_FILE, SUMMARY_FILE
from pipelines.grpo.checks import generation_batch
from pipelines.grpo.config import RESUME_HINT
from pipelines.grpo.hpo.checks import search_seed
from pipelines.grpo.hpo.config import GRPOHPOConfigFile, mutation_notes
from pipelines.grpo.hpo.population import (HISTORY_FILE, SearchState, best_index, check_resumable, generation_dir,
                                           history_records, initial_state, load_state, next_population,
                                           prune_checkpoints, referenced, save_state)
from pipelines.grpo.hpo.report import elite_table, plot_fitness

log = logging.getLogger(__name__)

FITNESS_PLOT = "hpo_fitness.png"
ELITE_ADAPTER = "elite_adapter"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def run(cfg: GRPOHPOConfigFile, ctx: NodeContext) -> dict[str, Any]:
    """Run (or resume) the search; returns the outputs recorded in the manifest."""
    from pipelines.common.io import JsonlAppender
    from pipelines.grpo.callbacks import truncate_metrics_after
    from pipelines.grpo.inputs import load_inputs
    from pipelines.grpo.model import choose_backend

    started = time.time()
    cfg = member_backend(cfg)
    for note in mutation_notes(cfg.hpo):
        log.warning(note)
    run_dir, hpo = Path(ctx.run_dir), cfg.hpo
    if choose_backend(cfg.model.backend) == "unsloth":
        import unsloth  # noqa: F401 - must come before transformers/trl: it patches them on import
    inputs = load_inputs(cfg, ctx)
    model_path, tokenizer, sample = inputs.model_path, inputs.tokenizer, inputs.sample
    if not sample.eval:
        raise ConfigError([Problem(ctx.config_file, "evaluation", "no held-out rows were drawn, so there is no "
                                                                  "fitness; raise evaluation.rows")])
    state, resumed = start_state(cfg, run_dir, ctx.config_file)
    resume_step = state.generation * hpo.steps_per_generation if resumed else None
    if resume_step is not None:
        truncate_metrics_after(run_dir / METRICS_FILE, resume_step)

    from pipelines.grpo.hpo.members import PopulationTrainer
    from pipelines.rewards.engine import RewardStack

    stack = RewardStack(cfg.reward, cfg.datasets, run_dir, resume_step=resume_step)
    metrics = JsonlAppender(run_dir / METRICS_FILE)
    try:
        if state.generation < hpo.generations:
            population = PopulationTrainer(cfg, run_dir, model_path, tokenizer, sample, stack, metrics)
            population.cost_meter = search_meter(cfg, stack, run_dir, resumed, started)
            while state.generation < hpo.generations:
                run_generation(population, state, cfg, run_dir)
    except BaseException:
        log.error("search stopped during generation %d of %d; the %d completed generation(s) are kept: resume "
                  "with %s", state.generation + 1, hpo.generations, state.generation, RESUME_HINT)
        raise
    finally:
        stack.close()
        metrics.close()
    outputs = finish(cfg, run_dir, state, tokenizer, started, resumed)
    if stack.export is not None:
        outputs["high_scores"] = stack.export.path
    return outputs


def search_meter(cfg: GRPOHPOConfigFile, stack: Any, run_dir: Path, resumed: bool, started: float) -> Any:
    """The search's budget meter over every member (None without ``budget``); a resumed search continues the
    totals saved in cost.json (the redone generation's spend is spent again, and counted)."""
    if cfg.budget is None:
        return None
    from pipelines.common.budget import COST_FILE, CostMeter, load_totals

    meter = CostMeter(cfg.budget, stack.judge_models(), started=started, state_file=run_dir / COST_FILE)
    if resumed:
        meter.restore(load_totals(run_dir / COST_FILE))
    return meter


def member_backend(cfg: GRPOHPOConfigFile) -> GRPOHPOConfigFile:
    """``backend: auto`` means transformers here: the search (a new trainer per member on one PEFT model) is
    verified on that backend; ``backend: unsloth`` is honoured, with a warning."""
    if cfg.model.backend == "auto":
        cfg = cfg.model_copy(deep=True)
        cfg.model.backend = "transformers"
        log.info("grpo_hpo: backend auto -> transformers (set backend: unsloth to try Unsloth, not yet verified "
                 "with per-member trainers)")
    elif cfg.model.backend == "unsloth":
        log.warning("grpo_hpo on the unsloth backend is not verified yet (one trainer per member on Unsloth's "
                    "PEFT model and vLLM engine); if a member fails, use backend: transformers")
    return cfg


def start_state(cfg: GRPOHPOConfigFile, run_dir: Path, config_file: str) -> tuple[SearchState, bool]:
    """The saved state when resuming (``resume_from_checkpoint: auto``), else a new initial population."""
    seed = search_seed(cfg)
    resume = cfg.training_parameters.resuming
    saved = load_state(run_dir) if resume else None
    if saved is not None:
        check_resumable(saved, cfg.hpo, seed, config_file)
        saved.hpo = cfg.hpo.model_dump(mode="json")
        log.info("resuming the search at generation %d of %d", saved.generation + 1, cfg.hpo.generations)
        return saved, True
    if resume:
        log.warning("resume_from_checkpoint: auto found no saved search in %s; starting at generation 1", run_dir)
    state = initial_state(cfg.hpo, seed, searched_defaults(cfg), generation_batch(cfg))
    save_state(run_dir, state)
    return state, resume


def searched_defaults(cfg: GRPOHPOConfigFile) -> dict[str, Any]:
    """The config's value of every searched field (TRL's GRPOConfig default where the config sets none)."""
    import dataclasses

    from trl import GRPOConfig

    values = {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.default is not dataclasses.MISSING}
    values.update(cfg.training_parameters.model_dump())
    return {name: values.get(name) for name in cfg.hpo.search_space}


def run_generation(population: Any, state: SearchState, cfg: GRPOHPOConfigFile, run_dir: Path) -> None:
    """Train and evaluate every member of generation ``state.generation + 1`` (generations count from 1), then
    select and mutate; save the state."""
    from tqdm.auto import tqdm

    hpo, g = cfg.hpo, state.generation + 1
    gen_dir = generation_dir(run_dir, g)
    shutil.rmtree(gen_dir, ignore_errors=True)   # what an interrupted attempt at this generation left
    fitness: list[Optional[float]] = []
    evals, checkpoints = [], []
    for slot in tqdm(state.population, desc=f"generation {g}/{hpo.generations}", unit="member"):
        start = run_dir / slot.start if slot.start else None
        log.info("generation %d, member %s (%s%s): %s", g, slot.id, slot.mutation,
                 ", fresh optimizer" if slot.reset_optimizer else "", _fmt(slot.hparams))
        checkpoint, metrics, trainer = population.train(g, slot.id, slot.hparams, start, gen_dir / slot.id,
                                                        reset_optimizer=slot.reset_optimizer)
        population.release(trainer)
        del trainer
        fitness.append(metrics.get(EVAL_REWARD_KEY))
        evals.append(metrics)
        checkpoints.append(checkpoint.relative_to(run_dir).as_posix())
        log.info("generation %d, member %s: fitness %s", g, slot.id, _fmt_fitness(fitness[-1]))
    if all(f is None for f in fitness):
        log.warning("generation %d: no member got a combined reward on the held-out prompts; selection is "
                    "arbitrary (check the reward functions with --validate and the eval rows)", g)
    state.history += history_records(state, fitness, evals, checkpoints, g * hpo.steps_per_generation)
    # The next population is drawn after the last generation too, so that a finished search can be extended
    # (raise hpo.generations and resume); it is seeded per generation, so drawing it changes nothing else.
    state.population = next_population(state.population, fitness, checkpoints, hpo, state.seed, g,
                                       generation_batch(cfg))
    state.generation = g
    complete = state.generation >= hpo.generations
    save_state(run_dir, state)
    prune_checkpoints(run_dir, referenced(state, complete))
    _plot(state, run_dir)
    best = best_index(fitness)
    log.info("generation %d done: best %s (fitness %s); %s", g, state.history[-len(fitness) + best]["id"],
             _fmt_fitness(fitness[best]), "search complete" if complete else "next: " + ", ".join(
                 f"{s.id}<-{s.parent} [{s.mutation}]" for s in state.population))


def finish(cfg: GRPOHPOConfigFile, run_dir: Path, state: SearchState, tokenizer: Any, started: float,
           resumed: bool) -> dict[str, Any]:
    """Export the elite (the fittest member of the last generation), plot, summary.json and the log table."""
    last = [r for r in state.history if r["generation"] == state.generation]
    elite = last[best_index([r["fitness"] for r in last])]
    elite_dir = save_elite_adapter(run_dir / elite["checkpoint"], tokenizer, run_dir, elite)
    plot = _plot(state, run_dir)
    if cfg.push_to_hub is not None:
        from pipelines.grpo.node import push_adapter

        push_adapter(elite_dir, cfg.push_to_hub.repo_id, cfg.push_to_hub.private)
    outputs: dict[str, Any] = {"elite_adapter": elite_dir, "hpo_history": run_dir / HISTORY_FILE,
                               "metrics": run_dir / METRICS_FILE, "summary": run_dir / SUMMARY_FILE}
    if plot is not None:
        outputs["hpo_fitness"] = plot
    by_gen = {}
    for r in state.history:
        by_gen.setdefault(r["generation"], []).append(r["fitness"])
    summary = {"generations": state.generation, "population_size": cfg.hpo.population_size,
               "steps_per_generation": cfg.hpo.steps_per_generation, "seconds": round(time.time() - started, 1),
               "resumed": resumed, "elite": {k: elite[k] for k in ("id", "generation", "hparams", "fitness")},
               "best_fitness_per_generation": [max((f for f in v if f is not None), default=None)
                                               for _, v in sorted(by_gen.items())],
               "outputs": {k: str(v) for k, v in outputs.items()}, "stack": collect_stack()}
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    log.info("hyperparameter search finished: %d generation(s) x %d member(s) in %.0fs\n%s\n  elite adapter: %s",
             state.generation, cfg.hpo.population_size, summary["seconds"],
             elite_table(elite, state.history, cfg.hpo), elite_dir)
    return outputs


def save_elite_adapter(checkpoint: Path, tokenizer: Any, run_dir: Path, elite: dict[str, Any]) -> Path:
    """The elite's adapter files, the tokenizer (with the chat template used) and its record, written to a
    temp folder and renamed, so ``elite_adapter/`` is either complete or absent."""
    final = run_dir / ELITE_ADAPTER
    tmp = run_dir / f".{ELITE_ADAPTER}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copied = [name for name in _ADAPTER_FILES if (checkpoint / name).is_file()]
    if "adapter_config.json" not in copied or len(copied) < 2:
        raise RuntimeError(f"{checkpoint} holds no complete adapter (found {copied}); the search state is "
                           "damaged, rerun the last generation by deleting its entries from hpo/state.json")
    for name in copied:
        shutil.copy2(checkpoint / name, tmp / name)
    tokenizer.save_pretrained(str(tmp))
    atomic_write_text(tmp / "hpo_elite.json", json.dumps(elite, indent=2) + "\n")
    replace_dir(tmp, final)
    log.info("elite adapter (%s) saved to %s", elite["id"], final)
    return final


def _plot(state: SearchState, run_dir: Path) -> Optional[Path]:
    try:
        return plot_fitness(state.history, run_dir / FITNESS_PLOT)
    except Exception:  # a plotting failure must never stop the search
        log.exception("could not draw %s", run_dir / FITNESS_PLOT)
        return None


def _fmt(hparams: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hparams.items()))


def _fmt_fitness(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_member_preflight(cfg: GRPOHPOConfigFile, ctx: NodeContext) -> list[str]:
    """The node's ``--preflight``: one member's step, on the backend members train on; the projection covers
    every member-step of the search."""
    from pipelines.grpo.preflight import run_preflight

    hpo = cfg.hpo
    total = hpo.population_size * hpo.generations * hpo.steps_per_generation
    return [f"one population member; the projection covers all {total} member-steps ({hpo.population_size} "
            f"members x {hpo.generations} generations x {hpo.steps_per_generation} steps, one after another):",
            *run_preflight(member_backend(cfg), ctx, total_steps=total)]
