"""The GRPO node: data -> model -> rewards -> trainer -> artifacts in the run dir.

Validation first: the tokenizer (cheap) is loaded for the prompt budget, the data is sampled and the reward
functions are built before any model weights are loaded, so a data or reward mistake costs seconds, not a
model load. torch/transformers/trl are imported here, lazily, only when the node runs.

The run dir receives: checkpoint-N/ (every save_steps; resumable), metrics.jsonl, reward_curve.png, the
high-scoring export, final_adapter/ (adapter + tokenizer with the chat template used), summary.json.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from pipelines.common.io import atomic_write_text, replace_dir
from pipelines.common.node import NodeContext
from pipelines.common.stack import collect_stack
from pipelines.grpo.artifacts import FINAL_ADAPTER, METRICS_FILE, REWARD_CURVE, SUMMARY_FILE, TRL_REWARD_NAME
from pipelines.grpo.config import RESUME_HINT, GRPOConfigFile

log = logging.getLogger(__name__)


def run(cfg: GRPOConfigFile, ctx: NodeContext) -> dict[str, Any]:
    """Train a LoRA adapter with GRPO as configured; returns the outputs recorded in the manifest."""
    from pipelines.grpo.checkpoints import checkpoint_step, resolve_resume
    from pipelines.grpo.inputs import load_inputs
    from pipelines.grpo.model import choose_backend, use_gpu

    started = time.time()
    run_dir = Path(ctx.run_dir)
    tp = cfg.training_parameters
    resume = resolve_resume(tp.resume_from_checkpoint, run_dir, ctx.config_file)
    resume_step = (checkpoint_step(resume) or 0) if resume else (0 if tp.resuming or restarts(run_dir) else None)
    if resume is not None and resume_step is not None and tp.max_steps is not None and resume_step >= tp.max_steps:
        return finished_run(run_dir, resume, resume_step, tp.max_steps)
    backend = choose_backend(cfg.model.backend, has_cuda=use_gpu(cfg))
    if backend == "unsloth":
        require_unsloth(ctx.config_file)
        import unsloth  # noqa: F401 - must come before transformers/trl: it patches them on import

    inputs = load_inputs(cfg, ctx)
    model_path, tokenizer, sample = inputs.model_path, inputs.tokenizer, inputs.sample
    log.info("%d training rows, %d held-out rows; backend %s; model %s", len(sample.train), len(sample.eval),
             backend, model_path)

    from pipelines.rewards.engine import RewardStack
    from pipelines.common.devices import current_rank

    # Run-level files are the main process's: only it drops the records a resumed run redoes (another rank's
    # rewrite could discard what the main process already appended). No rank writes a record before the
    # model is wrapped for DDP at the start of training, a collective step that follows these truncations.
    main_process = current_rank() == 0
    stack = RewardStack(cfg.reward, cfg.datasets, run_dir, resume_step=resume_step if main_process else None)
    metrics_cb = None
    from pipelines.grpo.trainer import tracker_env

    try:
        # The trackers' callbacks read their environment when the trainer builds them (tensorboard's log dir)
        # and when training starts (wandb), so both happen inside it.
        with tracker_env(cfg, run_dir):
            trainer, metrics_cb = build_trainer(cfg, ctx, model_path, tokenizer, sample, stack,
                                                 resume_step if main_process else None, resume=resume)
            from pipelines.grpo.budget import cost_meter

            trainer.cost_meter = cost_meter(cfg, stack, run_dir / METRICS_FILE, resume_step, started)
            _train(trainer, run_dir, resume)
    finally:
        stack.close()
        if metrics_cb is not None:
            metrics_cb.close()
    final = save_final_adapter(trainer, run_dir)
    if cfg.push_to_hub is not None and trainer.is_world_process_zero():
        push_adapter(final, cfg.push_to_hub.repo_id, cfg.push_to_hub.private)
    outputs = {"final_adapter": final, "metrics": run_dir / METRICS_FILE, "reward_curve": run_dir / REWARD_CURVE,
               "summary": run_dir / SUMMARY_FILE, "difficulty": run_dir / "difficulty.parquet"}
    if stack.export is not None:
        outputs["high_scores"] = stack.export.path
    if trainer.is_world_process_zero():
        write_summary(run_dir, trainer, started, outputs, resume)
    return outputs


def restarts(run_dir: Path) -> bool:
    """A run in a folder whose earlier attempt stopped before its first checkpoint starts again from step 0: its
    log stays at the top of run.log, its metrics and high-score records are dropped (nothing trained is lost)."""
    from pipelines.grpo.checkpoints import stopped_before_first_checkpoint

    earlier = [n for n in (METRICS_FILE, "manifest.json") if (run_dir / n).exists()]
    if not earlier or not stopped_before_first_checkpoint(run_dir):
        return False
    log.warning("%s holds an earlier attempt that stopped before its first checkpoint: starting again from step 0 "
                "(its log is kept above in run.log; its metrics and high-score records are dropped)", run_dir)
    return True


def finished_run(run_dir: Path, checkpoint: Path, step: int, max_steps: int) -> dict[str, Any]:
    """A resume of a run that already reached max_steps trains nothing: it says so and returns the run's outputs
    (a missing final_adapter, from a kill after the last checkpoint, is taken from that checkpoint)."""
    final = run_dir / FINAL_ADAPTER
    if not (final / "adapter_config.json").is_file():
        tmp = run_dir / f".{FINAL_ADAPTER}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns(*CHECKPOINT_ONLY))
        replace_dir(tmp, final)
        log.info("final adapter taken from %s", checkpoint.name)
    log.warning("the run in %s is complete: %s is at step %d and max_steps is %d, so there is nothing to train. "
                "To train further, raise training_parameters.max_steps and resume again", run_dir, checkpoint.name,
                step, max_steps)
    outputs: dict[str, Any] = {"final_adapter": final, "metrics": run_dir / METRICS_FILE,
                               "reward_curve": run_dir / REWARD_CURVE, "summary": run_dir / SUMMARY_FILE}
    return {k: v for k, v in outputs.items() if Path(v).exists()}


# Files of a checkpoint that are training state, not part of an adapter folder.
CHECKPOINT_ONLY = ("optimizer.*", "scheduler.*", "rng_state*", "trainer_state.json", "training_args.bin",
                   "COMPLETE", "scaler.*", "difficulty.parquet")


def require_unsloth(config_file: str) -> None:
    """backend: unsloth needs CUDA and the unsloth package; say how to get either instead of an ImportError."""
    from pipelines.common import availability
    from pipelines.common.hf import cuda_available
    from pipelines.common.problems import ConfigError, Problem

    if not availability.is_available("unsloth"):
        raise ConfigError([Problem(config_file, "model.backend", "unsloth is not installed: run `bash linux.sh "
                                   "--gpu` on a GPU machine, or use backend: transformers (or auto)")])
    if not cuda_available():
        raise ConfigError([Problem(config_file, "model.backend", "the unsloth backend needs a CUDA GPU and none "
                                   "is visible; use backend: transformers (or auto) on this machine")])


def build_trainer(cfg: GRPOConfigFile, ctx: NodeContext, model_path: str, tokenizer: Any, sample: Any,
                   stack: Any, resume_step: Optional[int], resume: Optional[Path] = None):
    """Load the model (only now) and assemble the trainer with its callbacks (``resume``: the checkpoint the run
    continues from, whose difficulty table it reloads)."""
    from datasets import Dataset

    from pipelines.grpo.callbacks import metrics_callback, truncate_metrics_after, use_compact_progress
    from pipelines.grpo.interrupt import update_guard
    from pipelines.grpo.model import load_model, use_gpu
    from pipelines.grpo.trainer import build_grpo_config, trainer_class

    run_dir = Path(ctx.run_dir)
    tp = cfg.training_parameters
    if resume_step is not None:
        dropped = truncate_metrics_after(run_dir / METRICS_FILE, resume_step)
        if dropped:
            log.info("metrics.jsonl: dropped %d record(s) after step %d (resume)", dropped, resume_step)
        from pipelines.grpo.monitor import truncate_alerts

        truncate_alerts(run_dir, resume_step)
    loaded = load_model(cfg, model_path, tokenizer)
    args = build_grpo_config(cfg, run_dir, loaded.grpo_overrides, on_gpu=use_gpu(cfg), train_rows=len(sample.train))
    metrics_cb = metrics_callback(run_dir / METRICS_FILE, run_dir / REWARD_CURVE, exclude=[TRL_REWARD_NAME])
    trainer_ref: list = []
    guard = update_guard()
    callbacks = [metrics_cb, guard]
    from pipelines.common.devices import current_rank
    from pipelines.grpo.difficulty_pool import pool_callback, sampling_hooks
    from pipelines.grpo.tools import trainer_inputs
    from pipelines.rewards.components import dataset_labels

    # the training rows as the trainer sees them (an `environment` column routes rows to their dataset's tools);
    # dynamic sampling draws its fresh rows from the same list
    reward_func, rows, tool_kwargs, tool_metrics = trainer_inputs(cfg, loaded.tokenizer, stack.reward_func,
                                                                  sample.train)
    hooks = sampling_hooks(cfg.dataset_settings, cfg.seed, tp.num_generations, rows,
                           dataset_labels(cfg.datasets), resume, current_rank() == 0, ctx.config_file)
    callbacks.append(pool_callback(hooks["difficulty_pool"], run_dir))
    tracker = stack.track_signal(tp.num_generations)       # signal/... metrics of every training batch
    if cfg.monitor is not None and cfg.monitor.enabled:
        from pipelines.grpo.monitor import monitor_callback

        callbacks.append(monitor_callback(cfg.monitor, cfg.datasets, tracker, run_dir))
    if cfg.evaluation is not None and sample.eval:
        from pipelines.grpo.evaluation import evaluation_callback, make_evaluator

        import os

        from pipelines.grpo.evaluation import eval_engine

        engine = eval_engine(loaded.backend, loaded.generates_with_vllm, int(os.environ.get("WORLD_SIZE", "1")))
        evaluator = make_evaluator(cfg, sample.eval, stack, loaded.tokenizer, engine)
        callbacks.append(evaluation_callback(evaluator, cfg.evaluation.interval_steps, trainer_ref))
    # Where vLLM generates (Unsloth fast_inference: SamplingParams) it applies the stop strings; else the subclass.
    # TRL's vLLM (model.vllm) stops there too, but TRL decodes the whole last token ("lovely" for stop "e"): the
    # subclass still trims the text the rewards see (it leaves generation to vLLM when use_vllm).
    vllm_stops = loaded.generates_with_vllm and loaded.backend == "unsloth"
    stops = () if vllm_stops else tuple(tp.model_stop_sequences)
    # GRPOTrainer applies the LoraConfig (random LoRA A init) before Trainer.__init__ seeds the RNGs, so seed
    # here: without it two runs with the same seed start from different adapters and diverge at the first update.
    from transformers import set_seed

    set_seed(cfg.seed)
    trainer = trainer_class()(
        model=loaded.model, args=args, train_dataset=Dataset.from_list(rows),
        reward_funcs=[reward_func], processing_class=loaded.tokenizer, peft_config=loaded.peft_config,
        callbacks=callbacks, reward_stack=stack, stop_sequences=stops,
        log_completions_every=cfg.logging.log_completions_every, base_model=cfg.model.base_model_name,
        max_total_tokens=_total_token_cap(cfg), **hooks, **tool_kwargs)
    trainer.tool_metrics = tool_metrics   # its tools/... metrics join every training log
    use_compact_progress(trainer)
    trainer.update_guard = guard   # read by _train on Ctrl-C
    trainer_ref.append(trainer)
    return trainer, metrics_cb


def _total_token_cap(cfg: GRPOConfigFile) -> Optional[int]:
    """model.max_seq_length when prompt + completion budgets exceed it (accepted by compat: augmentoolkit): HF
    generate then stops each row there, as vLLM's max_model_len does (the Unsloth backend's vLLM is built with
    max_seq_length, so it caps by itself)."""
    tp = cfg.training_parameters
    over = tp.max_prompt_length + tp.max_completion_length > cfg.model.max_seq_length
    return cfg.model.max_seq_length if over else None


def _train(trainer: Any, run_dir: Path, resume: Optional[Path]) -> None:
    from pipelines.common.guards import GuardStop
    from pipelines.grpo.interrupt import checkpoint_on_interrupt
    from pipelines.rewards.errors import CircuitBreakerOpen, RewardTimeout

    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except (CircuitBreakerOpen, RewardTimeout) as exc:
        saved = save_emergency_checkpoint(trainer, run_dir)
        what = "reward circuit breaker open" if isinstance(exc, CircuitBreakerOpen) else "reward timed out"
        log.error("%s at step %d: %s. %s Fix the cause (e.g. the judge endpoint or the slow reward), then resume "
                  "with %s", what, trainer.state.global_step, exc,
                  f"Checkpoint saved: {saved}." if saved else "No new checkpoint was needed.", RESUME_HINT)
        raise
    except GuardStop as exc:
        # Guards raise after a completed optimizer step (on_step_end), so the checkpoint is a clean resume point.
        exc.step = trainer.state.global_step
        saved = save_emergency_checkpoint(trainer, run_dir)
        log.warning("%s. %s", exc, f"Checkpoint saved: {saved}." if saved else "The latest checkpoint is current.")
        raise
    except KeyboardInterrupt:
        checkpoint_on_interrupt(trainer, run_dir, getattr(trainer, "update_guard", None), save_emergency_checkpoint)
        raise


def save_emergency_checkpoint(trainer: Any, run_dir: Path) -> Optional[Path]:
    """Save a checkpoint of the current step (weights as of the last completed optimizer step) unless one
    exists. The failed step had not updated anything yet, so resuming from here loses no work."""
    from pipelines.grpo.checkpoints import checkpoint_step

    step = trainer.state.global_step
    folder = run_dir / f"checkpoint-{step}"
    if step == 0 or checkpoint_step(folder) is not None:
        return None
    trainer._save_checkpoint(trainer.model, trial=None)
    return folder


def save_final_adapter(trainer: Any, run_dir: Path) -> Path:
    """The adapter and the tokenizer (with the chat template used), written to a temp folder then renamed,
    so ``final_adapter/`` is either complete or absent. Every rank calls this (``save_model`` gathers sharded
    weights); only the main process touches the folders."""
    final = run_dir / FINAL_ADAPTER
    tmp = run_dir / f".{FINAL_ADAPTER}.tmp"
    main_process = trainer.is_world_process_zero()
    if main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if main_process:
        trainer.processing_class.save_pretrained(str(tmp))
        replace_dir(tmp, final)
        log.info("final adapter saved to %s", final)
    trainer.accelerator.wait_for_everyone()   # no rank returns before the adapter is in place
    return final


def push_adapter(folder: Path, repo_id: str, private: bool, api: Any = None) -> bool:
    """Upload the final adapter folder (needs a Hugging Face token in the environment, HF_TOKEN).

    A failed upload does not fail the run: the adapter is safe on disk, and the error says how to upload it
    later. Returns True when the upload succeeded. ``api`` is the HfApi seam (tests; no hub here).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="GRPO LoRA adapter")
    except Exception as exc:  # noqa: BLE001 - network, auth, quota: all leave the local adapter intact
        log.error("push_to_hub to %s failed (%s: %s); the adapter is in %s; upload it later with "
                  "`huggingface-cli upload %s %s` after `huggingface-cli login`", repo_id, type(exc).__name__,
                  exc, folder, repo_id, folder)
        return False
    log.info("pushed %s to the hub as %s", folder, repo_id)
    return True


