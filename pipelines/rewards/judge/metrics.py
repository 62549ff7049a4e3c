"""Per-judge counters, popped once per logged step as ``judge/<label>/<metric>``.

Metrics (all since the last pop):

- ``samples``: completions judged; ``cache_hits``: answered from the cache (or, with a cache, by an identical
  request of the same batch);
- ``calls``: HTTP requests sent (retries and format re-asks included); ``retries``: transport retries;
- ``failures``: completions whose judge call still failed after retries;
- ``parse_failures``: judge answers that could not be parsed (including ones fixed by a re-ask);
- ``unparsed``: completions still unparsed after the format retries;
- ``fallbacks``: completions scored with ``on_error`` (failures + unparsed);
- ``format_scored`` (generic_llm_reward): answers that could not be read, scored ``format_score``;
- ``prechecked`` (generic_llm_reward): completions scored without a judge call (reasoning format, similarity);
- ``groups`` (``mode: group``): prompt groups sent as one call each; ``group_fallbacks``: groups whose reply
  never parsed, scored pointwise instead (their completions are then counted again in ``samples``);
- ``failure_rate``: (failures + unparsed) / completions sent to the judge;
- ``latency_p50_s``, ``latency_p95_s``: latency of successful requests;
- ``prompt_tokens``, ``completion_tokens``: summed from the responses' ``usage``.
"""
from __future__ import annotations

import threading
from typing import Sequence

COUNTERS = ("samples", "cache_hits", "calls", "retries", "failures", "parse_failures", "unparsed", "fallbacks",
            "format_scored", "prechecked", "prompt_tokens", "completion_tokens", "groups", "group_fallbacks")

GENERIC_ONLY = ("format_scored", "prechecked")
GROUP_ONLY = ("groups", "group_fallbacks")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class JudgeMetrics:
    """Thread-safe counters: the judge's loop adds, the trainer's thread pops."""

    def __init__(self, label: str, generic: bool = False, group: bool = False):
        self.prefix = f"judge/{label}/"
        # format_scored and prechecked are counted for every judge but reported for generic_llm_reward only;
        # groups and group_fallbacks for group judges only
        hidden = (() if generic else GENERIC_ONLY) + (() if group else GROUP_ONLY)
        self.reported = tuple(k for k in COUNTERS if k not in hidden)
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self.counts = {k: 0 for k in COUNTERS}
        self.latencies: list[float] = []

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                self.counts[key] += value

    def latency(self, seconds: float) -> None:
        with self._lock:
            self.latencies.append(seconds)

    def _values(self, counts: dict[str, int], latencies: Sequence[float]) -> dict[str, float]:
        out = {self.prefix + k: float(v) for k, v in counts.items() if k in self.reported}
        sent = counts["samples"] - counts["cache_hits"]
        bad = counts["failures"] + counts["unparsed"]
        out[self.prefix + "failure_rate"] = bad / sent if sent else 0.0
        out[self.prefix + "latency_p50_s"] = percentile(latencies, 50)
        out[self.prefix + "latency_p95_s"] = percentile(latencies, 95)
        return out

    def pop(self) -> dict[str, float]:
        """The values since the last pop, over every rank of a multi-process run (counts summed, latency
        percentiles over all ranks' requests); resets them. Empty when nothing was judged.

        In a multi-process run this is a collective: every rank pops at the same logging step (the reward
        stack's ``pop_metrics``, called from the trainer's ``log`` on every rank).
        """
        from pipelines.common.dist import all_gather_objects

        with self._lock:
            counts, latencies = dict(self.counts), list(self.latencies)
            self._reset()
        gathered = all_gather_objects((counts, latencies))
        if len(gathered) > 1:
            counts = {k: sum(rank_counts[k] for rank_counts, _ in gathered) for k in COUNTERS}
            latencies = [x for _, rank_latencies in gathered for x in rank_latencies]
        if counts["samples"] == 0 and counts["calls"] == 0 and counts["prechecked"] == 0:
            return {}
        return self._values(counts, latencies)
