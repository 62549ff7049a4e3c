"""``run_pipeline.py --preflight``: one minute that saves an hour. The worst step of a run, before the run.

For a GRPO-family node it loads the model on the configured backend, builds one optimizer step's batch from the
**longest** prompts of the sampled data, generates every completion to ``max_completion_length`` (EOS and stop
strings are held off, so the lengths are the worst case), runs :data:`PREFLIGHT_STEPS` optimizer steps on it with
the real reward stack (one warm-up step, then the timed ones the projection rests on),
calls each LLM judge once, saves a checkpoint and reloads it, then reports peak memory (GPU, or the process's
RSS on a CPU), the step's time, new tokens/s and the wall time projected for ``max_steps``. Out-of-memory is
reported with the config keys that lower memory. Nothing is written to the run dir: everything goes to a
temporary folder. It runs in one process: per-device memory is what the check is about.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional

from pipelines.common.node import NodeContext
from pipelines.common.problems import ConfigError, Problem
from pipelines.grpo.config import GRPOConfigFile

log = logging.getLogger(__name__)
GIB = 1024 ** 3
# Three optimizer steps: the first carries the one-off warm-up (lazy kernel set-up; Unsloth compiles its kernels,
# 187 s on a 0.5B model); the mean of the others is the steady-state step the projection multiplies (one timed
# step alone was about 2x optimistic on a loaded machine).
PREFLIGHT_STEPS = 3
TIMED_STEPS = PREFLIGHT_STEPS - 1


class PreflightOOM(RuntimeError):
    """The preflight step ran out of memory; the message names the keys that lower it."""


def memory_advice(cfg: GRPOConfigFile) -> str:
    """The config keys that lower memory, with their current values."""
    tp, m = cfg.training_parameters, cfg.model
    extra = tp.model_extra or {}
    lines = [
        f"training_parameters.per_device_train_batch_size ({tp.per_device_train_batch_size}): lower it and raise "
        f"gradient_accumulation_steps ({tp.gradient_accumulation_steps}) to keep the effective batch",
        f"training_parameters.num_generations ({tp.num_generations}): fewer completions per prompt",
        f"training_parameters.max_completion_length ({tp.max_completion_length}) and max_prompt_length "
        f"({tp.max_prompt_length}), with model.max_seq_length ({m.max_seq_length})",
        f"model.gpu_memory_utilization ({m.gpu_memory_utilization}): the share vLLM reserves (with vLLM)",
        f"model.load_in_4bit ({str(m.load_in_4bit).lower()}): 4-bit base weights (QLoRA)",
        f"training_parameters.gradient_checkpointing ({extra.get('gradient_checkpointing', 'on by default on a GPU')})"
        ": keep it true",
    ]
    return "keys that lower memory:\n    " + "\n    ".join(lines)


@contextlib.contextmanager
def oom_guard(cfg: GRPOConfigFile, what: str) -> Iterator[None]:
    """Turn an out-of-memory error (CUDA or host) into :class:`PreflightOOM` naming the keys to change."""
    import torch

    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise PreflightOOM(f"out of memory during {what}: {first}\n  {memory_advice(cfg)}") from exc


def preflight_config(cfg: GRPOConfigFile, vllm: bool) -> GRPOConfigFile:
    """The config of the preflight steps: full-length completions, no saves/eval/trackers."""
    tp = cfg.training_parameters
    raw = tp.model_dump()
    # min length == max length: no completion ends early, so memory and time are the worst case.
    gen = dict(raw.get("generation_kwargs") or {})
    gen["min_tokens" if vllm else "min_new_tokens"] = tp.max_completion_length
    raw.update(max_steps=PREFLIGHT_STEPS, save_strategy="no", resume_from_checkpoint=False, model_stop_sequences=[],
               generation_kwargs=gen, logging_steps=1)
    new_tp = type(tp).model_validate(raw)
    logging_section = cfg.logging.model_copy(update={"report_to": "none", "log_completions_every": 0})
    return cfg.model_copy(update={"training_parameters": new_tp, "logging": logging_section, "evaluation": None,
                                  "push_to_hub": None})


def prompts_per_step(cfg: GRPOConfigFile, file: str) -> int:
    """Distinct prompts in one optimizer step of one process (TRL's generation batch / num_generations)."""
    tp = cfg.training_parameters
    extra = tp.model_extra or {}
    batch = int(extra.get("generation_batch_size") or tp.per_device_train_batch_size *
                (extra.get("steps_per_generation") or tp.gradient_accumulation_steps))
    if batch % tp.num_generations:
        raise ConfigError([Problem(file, "training_parameters.per_device_train_batch_size",
                                   f"--preflight runs one process, whose generation batch ({batch}) must be a "
                                   f"multiple of num_generations ({tp.num_generations})")])
    return batch // tp.num_generations


def longest_rows(rows: list[dict[str, Any]], tokenizer: Any, count: int) -> tuple[list[dict[str, Any]], int]:
    """The ``count`` rows with the longest rendered prompts (repeated when there are fewer), and the longest
    prompt's length in tokens."""
    if not rows:
        raise ValueError("no training rows were sampled")
    texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(rows)), key=lambda i: lengths[i], reverse=True)
    picked = [rows[order[i % len(order)]] for i in range(count)]
    return picked, lengths[order[0]]


