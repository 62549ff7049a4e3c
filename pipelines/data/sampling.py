"""Sampling: count each dataset's rows, draw a seeded sample, read and validate only the rows drawn.

Flow: :func:`~pipelines.data.index.build_index` counts each dataset's rows without parsing any (Parquet
metadata, a JSONL line index); each dataset's rows are then drawn in a seeded random order, read back from disk
and turned into trainer rows by :func:`prepare_prompt` (the only place that tokenizes). A row that fails (bad
JSON, too large, no prompt, prompt too long) is counted by reason and replaced by the next draw. Held-out
evaluation rows are the first rows taken, training rows the rest, so the two never overlap; the training rows of
all datasets are then interleaved by a seeded shuffle. The same config and seed always give the same rows in
the same order (resume relies on it). ``--validate --full-scan`` classifies every row instead
(:func:`pipelines.data.readers.scan_dataset`).
"""
from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from pipelines.common.problems import ConfigError, Problem
from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.data.hf import MissingSplit, no_files_problem
from pipelines.data.index import DataIndex, build_index
from pipelines.data.prompts import REASONS, BadRow, TokenCounter, conversation_key, prepare_prompt, row_format
from pipelines.data.scan import DataFileError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """What the data layer needs of a node's config: the ``datasets`` and ``dataset_settings`` sections, the
    seed, the prompt budget and the held-out row count. ``model_name``, ``chat_template`` and
    ``chat_template_key`` (the config key, for messages) serve the ``--validate`` example only.
    ``required_columns(name, kwargs)`` names the row columns a reward entry needs: the node passes the reward
    catalog's lookup (the data layer imports no reward catalog); None checks no reward's columns."""

    datasets: Sequence[DatasetEntry]
    settings: DatasetSettings
    seed: int
    max_prompt_length: int
    eval_rows: int = 0
    model_name: str = ""
    chat_template: Optional[str] = None
    chat_template_key: str = "chat_template"
    required_columns: Optional[Callable[[str, dict[str, Any]], list[str]]] = None


@dataclass
class DatasetStats:
    """Counters for one dataset: what the scan read and skipped, what was asked for and what was taken."""

    index: int
    path: str
    files: int = 0
    total_rows: int = 0                                  # rows in the files (counted, not read)
    rows_read: int = 0                                   # rows drawn and read
    valid_rows: int = 0                                  # rows read that became prompts
    skipped: Counter = field(default_factory=Counter)   # reason -> rows read but refused
    formats: Counter = field(default_factory=Counter)
    requested_train: int = 0
    requested_eval: int = 0
    train_rows: int = 0
    eval_rows: int = 0
    shortfall: bool = False
    too_long_tokens: list = field(default_factory=list)   # lengths of the prompt_too_long rows that were counted

    def too_long_note(self, max_prompt_length: Optional[int]) -> str:
        """What the prompt_too_long rows say about the budget: how long they are and what would fit them."""
        n = self.skipped.get("prompt_too_long", 0)
        if not n:
            return ""
        lengths = self.too_long_tokens
        sizes = (f" (the shortest {min(lengths)} tokens, the longest {max(lengths)}, counted with the chat "
                 f"template)" if lengths else "")
        fit = (f"; a max_prompt_length of {max(lengths)} would keep the ones counted (raise max_seq_length to "
               f"fit it plus max_completion_length)" if lengths else "")
        limit = f" {max_prompt_length} tokens" if max_prompt_length else ""
        return f"{n} prompt(s) were longer than max_prompt_length{limit}{sizes}{fit}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "path": self.path, "files": self.files, "total_rows": self.total_rows,
                "rows_read": self.rows_read,
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


def index_or_problem(ds: DatasetEntry, index: int, file: str,
                     max_row_bytes: Optional[int] = None) -> tuple[Optional[DataIndex], list[Problem]]:
    """Count a dataset's rows; a missing or unreadable file, or no rows at all, is a configuration problem."""
    from pipelines.data.config import DEFAULT_MAX_ROW_BYTES

    key = f"datasets[{index}].path"
    try:
        idx = build_index(ds.path, max_row_bytes or DEFAULT_MAX_ROW_BYTES, ds.split, ds.subset, ds.revision)
    except MissingSplit as exc:
        return None, [Problem(file, f"datasets[{index}].split", f"{exc}; set `split` to one of them")]
    except (DataFileError, OSError) as exc:
        return None, [Problem(file, key, f"{exc}; fix or remove the file")]
    if not idx.files:
        return None, [Problem(file, key, no_files_problem(ds.path))]
    if idx.total == 0:
        return None, [Problem(file, key, f"{ds.path}: no rows (every file is empty)")]
    return idx, []


