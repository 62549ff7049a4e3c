"""The GRPO node's difficulty pool: :class:`~pipelines.data.difficulty.DifficultyTable` kept up to date while
training, and the sampling weights of ``dataset_settings.difficulty.band``.

Every completion TRL generates for training (dynamic sampling's extra batches included) is counted under its
row, so the table's attempts add up to the completions generated. The table is written to
``<run_dir>/difficulty.parquet`` at the end of every step and copied into each ``checkpoint-N/`` before the
checkpoint is marked complete; a resumed run reloads that copy, so after a kill it continues from the very table
an uninterrupted run had at that step. A fresh run starts from the ``from`` table when one is given.

The band weights are read from the ``from`` table (fixed for the run, so a resumed run draws as an
uninterrupted one): each epoch then draws as many rows as the sample holds, with replacement, each row's
chance proportional to its weight (1 in the band or unknown, ``weight_outside`` outside it).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from pipelines.common.problems import ConfigError, Problem
from pipelines.data.config import DifficultySettings
from pipelines.data.difficulty import TABLE_FILE, DifficultyTable, RowKey, table_path

log = logging.getLogger(__name__)

FROM_KEY = "dataset_settings.difficulty.from"


def row_keys(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[RowKey]:
    """(dataset label, row id) of each trainer row."""
    return [(labels[int(r["dataset_index"])], str(r["row_id"])) for r in rows]


class LatestWriter:
    """Writes table snapshots on one daemon thread, so a step never waits for Parquet: a snapshot handed in
    while another waits replaces it (only the newest matters), and :meth:`flush` waits until it is on disk."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: Optional[tuple[Any, Path]] = None
        self._busy = False
        self._thread: Optional[threading.Thread] = None

    def submit(self, arrow_table: Any, path: Path) -> None:
        with self._cond:
            self._pending = (arrow_table, path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="difficulty-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending is None and not self._busy)

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None)
                (snapshot, path), self._pending, self._busy = self._pending, None, True
            try:
                DifficultyTable.write(snapshot, path)
            except OSError as exc:          # a full disk must not kill training; the checkpoint copy is written
                log.warning("difficulty pool: could not write %s: %s", path, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class DifficultyPool:
    """The run's table, updated from each scored training batch (every process keeps the same table)."""

    def __init__(self, table: DifficultyTable, labels: Sequence[str], main_process: bool) -> None:
        self.table = table
        self.labels = list(labels)
        self.main_process = main_process
        self.writer = LatestWriter()

    def record(self, trainer: Any, inputs: Sequence[dict[str, Any]]) -> None:
        """Count the batch TRL just scored: this process's rows with the stack's combined rewards, gathered."""
        pairs = list(zip(row_keys(inputs, self.labels), trainer.reward_stack.last_combined))
        if trainer.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            pairs = gather_object(pairs)
        self.table.update([k for k, _ in pairs], [r for _, r in pairs])

    def save(self, folder: Path) -> None:
        """Write ``folder/difficulty.parquet`` now (main process only): a checkpoint's copy."""
        if self.main_process:
            self.table.save(Path(folder) / TABLE_FILE)

    def save_soon(self, folder: Path) -> None:
        """Snapshot the table now and write it to ``folder/difficulty.parquet`` off the training thread."""
        if self.main_process:
            self.writer.submit(self.table.to_arrow(), Path(folder) / TABLE_FILE)


def load_pool(settings: DifficultySettings, labels: Sequence[str], resume: Optional[Path], main_process: bool,
              config_file: str) -> DifficultyPool:
    """The table a run continues: the resumed checkpoint's copy, else the ``from`` table, else an empty one.

    Raises:
        ConfigError: the ``from`` table cannot be read.
    """
    copy = Path(resume) / TABLE_FILE if resume is not None else None
    if copy is not None and copy.is_file():
        table = DifficultyTable.load(copy, settings.solved_at)
        log.info("difficulty pool: %d row(s), %d attempt(s), from %s", len(table), table.attempts, copy)
    elif settings.from_:
        table = read_from(settings, config_file)
        if copy is not None:
            log.warning("difficulty pool: %s has no %s; starting again from %s", resume, TABLE_FILE, settings.from_)
    else:
        table = DifficultyTable(settings.solved_at)
        if copy is not None:
            log.warning("difficulty pool: %s has no %s; the table starts empty", resume, TABLE_FILE)
    return DifficultyPool(table, labels, main_process)


def read_from(settings: DifficultySettings, config_file: str) -> DifficultyTable:
    """The ``from`` table.

    Raises:
        ConfigError: it is missing or not a difficulty table.
    """
    path = table_path(str(settings.from_))
    try:
        return DifficultyTable.load(path, settings.solved_at)
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(config_file, FROM_KEY, f"cannot read {path}: {exc}")]) from exc