def _reset_memory(on_gpu: bool) -> None:
    if on_gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory(on_gpu: bool) -> tuple[float, str]:
    """(GiB, what was measured): torch's peak CUDA allocation on a GPU, else the process's peak RSS."""
    if on_gpu:
        import torch

        free, total = torch.cuda.mem_get_info()
        note = (f"peak GPU memory (torch.cuda.max_memory_allocated); {(total - free) / GIB:.2f} GiB of "
                f"{total / GIB:.1f} GiB in use on the device now, vLLM's reservation included")
        return torch.cuda.max_memory_allocated() / GIB, note
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, "peak RSS of this process (CPU run)"


def save_and_reload(trainer: Any, run_dir: Path) -> tuple[float, float]:
    """Save a checkpoint as training does, reload it into the trainer, check one trainable tensor round-trips.
    Returns (seconds, size in MiB)."""
    import torch

    started = time.time()
    trainer._save_checkpoint(trainer.model, trial=None)   # transformers' own save, as every save_steps does
    folder = run_dir / f"checkpoint-{trainer.state.global_step}"
    name, param = next((n, p) for n, p in trainer.model.named_parameters() if p.requires_grad)
    saved = param.detach().clone()
    with torch.no_grad():
        param.zero_()
    trainer._load_from_checkpoint(str(folder))
    trainer._load_optimizer_and_scheduler(str(folder))
    if not torch.equal(param.detach(), saved):
        raise RuntimeError(f"checkpoint reload did not restore {name}")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20
    return time.time() - started, size


