"""The rollout node: sample prompts, generate K completions each, score them, derive SFT and preference data.

Flow: data layer (same sampling and prompt construction as training) -> generator (vLLM or transformers) ->
reward stack (same rewards, combination and scaling) -> ``scored.jsonl`` (one line per completion, appended
per prompt, so a killed run resumes where it stopped) -> ``scored.parquet``, ``sft.jsonl``,
``preferences.jsonl`` and ``summary.json``, all derived from ``scored.jsonl`` at the end.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from pipelines.common.io import JsonlAppender, read_jsonl
from pipelines.common.problems import ConfigError, Problem
from pipelines.common.node import NodeContext
from pipelines.rollout import outputs as out_files
from pipelines.rollout.config import RolloutConfigFile
from pipelines.rollout.scoring import score_groups
from pipelines.rollout.resume import load_finished, record_state, resume_problems

log = logging.getLogger(__name__)

SCORED = "scored.jsonl"
_ROW_KEYS = ("prompt", "answer", "dataset_index", "dataset_path", "row_id")


def _config_error(file: str, key: str, exc: Exception) -> ConfigError:
    return ConfigError([Problem(file, key, str(exc))])


def sample_prompts(cfg: RolloutConfigFile, tokenizer: Any, config_file: str) -> list[dict[str, Any]]:
    """The rows the data layer samples for this config (seeded: the same rows in the same order on resume)."""
    from pipelines.data.sampling import sample_with_tokenizer

    return list(sample_with_tokenizer(cfg.data_spec(), tokenizer, config_file).train)


def make_records(rows: Sequence[dict[str, Any]], groups: Sequence[Sequence[dict[str, Any]]],
                 scores: Sequence[Sequence[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """One scored record per completion, grouped per prompt."""
    out = []
    for row, comps, row_scores in zip(rows, groups, scores):
        extra = {k: v for k, v in row.items() if k not in _ROW_KEYS}
        recs = []
        for i, (comp, score) in enumerate(zip(comps, row_scores)):
            rec = {"row_id": str(row["row_id"]), "dataset_index": row.get("dataset_index"),
                   "dataset_path": row.get("dataset_path"), "completion_index": i, "prompt": row["prompt"],
                   "answer": row.get("answer"), "completion": comp["text"],
                   "finish_reason": comp.get("finish_reason"), "completion_tokens": comp.get("num_tokens"),
                   **score, "row_columns": extra}
            if comp.get("messages"):   # a multi-turn completion: the whole transcript, tool calls and results
                rec["completion_messages"] = comp["messages"]
            recs.append(rec)
        out.append(recs)
    return out


def generate_and_score(cfg: RolloutConfigFile, ctx: NodeContext, tokenizer: Any, rows: list[dict[str, Any]],
                       done: set[str], scored_path: Path) -> None:
    """Generate, score and append per prompt, with a progress bar over all prompts of the run.

    Batches are fixed slices of the sampled rows and each is seeded by its index, so a resumed run generates
    what an uninterrupted one would have (except for a batch that a kill cut while it was being written).
    """
    from tqdm.auto import tqdm

    from pipelines.rewards.engine import RewardStack
    from pipelines.rollout.generation import DEFAULT_BATCH, make_generator
    try:
        generator = make_generator(cfg, tokenizer)
    except ValueError as exc:  # an adapter that does not fit the model
        raise _config_error(ctx.config_file, "model.adapter", exc) from exc
    batch_size = cfg.generation.batch_size or DEFAULT_BATCH[generator.backend]
    # No run dir: the high-scoring export is a training feature; here scored.jsonl and sft.jsonl hold them all.
    stack = RewardStack(cfg.reward, cfg.datasets, run_dir=None)
    from pipelines.rollout.tools import ToolLoop, uses_tools

    tool_loop = ToolLoop(cfg, generator) if uses_tools(cfg) else None   # tool calls run while generating
    record_state(cfg, Path(ctx.run_dir))   # only now: a config error above leaves no half-run behind
    meter = rollout_meter(cfg, stack, Path(ctx.run_dir))
    pending = sum(1 for r in rows if str(r["row_id"]) not in done)
    log.info("rollout: %d prompt(s) to generate (%d already done), K=%d, backend %s, batch %d", pending,
             len(rows) - pending, cfg.generation.num_completions, generator.backend, batch_size)
    bar = tqdm(total=len(rows), initial=len(rows) - pending, desc="rollout", unit="prompt")
    try:
        with JsonlAppender(scored_path) as appender:
            for index, start in enumerate(range(0, len(rows), batch_size)):
                batch = [r for r in rows[start:start + batch_size] if str(r["row_id"]) not in done]
                if not batch:
                    continue
                generator.seed(cfg.seed * 1_000_003 + index)
                comps = tool_loop.generate(batch) if tool_loop else generator.generate([r["prompt"] for r in batch])
                scores = score_groups(stack, batch, comps, step=index)
                for recs in make_records(batch, comps, scores):
                    for rec in recs:
                        appender.write(rec)
                bar.update(len(batch))
                if meter is not None:      # after the batch is written: a stop loses nothing, resume skips it
                    meter.observe(stack.pop_metrics())   # saves the totals to cost.json
                    meter.enforce(index)                 # past a cap: GuardStop (exit 3), resume: true continues
    finally:
        bar.close()
        stack.close()


def rollout_meter(cfg: RolloutConfigFile, stack: Any, run_dir: Path) -> Any:
    """The budget meter (None without ``budget``), continuing the totals a stopped or killed run saved."""
    if cfg.budget is None:
        return None
    from pipelines.common.budget import COST_FILE, CostMeter, load_totals

    meter = CostMeter(cfg.budget, stack.judge_models(), state_file=run_dir / COST_FILE)
    if cfg.resume:
        meter.restore(load_totals(run_dir / COST_FILE))
    return meter


def run(cfg: RolloutConfigFile, ctx: NodeContext) -> dict[str, str]:
    """Run the rollout into ``ctx.run_dir``; return the outputs dict recorded in manifest.json."""
    from pipelines.common.tiny_model import resolve_model_name
    from pipelines.rollout.generation import load_tokenizer, model_paths
    started = time.time()
    run_dir = Path(ctx.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    problems = resume_problems(cfg, run_dir, ctx.config_file)   # the runner checked; this guards direct calls
    if problems:
        raise ConfigError(problems)
    # builtin:tiny resolves to the same cached build the GRPO node trained (<outputs>/.cache)
    base = resolve_model_name(cfg.model.base_model_name, cache_root=Path(ctx.outputs_root) / ".cache")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"base_model_name": base})})
    scored_path = run_dir / SCORED
    try:
        _, _, tok_src = model_paths(cfg)
    except FileNotFoundError as exc:
        raise _config_error(ctx.config_file, "model.adapter", exc) from exc
    try:
        tokenizer = load_tokenizer(tok_src, cfg.generation.chat_template)
    except ValueError as exc:
        raise _config_error(ctx.config_file, "generation.chat_template", exc) from exc
    rows = sample_prompts(cfg, tokenizer, ctx.config_file)
    done = load_finished(scored_path, cfg.generation.num_completions)
    if any(str(r["row_id"]) not in done for r in rows):
        generate_and_score(cfg, ctx, tokenizer, rows, done, scored_path)
    else:
        log.info("rollout: all %d prompt(s) already scored; deriving the outputs", len(rows))
    wanted = {str(r["row_id"]) for r in rows}
    records = [r for r in read_jsonl(scored_path) if r["row_id"] in wanted] if scored_path.exists() else []
    outputs = out_files.write_outputs(cfg, run_dir, records, seconds=time.time() - started)
    return {"scored_jsonl": str(scored_path), **outputs}
