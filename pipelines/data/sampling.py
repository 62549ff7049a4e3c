"""Sampling: read the configured datasets, sample them with the run's seed, build prompt rows.

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
from typing import Any, Optional, Sequence

import numpy as np

from pipelines.common.problems import ConfigError, Problem
from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.data.prompts import REASONS, BadRow, TokenCounter, prepare_prompt
from pipelines.data.readers import read_rows, scan_dataset
from pipelines.data.scan import DataFileError, ScanResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """What the data layer needs of a node's config: the ``datasets`` and ``dataset_settings`` sections, the
    seed, the prompt budget and the held-out row count. ``model_name``, ``chat_template`` and
    ``chat_template_key`` (the config key, for messages) serve the ``--validate`` example only."""

    datasets: Sequence[DatasetEntry]
    settings: DatasetSettings
    seed: int
    max_prompt_length: int
    eval_rows: int = 0
    model_name: str = ""
    chat_template: Optional[str] = None
    chat_template_key: str = "chat_template"


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


def rows_per_dataset(datasets: Sequence[DatasetEntry], total_rows: int) -> list[int]:
    """Training rows asked of each dataset: round(percentage x total_rows)."""
    return [_round_half_up(ds.percentage * total_rows) for ds in datasets]


def held_out_rows(rows: Optional[int], fraction: Optional[float], total_rows: int) -> int:
    """Held-out rows asked for by a count or a fraction of ``total_rows`` (rounded half up; 0 for neither).
    The one place this is computed: the config check and the sampler must agree."""
    if rows is not None:
        return rows
    return _round_half_up(fraction * total_rows) if fraction is not None else 0


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


def sample_datasets(spec: DataSpec, token_counter: Optional[TokenCounter] = None,
                    config_file: str = "<config>") -> SampleResult:
    """Sample every dataset with ``spec.seed``: ``spec.eval_rows`` held-out rows (shared among datasets like the
    training rows), then round(percentage x total_rows) training rows each. Prompts longer than
    ``max_prompt_length`` (counted with ``token_counter``; not checked when it is None) lose old turns or are
    replaced. Raises ConfigError for unusable datasets and, with ``shortfall: error``, for too few rows."""
    mode = spec.settings.shortfall
    max_len = spec.max_prompt_length
    train_counts = rows_per_dataset(spec.datasets, spec.settings.total_rows)
    eval_counts = split_eval(spec.eval_rows, train_counts)
    problems: list[Problem] = []
    plans = []
    for i, ds in enumerate(spec.datasets):
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
        rows = _draw(scan, ds, stats, min(need, scan.valid), spec.seed, token_counter,
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
    random.Random(f"{spec.seed}:train").shuffle(train)
    random.Random(f"{spec.seed}:eval").shuffle(held)
    for stats in (p[1] for p in plans):
        logger.info("dataset %d (%s): %d training + %d held-out rows from %d valid of %d read; skipped: %s",
                    stats.index, stats.path, stats.train_rows, stats.eval_rows, stats.valid_rows, stats.rows_read,
                    describe_skipped(stats.skipped))
    return SampleResult(train=train, eval=held, stats=[p[1] for p in plans])


def sample_with_tokenizer(spec: DataSpec, tokenizer: Any, config_file: str) -> SampleResult:
    """Sample with prompt lengths counted by ``tokenizer`` through ``spec.chat_template``, exactly as the
    trainer or generator will render them: what every node does once its tokenizer is loaded."""
    from pipelines.data.tokenization import make_token_counter

    return sample_datasets(spec, make_token_counter(tokenizer, spec.chat_template), config_file=config_file)