def band_weights(settings: DifficultySettings, rows: Sequence[dict[str, Any]], labels: Sequence[str],
                 config_file: str) -> Optional[np.ndarray]:
    """Sampling weight of each training row under ``band`` (None without a band).

    Raises:
        ConfigError: the ``from`` table cannot be read, or every weight is 0.
    """
    if settings.band is None or not settings.from_:
        return None
    table = read_from(settings, config_file)
    weights = table.weights(row_keys(rows, labels), settings.band, settings.weight_outside)
    outside = int(np.count_nonzero(weights != 1.0))
    log.info("difficulty band %s: %d of %d training row(s) outside it (weight %g), from %s", list(settings.band),
             outside, len(rows), settings.weight_outside, settings.from_)
    if not weights.sum() > 0:
        raise ConfigError([Problem(config_file, "dataset_settings.difficulty.band", f"no training row lies in "
                                   f"the band {list(settings.band)} of {settings.from_} and weight_outside is 0; "
                                   "widen the band or raise weight_outside")])
    return weights


def weighted_indices(weights: np.ndarray, generator: Any) -> list[int]:
    """One epoch's row order under band weights: len(weights) draws with replacement (torch generator)."""
    import torch

    return torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), len(weights), replacement=True,
                             generator=generator).tolist()


def repeat_batches(order: Sequence[int], batch_size: int, repeat_count: int, mini_repeat_count: int
                   ) -> Iterator[int]:
    """TRL's RepeatSampler layout over a given row order: whole batches only, each batch repeated
    ``repeat_count`` times, each row ``mini_repeat_count`` times in a row (its group)."""
    whole = len(order) - len(order) % batch_size
    for start in range(0, whole, batch_size):
        batch = order[start:start + batch_size]
        for _ in range(repeat_count):
            for index in batch:
                for _ in range(mini_repeat_count):
                    yield index


def sampling_hooks(settings: Any, seed: int, group_size: int, train_rows: Sequence[dict[str, Any]],
                   dataset_labels: Sequence[str], resume: Optional[Path], main_process: bool,
                   config_file: str) -> dict[str, Any]:
    """The trainer subclass's keyword arguments for ``dataset_settings`` (``dynamic_sampler``,
    ``difficulty_pool``, ``row_weights``): the pool always, band weights and dynamic sampling when configured.

    Raises:
        ConfigError: the ``from`` table cannot be read, or the band leaves no row to draw.
    """
    from pipelines.grpo.dynamic_sampling import DynamicSampler

    weights = band_weights(settings.difficulty, train_rows, dataset_labels, config_file)
    sampler = (DynamicSampler(settings.dynamic_sampling, seed, group_size, weights)
               if settings.dynamic_sampling.enabled else None)
    pool = load_pool(settings.difficulty, dataset_labels, resume, main_process, config_file)
    return {"dynamic_sampler": sampler, "difficulty_pool": pool, "row_weights": weights}


def pool_callback(pool: DifficultyPool, run_dir: Path) -> Any:
    """A trainer callback writing ``<run_dir>/difficulty.parquet`` after every optimizer step (off the training
    thread) and waiting for the last write when training ends."""
    from transformers import TrainerCallback

    class DifficultyPoolCallback(TrainerCallback):
        counted = None       # the table's attempts when training started

        def on_train_begin(self, args, state, control, **kwargs):
            self.counted = pool.table.attempts

        def on_step_end(self, args, state, control, **kwargs):
            if self.counted is not None and pool.table.attempts == self.counted:
                log.warning("difficulty pool: step %d counted no completion (this backend's trainer scores "
                            "without TRL's _calculate_rewards); difficulty.parquet is not updated by this run",
                            state.global_step)
            self.counted = None
            pool.save_soon(run_dir)

        def on_train_end(self, args, state, control, **kwargs):
            pool.writer.flush()

    return DifficultyPoolCallback()
