"""The ``--validate`` summary of a node's datasets: counts per dataset and one rendered example prompt.

Reads the files (a scan, no tokenizing beyond the single example) and loads no model: prompt tokens are
counted with the tokenizer folder when one is on this machine, and the example is skipped with a note when
the model is a hub id that has not been downloaded yet.
"""
from __future__ import annotations

import logging
import textwrap
from typing import Optional

import numpy as np

from pipelines.common.problems import ConfigError, Problem
from pipelines.data.prompts import FORMAT_NAMES, BadRow, prepare_prompt
from pipelines.data.readers import read_rows
from pipelines.data.sampling import (DataSpec, DatasetStats, describe_skipped, rows_per_dataset, scan_or_problem,
                                     shortfall_problem, split_eval)
from pipelines.data.scan import ScanResult
from pipelines.data.tokenization import ChatTokenCounter, compile_template, local_tokenizer_folder, \
    make_token_counter

logger = logging.getLogger(__name__)
EXAMPLE_TRIES = 20
SHOW_CHARS = 1200


def _template_only(template: str, source: str) -> ChatTokenCounter:
    """Renders with a template but cannot count tokens (no tokenizer on this machine)."""
    compiled = compile_template(template)

    def render(messages):
        return compiled.render(messages=messages, add_generation_prompt=True)

    def count(messages):
        raise RuntimeError("no tokenizer")

    return ChatTokenCounter(render, count, source)


def example_counter(spec: DataSpec) -> tuple[Optional[ChatTokenCounter], bool, str]:
    """(counter or renderer, whether it counts tokens, a note for the summary)."""
    name = spec.model_name
    template = spec.chat_template
    folder = local_tokenizer_folder(name)
    if folder is not None:
        try:
            return make_token_counter(folder, template, spec.chat_template_key), True, f"tokenizer: {folder}"
        except (OSError, ValueError) as exc:
            return None, False, f"example not rendered: {exc}"
    if name.startswith("builtin:"):
        from pipelines.common.tiny_model import TINY_CHAT_TEMPLATE
        return (_template_only(template or TINY_CHAT_TEMPLATE, name), False,
                f"{name} is built on first training run; prompt tokens not counted yet")
    if template:
        return (_template_only(template, spec.chat_template_key), False,
                f"{name} is not on this machine (downloaded when training starts); prompt tokens not counted")
    return None, False, (f"example not rendered: {name} is not on this machine and no chat_template is set "
                         "(it is downloaded when training starts)")


def _example_lines(scan: ScanResult, spec: DataSpec, index: int, counter: Optional[ChatTokenCounter],
                   counts: bool, columns: Optional[dict[int, set[str]]] = None) -> list[str]:
    """The first usable row of the dataset's seeded permutation, rendered with the chat template; its column
    names go into ``columns[index]``."""
    ds = spec.datasets[index]
    order = np.random.default_rng([spec.seed, index]).permutation(scan.valid)[:EXAMPLE_TRIES]
    raws = read_rows(scan, order)
    max_len = spec.max_prompt_length
    for p in order:
        try:
            row = prepare_prompt(raws[int(p)], ds, index, ds.path, scan.row_id(int(p)), spec.seed,
                                 counter if counts else None, max_len if counts else None)
        except BadRow:
            continue
        if columns is not None:
            columns[index] = set(row)
        head = f"example (row {row['row_id']}"
        if counter is None:
            lines = [head + "), prompt messages:"] + [f"  | {m['role']}: {m['content'][:200]!r}" for m in row["prompt"]]
        else:
            text = counter.render(row["prompt"])
            tokens = f", {counter(row['prompt'])} prompt tokens" if counts else ""
            shown = text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + f"... [{len(text) - SHOW_CHARS} more chars]"
            lines = [f"{head}{tokens}), rendered prompt:"] + ["  | " + ln for ln in shown.splitlines() or [""]]
        lines.append("answer: " + textwrap.shorten(row["answer"], width=300, placeholder="..."))
        return lines
    return [f"no example: the first {len(order)} sampled rows do not fit max_prompt_length ({max_len})"]


def inspect_datasets(spec: DataSpec, config_file: str, columns: Optional[dict[int, set[str]]] = None,
                     totals: Optional[dict[str, int]] = None) -> list[str]:
    """Summary lines for every dataset; raises ConfigError for unusable datasets and shortfalls in error mode.
    ``columns`` receives, per dataset, the column names of a prepared example row (what rewards will see);
    ``totals["train_rows"]`` the training rows the sampler will draw (every sampled row fitting the prompt
    budget)."""
    total_rows = spec.settings.total_rows
    train_counts = rows_per_dataset(spec.datasets, total_rows)
    eval_counts = split_eval(spec.eval_rows, train_counts)
    counter, counts, note = example_counter(spec)
    lines: list[str] = []
    problems: list[Problem] = []
    for i, ds in enumerate(spec.datasets):
        want = train_counts[i] + eval_counts[i]
        if want == 0:
            lines.append(f"dataset[{i}] {ds.path}: not read (percentage {ds.percentage:g} gives 0 rows)")
            continue
        scan, found = scan_or_problem(ds, i, config_file)
        problems += found
        if scan is None:
            continue
        formats = ", ".join(FORMAT_NAMES[k] for k in scan.formats) or "none"
        lines.append(f"dataset[{i}] {ds.path}: {len(scan.files)} file(s), format: {formats}")
        lines.append(f"  rows read: {scan.rows_read}, valid: {scan.valid}, skipped: {describe_skipped(scan.skipped)}")
        held = f" + {eval_counts[i]} held out" if eval_counts[i] else ""
        if totals is not None:
            totals["train_rows"] = totals.get("train_rows", 0) + min(train_counts[i],
                                                                     max(scan.valid - eval_counts[i], 0))
        lines.append(f"  rows to be sampled: {min(want, scan.valid)} ({train_counts[i]} training{held}, "
                     f"percentage {ds.percentage:g} of total_rows {total_rows})")
        if scan.valid and scan.valid < want:
            stats = DatasetStats(index=i, path=ds.path, requested_train=train_counts[i],
                                 requested_eval=eval_counts[i])
            problem = shortfall_problem(stats, scan.valid, spec.settings.shortfall, config_file, "valid rows")
            problems += [problem] if problem else []
            if problem is None:
                lines.append(f"  WARNING: only {scan.valid} valid rows; all of them will be used (shortfall: "
                             "take_all)")
        if scan.valid:
            lines.append(f"  {note}")
            lines += ["  " + ln for ln in _example_lines(scan, spec, i, counter, counts, columns)]
            if columns is not None and i in columns:
                lines.append("  columns: " + ", ".join(sorted(columns[i] - {"prompt", "dataset_index", "row_id"})))
    if problems:
        raise ConfigError(problems)
    return lines
