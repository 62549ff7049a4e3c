"""Statistics of the reward signal that training learns from (GRPO's advantage is the reward relative to its group).

A group is the ``num_generations`` completions of one prompt, consecutive in a batch (TRL's layout). When every
completion of a group scores the same, its advantages are all zero and the group teaches nothing: it is a
*zero-spread* group, *all solved* when that shared score is the group's best possible and *all failed* otherwise.
This module is the one home of that definition; the signal metrics, dynamic sampling and the monitor use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

# Scores closer than this count as equal (float noise in a combined, scaled reward is not a signal).
SPREAD_TOLERANCE = 1e-6


@dataclass(frozen=True)
class GroupSpread:
    """Per-group facts of one batch: ``zero`` marks zero-spread groups; ``solved``/``failed`` split them."""

    zero: np.ndarray      # bool, one per group
    solved: np.ndarray    # bool: zero spread at or above the solved threshold
    failed: np.ndarray    # bool: zero spread below it

    @property
    def groups(self) -> int:
        return int(self.zero.size)

    def share(self, which: str = "zero") -> float:
        mask = getattr(self, which)
        return float(mask.mean()) if mask.size else 0.0


def group_spread(scores: Sequence[Optional[float]], group_size: int,
                 solved_at: Optional[float] = None) -> GroupSpread:
    """Split ``scores`` (a batch, groups consecutive) into groups of ``group_size`` and mark the zero-spread ones.

    ``None``/NaN scores count as their own value (a group of all-NaN is zero spread; mixed NaN is not).
    ``solved_at``: a zero-spread group whose score is at least this is *solved*; by default, the batch's
    highest score (so all-max groups are solved and all-min groups failed).

    Raises:
        ValueError: the batch size is not a multiple of ``group_size``.
    """
    values = np.array([np.nan if v is None else float(v) for v in scores], dtype=float)
    if group_size < 1 or values.size % group_size:
        raise ValueError(f"{values.size} scores do not split into groups of {group_size}")
    grid = values.reshape(-1, group_size)
    nan = np.isnan(grid)
    filled = np.where(nan, 0.0, grid)
    all_nan = nan.all(axis=1)
    any_nan = nan.any(axis=1)
    spread = np.ptp(filled, axis=1)
    zero = all_nan | (~any_nan & (spread <= SPREAD_TOLERANCE))
    if solved_at is None:
        finite = values[~np.isnan(values)]
        solved_at = float(finite.max()) if finite.size else np.inf
    level = np.where(all_nan, -np.inf, filled[:, 0])
    solved = zero & (level >= solved_at - SPREAD_TOLERANCE)
    return GroupSpread(zero=zero, solved=solved, failed=zero & ~solved)