def run_preflight(cfg: GRPOConfigFile, ctx: NodeContext, total_steps: Optional[int] = None) -> list[str]:
    """The preflight of one GRPO-family node; returns the report lines (raises :class:`PreflightOOM`).
    ``total_steps`` replaces the config's planned steps in the projection (grpo_hpo: every member's steps)."""
    from pipelines.grpo.inputs import load_inputs
    from pipelines.grpo.model import choose_backend, generates_with_vllm, use_gpu
    from pipelines.grpo.node import require_unsloth

    on_gpu = use_gpu(cfg)
    backend = choose_backend(cfg.model.backend, has_cuda=on_gpu)
    if backend == "unsloth":
        require_unsloth(ctx.config_file)
        import unsloth  # noqa: F401 - before transformers/trl, as in a real run
    vllm = generates_with_vllm(cfg)
    pre = preflight_config(cfg, vllm)
    inputs = load_inputs(cfg, ctx)
    rows, longest = longest_rows(list(inputs.sample.train), inputs.tokenizer, prompts_per_step(cfg, ctx.config_file))
    tmp = Path(tempfile.mkdtemp(prefix="preflight-"))
    try:
        report = _measure(pre, dataclasses.replace(ctx, run_dir=tmp), inputs, rows, on_gpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from pipelines.grpo.checks import planned_steps

    tp = cfg.training_parameters
    steps = total_steps or planned_steps(cfg, len(inputs.sample.train))   # max_steps, or epochs over the rows
    saves = steps // tp.save_steps if tp.save_strategy == "steps" else 0
    projected = report["load_s"] + report["first_s"] + (steps - 1) * report["step_s"] + saves * report["save_s"]
    hours, rest = divmod(int(projected), 3600)
    return [
        f"backend {backend} on {'GPU' if on_gpu else 'CPU'}{' (completions from vLLM)' if vllm else ''}; "
        f"{len(rows)} prompt(s) x {tp.num_generations} "
        f"generations, longest prompt {longest} tokens, completions forced to {tp.max_completion_length} tokens",
        f"model load: {report['load_s']:.1f}s",
        f"peak memory: {report['peak_gib']:.2f} GiB ({report['peak_note']})",
        f"step time: {report['step_s']:.2f}s per optimizer step ({report['new_tokens']} new tokens, "
        f"{report['new_tokens'] / max(report['step_s'], 1e-9):.0f} tokens/s): the mean of {TIMED_STEPS} timed "
        f"steps after the warm-up step (each {report['step_min_s']:.2f}s to {report['step_max_s']:.2f}s); the first "
        f"step took {report['first_s']:.2f}s (warm-up)",
        f"judges: {report['judges']}",
        f"checkpoint: saved and reloaded in {report['save_s']:.2f}s ({report['save_mib']:.1f} MiB)",
        f"projected wall time for {steps} steps: {hours}h{rest // 60:02d}m{rest % 60:02d}s (load + first step "
        f"+ {steps - 1} x step + {saves} checkpoint save(s); held-out evaluation not included). It rests on "
        f"{TIMED_STEPS} timed steps of the longest prompts with full-length completions, on this machine as loaded "
        f"now: other work on it, or shorter completions later, change it",
    ] + report["warnings"] + machine_cost_lines(cfg, projected)


def machine_cost_lines(cfg: GRPOConfigFile, projected_s: float) -> list[str]:
    """What the projected wall time costs at ``budget.gpu_usd_per_hour``, and whether it passes a cap."""
    b = cfg.budget
    if b is None or (b.gpu_usd_per_hour is None and b.max_gpu_hours is None):
        return []
    hours = projected_s / 3600
    line = f"budget: {hours:.3f} machine hours projected"
    if b.gpu_usd_per_hour is not None:
        line += f" x {b.gpu_usd_per_hour:g} USD/hour = {hours * b.gpu_usd_per_hour:.2f} USD (judges not included: "
        line += "--validate projects their spend)"
    over = [f"{cap} {getattr(b, cap):g}" for cap, value in (("max_gpu_hours", hours),
            ("max_usd", hours * (b.gpu_usd_per_hour or 0.0))) if getattr(b, cap) is not None and value > getattr(b, cap)]
    if over:
        line += f"; WARNING: this passes budget {', '.join(over)}, so the run will stop early (exit 3)"
    return [line]


def _measure(cfg: GRPOConfigFile, ctx: NodeContext, inputs: Any, rows: list[dict[str, Any]],
             on_gpu: bool) -> dict[str, Any]:
    """Load, one step, judges, checkpoint: the numbers the report prints."""
    from pipelines.grpo.node import build_trainer
    from pipelines.rewards.engine import RewardStack

    _reset_memory(on_gpu)
    stack = RewardStack(cfg.reward, cfg.datasets, ctx.run_dir)
    try:
        started = time.time()
        with oom_guard(cfg, "model load"):
            trainer, metrics_cb = build_trainer(cfg, ctx, inputs.model_path, inputs.tokenizer,
                                                SimpleNamespace(train=rows, eval=[]), stack, None)
        load_s = time.time() - started
        timer = _step_timer()
        trainer.add_callback(timer)
        with oom_guard(cfg, "the training step (generation, rewards, backward, optimizer)"):
            trainer.train()
        first_s, timed = timer.seconds[0], timer.seconds[1:]    # the steps themselves, not the trainer's setup
        peak_gib, peak_note = peak_memory(on_gpu)
        with oom_guard(cfg, "the checkpoint save and reload"):
            save_s, save_mib = save_and_reload(trainer, Path(ctx.run_dir))
        metrics_cb.close()
    finally:
        stack.close()
    step_log = next((r for r in reversed(trainer.state.log_history) if "completions/mean_length" in r), {})
    completions = len(rows) * cfg.training_parameters.num_generations
    new_tokens = int(round(step_log.get("completions/mean_length", 0.0) * completions))
    return {"load_s": load_s, "first_s": first_s, "step_s": statistics.fmean(timed), "step_min_s": min(timed),
            "step_max_s": max(timed), "peak_gib": peak_gib, "peak_note": peak_note, "save_s": save_s,
            "save_mib": save_mib, "new_tokens": new_tokens, "judges": _call_judges(cfg, ctx),
            "warnings": position_warnings(cfg, getattr(trainer.model, "config", None))}


def position_warnings(cfg: GRPOConfigFile, model_config: Any) -> list[str]:
    """A warning line when ``model.max_seq_length`` exceeds the model's positions (``max_position_embeddings``):
    a prompt + completion that long fails, or degrades, whatever the preflight's own batch was."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(limit, int) or cfg.model.max_seq_length <= limit:
        return []
    return [f"WARNING: model.max_seq_length {cfg.model.max_seq_length} is above the model's position limit {limit} "
            f"(max_position_embeddings): a prompt + completion longer than {limit} tokens fails or degrades; set "
            f"model.max_seq_length to {limit} or less (with max_prompt_length + max_completion_length within it)"]


def _step_timer() -> Any:
    """A TrainerCallback timing the optimizer step (generation included) without the trainer's setup."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._began = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._began)

    return StepTimer()


def _call_judges(cfg: GRPOConfigFile, ctx: NodeContext) -> str:
    """One request to each LLM judge the datasets use (the --check-judges probe, which prints a line each)."""
    from pipelines.rewards.catalog import get_reward_factory
    from pipelines.rewards.checks import check_judges
    from pipelines.rewards.judge.generic import generic_llm_reward
    from pipelines.rewards.judge.reward import llm_judge

    judges = (llm_judge, generic_llm_reward)
    if not any(get_reward_factory(f.name) in judges for d in cfg.datasets for f in d.reward_funcs):
        return "none configured"
    problems = check_judges(cfg, ctx)
    if problems:
        raise ConfigError(problems)
    return "each configured LLM judge was called once (lines above), and every reward scored the step"
