"""Dynamic sampling (DAPO): replace the groups that teach nothing before a step trains on them.

A group (the ``num_generations`` completions of one prompt) whose reward has zero spread gets zero advantage
(:func:`pipelines.rewards.signal.group_spread` is the one definition). Dynamic sampling runs inside TRL's
``_generate_and_score_completions`` (the node's trainer subclass hands it TRL's own method, so HF generate and
TRL's vLLM alike generate, score and compute log-probabilities exactly as for any batch; a trainer that scores
without TRL's ``_calculate_rewards`` is detected, warned about, and trained on as drawn): the
batch is generated and scored; if groups have zero spread, rows are drawn afresh, generated and scored as an
extra batch, and their live groups take the dead groups' slots, until every slot is live or
``max_extra_batches`` extra batches were generated. Slots still dead then keep their zero-spread groups (zero
advantage, as without dynamic sampling): the step trains on a full batch either way.

Fresh rows come from the run's training rows in an order drawn from ``(seed, global_step, attempt)`` (weighted
by the difficulty band when one is set), so a resumed run draws exactly the rows an uninterrupted one does.
Each extra batch holds as many groups as slots are still dead (the most of any process), not a whole
generation batch. With several processes each keeps its own slots; every process generates the same number of
extra batches (the decision is made from the gathered rewards every process holds).

Per step it logs ``sampling/dynamic/extra_batches``, ``sampling/dynamic/replaced_groups`` and
``sampling/dynamic/zero_spread_before`` (the share of zero-spread groups before any replacement), and TRL's
``frac_reward_zero_std`` becomes the share of the trained batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from pipelines.data.config import DynamicSampling
from pipelines.rewards.signal import group_spread

log = logging.getLogger(__name__)

# Output keys of TRL's _generate_and_score_completions that dynamic sampling can recombine (text batches), with
# the side each 2-D tensor is padded on and the padding value (None: the tokenizer's pad token).
PROMPT_KEYS = {"prompt_ids": None, "prompt_mask": 0}
COMPLETION_KEYS = {"completion_ids": None, "completion_mask": 0, "old_per_token_logps": 0.0,
                   "sampling_per_token_logps": 0.0, "ref_per_token_logps": 0.0, "importance_sampling_ratio": 1.0,
                   "tool_mask": 1}
ROW_KEYS = ("advantages",)
KNOWN_KEYS = frozenset(PROMPT_KEYS) | frozenset(COMPLETION_KEYS) | frozenset(ROW_KEYS) | {"num_items_in_batch"}


def draw_rows(seed: int, step: int, attempt: int, count: int, n_rows: int,
              weights: Optional[np.ndarray] = None) -> np.ndarray:
    """``count`` training-row indices for extra batch ``attempt`` of the step after ``step``: a pure function of
    its arguments (a resumed run draws the same rows). Without replacement while the rows allow it."""
    rng = np.random.default_rng([seed, step, attempt, 0x5A17])
    p = None
    available = n_rows
    if weights is not None:
        p = weights / weights.sum()
        available = int(np.count_nonzero(p))
    return rng.choice(n_rows, size=count, replace=count > available, p=p)


def weighted_rewards(rewards_per_func: Any, reward_weights: Any) -> list[float]:
    """Each completion's reward as TRL combines its reward functions (weighted sum; NaN where every function
    returned None), from the gathered ``rewards_per_func`` of ``_calculate_rewards``."""
    import torch

    weighted = (rewards_per_func * reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    weighted[torch.isnan(rewards_per_func).all(dim=1)] = float("nan")
    return weighted.tolist()


@dataclass
class Filled:
    """What one step's dynamic sampling did (for its metrics)."""

    groups: int
    zero_before: int
    replaced: int = 0
    extra_batches: int = 0
    zero_after: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.zero_after = self.zero_before


