"""Signal metrics: is a training batch able to teach anything, and which reward is doing the teaching?

The reward stack hands every scored training batch (the whole generated batch, before any filtering of groups)
to a :class:`SignalTracker`, which keeps, per step and per dataset:

* ``signal/<ds>/zero_spread`` (and overall ``signal/zero_spread``): the share of groups whose combined reward has
  zero spread (:func:`pipelines.rewards.signal.group_spread`: their GRPO advantage is zero), split into
  ``all_solved`` and ``all_failed``. A zero-spread group is *solved* at the highest combined reward seen so far
  for its dataset (and never while every score seen so far is the same);
* ``signal/<ds>/<reward>/variance_share``: each component's share of the combined reward's variance within the
  batch. The combined reward is regressed on the components (least squares, numpy) and component *i* gets
  ``coef_i * cov(r_i, combined) / var(combined)``; for a weighted sum this is exactly its part of the variance
  (the shares add up to 1), for other combinations the shares add up to the fit's R²;
* ``signal/completion_length`` (tokens) and ``signal/repetition`` (share of repeated token 3-grams in a
  completion), overall and per dataset; their trends over the run are in summary.json (Theil-Sen slopes), and
  the monitor's ``length_drift`` tests them while the run trains.

It also keeps a small sample of recent completions with their component scores: the evidence a monitor alert
(:mod:`pipelines.grpo.monitor`) quotes. Metrics are the main process's share of the batch in a multi-process run.
"""
from __future__ import annotations

import threading
import time
from statistics import fmean
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from pipelines.rewards.signal import group_spread

NGRAM = 3                 # repetition: share of token 3-grams that repeat an earlier one in the same completion
SAMPLE_CHARS = 400        # completion text kept per sample (the tail of a prompt: 200)


@dataclass
class StepSignal:
    """What one training step's batch looked like: ``values`` by key (``combined``, ``<ds>/<reward>`` means,
    ``zero_spread``, ``<ds>/zero_spread``, ``<ds>/<reward>/variance_share``, ``completion_length``, ...)."""

    step: Optional[int]
    values: dict[str, float] = field(default_factory=dict)


def repetition(ids: Sequence[int]) -> float:
    """Share of the token 3-grams of one completion that repeat an earlier 3-gram (0 for fewer than 3 tokens)."""
    grams = list(zip(ids, ids[1:], ids[2:]))
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def variance_shares(components: dict[str, Sequence[Optional[float]]],
                    combined: Sequence[Optional[float]]) -> dict[str, float]:
    """Each component's share of the combined reward's variance (see the module docstring); empty when the
    combined reward does not vary or fewer than 3 rows have every score."""
    names = list(components)
    rows = [i for i, c in enumerate(combined)
            if c is not None and all(components[n][i] is not None for n in names)]
    if len(rows) < 3 or not names:
        return {}
    if len(names) == 1:     # the one reward carries all of the variance there is (none when nothing varies)
        varies = len({combined[i] for i in rows}) > 1
        return {names[0]: 1.0} if varies else {}
    y = np.array([combined[i] for i in rows], dtype=float)
    x = np.array([[components[n][i] for n in names] for i in rows], dtype=float)
    var = float(np.var(y))
    if var <= 1e-12:
        return {}
    design = np.column_stack([x, np.ones(len(rows))])
    coef = np.linalg.lstsq(design, y, rcond=None)[0][:-1]
    cov = np.cov(np.column_stack([x, y]), rowvar=False, bias=True)[-1, :-1]
    return {n: float(coef[k] * cov[k] / var) for k, n in enumerate(names)}


