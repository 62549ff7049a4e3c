"""The GRPO data layer: read the configured datasets, sample them with the run's seed, build prompt rows.

Flow: :func:`scan_dataset` counts each dataset's valid rows without keeping any; each dataset's rows are then
drawn from a seeded permutation of its valid rows, read back from disk and turned into trainer rows by
:func:`prepare_prompt` (the only place that tokenizes). A row that fails there (prompt too long) is replaced by
the next one of the same permutation. Held-out evaluation rows come first in each permutation, training rows
after them, so the two never overlap; the training rows of all datasets are then interleaved by a seeded
shuffle. The same config and seed always give the same rows in the same order (resume relies on it).
"""
from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from pipelines.common.problems import ConfigError, Problem
from pipelines.grpo.config import DatasetEntry, GRPOConfigFile
from pipelines.grpo.data_prompts import REASONS, BadRow, TokenCounter, prepare_prompt
from pipelines.grpo.data_readers import DataFileError, ScanResult, read_rows, scan_dataset
from pipelines.grpo.tokenization import make_token_counter

__all__ = ["BadRow", "DatasetStats", "SampleResult", "make_token_counter", "prepare_prompt", "sample_datasets",
           "inspect_datasets", "eval_row_count", "rows_per_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class DatasetStats:
    """Counters for one dataset: what the scan read and skipped, what was asked for and what was taken."""

    index: int
    path: str
    files: int = 0
    rows_read: int = 0
    valid_rows: int = 0
    skipped: Counter = field(default_factory=Counter)   # reason -> rows (scan and prompt budget)
    formats: Counter = field(default_factory=Counter)
    requested_train: int = 0
    requested_eval: int = 0
    train_rows: int = 0
    eval_rows: int = 0
    shortfall: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "path": self.path, "files": self.files, "rows_read": self.rows_read,
                "valid_rows": self.valid_rows, "skipped": dict(self.skipped), "formats": dict(self.formats),
                "requested_train": self.requested_train, "requested_eval": self.requested_eval,
                "train_rows": self.train_rows, "eval_rows": self.eval_rows, "shortfall": self.shortfall}


@dataclass
class SampleResult:
    """Sampled rows: ``train`` (interleaved across datasets), held-out ``eval``, per-dataset ``stats``."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    stats: list[DatasetStats]


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def rows_per_dataset(cfg: GRPOConfigFile) -> list[int]:
    """Training rows asked of each dataset: round(percentage x total_rows)."""
    return [_round_half_up(ds.percentage * cfg.dataset_settings.total_rows) for ds in cfg.datasets]


def eval_row_count(cfg: GRPOConfigFile) -> int:
    """Held-out rows the evaluation section asks for (0 without one)."""
    ev = cfg.evaluation
    if ev is None:
        return 0
    return ev.rows if ev.rows is not None else _round_half_up(ev.fraction * cfg.dataset_settings.total_rows)


def split_eval(eval_rows: int, train_counts: list[int]) -> list[int]:
    """Share held-out rows among datasets in proportion to their training rows (largest remainder)."""
    total = sum(train_counts)
    if eval_rows <= 0 or total <= 0:
        return [0] * len(train_counts)
    exact = [eval_rows * c / total for c in train_counts]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: eval_rows - sum(shares)]:
        shares[i] += 1
    return shares


def describe_skipped(skipped: Counter) -> str:
    if not skipped:
        return "none"
    return ", ".join(f"{n} {REASONS.get(r, r)} ({r})" for r, n in sorted(skipped.items(), key=lambda kv: -kv[1]))


def scan_or_problem(ds: DatasetEntry, index: int, file: str) -> tuple[Optional[ScanResult], list[Problem]]:
    """Scan a dataset; a missing/unreadable file or zero valid rows is a configuration problem."""
    key = f"datasets[{index}].path"
    try:
        scan = scan_dataset(ds.path)
    except (DataFileError, OSError) as exc:
        return None, [Problem(file, key, f"{exc}; fix or remove the file")]
    if not scan.files:
        return None, [Problem(file, key, f"no file matches {ds.path!r}")]
    if scan.valid == 0:
        names = ", ".join(str(f) for f in scan.files[:3]) + (" ..." if len(scan.files) > 3 else "")
        return scan, [Problem(file, key, f"{names}: no usable rows among {scan.rows_read} read (skipped: "
                                         f"{describe_skipped(scan.skipped)}); rows need `conversations` "
                                         "[{from, value}] or `messages` [{role, content}] with a user turn "
                                         "followed by an assistant turn")]
    return scan, []


def shortfall_problem(stats: DatasetStats, have: int, mode: str, file: str, why: str) -> Optional[Problem]:
    """A Problem in `error` mode, a warning in `take_all` mode, for a dataset with too few rows."""
    asked = stats.requested_train + stats.requested_eval
    what = f"{asked} rows asked ({stats.requested_train} training + {stats.requested_eval} held out)"
    if mode == "error":
        return Problem(file, f"datasets[{stats.index}]", f"{stats.path}: {what} but only {have} {why}; lower "
                       "percentage or dataset_settings.total_rows, or set dataset_settings.shortfall: take_all")
    logger.warning("dataset %d (%s): %s but only %d %s; taking all of them (shortfall: take_all)",
                   stats.index, stats.path, what, have, why)
    stats.shortfall = True
    return None


def _draw(scan: ScanResult, ds: DatasetEntry, stats: DatasetStats, need: int, seed: int,
          token_counter: Optional[TokenCounter], max_len: Optional[int]) -> list[dict[str, Any]]:
    """Rows from the dataset's seeded permutation of valid rows, replacing any that fail prepare_prompt."""
    from tqdm.auto import tqdm

    order = np.random.default_rng([seed, stats.index]).permutation(scan.valid)
    taken: list[dict[str, Any]] = []
    pos = 0
    with tqdm(total=need, desc=f"prepare dataset {stats.index}", unit="row", delay=1.0, leave=False) as bar:
        while len(taken) < need and pos < len(order):
            chunk = order[pos: pos + need - len(taken)]
            pos += len(chunk)
            raws = read_rows(scan, chunk)
            for p in chunk:
                try:
                    row = prepare_prompt(raws[int(p)], ds, stats.index, ds.path, scan.row_id(int(p)), seed,
                                         token_counter, max_len)
                except BadRow as exc:
                    stats.skipped[exc.reason] += 1
                    continue
                taken.append(row)
                bar.update(1)
    return taken


