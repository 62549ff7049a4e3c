"""Guards: a run stopped on purpose (a training monitor's alert, a spending cap) exits 3, resumable.

A guard raises :class:`GuardStop` from a trainer callback (or a node's own loop) at a point where the run's
state is consistent (after an optimizer step, or between rollout batches). The node saves a checkpoint and
re-raises; the runner prints the reason and how to resume, and exits with :data:`EXIT_GUARD`. Every guard
(``monitor:``, ``budget:``) shares this one exception and this one exit code.
"""
from __future__ import annotations

from typing import Any, Optional

EXIT_GUARD = 3


class GuardStop(Exception):
    """A guard stopped the run on purpose; the run is resumable from the checkpoint saved when it stopped.

    ``kind`` names the guard and what tripped it (``anchor_divergence``, ``max_judge_usd``...); ``evidence``
    is where the details went (an ``alerts.jsonl`` path, a metric value), for the message only.
    """

    resumable = True

    def __init__(self, kind: str, message: str, step: Optional[int] = None, evidence: Any = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.step = step
        self.evidence = evidence

    def __str__(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        return f"stopped by a guard ({self.kind}){where}: {self.message}"
