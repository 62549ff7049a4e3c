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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from pipelines.common.io import atomic_write_parquet

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
    """Per-row statistics in columns (so a snapshot for writing is cheap), rows in first-seen order (a saved
    table's row order is reproducible too)."""

    def __init__(self, solved_at: float) -> None:
        self.solved_at = solved_at
        self._index: dict[RowKey, int] = {}
        self._keys: list[RowKey] = []
        self._counts = np.zeros((0, 3), dtype=np.int64)      # attempts, scored, solved
        self._sums = np.zeros(0, dtype=np.float64)           # reward_sum
        self._key_chunks: tuple[list, list] = ([], [])        # arrow arrays of the keys converted so far
        self._converted = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def attempts(self) -> int:
        """Completions counted, over every row."""
        return int(self._counts[: len(self._keys), 0].sum())

    def row(self, key: RowKey) -> Optional[RowStats]:
        """One row's sums (a copy), or None when the table has no attempt of it."""
        i = self._index.get(key)
        if i is None:
            return None
        attempts, scored, solved = (int(v) for v in self._counts[i])
        return RowStats(attempts, scored, solved, float(self._sums[i]))

    @property
    def rows(self) -> dict[RowKey, RowStats]:
        """Every row's sums, in table order (copies)."""
        return {key: self.row(key) for key in self._keys}

    def _position(self, key: RowKey) -> int:
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self._keys)
            self._keys.append(key)
            if i == len(self._sums):                        # grow by doubling
                grow = max(64, i)
                self._counts = np.concatenate([self._counts, np.zeros((grow, 3), dtype=np.int64)])
                self._sums = np.concatenate([self._sums, np.zeros(grow)])
        return i

    def add(self, key: RowKey, stats: RowStats) -> None:
        """Add sums counted elsewhere (a saved table) to ``key``'s."""
        i = self._position(key)
        self._counts[i] += (stats.attempts, stats.scored, stats.solved)
        self._sums[i] += stats.reward_sum

    def update(self, keys: Sequence[RowKey], rewards: Sequence[Optional[float]]) -> None:
        """Count one completion per (key, combined reward); None or NaN is an attempt that scored nothing.

        Raises:
            ValueError: ``keys`` and ``rewards`` differ in length.
        """
        if len(keys) != len(rewards):
            raise ValueError(f"{len(keys)} row keys but {len(rewards)} rewards")
        for key, reward in zip(keys, rewards):
            i = self._position((str(key[0]), str(key[1])))
            self._counts[i, 0] += 1
            if reward is None or math.isnan(float(reward)):
                continue
            self._counts[i, 1] += 1
            self._counts[i, 2] += float(reward) >= self.solved_at
            self._sums[i] += float(reward)

    def solved_rate(self, key: RowKey) -> Optional[float]:
        stats = self.row(key)
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
        """The table as a pyarrow Table (columns :data:`COLUMNS`): a snapshot, cheap enough to take every step."""
        import pyarrow as pa

        n = len(self._keys)
        counts, sums = self._counts[:n], self._sums[:n]
        attempts, scored, solved = counts[:, 0].copy(), counts[:, 1].copy(), counts[:, 2].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(scored > 0, sums / np.maximum(scored, 1), np.nan)
            rate = np.where(attempts > 0, solved / np.maximum(attempts, 1), np.nan)
        datasets, row_ids = self._key_columns()
        return pa.table({
            "dataset": datasets,
            "row_id": row_ids,
            "attempts": pa.array(attempts), "scored": pa.array(scored), "solved": pa.array(solved),
            "reward_sum": pa.array(sums.copy()),
            "mean_reward": pa.array(mean, mask=scored == 0),
            "solved_rate": pa.array(rate, mask=attempts == 0),
        })

    def _key_columns(self):
        """The key columns as chunked arrays, converting only the keys added since the last call (keys are only
        ever appended), so a snapshot of a large table costs little more than its new rows."""
        import pyarrow as pa

        datasets, row_ids = self._key_chunks
        new = self._keys[self._converted:]
        if new:
            datasets.append(pa.array([k[0] for k in new], pa.string()))
            row_ids.append(pa.array([k[1] for k in new], pa.string()))
            self._converted = len(self._keys)
        if len(datasets) > 32:                                # keep the chunk count small
            datasets[:] = [pa.concat_arrays(datasets)]
            row_ids[:] = [pa.concat_arrays(row_ids)]
        return (pa.chunked_array(datasets, pa.string()), pa.chunked_array(row_ids, pa.string()))

    @staticmethod
    def write(arrow_table, path: Path) -> None:
        """Write a :meth:`to_arrow` snapshot to ``path`` atomically (a temp file in the same folder, renamed)."""
        atomic_write_parquet(path, arrow_table)

    def save(self, path: Path) -> None:
        """Write the table to ``path`` atomically."""
        self.write(self.to_arrow(), path)

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
            table.add((dataset, row_id), RowStats(int(data["attempts"][i]), int(data["scored"][i]),
                                                  int(data["solved"][i]), float(data["reward_sum"][i])))
        return table
