"""Built-in combination and scaling functions: ``sum``, ``mean``, ``weighted_sum``, ``min``, ``product``;
``identity``, ``zscore``, ``minmax``, ``rank``, ``clip``. Their contract, and how to add your own, is at the top
of the user-editable ``pipelines/grpo/post_processors.py``."""
from __future__ import annotations

import math
import statistics

from pipelines.rewards.registry import SCALING_REGISTRY, register_combination_function, register_scaling_function

# ------------------------------------------------------------------------------------ combination functions


@register_combination_function("sum")
def combine_sum(scores):
    """Sum of the scores."""
    return float(sum(scores))


@register_combination_function("mean")
def combine_mean(scores):
    """Mean of the scores."""
    return float(sum(scores)) / len(scores)


@register_combination_function("weighted_sum")
def combine_weighted_sum(scores, normalize: bool = False):
    """Sum of ``weight × score`` (``weight`` from each reward_funcs entry, default 1); divided by the sum of the
    weights present if ``normalize``."""
    total = sum(s.weight * float(s) for s in scores)
    if normalize:
        weights = sum(s.weight for s in scores)
        return total / weights if weights else 0.0
    return float(total)


@register_combination_function("min")
def combine_min(scores):
    """The lowest score: a completion is only as good as its worst aspect."""
    return float(min(scores))


@register_combination_function("product")
def combine_product(scores):
    """Product of the scores (with 0/1 checks: an AND)."""
    return float(math.prod(scores))


# ---------------------------------------------------------------------------------------- scaling functions


@register_scaling_function("identity")
def scale_identity(values):
    """The combined rewards unchanged."""
    return list(values)


SCALING_REGISTRY.register("none", scale_identity)   # the name Augmentoolkit's config uses for no scaling


@register_scaling_function("zscore")
def scale_zscore(values, eps: float = 1e-6):
    """``(x - mean) / (std + eps)`` over the batch (population std); all zeros if the batch is constant."""
    if len(values) < 2:
        return [0.0] * len(values)
    mean = statistics.fmean(values)
    std = statistics.pstdev(values)
    if std == 0:
        return [0.0] * len(values)
    return [(v - mean) / (std + eps) for v in values]


@register_scaling_function("minmax")
def scale_minmax(values, low: float = 0.0, high: float = 1.0):
    """Maps the batch's lowest reward to ``low`` and its highest to ``high``; a constant batch maps to the
    midpoint."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [(low + high) / 2] * len(values)
    return [low + (v - lo) * (high - low) / (hi - lo) for v in values]


@register_scaling_function("rank")
def scale_rank(values):
    """Each reward's rank in the batch scaled to [0, 1] (lowest 0, highest 1, ties share their mean rank);
    robust to outliers. A batch of one maps to 0.5."""
    n = len(values)
    if n < 2:
        return [0.5] * n
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return [r / (n - 1) for r in ranks]


@register_scaling_function("clip")
def scale_clip(values, low: float = -1.0, high: float = 1.0):
    """Each reward clipped to [``low``, ``high``]."""
    if low > high:
        raise ValueError(f"clip: low ({low}) is greater than high ({high}); swap them")
    return [min(high, max(low, v)) for v in values]