class DynamicSampler:
    """Replaces zero-spread groups of each training generation batch (see the module docstring)."""

    def __init__(self, settings: DynamicSampling, seed: int, group_size: int,
                 row_weights: Optional[np.ndarray] = None) -> None:
        self.max_extra = settings.max_extra_batches
        self.seed = seed
        self.group_size = group_size
        self.row_weights = row_weights
        self._warned = False

    def fill(self, trainer: Any, inputs: list[dict[str, Any]], generate: Callable[[list], dict[str, Any]]
             ) -> dict[str, Any]:
        """TRL's output for ``inputs``, with its zero-spread groups replaced where fresh rows gave live ones."""
        metrics = trainer._metrics["train"]
        zero_std_at = len(metrics["frac_reward_zero_std"])
        trainer.last_rewards = None
        out = generate(inputs)
        g, world, rank = self.group_size, trainer.accelerator.num_processes, trainer.accelerator.process_index
        if not self._usable(out, len(inputs), trainer.last_rewards):
            return out
        dead = group_spread(trainer.last_rewards, g).zero.reshape(world, -1)    # [process, local group]
        result = Filled(groups=dead.size, zero_before=int(dead.sum()))
        need = dead.sum(axis=1)
        found = np.zeros(world, dtype=int)
        live: list[tuple[dict[str, Any], int]] = []          # this process's live groups: (output, group)
        while result.extra_batches < self.max_extra and (found < need).any():
            result.extra_batches += 1
            per_rank = int((need - found).max())
            rows = draw_rows(self.seed, trainer.state.global_step, result.extra_batches, per_rank * world,
                             len(trainer.train_dataset), self.row_weights)
            mine = rows[rank * per_rank:(rank + 1) * per_rank]
            trainer.last_rewards = None
            extra = generate([trainer.train_dataset[int(i)] for i in mine for _ in range(g)])
            if trainer.last_rewards is None:
                break
            alive = ~group_spread(trainer.last_rewards, g).zero.reshape(world, -1)
            found += alive.sum(axis=1)
            live += [(extra, int(j)) for j in np.flatnonzero(alive[rank])]
        result.replaced = int(np.minimum(need, found).sum())
        result.zero_after = result.zero_before - result.replaced
        if live and need[rank]:
            out = recombine(trainer, out, list(zip(np.flatnonzero(dead[rank]).tolist(), live)), g)
        elif result.replaced:
            out = dict(out, num_items_in_batch=count_items(trainer, out))   # a collective every process joins
        self._log(trainer, metrics, zero_std_at, result)
        return out

    def _usable(self, out: dict[str, Any], local_rows: int, rewards: Optional[list]) -> bool:
        """Whether this batch can be recombined: its rewards were seen (TRL's ``_calculate_rewards`` ran), text
        keys only, whole groups on every process."""
        unknown = sorted(set(out) - KNOWN_KEYS)
        if rewards is None or unknown or local_rows % self.group_size:
            if not self._warned:
                why = ("this trainer scored the batch without TRL's _calculate_rewards" if rewards is None else
                       f"the batch holds {', '.join(unknown)} (images)" if unknown else
                       f"{local_rows} rows per process do not hold whole groups of {self.group_size}")
                log.warning("dynamic sampling is off for this run: %s", why)
                self._warned = True
            return False
        return True

    @staticmethod
    def _log(trainer: Any, metrics: dict[str, list], zero_std_at: int, result: Filled) -> None:
        del metrics["frac_reward_zero_std"][zero_std_at + 1:]       # TRL's entries for the extra batches
        if trainer.scale_rewards != "batch" and len(metrics["frac_reward_zero_std"]) > zero_std_at:
            metrics["frac_reward_zero_std"][zero_std_at] = result.zero_after / max(result.groups, 1)
        metrics["sampling/dynamic/extra_batches"].append(float(result.extra_batches))
        metrics["sampling/dynamic/replaced_groups"].append(float(result.replaced))
        metrics["sampling/dynamic/zero_spread_before"].append(result.zero_before / max(result.groups, 1))


def count_items(trainer: Any, out: dict[str, Any]) -> Any:
    """TRL's ``num_items_in_batch``: completion tokens in the loss, summed over every process."""
    mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
    return trainer.accelerator.gather(mask.sum()).sum()


def recombine(trainer: Any, out: dict[str, Any], swaps: list[tuple[int, tuple[dict[str, Any], int]]],
              group_size: int) -> dict[str, Any]:
    """``out`` with group slot ``slot`` replaced by group ``j`` of output ``extra``, for each
    ``(slot, (extra, j))`` in ``swaps`` (extra pairs beyond the slots are unused)."""
    import torch

    pad_id = trainer._tokenizer.pad_token_id
    sources = {slot: src for slot, src in swaps}
    n_groups = len(out["advantages"]) // group_size
    pieces = []      # (output, row slice) in slot order
    for slot in range(n_groups):
        src, group = sources.get(slot, (out, slot))
        pieces.append((src, slice(group * group_size, (group + 1) * group_size)))
    merged: dict[str, Any] = {}
    for key, value in out.items():
        if key == "num_items_in_batch":
            continue
        parts = [src[key][rows] for src, rows in pieces]
        if key in PROMPT_KEYS or key in COMPLETION_KEYS:
            fill = (PROMPT_KEYS.get(key) if key in PROMPT_KEYS else COMPLETION_KEYS[key])
            fill = pad_id if fill is None else fill
            width = max(p.shape[1] for p in parts)
            left = key in PROMPT_KEYS
            parts = [torch.nn.functional.pad(p, (width - p.shape[1], 0) if left else (0, width - p.shape[1]),
                                             value=fill) for p in parts]
        merged[key] = torch.cat(parts, dim=0)
    merged["num_items_in_batch"] = count_items(trainer, merged)
    return merged
