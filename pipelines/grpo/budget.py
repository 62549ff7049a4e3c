"""The GRPO node's budget: the cost meter fed at every logged step, its caps, and the projected judge spend.

The meter (:class:`~pipelines.common.budget.CostMeter`) prices the judge tokens the reward stack's metrics report
for the step and the node's wall time; the trainer adds its ``cost/*`` totals to each step's log and, once the
step is logged (metrics.jsonl written), asks it to enforce the caps: a crossed cap raises ``GuardStop``, which
the node turns into a checkpoint and exit 3.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from pipelines.common.budget import CostMeter, last_cost_record
from pipelines.grpo.config import GRPOConfigFile


def cost_meter(cfg: GRPOConfigFile, stack: Any, metrics_path: Path, resume_step: Optional[int],
               started: float) -> Optional[CostMeter]:
    """The run's meter (None without a ``budget`` section), continuing a resumed run's totals."""
    if cfg.budget is None:
        return None
    meter = CostMeter(cfg.budget, stack.judge_models(), started=started)
    if resume_step and metrics_path.exists():
        from pipelines.common.io import read_jsonl

        meter.restore(last_cost_record(read_jsonl(metrics_path), resume_step))
    return meter


def completions_per_step(cfg: GRPOConfigFile) -> int:
    """Completions generated per optimizer step (every process): a generation round serves
    steps_per_generation x num_iterations micro-batches, and gradient_accumulation_steps make a step."""
    from pipelines.grpo.checks import generation_batch

    tp = cfg.training_parameters
    extra = tp.model_extra or {}
    per_round = int(extra.get("steps_per_generation") or tp.gradient_accumulation_steps)
    iterations = int(extra.get("num_iterations") or 1)
    return max(1, round(generation_batch(cfg) * tp.gradient_accumulation_steps / (per_round * iterations)))


def completions_per_dataset(cfg: GRPOConfigFile, steps: int) -> list[int]:
    """Completions each dataset generates over ``steps`` steps (its share of the rows drawn)."""
    total = steps * completions_per_step(cfg)
    shares = [max(0.0, d.percentage) for d in cfg.datasets]
    whole = sum(shares) or 1.0
    return [math.ceil(total * share / whole) for share in shares]


def spend_lines(cfg: GRPOConfigFile, steps: int, rows: Optional[dict[int, dict[str, Any]]] = None,
                measure: bool = False) -> list[str]:
    """--validate's projected judge spend (and machine time, when preflight measured a step)."""
    from pipelines.rewards.judge import spend

    prices = cfg.budget.judge_prices if cfg.budget is not None else None
    spends = spend.project_spend(cfg.datasets, completions_per_dataset(cfg, steps),
                                 cfg.training_parameters.max_completion_length, prices, rows, measure,
                                 group_size=cfg.training_parameters.num_generations)
    return spend.spend_lines(spends)