def no_usable_rows(ds: DatasetEntry, index: int, file: str, read: int, skipped: Counter,
                   too_long: str = "") -> Problem:
    """The problem for a dataset none of whose rows read can become a prompt; ``too_long`` is
    :meth:`DatasetStats.too_long_note`: when every row was too long, the budget is the fix, not the format."""
    if too_long and set(skipped) == {"prompt_too_long"}:
        return Problem(file, f"datasets[{index}].path", f"{ds.path}: no usable rows among {read} read: {too_long}; "
                       "or shorten the prompts (system_prompt counts too)")
    return Problem(file, f"datasets[{index}].path", f"{ds.path}: no usable rows among {read} read (skipped: "
                   f"{describe_skipped(skipped)}); rows need `conversations` [{{from, value}}] or `messages` "
                   "[{role, content}] ending in a user turn or holding one followed by an assistant turn, or a "
                   "`prompt` column (text or messages); map other names with `columns` or `prompt_template`")


def shortfall_problem(stats: DatasetStats, have: int, mode: str, file: str, why: str,
                      max_prompt_length: Optional[int] = None) -> Optional[Problem]:
    """A Problem in `error` mode, a warning in `take_all` mode, for a dataset with too few rows."""
    asked = stats.requested_train + stats.requested_eval
    what = f"{asked} rows asked ({stats.requested_train} training + {stats.requested_eval} held out)"
    note = stats.too_long_note(max_prompt_length)
    why = f"{why} ({note})" if note else why
    if mode == "error":
        return Problem(file, f"datasets[{stats.index}]", f"{stats.path}: {what} but only {have} {why}; lower "
                       "percentage or dataset_settings.total_rows, or set dataset_settings.shortfall: take_all")
    logger.warning("dataset %d (%s): %s but only %d %s; taking all of them (shortfall: take_all)",
                   stats.index, stats.path, what, have, why)
    stats.shortfall = True
    return None


