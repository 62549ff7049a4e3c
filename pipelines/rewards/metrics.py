"""Per-step reward statistics: mean and std of every component and of the combined reward."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Iterable


@dataclass
class _Moments:
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, values: Iterable[float | None]) -> None:
        for v in values:
            if v is not None:
                self.count += 1
                self.total += v
                self.total_sq += v * v

    def mean_std(self) -> tuple[float, float]:
        mean = self.total / self.count
        var = max(0.0, self.total_sq / self.count - mean * mean)
        return mean, math.sqrt(var)


class RewardMetrics:
    """Accumulates scores between two :meth:`pop` calls (a logging step may span several reward calls).

    Keys: ``rewards/<component>/mean|std`` (component e.g. ``quickstart/keyword``), ``rewards/combined/mean|std``
    (the combined reward before scaling: the one key for "the reward"), ``rewards/combined/count``,
    ``rewards/scaled/mean|std`` (what TRL receives), and ``rewards/<component>/none_ratio`` (share of
    completions of its dataset it declined). The std is the population
    std; ``None`` scores are not counted. A series with no values since the last pop is left out.
    """

    def __init__(self) -> None:
        self._series: dict[str, _Moments] = {}
        self._nones: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, values: list[float | None]) -> None:
        with self._lock:
            self._series.setdefault(key, _Moments()).add(values)
            seen = self._nones.setdefault(key, [0, 0])
            seen[0] += sum(v is None for v in values)
            seen[1] += len(values)

    def pop(self) -> dict[str, float]:
        """Statistics since the last pop, over every rank of a multi-process run (a collective call there:
        every rank pops at the same logging step, as the trainer's ``log`` does)."""
        with self._lock:
            series, nones = self._series, self._nones
            self._series, self._nones = {}, {}
        series, nones = _gather_across_ranks(series, nones)
        out: dict[str, float] = {}
        for key, moments in series.items():
            if moments.count:
                out[f"rewards/{key}/mean"], out[f"rewards/{key}/std"] = moments.mean_std()
            declined, total = nones[key]
            if key not in ("combined", "scaled") and total:
                out[f"rewards/{key}/none_ratio"] = declined / total
        if "combined" in nones:
            out["rewards/combined/count"] = float(nones["combined"][1])  # completions scored, all ranks
        return out


def _gather_across_ranks(series: dict[str, _Moments], nones: dict[str, list[int]]
                         ) -> tuple[dict[str, _Moments], dict[str, list[int]]]:
    """Sum the moments of every rank when torch.distributed is running with more than one process."""
    from pipelines.common.dist import all_gather_objects, world_size

    if world_size() < 2:
        return series, nones
    local = ({k: (m.count, m.total, m.total_sq) for k, m in series.items()}, nones)
    merged: dict[str, _Moments] = {}
    merged_nones: dict[str, list[int]] = {}
    for rank_series, rank_nones in all_gather_objects(local):
        for key, (count, total, total_sq) in rank_series.items():
            m = merged.setdefault(key, _Moments())
            m.count, m.total, m.total_sq = m.count + count, m.total + total, m.total_sq + total_sq
        for key, (declined, seen) in rank_nones.items():
            acc = merged_nones.setdefault(key, [0, 0])
            acc[0] += declined
            acc[1] += seen
    return merged, merged_nones