class SignalTracker:
    """Accumulates signal metrics from the reward stack's training batches (thread-safe).

    ``group_size``: completions per prompt (``num_generations``). ``labels``: each dataset's label.
    ``components``: each dataset's component names (``<ds>/<reward>``). ``samples``: completions kept per step
    for evidence; ``keep_steps``: steps of samples kept.
    """

    def __init__(self, group_size: int, labels: Sequence[str], components: Sequence[Sequence[str]], *,
                 samples: int = 16, keep_steps: int = 4) -> None:
        self.group_size = group_size
        self.labels = list(labels)
        self.components = [list(c) for c in components]
        self.per_step_samples = samples
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = defaultdict(list)
        self._steps: list[StepSignal] = []           # not yet taken by the monitor
        self._samples: deque = deque(maxlen=samples * keep_steps)
        self._range: dict[int, list[float]] = {}     # dataset -> [lowest, highest] combined reward seen
        self.seconds = 0.0                           # CPU seconds spent here (the monitor's cost, bench)

    # --------------------------------------------------------------------------------------------- input
    def add(self, step: Optional[int], prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict[str, Any],
            results: Sequence[Any]) -> None:
        """Record one scored batch (``results``: the stack's ScoreResult list, in batch order)."""
        started = time.thread_time()
        ids = kwargs.get("completion_ids")
        ids = ids if isinstance(ids, (list, tuple)) and len(ids) == len(results) else None
        values = self._batch_values(results, ids)
        sample = self._sample(step, prompts, completions, results, ids)
        with self._lock:
            for key, value in values.items():
                if key.endswith(("/groups", "/zero_groups", "/solved_groups", "/failed_groups")):
                    self._pending[key].append(value)
                elif value == value:
                    self._pending[key].append(value)
            self._steps.append(StepSignal(step, values))
            self._samples.extend(sample)
        self.seconds += time.thread_time() - started

    def _batch_values(self, results: Sequence[Any], ids: Optional[Sequence[Any]]) -> dict[str, float]:
        values: dict[str, float] = {}
        combined = [r.combined for r in results]
        present = [c for c in combined if c is not None]
        if present:
            values["combined"] = fmean(present)
        by_ds: dict[int, list[int]] = defaultdict(list)
        for pos, r in enumerate(results):
            by_ds[r.dataset_index].append(pos)
        self._spread(values, results)
        lengths = [len(i) for i in ids] if ids is not None else None
        repeats = [repetition(list(i)) for i in ids] if ids is not None else None
        for d, positions in by_ds.items():
            label = self.labels[d]
            comps = {name: [results[p].rewards.get(name) for p in positions] for name in self.components[d]}
            for name, scores in comps.items():
                got = [s for s in scores if s is not None]
                if got:
                    values[name] = fmean(got)
            for name, share in variance_shares(comps, [combined[p] for p in positions]).items():
                values[f"{name}/variance_share"] = share
            if lengths is not None and repeats is not None:
                values[f"{label}/completion_length"] = fmean([lengths[p] for p in positions])
                values[f"{label}/repetition"] = fmean([repeats[p] for p in positions])
        if lengths and repeats:
            values["completion_length"], values["repetition"] = fmean(lengths), fmean(repeats)
        return values

    def _spread(self, values: dict[str, float], results: Sequence[Any]) -> None:
        """Zero-spread groups per dataset and overall, as counts (shares are made at pop time)."""
        n, g = len(results), self.group_size
        if g < 1 or n % g:
            return       # this rank's slice does not hold whole groups: no group statistics for it
        totals = dict.fromkeys(("groups", "zero_groups", "solved_groups", "failed_groups"), 0.0)
        by_ds: dict[int, list[Optional[float]]] = defaultdict(list)
        for start in range(0, n, g):
            group = results[start:start + g]
            by_ds[group[0].dataset_index].extend(r.combined for r in group)
        for d, scores in by_ds.items():
            present = [s for s in scores if s is not None]
            seen = self._range.setdefault(d, [np.inf, -np.inf])
            if present:
                seen[0], seen[1] = min(seen[0], min(present)), max(seen[1], max(present))
            solved_at = seen[1] if seen[1] > seen[0] else np.inf
            spread = group_spread(scores, g, solved_at=solved_at)
            label = self.labels[d]
            counts = {"groups": spread.groups, "zero_groups": int(spread.zero.sum()),
                      "solved_groups": int(spread.solved.sum()), "failed_groups": int(spread.failed.sum())}
            for key, count in counts.items():
                values[f"{label}/{key}"] = float(count)
                totals[key] += count
        for key, count in totals.items():
            values[key] = count
        if totals["groups"]:
            values["zero_spread"] = totals["zero_groups"] / totals["groups"]
            for label in {self.labels[d] for d in by_ds}:
                values[f"{label}/zero_spread"] = values[f"{label}/zero_groups"] / values[f"{label}/groups"]

    def _sample(self, step: Optional[int], prompts: Sequence[Any], completions: Sequence[Any],
                results: Sequence[Any], ids: Optional[Sequence[Any]]) -> list[dict[str, Any]]:
        out = []
        for pos in range(min(len(results), self.per_step_samples)):
            r = results[pos]
            out.append({"step": step, "dataset": self.labels[r.dataset_index], "prompt": _text(prompts[pos])[-200:],
                        "completion": _text(completions[pos])[:SAMPLE_CHARS], "combined": r.combined,
                        "rewards": dict(r.rewards), "tokens": len(ids[pos]) if ids is not None else None})
        return out

    # -------------------------------------------------------------------------------------------- output
    def pop(self) -> dict[str, float]:
        """``signal/...`` metrics since the last pop (group shares over every batch since then)."""
        started = time.thread_time()
        out = self._pop()
        self.seconds += time.thread_time() - started
        return out

    def _pop(self) -> dict[str, float]:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(list)
        out: dict[str, float] = {}
        for prefix in [""] + [f"{label}/" for label in self.labels]:
            groups = sum(pending.get(f"{prefix}groups", []))
            if groups:
                out[f"signal/{prefix}zero_spread"] = sum(pending[f"{prefix}zero_groups"]) / groups
                out[f"signal/{prefix}all_solved"] = sum(pending[f"{prefix}solved_groups"]) / groups
                out[f"signal/{prefix}all_failed"] = sum(pending[f"{prefix}failed_groups"]) / groups
        for key, got in pending.items():
            if key.endswith(("groups", "zero_spread")) or key == "combined" or _is_component_mean(key, self):
                continue
            out[f"signal/{key}"] = fmean(got)
        return out

    def take_steps(self) -> list[StepSignal]:
        """The per-step summaries recorded since the last call (the monitor's input)."""
        with self._lock:
            steps, self._steps = self._steps, []
        return steps

    def samples(self) -> list[dict[str, Any]]:
        """Recent completions (newest last) with their dataset, step, component scores and combined reward."""
        with self._lock:
            return list(self._samples)


def _is_component_mean(key: str, tracker: SignalTracker) -> bool:
    return any(key in comps for comps in tracker.components)


def _text(value: Any) -> str:
    """A prompt or completion (string, or chat messages) as text."""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return str(value)