def write_summary(run_dir: Path, trainer: Any, started: float, outputs: dict[str, Any],
                  resume: Optional[Path]) -> dict[str, Any]:
    """summary.json plus an end-of-run summary in the log: steps, time, reward first vs last window, paths."""
    from pipelines.grpo.callbacks import reward_windows

    windows = reward_windows(run_dir / METRICS_FILE)
    summary = {"steps": trainer.state.global_step, "max_steps": trainer.args.max_steps,
               "seconds": round(time.time() - started, 1), "resumed_from": str(resume) if resume else None,
               "reward": windows, "outputs": {k: str(v) for k, v in outputs.items()},
               "checkpoints": sorted(p.name for p in run_dir.glob("checkpoint-*")), "stack": collect_stack()}
    meter = getattr(trainer, "cost_meter", None)
    if meter is not None:
        summary["cost"] = meter.totals()
    from pipelines.grpo.signal_summary import signal_summary

    summary.update(signal_summary(run_dir))     # signal/... first vs last window; the monitor's alerts
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    lines = [f"GRPO run finished: {summary['steps']} steps in {summary['seconds']:.0f}s"
             + (f" (resumed from {resume.name})" if resume else "")]
    if windows:
        n = int(windows["window"])
        lines.append(f"  reward (combined, mean): first {n} step(s) {windows['first']:.3f} -> last {n} step(s) "
                     f"{windows['last']:.3f} ({windows['last'] - windows['first']:+.3f})")
    for key, value in outputs.items():
        lines.append(f"  {key}: {value}")
    log.info("\n".join(lines))
    return summary