def sample_datasets(cfg: GRPOConfigFile, token_counter: Optional[TokenCounter] = None, eval_rows: int = 0,
                    config_file: str = "<config>") -> SampleResult:
    """Sample every dataset with ``cfg.seed``: ``eval_rows`` held-out rows (shared among datasets like the
    training rows), then round(percentage x total_rows) training rows each. Prompts longer than
    ``max_prompt_length`` (counted with ``token_counter``; not checked when it is None) lose old turns or are
    replaced. Raises ConfigError for unusable datasets and, with ``shortfall: error``, for too few rows."""
    mode = cfg.dataset_settings.shortfall
    max_len = cfg.training_parameters.max_prompt_length
    train_counts = rows_per_dataset(cfg)
    eval_counts = split_eval(eval_rows, train_counts)
    problems: list[Problem] = []
    plans = []
    for i, ds in enumerate(cfg.datasets):
        stats = DatasetStats(index=i, path=ds.path, requested_train=train_counts[i], requested_eval=eval_counts[i])
        scan, found = scan_or_problem(ds, i, config_file) if train_counts[i] + eval_counts[i] else (None, [])
        problems += found
        if scan is not None:
            stats.files, stats.rows_read, stats.valid_rows = len(scan.files), scan.rows_read, scan.valid
            stats.skipped.update(scan.skipped)
            stats.formats.update(scan.formats)
            if not found and scan.valid < train_counts[i] + eval_counts[i]:
                problem = shortfall_problem(stats, scan.valid, mode, config_file, "valid rows")
                problems += [problem] if problem else []
        plans.append((ds, stats, scan))
    if problems:
        raise ConfigError(problems)

    train, held = [], []
    for ds, stats, scan in plans:
        need = stats.requested_train + stats.requested_eval
        if scan is None or need == 0:
            continue
        rows = _draw(scan, ds, stats, min(need, scan.valid), cfg.seed, token_counter,
                     max_len if token_counter is not None else None)
        if len(rows) < need and not stats.shortfall:
            problem = shortfall_problem(stats, len(rows), mode, config_file, "fit the prompt budget")
            problems += [problem] if problem else []
        n_eval = min(stats.requested_eval, len(rows))
        held += rows[:n_eval]
        train += rows[n_eval:]
        stats.eval_rows, stats.train_rows = n_eval, len(rows) - n_eval
    if problems:
        raise ConfigError(problems)
    random.Random(f"{cfg.seed}:train").shuffle(train)
    random.Random(f"{cfg.seed}:eval").shuffle(held)
    for stats in (p[1] for p in plans):
        logger.info("dataset %d (%s): %d training + %d held-out rows from %d valid of %d read; skipped: %s",
                    stats.index, stats.path, stats.train_rows, stats.eval_rows, stats.valid_rows, stats.rows_read,
                    describe_skipped(stats.skipped))
    return SampleResult(train=train, eval=held, stats=[p[1] for p in plans])


def inspect_datasets(cfg: GRPOConfigFile, config_file: str) -> list[str]:
    """The ``--validate`` summary of every dataset; raises ConfigError listing every unusable dataset."""
    from pipelines.grpo.data_inspect import inspect_all
    return inspect_all(cfg, config_file)
