"""Checks of the data sections that need no data read: percentages, input paths, the held-out count and the
token budget. Each takes the sections it reads and returns :class:`Problem` s; nodes wrap them as rules."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from pipelines.common.node import Rule
from pipelines.common.problems import Problem
from pipelines.common.refs import is_reference
from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.data.difficulty import TABLE_FILE, table_path
from pipelines.data.formats import supported_suffixes
from pipelines.data.hf import no_files_problem
from pipelines.data.sampling import held_out_rows
from pipelines.data.scan import resolve_input_paths


def check_percentages(datasets: Sequence[DatasetEntry], file: str) -> list[Problem]:
    total = sum(d.percentage for d in datasets)
    if total > 1 + 1e-9:
        return [Problem(file, "datasets", f"percentages sum to {total:g}, which is more than 1; lower them so "
                                          "that they add up to at most 1")]
    if total <= 0:
        return [Problem(file, "datasets", "every percentage is 0: no rows would be sampled")]
    return []


def _path_of(entry: Any) -> Optional[str]:
    """A dataset entry's path; an entry that did not validate (a raw dict) still gives its path string."""
    path = entry.get("path") if isinstance(entry, dict) else getattr(entry, "path", None)
    return path if isinstance(path, str) else None


def check_input_paths(datasets: Sequence[Any], file: str) -> list[Problem]:
    """Every dataset path matches a supported file (an ``@node.output`` reference is checked by the runner; an
    ``hf:`` dataset when the data summary loads it)."""
    problems = []
    suffixes = sorted(supported_suffixes())
    for i, entry in enumerate(datasets):
        path = _path_of(entry)
        if path is None or is_reference(path):
            continue
        if path.startswith("hf:"):
            if not path[3:].strip():
                problems.append(Problem(file, f"datasets[{i}].path", "hf: needs a dataset id (hf:org/name) or a "
                                                                      "folder (hf:/path/to/folder)"))
            continue
        files = resolve_input_paths(path)
        if not files:
            problems.append(Problem(file, f"datasets[{i}].path", no_files_problem(path)))
        for f in files:
            if f.suffix.lower() not in suffixes:
                problems.append(Problem(file, f"datasets[{i}].path", f"{f}: unsupported file type {f.suffix!r}; "
                                                                      f"use one of {', '.join(suffixes)}"))
    return problems


def check_held_out(rows: Optional[int], fraction: Optional[float], total_rows: int, file: str,
                   key: str = "evaluation") -> list[Problem]:
    """Held-out rows (counted exactly as the sampler counts them) must leave training rows."""
    held = held_out_rows(rows, fraction, total_rows)
    if held >= total_rows:
        return [Problem(file, key, f"held-out rows ({held}) must be fewer than dataset_settings.total_rows "
                                   f"({total_rows})")]
    return []


def check_length_budget(prompt: tuple[str, int], completion: tuple[str, int], limit: tuple[str, int],
                        file: str) -> list[Problem]:
    """Prompt + completion tokens must fit the model's sequence length; each argument is (config key, value)."""
    (p_key, p), (c_key, c), (l_key, limit_value) = prompt, completion, limit
    if p + c > limit_value:
        short = l_key.rsplit(".", 1)[-1]
        return [Problem(file, l_key, f"{p_key} ({p}) + {c_key} ({c}) = {p + c} exceeds {short} ({limit_value}); "
                                     f"raise {short} or lower the others")]
    return []


def check_difficulty_source(settings: DatasetSettings, file: str) -> list[Problem]:
    """``dataset_settings.difficulty.from`` names a difficulty table (a file, or a run dir holding one; a chain
    reference is checked by the runner), and ``band`` has one to read."""
    difficulty = settings.difficulty
    source = difficulty.from_
    problems = []
    if source and not is_reference(source) and not table_path(source).is_file():
        problems.append(Problem(file, "dataset_settings.difficulty.from", f"{source!r} is neither a "
                                f"{TABLE_FILE} file nor a run dir holding one (relative paths are resolved from "
                                f"{os.getcwd()})"))
    if difficulty.band is not None and not source:
        problems.append(Problem(file, "dataset_settings.difficulty.band", "band weights rows by the solved rates "
                                "of a table: set dataset_settings.difficulty.from (an earlier run's "
                                f"{TABLE_FILE}, its run dir, or e.g. \"@grpo.difficulty\")"))
    return problems


def _difficulty_rule(cfg: Any, file: str) -> list[Problem]:
    return check_difficulty_source(cfg.dataset_settings, file)


def _percentages_rule(cfg: Any, file: str) -> list[Problem]:
    return check_percentages(cfg.datasets, file)


def _input_paths_rule(cfg: Any, file: str) -> list[Problem]:
    return check_input_paths(cfg.datasets, file)


# The data-section rules every node with a `datasets` section runs.
RULES: tuple[Rule, ...] = (
    Rule(_percentages_rule, ("datasets",)),
    Rule(_input_paths_rule, ("datasets",), partial_lists=True),
    Rule(_difficulty_rule, ("dataset_settings",)),
)
