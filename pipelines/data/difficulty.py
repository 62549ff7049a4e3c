"""The difficulty pool: one record per (dataset label, row id) of how its completions scored.

A row's record counts its ``attempts`` (completions generated), how many of them were ``scored`` (a reward
that returned None scores nothing), how many were ``solved`` (combined reward, before scaling, at least
``solved_at``) and the sum of their rewards, so ``mean_reward`` and ``solved_rate`` are exact after any number
of saves and reloads (a resumed run continues the very sums an uninterrupted one keeps). The GRPO node updates
it every step and the rollout node from its K completions per row; both write ``difficulty.parquet`` with
:meth:`DifficultyTable.save` (atomic: a kill leaves the old file or the new one). ``band`` weights turn a table
into per-row sampling weights (:meth:`DifficultyTable.weights`).
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from pipelines.common.io import file_mode

TABLE_FILE = "difficulty.parquet"
COLUMNS = ("dataset", "row_id", "attempts", "scored", "solved", "reward_sum", "mean_reward", "solved_rate")

RowKey = tuple[str, str]          # (dataset label, row id)


@dataclass
class RowStats:
    """Running sums of one row's completions."""

    attempts: int = 0
    scored: int = 0
    solved: int = 0
    reward_sum: float = 0.0

    @property
    def mean_reward(self) -> Optional[float]:
        return self.reward_sum / self.scored if self.scored else None

    @property
    def solved_rate(self) -> Optional[float]:
        return self.solved / self.attempts if self.attempts else None


def table_path(where: str | Path) -> Path:
    """The table a ``from`` value names: the file itself, or ``difficulty.parquet`` inside a run dir."""
    path = Path(where)
    return path / TABLE_FILE if path.is_dir() else path


class DifficultyTable:
    """Per-row statistics, in first-seen order (so a saved table's row order is reproducible too)."""

    def __init__(self, solved_at: float) -> None:
        self.solved_at = solved_at
        self.rows: dict[RowKey, RowStats] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def attempts(self) -> int:
        """Completions counted, over every row."""
        return sum(s.attempts for s in self.rows.values())

    def update(self, keys: Sequence[RowKey], rewards: Sequence[Optional[float]]) -> None:
        """Count one completion per (key, combined reward); None or NaN is an attempt that scored nothing.

        Raises:
            ValueError: ``keys`` and ``rewards`` differ in length.
        """
        if len(keys) != len(rewards):
            raise ValueError(f"{len(keys)} row keys but {len(rewards)} rewards")
        for key, reward in zip(keys, rewards):
            stats = self.rows.setdefault((str(key[0]), str(key[1])), RowStats())
            stats.attempts += 1
            if reward is None or math.isnan(float(reward)):
                continue
            stats.scored += 1
            stats.reward_sum += float(reward)
            stats.solved += float(reward) >= self.solved_at

    def solved_rate(self, key: RowKey) -> Optional[float]:
        stats = self.rows.get(key)
        return None if stats is None else stats.solved_rate

    def weights(self, keys: Iterable[RowKey], band: tuple[float, float], weight_outside: float) -> np.ndarray:
        """A sampling weight per key: 1 when its solved rate lies in ``band`` (ends included) or the table has
        no attempt of it, else ``weight_outside``."""
        lo, hi = band
        out = []
        for key in keys:
            rate = self.solved_rate(key)
            out.append(1.0 if rate is None or lo <= rate <= hi else weight_outside)
        return np.asarray(out, dtype=float)

    def in_band(self, band: tuple[float, float]) -> set[RowKey]:
        """Keys whose solved rate lies in ``band`` (ends included)."""
        lo, hi = band
        return {k for k, s in self.rows.items() if s.solved_rate is not None and lo <= s.solved_rate <= hi}

    def to_arrow(self):
        """The table as a pyarrow Table (columns :data:`COLUMNS`)."""
        import pyarrow as pa

        stats = list(self.rows.values())
        return pa.table({
            "dataset": pa.array([k[0] for k in self.rows], pa.string()),
            "row_id": pa.array([k[1] for k in self.rows], pa.string()),
            "attempts": pa.array([s.attempts for s in stats], pa.int64()),
            "scored": pa.array([s.scored for s in stats], pa.int64()),
            "solved": pa.array([s.solved for s in stats], pa.int64()),
            "reward_sum": pa.array([s.reward_sum for s in stats], pa.float64()),
            "mean_reward": pa.array([s.mean_reward for s in stats], pa.float64()),
            "solved_rate": pa.array([s.solved_rate for s in stats], pa.float64()),
        })

    def save(self, path: Path) -> None:
        """Write the table to ``path`` atomically (a temp file in the same folder, then renamed)."""
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, file_mode())
        os.close(fd)
        try:
            pq.write_table(self.to_arrow(), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path, solved_at: float) -> "DifficultyTable":
        """Read a table written by :meth:`save`. ``solved`` counts are kept as written (they were counted with
        the writer's ``solved_at``); new completions are counted with this one.

        Raises:
            ValueError: the file is not a difficulty table (a column is missing).
        """
        import pyarrow.parquet as pq

        data = pq.read_table(Path(path)).to_pydict()
        missing = [c for c in ("dataset", "row_id", "attempts", "scored", "solved", "reward_sum") if c not in data]
        if missing:
            raise ValueError(f"{path} is not a difficulty table: no column {', '.join(missing)}")
        table = cls(solved_at)
        for i, (dataset, row_id) in enumerate(zip(data["dataset"], data["row_id"])):
            table.rows[(dataset, row_id)] = RowStats(int(data["attempts"][i]), int(data["scored"][i]),
                                                     int(data["solved"][i]), float(data["reward_sum"][i]))
        return table
