"""Training and evaluating one population member on the shared base model.

One base model is loaded once and wrapped in PEFT once; every member is a LoRA adapter whose weights and
optimizer state live in its checkpoint folder. Training a member = a fresh trainer of the grpo node's class
(same GRPOConfig mapping, same RewardStack) resuming from that checkpoint, with the member's hyperparameters,
until the generation's last step, where it saves a new checkpoint. transformers' resume restores the
optimizer's *hyperparameters* too (and the scheduler's base learning rate); :class:`member_trainer_class`
keeps the freshly configured ones, so a mutated learning rate, weight decay or Adam beta really applies.
A clone whose learning rate was mutated starts with a fresh optimizer when asked (AgileRL reinitialises the
optimizer on a learning-rate mutation): the checkpoint's moments and step counts are dropped, while the
schedule keeps its position (the member's global step).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from pipelines.common.io import JsonlAppender
from pipelines.grpo.callbacks import jsonable
from pipelines.grpo.hpo.config import GRPOHPOConfigFile

log = logging.getLogger(__name__)

_KEEP_FROM_CHECKPOINT = ("lr", "initial_lr")   # recomputed from the new base learning rate instead


@dataclass
class OptimizerHparams:
    """The optimizer's param-group settings and the scheduler's base rates as configured for this run."""

    groups: list[dict[str, Any]]
    base_lrs: Optional[list[float]]


def snapshot_hparams(optimizer: Any, scheduler: Any) -> OptimizerHparams:
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    base = getattr(scheduler, "base_lrs", None)
    return OptimizerHparams(groups, list(base) if base is not None else None)


def restore_hparams(optimizer: Any, scheduler: Any, fresh: OptimizerHparams) -> None:
    """After loading a checkpoint's optimizer and scheduler state (moments, step counts, schedule position),
    put back the configured hyperparameters; the current learning rate follows the schedule at its restored
    position, from the configured base rate."""
    loaded_base = list(getattr(scheduler, "base_lrs", None) or [])
    lambdas = getattr(scheduler, "lr_lambdas", None)
    for i, (group, want) in enumerate(zip(optimizer.param_groups, fresh.groups)):
        for key, value in want.items():
            if key not in _KEEP_FROM_CHECKPOINT:
                group[key] = value
        if fresh.base_lrs is None or scheduler is None:
            group["lr"] = want["lr"]
            continue
        new_base = fresh.base_lrs[i]
        if lambdas is not None:   # LambdaLR (every transformers schedule but reduce_lr_on_plateau)
            group["lr"] = new_base * lambdas[i](scheduler.last_epoch)
        elif i < len(loaded_base) and loaded_base[i]:
            group["lr"] = group["lr"] * new_base / loaded_base[i]
        else:
            group["lr"] = new_base
        group["initial_lr"] = new_base
        scheduler.base_lrs[i] = new_base
    if scheduler is not None and hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def reset_optimizer_state(optimizer: Any) -> None:
    """Forget every per-parameter state (Adam's moments and step counts); the next step starts them anew, as
    a newly built optimizer would. The param groups (the configured hyperparameters) stay."""
    optimizer.state.clear()
    log.info("optimizer state reset (learning-rate mutation): Adam moments start from zero")


@functools.lru_cache(maxsize=1)
def member_trainer_class() -> type:
    """The grpo node's trainer class, keeping configured optimizer hyperparameters across a resume."""
    from pipelines.grpo.trainer import trainer_class

    class MemberGRPOTrainer(trainer_class()):
        reset_optimizer = False   # set per member: drop the checkpoint's optimizer state after loading it

        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None or self.optimizer is None:
                return super()._load_optimizer_and_scheduler(checkpoint)
            fresh = snapshot_hparams(self.optimizer, self.lr_scheduler)
            super()._load_optimizer_and_scheduler(checkpoint)
            restore_hparams(self.optimizer, self.lr_scheduler, fresh)
            if self.reset_optimizer:
                reset_optimizer_state(self.optimizer)

    return MemberGRPOTrainer


def member_callbacks(stop_at: int, writer: JsonlAppender, generation: int, member: str) -> list[Any]:
    """Stop (and save a checkpoint) at ``stop_at``; append every log to metrics.jsonl with the member's id."""
    from transformers import TrainerCallback

    class StopAndSave(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= stop_at:
                control.should_save = True
                control.should_training_stop = True

    class MemberMetrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                writer.write({"generation": generation, "member": member, "step": state.global_step,
                              **{k: jsonable(v) for k, v in logs.items()}})

    return [StopAndSave(), MemberMetrics()]


class PopulationTrainer:
    """Holds what every member shares: the PEFT-wrapped base model, tokenizer, data, reward stack, evaluator."""

    def __init__(self, cfg: GRPOHPOConfigFile, run_dir: Path, model_path: str, tokenizer: Any, sample: Any,
                 stack: Any, metrics: JsonlAppender):
        from datasets import Dataset

        from pipelines.grpo.evaluation import make_evaluator
        from pipelines.grpo.model import load_model

        self.cfg, self.run_dir, self.stack, self.metrics = cfg, Path(run_dir), stack, metrics
        self.cost_meter: Any = None     # set by the node when the config has a budget
        self.loaded = load_model(cfg, model_path, tokenizer)
        self.model = self._wrap_once(self.loaded)
        self.init_state = self._adapter_state()
        self.dataset = Dataset.from_list(sample.train)
        self.evaluator = make_evaluator(cfg, sample.eval, stack, self.loaded.tokenizer)

    def _wrap_once(self, loaded: Any) -> Any:
        """Apply LoRA once (the transformers backend hands a LoraConfig; Unsloth's model is already PEFT)."""
        if loaded.peft_config is None:
            return loaded.model
        import torch
        from peft import get_peft_model

        torch.manual_seed(self.cfg.seed)   # the fresh adapter every member starts from is the seed's
        return get_peft_model(loaded.model, loaded.peft_config)

    def _adapter_state(self) -> dict[str, Any]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def grpo_args(self, hparams: dict[str, Any], output_dir: Path, run_name: str) -> Any:
        """The member's GRPOConfig: the node's mapping of the config with the member's hyperparameters."""
        from trl import GRPOConfig

        from pipelines.grpo.model import cuda_available
        from pipelines.grpo.trainer import grpo_config_kwargs

        member_cfg = self.cfg.model_copy(deep=True)
        tp = member_cfg.training_parameters
        for name, value in hparams.items():
            setattr(tp, name, value)
        tp.max_steps = self.cfg.hpo.generations * self.cfg.hpo.steps_per_generation   # one schedule per member
        kwargs = grpo_config_kwargs(member_cfg, output_dir, self.loaded.grpo_overrides, on_gpu=cuda_available())
        kwargs.update(run_name=run_name, save_strategy="no", save_total_limit=None)
        return GRPOConfig(**kwargs)

    def train(self, generation: int, member: str, hparams: dict[str, Any], start: Optional[Path],
              output_dir: Path, extra_callbacks: Sequence[Any] = (),
              reset_optimizer: bool = False) -> tuple[Path, dict[str, float], Any]:
        """Train one member to the end of ``generation`` (numbered from 1) and evaluate it on the held-out
        prompts (same prompts and sampling seed for every member); returns its new checkpoint, its evaluation
        and its trainer. ``reset_optimizer``: resume ``start``'s adapter with a fresh optimizer."""
        from peft import set_peft_model_state_dict

        from pipelines.grpo.callbacks import use_compact_progress
        from pipelines.grpo.trainer import tracker_env

        cfg, tp = self.cfg, self.cfg.training_parameters
        stop_at = generation * cfg.hpo.steps_per_generation
        args = self.grpo_args(hparams, output_dir, f"{cfg.run_name}-{member}")
        stops = tuple(tp.model_stop_sequences) if self.loaded.backend == "transformers" else ()
        if start is None:
            set_peft_model_state_dict(self.model, self.init_state)
        # Built inside the tracker environment: the tracker callbacks read their folders (e.g. the
        # TensorBoard log dir under the run dir) when the trainer is constructed.
        with tracker_env(cfg, self.run_dir):
            trainer = member_trainer_class()(
                model=self.model, args=args, train_dataset=self.dataset, reward_funcs=[self.stack.reward_func],
                processing_class=self.loaded.tokenizer, peft_config=None,
                callbacks=member_callbacks(stop_at, self.metrics, generation, member) + list(extra_callbacks),
                reward_stack=self.stack,
                stop_sequences=stops, log_completions_every=cfg.logging.log_completions_every)
            trainer.reset_optimizer = reset_optimizer and start is not None
            trainer.cost_meter = self.cost_meter     # the search's budget spans every member
            _drop_reference_copy(trainer.model)
            use_compact_progress(trainer)
            trainer.train(resume_from_checkpoint=str(start) if start is not None else None)
            checkpoint = output_dir / f"checkpoint-{trainer.state.global_step}"
            if trainer.state.global_step != stop_at or not checkpoint.is_dir():
                raise RuntimeError(f"member {member} stopped at step {trainer.state.global_step}, expected "
                                   f"{stop_at}")
            metrics = self.evaluator.run(trainer.accelerator.unwrap_model(trainer.model), stop_at)
            trainer.emit_metrics(metrics)   # to the trackers (the member's run) and metrics.jsonl
        return checkpoint, metrics, trainer

    @staticmethod
    def release(trainer: Any) -> None:
        """Drop the member's optimizer before the next member (the base model stays). No gc.collect here: the
        next trainer's train() starts with accelerate's free_memory (a collection plus the device cache), and a
        collection costs ~0.2 s with torch and transformers loaded."""
        trainer.optimizer = None
        trainer.lr_scheduler = None
        acc = getattr(trainer, "accelerator", None)
        for name in ("_optimizers", "_schedulers"):
            held = getattr(acc, name, None)
            if isinstance(held, list):
                held.clear()


def _drop_reference_copy(model: Any) -> None:
    """With beta > 0 TRL copies an existing adapter into a frozen ``ref`` adapter, i.e. whichever member
    the shared model held last. The grpo node's reference is the base model (adapters disabled); remove the
    copy so that every member is regularised towards the base, as there."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.delete_adapter("ref")
