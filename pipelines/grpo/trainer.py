"""GRPOConfig mapping and the node's GRPOTrainer subclass.

The subclass adds only what TRL lacks: stop sequences on the transformers backend, the reward stack's
metrics merged into every log, a per-epoch seeded sampler (same data order after a resume), a completeness
marker on checkpoints, and a sample of completions in run.log. TRL is imported lazily (``trainer_class``):
on the Unsloth backend ``unsloth`` must be imported before trl, which the node does before calling in here.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional

from pipelines.grpo.artifacts import TRL_REWARD_NAME
from pipelines.grpo.config import GRPOConfigFile

log = logging.getLogger(__name__)

# Seed (Augmentoolkit) keys that map one to one onto GRPOConfig fields.
DIRECT_KEYS = ("learning_rate", "adam_beta1", "adam_beta2", "weight_decay", "lr_scheduler_type", "optim",
               "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
               "max_completion_length", "max_steps", "num_train_epochs", "save_steps", "save_total_limit", "save_strategy",
               "max_grad_norm", "logging_steps", "max_tool_calling_iterations")


def grpo_config_kwargs(cfg: GRPOConfigFile, run_dir: Path, backend_overrides: dict[str, Any],
                       on_gpu: bool = False, train_rows: Optional[int] = None) -> dict[str, Any]:
    """Keyword arguments for TRL's GRPOConfig: the seed keys, the node-owned keys, then the user's extra
    GRPOConfig fields (already checked against the installed TRL at --validate), then the backend's choices.
    Without max_steps, TRL trains num_train_epochs passes (max_steps -1); ``train_rows`` then sizes the
    warm-up of a warmup_ratio of 1."""
    from pipelines.grpo.checks import planned_steps

    tp = cfg.training_parameters
    kwargs: dict[str, Any] = {key: getattr(tp, key) for key in DIRECT_KEYS}
    kwargs["max_steps"] = -1 if tp.max_steps is None else tp.max_steps
    # transformers 5 folded warmup_ratio into warmup_steps: a float below 1 is a ratio of the total steps.
    kwargs["warmup_steps"] = (tp.warmup_ratio if tp.warmup_ratio < 1
                              else planned_steps(cfg, train_rows or 0) if tp.max_steps is None else tp.max_steps)
    kwargs.update(
        output_dir=str(run_dir), run_name=cfg.run_name, seed=cfg.seed, data_seed=cfg.seed,
        report_to=[] if cfg.logging.report_to == "none" else [cfg.logging.report_to],
        log_completions=False,           # the node writes its own sample to run.log (logging.log_completions_every)
        disable_tqdm=False,              # the progress bar
        save_only_model=False,           # optimizer + RNG state are needed to resume
        # Gradient checkpointing only trades compute for memory; on a CPU it is pure overhead.
        gradient_checkpointing=on_gpu,
    )
    kwargs.update(dict(tp.model_extra or {}))
    kwargs.update(backend_overrides)
    return kwargs


def build_grpo_config(cfg: GRPOConfigFile, run_dir: Path, backend_overrides: dict[str, Any], on_gpu: bool = False,
                      train_rows: Optional[int] = None):
    from trl import GRPOConfig

    return GRPOConfig(**grpo_config_kwargs(cfg, run_dir, backend_overrides, on_gpu, train_rows))


@contextlib.contextmanager
def tracker_env(cfg: GRPOConfigFile, run_dir: Path) -> Iterator[None]:
    """Environment the tracker callbacks read (wandb project/mode/dir, tensorboard dir), restored afterwards.

    wandb runs offline by default: it needs no account and writes under ``<run_dir>/wandb``.
    """
    lg = cfg.logging
    wanted: dict[str, str] = {}
    if lg.report_to == "wandb":
        wanted = {"WANDB_PROJECT": lg.project, "WANDB_MODE": lg.wandb_mode, "WANDB_DIR": str(run_dir),
                  "WANDB_LOG_MODEL": "false", "WANDB_SILENT": "true"}
    elif lg.report_to == "tensorboard":
        wanted = {"TENSORBOARD_LOGGING_DIR": str(run_dir / "tensorboard")}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if lg.report_to == "wandb":
            _finish_wandb()
        from pipelines.grpo.trackers import tracker_lines

        for line in tracker_lines(lg.report_to, lg.wandb_mode, run_dir):
            log.info("%s", line)


def _finish_wandb() -> None:
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


# TRL's names for the reward the stack hands it (already logged as rewards/scaled/*, the combined reward before
# scaling as rewards/combined/*): left out of every log.
TRL_DUPLICATE_KEYS = ("reward", "reward_std", f"rewards/{TRL_REWARD_NAME}/mean", f"rewards/{TRL_REWARD_NAME}/std")


def sample_completions_text(logs: dict[str, Any], step: int, max_chars: int = 600) -> Optional[str]:
    """One prompt of the latest batch with each of its completions and rewards, for run.log."""
    prompts = list(logs.get("prompt") or [])
    completions = list(logs.get("completion") or [])
    if not prompts or len(prompts) != len(completions):
        return None
    rewards = {("reward" if name == TRL_REWARD_NAME else name): list(values)
               for name, values in (logs.get("rewards") or {}).items()}
    first = prompts[0]
    lines = [f"step {step}: sample prompt and its completions", f"  prompt: {first[-max_chars:]!r}"]
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        if prompt != first:
            continue
        scores = ", ".join(f"{n}={v[i]:.3g}" for n, v in rewards.items() if i < len(v) and v[i] == v[i])
        lines.append(f"  [{scores or 'no reward'}] {str(completion)[:max_chars]!r}")
    return "\n".join(lines)


def name_base_model(card: Path, base_model: str, loaded_from: Optional[str]) -> None:
    """TRL's model card names only a hub id as the base ("fine-tuned version of [None]" for a local folder or
    builtin:tiny): name the configured base model and the folder it was loaded from instead."""
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    where = f" (loaded from `{loaded_from}`)" if loaded_from and loaded_from != base_model else ""
    fixed = text.replace("[None](https://huggingface.co/None)", f"`{base_model}`{where}")
    fixed = fixed.replace('model="None"', f'model="{Path(card.parent, "final_adapter")}"')
    if fixed != text:
        from pipelines.common.io import atomic_write_text

        atomic_write_text(card, fixed)


@functools.lru_cache(maxsize=1)
def trainer_class() -> type:
    """Define the GRPOTrainer subclass (imports trl, so only when training)."""
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler, get_config_model_id

    from pipelines.common.io import make_readable
    from pipelines.grpo.checkpoints import clear_marker, mark_complete
    from pipelines.common.stops import cut_completions, stopping_generate, trim_completions

    class EpochSeededRepeatSampler(RepeatSampler):
        """TRL's RepeatSampler, reseeded from (seed, epoch) on every pass, so a resumed run replays the very
        same order in every epoch (TRL's keeps one generator running across epochs)."""

        epoch = 0
        weights = None     # difficulty band weights: rows drawn with replacement by weight (difficulty_pool.py)

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            if self.shuffle:
                self.generator.manual_seed((self.seed or 0) + 7919 * self.epoch)
            if self.shuffle and self.weights is not None:
                from pipelines.grpo.difficulty_pool import repeat_batches, weighted_indices

                return repeat_batches(weighted_indices(self.weights, self.generator), self.batch_size,
                                      self.repeat_count, self.mini_repeat_count)
            return super().__iter__()

    class NodeGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, reward_stack: Any = None, stop_sequences: tuple[str, ...] = (),
                     log_completions_every: int = 0, base_model: str = "", max_total_tokens: Optional[int] = None,
                     dynamic_sampler: Any = None, difficulty_pool: Any = None, row_weights: Any = None,
                     **kwargs: Any):
            self.reward_stack = reward_stack
            self.base_model = base_model
            self.stop_sequences = [s for s in stop_sequences if s]
            self.max_total_tokens = max_total_tokens     # cap prompt + completion per row (compat length budget)
            self.log_completions_every = log_completions_every
            self.stopped_completions = 0
            self.cost_meter = None      # pipelines.grpo.budget: set by the node when the config has a budget
            self.tool_metrics = None    # pipelines.grpo.tools: set by the node when a dataset has tools
            self.dynamic_sampler = dynamic_sampler     # dynamic_sampling.py: replaces zero-spread groups
            self.difficulty_pool = difficulty_pool     # difficulty_pool.py: per-row table, saved with checkpoints
            self.row_weights = row_weights             # difficulty band sampling weights, one per training row
            self.last_rewards: Optional[list] = []     # combined rewards TRL received for its latest training batch
            super().__init__(*args, **kwargs)
            if self.use_vllm and self.vllm_mode == "colocate":
                from pipelines.grpo.vllm_cpu import use_reload_sync

                use_reload_sync(self.vllm_generation)   # vLLM's CPU build only: TRL's own sync fails there

        def _get_train_sampler(self, dataset=None):
            dataset = self.train_dataset if dataset is None else dataset
            sampler = EpochSeededRepeatSampler(
                data_source=dataset, mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                shuffle=self.shuffle_dataset, seed=self.args.seed)
            sampler.weights = self.row_weights if dataset is self.train_dataset else None
            return sampler

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            if self.model.training:
                if self.dynamic_sampler is not None:     # only dynamic sampling reads them
                    from pipelines.grpo.dynamic_sampling import weighted_rewards

                    self.last_rewards = weighted_rewards(rewards, self.reward_weights)
                if self.difficulty_pool is not None:
                    self.difficulty_pool.record(self, inputs)
            return rewards

        def _generate_and_score_completions(self, inputs):
            if self.dynamic_sampler is None or not self.model.training:
                return super()._generate_and_score_completions(inputs)
            return self.dynamic_sampler.fill(self, inputs, super()._generate_and_score_completions)

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                                  has_tool_images=False):
            # vLLM (and Unsloth's vLLM) apply stop strings themselves, through their sampling parameters.
            if (not self.stop_sequences and self.max_total_tokens is None) or self.use_vllm:
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                     has_tool_images)
            model = self.accelerator.unwrap_model(self.model_wrapped)
            with stopping_generate(model, self._tokenizer, self.stop_sequences, self.max_total_tokens):
                completion_ids, logprobs = super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
            completion_ids, hits = cut_completions(completion_ids, self._tokenizer, self.stop_sequences,
                                                   self.eos_token_ids[0])
            self.stopped_completions += hits
            return completion_ids, logprobs

        def _generate(self, prompts):
            out = super()._generate(prompts)
            if not self.stop_sequences:
                return out
            # out = (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images, tool_images)
            return (*out[:3], trim_completions(out[3], self.stop_sequences), *out[4:])

        def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
            is_step_log = self.model.training and "loss" in logs
            if is_step_log and self.reward_stack is not None:
                logs.update(self.reward_stack.pop_metrics())
                # TRL's own copies of the (scaled) combined reward: one key, rewards/combined/mean, is enough.
                for key in TRL_DUPLICATE_KEYS:
                    self._metrics["train"].pop(key, None)
            if is_step_log and self.tool_metrics is not None:
                logs.update(self.tool_metrics.pop())   # tool calls, errors, latency (pipelines/grpo/tools.py)
            if is_step_log and self.cost_meter is not None:
                logs.update(self.cost_meter.observe(logs))
            step = self.state.global_step
            every = self.log_completions_every
            if is_step_log and every and step % every == 0 and self.accelerator.is_main_process:
                text = sample_completions_text(self._logs, step)
                if text:
                    log.info(text)
            super().log(logs, start_time)
            if is_step_log and self.cost_meter is not None:
                self.cost_meter.enforce(self.state.global_step)   # after the step is logged: GuardStop, exit 3

        def engine_generate(self, prompt_ids: list[list[int]], num_generations: int) -> list[list[int]]:
            """Completion token ids from TRL's vLLM engine (the one training samples with), its weights synced to
            the current step first exactly as a training step does; ``num_generations`` per prompt, in order."""
            if self.state.global_step != self._last_loaded_step:
                self.vllm_generation.sync_weights()
                self._last_loaded_step = self.state.global_step
            # TRL's layout: each prompt repeated num_generations times (colocate samples one per copy; server mode
            # takes every num_generations-th prompt and asks for num_generations each).
            repeated = [ids for ids in prompt_ids for _ in range(num_generations)]
            _, completion_ids, _, _ = self.vllm_generation.generate(prompts=repeated, images=None,
                                                                    num_generations=num_generations)
            return completion_ids

        def create_model_card(self, model_name=None, dataset_name=None, tags=None) -> None:
            super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
            if self.base_model and self.is_world_process_zero():
                name_base_model(Path(self.args.output_dir) / "README.md", self.base_model,
                                get_config_model_id(self.model.config))

        def emit_metrics(self, metrics: dict[str, float]) -> None:
            """Log metrics computed outside TRL (evaluation) to every tracker and metrics.jsonl, without
            touching TRL's own per-step metric buffers (``self.log`` would flush them)."""
            entry = {**metrics, "step": self.state.global_step}
            self.state.log_history.append(entry)
            # on_log resets control.should_log; this runs inside on_step_end, before the trainer logs the step,
            # so keep the step's own flag or that step's training log would be dropped.
            should_log = self.control.should_log
            self.control = self.callback_handler.on_log(self.args, self.state, self.control, dict(metrics))
            self.control.should_log = should_log

        def _load_optimizer_and_scheduler(self, checkpoint):
            # With several processes transformers maps the optimizer state to args.device, which on a CPU is
            # torch.device("cpu", 0): torch.load cannot restore to "cpu:0" and a multi-process CPU resume
            # fails. Present plain "cpu" (the same memory) for the duration of the load.
            device = self.args.device
            if checkpoint is None or device.type != "cpu" or device.index is None:
                return super()._load_optimizer_and_scheduler(checkpoint)
            import torch

            cached = self.args.__dict__.get("_setup_devices")   # functools.cached_property storage
            self.args.__dict__["_setup_devices"] = torch.device("cpu")
            try:
                return super()._load_optimizer_and_scheduler(checkpoint)
            finally:
                self.args.__dict__["_setup_devices"] = cached

        def _save_checkpoint(self, model, trial):
            from transformers import trainer_utils

            run_dir = self._get_output_dir(trial=trial)
            folder = Path(run_dir) / f"checkpoint-{self.state.global_step}"
            if self.args.should_save:
                clear_marker(folder)   # a resumed run may overwrite a checkpoint of the interrupted one
            # transformers deletes the oldest checkpoints (save_total_limit) at the end of its save; that must
            # come after the new one is marked, or a kill in between leaves no checkpoint `auto` accepts.
            limit = self.args.save_total_limit
            self.args.save_total_limit = None
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            if self.args.should_save:
                if self.difficulty_pool is not None:
                    self.difficulty_pool.save(folder)    # before the marker: a complete checkpoint holds it
                make_readable(folder)   # safetensors writes the weights 0600
                mark_complete(folder, self.state.global_step)
                trainer_utils.rotate_checkpoints(output_dir=run_dir, save_total_limit=limit, use_mtime=True,
                                                 best_model_checkpoint=self.state.best_model_checkpoint)

    return NodeGRPOTrainer