def draw_order(total: int, need: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row positions in a seeded random order, in chunks: first a sample a little larger than ``need``
    (without building a permutation of every row), then, if bad rows used that up, the rest in random order."""
    first = rng.choice(total, size=min(total, 2 * need + 64), replace=False)
    yield first
    if len(first) < total:
        rest = rng.permutation(total)
        yield rest[~np.isin(rest, first)]


def draw_rows(idx: DataIndex, ds: DatasetEntry, stats: DatasetStats, need: int, seed: int,
              token_counter: Optional[TokenCounter], max_len: Optional[int]) -> list[dict[str, Any]]:
    """Up to ``need`` trainer rows, drawn in the dataset's seeded order; a row that is unreadable or fails
    prepare_prompt is counted in ``stats.skipped`` by reason and replaced by the next draw."""
    from tqdm.auto import tqdm

    fmt = row_format(ds)
    taken: list[dict[str, Any]] = []
    with tqdm(total=need, desc=f"prepare dataset {stats.index}", unit="row", delay=1.0, leave=False) as bar:
        for order in draw_order(idx.total, need, np.random.default_rng([seed, stats.index])):
            pos = 0
            while len(taken) < need and pos < len(order):
                chunk = order[pos: pos + max(need - len(taken), 16)]
                pos += len(chunk)
                results = idx.read(chunk)
                for p in chunk:
                    stats.rows_read += 1
                    reason, raw = results[int(p)]
                    try:
                        if reason is not None:
                            raise BadRow(reason)
                        row = prepare_prompt(raw, ds, stats.index, ds.path, idx.row_id(int(p)), seed,
                                             token_counter, max_len)
                    except BadRow as exc:
                        stats.skipped[exc.reason] += 1
                        if exc.tokens is not None:
                            stats.too_long_tokens.append(exc.tokens)
                        continue
                    stats.formats[conversation_key(raw, fmt)] += 1
                    taken.append(row)
                    bar.update(1)
                    if len(taken) == need:
                        break
            if len(taken) == need:
                break
    stats.valid_rows = len(taken)
    return taken


def _sample_one(spec: DataSpec, i: int, ds: DatasetEntry, stats: DatasetStats, token_counter: Optional[TokenCounter],
                config_file: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Draw one dataset's held-out + training rows; problems for an unusable dataset or a shortfall."""
    need = stats.requested_train + stats.requested_eval
    idx, problems = index_or_problem(ds, i, config_file, spec.settings.max_row_bytes)
    if idx is None:
        return [], problems
    stats.files, stats.total_rows = len(idx.files), idx.total
    max_len = spec.max_prompt_length if token_counter is not None else None
    rows = draw_rows(idx, ds, stats, min(need, idx.total), spec.seed, token_counter, max_len)
    if not rows:
        return [], [no_usable_rows(ds, i, config_file, stats.rows_read, stats.skipped,
                                   stats.too_long_note(spec.max_prompt_length))]
    if len(rows) < need:
        why = "rows in its files" if idx.total < need else "usable rows (see skipped)"
        problem = shortfall_problem(stats, len(rows), spec.settings.shortfall, config_file, why,
                                    spec.max_prompt_length)
        problems += [problem] if problem else []
    return rows, problems


def sample_datasets(spec: DataSpec, token_counter: Optional[TokenCounter] = None,
                    config_file: str = "<config>") -> SampleResult:
    """Sample every dataset with ``spec.seed``: ``spec.eval_rows`` held-out rows (shared among datasets like the
    training rows), then round(percentage x total_rows) training rows each. Prompts longer than
    ``max_prompt_length`` (counted with ``token_counter``; not checked when it is None) lose old turns or are
    replaced. Raises ConfigError for unusable datasets and, with ``shortfall: error``, for too few rows."""
    train_counts = rows_per_dataset(spec.datasets, spec.settings.total_rows)
    eval_counts = split_eval(spec.eval_rows, train_counts)
    problems: list[Problem] = []
    train, held, all_stats = [], [], []
    for i, ds in enumerate(spec.datasets):
        stats = DatasetStats(index=i, path=ds.path, requested_train=train_counts[i], requested_eval=eval_counts[i])
        all_stats.append(stats)
        if train_counts[i] + eval_counts[i] == 0:
            continue
        rows, found = _sample_one(spec, i, ds, stats, token_counter, config_file)
        problems += found
        n_eval = min(stats.requested_eval, len(rows))
        held += rows[:n_eval]
        train += rows[n_eval:]
        stats.eval_rows, stats.train_rows = n_eval, len(rows) - n_eval
    if problems:
        raise ConfigError(problems)
    random.Random(f"{spec.seed}:train").shuffle(train)
    random.Random(f"{spec.seed}:eval").shuffle(held)
    for stats in all_stats:
        logger.info("dataset %d (%s): %d training + %d held-out rows; %d of %d rows read; skipped: %s",
                    stats.index, stats.path, stats.train_rows, stats.eval_rows, stats.rows_read, stats.total_rows,
                    describe_skipped(stats.skipped))
    return SampleResult(train=train, eval=held, stats=all_stats)


def sample_with_tokenizer(spec: DataSpec, tokenizer: Any, config_file: str) -> SampleResult:
    """Sample with prompt lengths counted by ``tokenizer`` through ``spec.chat_template``, exactly as the
    trainer or generator will render them: what every node does once its tokenizer is loaded."""
    from pipelines.data.tokenization import make_token_counter

    return sample_datasets(spec, make_token_counter(tokenizer, spec.chat_template), config_file=config_file)


def rows_for(spec: DataSpec, need: dict[int, int], config_file: str) -> dict[int, list[dict[str, Any]]]:
    """At least ``need[i]`` rows (when the files have them) of each dataset ``i``, drawn as training draws them
    but without a tokenizer (no prompt-length check): what a node's ``--calibrate-judges`` hook hands the judge
    calibration. Raises ConfigError for an unusable dataset."""
    import dataclasses

    if not need:
        return {}
    # Enough total rows that each dataset's share (percentage x total) covers what it needs.
    total = max(math.ceil(n / spec.datasets[i].percentage) for i, n in need.items() if spec.datasets[i].percentage > 0)
    settings = spec.settings.model_copy(update={"total_rows": total, "shortfall": "take_all"})
    sample = sample_datasets(dataclasses.replace(spec, settings=settings, eval_rows=0), None, config_file)
    rows: dict[int, list[dict[str, Any]]] = {}
    for row in sample.train:
        rows.setdefault(int(row["dataset_index"]), []).append(row)
    return rows
