"""The ``--validate`` summary of a node's datasets: rows counted, the sample drawn as training will draw it (bad
rows among the drawn ones counted by reason), one rendered example prompt, and the checks that need rows: mapped
and template columns exist, and every reward's required columns (e.g. ``answer``) are there. ``--full-scan``
also classifies every row of every file.

Loads no model: prompt tokens are counted with the tokenizer folder when one is on this machine, and the
example is skipped with a note when the model is a hub id that has not been downloaded yet.
"""
from __future__ import annotations

import logging
import textwrap
from typing import Any, Callable, Optional

from pipelines.common.jinja_render import ChatTemplateError
from pipelines.common.problems import ConfigError, Problem
from pipelines.data.config import DatasetEntry
from pipelines.data.index import DataIndex, columns_found
from pipelines.data.prompts import FORMAT_NAMES, row_format
from pipelines.data.sampling import (DataSpec, DatasetStats, describe_skipped, draw_rows, index_or_problem,
                                     no_usable_rows, rows_per_dataset, shortfall_problem, split_eval)
from pipelines.data.tokenization import ChatTokenCounter, compile_template, local_tokenizer_folder, \
    make_token_counter

logger = logging.getLogger(__name__)
SHOW_CHARS = 1200
EMPTY_CHECK_ROWS = 20     # drawn prompts rendered to tell a template that renders nothing


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
        except ChatTemplateError:
            raise
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


def _example_lines(row: dict[str, Any], counter: Optional[ChatTokenCounter], counts: bool) -> list[str]:
    """The first row drawn, rendered with the chat template."""
    head = f"example (row {row['row_id']}"
    if counter is None:
        lines = [head + "), prompt messages:"] + [f"  | {m['role']}: {m['content'][:200]!r}" for m in row["prompt"]]
    else:
        text = counter.render(row["prompt"])
        tokens = f", {counter(row['prompt'])} prompt tokens" if counts else ""
        shown = text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + f"... [{len(text) - SHOW_CHARS} more chars]"
        lines = [f"{head}{tokens}), rendered prompt:"] + ["  | " + ln for ln in shown.splitlines() or [""]]
    answer = row["answer"]
    lines.append("answer: " + (textwrap.shorten(answer, width=300, placeholder="...") if answer is not None
                               else "(none: no answer column, and the prompt ends with the user's turn)"))
    return lines


def check_columns(ds: DatasetEntry, index: int, idx: DataIndex, file: str) -> list[Problem]:
    """Columns named by ``columns`` and ``prompt_template`` must exist; the message lists the columns found."""
    found = columns_found(idx)
    if found is None:
        return []
    wanted = [(f"datasets[{index}].prompt_template", f) for f in row_format(ds).fields]
    wanted += [(f"datasets[{index}].columns.{k}", v) for k, v in ds.columns.model_dump().items() if v]
    listed = ", ".join(found) or "none"
    return [Problem(file, key, f"no column {name!r} in {ds.path}; columns found: {listed}")
            for key, name in wanted if name not in found]


def check_required_columns(ds: DatasetEntry, index: int, rows: list[dict[str, Any]], file: str,
                           required_columns: Callable[[str, dict[str, Any]], list[str]]
                           ) -> tuple[list[Problem], list[str]]:
    """(problems, warnings): a reward that declares it needs a column (e.g. ``answer``) on a dataset whose drawn
    rows never have it is an error; rows that only sometimes have it are a warning. ``required_columns`` is the
    node's lookup (:attr:`DataSpec.required_columns`)."""
    problems, warnings = [], []
    for j, entry in enumerate(ds.reward_funcs):
        for column in required_columns(entry.name, entry.kwargs):
            missing = sum(1 for r in rows if r.get(column) is None)
            hint = ("map one with columns.answer, or use rows with an assistant turn" if column == "answer"
                    else f"add it to the rows, pass a column under that name with `columns: {{{column}: "
                         f"<your column>}}` on this dataset, or name another column in the reward's options")
            if missing == len(rows):
                problems.append(Problem(file, f"datasets[{index}].reward_funcs[{j}]",
                                        f"{entry.name} needs `{column}` on every row, but none of the {len(rows)} "
                                        f"rows drawn has one; {hint}"))
            elif missing:
                warnings.append(f"  WARNING: {entry.name} needs `{column}`; {missing} of {len(rows)} rows drawn "
                                "have none (it scores them None)")
    return problems, warnings


def _full_scan_lines(ds: DatasetEntry, spec: DataSpec, idx: DataIndex) -> list[str]:
    from pipelines.data.readers import scan_files

    scan = scan_files(idx.files, row_format(ds), spec.settings.max_row_bytes)
    return [f"  full scan: rows read: {scan.rows_read}, valid: {scan.valid}, skipped: "
            f"{describe_skipped(scan.skipped)}"]


def _dataset_lines(spec: DataSpec, i: int, want: tuple[int, int], counter: Optional[ChatTokenCounter],
                   counts: bool, note: str, config_file: str, full_scan: bool,
                   columns: Optional[dict[int, set[str]]],
                   totals: Optional[dict[str, int]],
                   examples: Optional[dict[int, dict[str, Any]]] = None) -> tuple[list[str], list[Problem]]:
    """Summary lines and problems of one dataset: count, check columns, draw the sample, check rewards."""
    ds = spec.datasets[i]
    idx, problems = index_or_problem(ds, i, config_file, spec.settings.max_row_bytes)
    if idx is None:
        return [], problems
    problems = check_columns(ds, i, idx, config_file)
    lines = [f"dataset[{i}] {ds.path}: {len(idx.files)} file(s), {idx.total} rows"]
    if full_scan:
        lines += _full_scan_lines(ds, spec, idx)
    if problems:
        return lines, problems
    stats = DatasetStats(index=i, path=ds.path, requested_train=want[0], requested_eval=want[1])
    need = sum(want)
    rows = draw_rows(idx, ds, stats, min(need, idx.total), spec.seed, counter if counts else None,
                     spec.max_prompt_length if counts else None)
    formats = ", ".join(FORMAT_NAMES.get(k, str(k)) for k in stats.formats) or "none"
    held = f" + {want[1]} held out" if want[1] else ""
    lines.append(f"  drawn: {stats.rows_read} rows read for {need} ({want[0]} training{held}, percentage "
                 f"{ds.percentage:g} of total_rows {spec.settings.total_rows}); usable: {len(rows)}, skipped: "
                 f"{describe_skipped(stats.skipped)}; format: {formats}")
    if totals is not None:
        totals["train_rows"] = totals.get("train_rows", 0) + len(rows) - min(want[1], len(rows))
    if not rows:
        return lines, [no_usable_rows(ds, i, config_file, stats.rows_read, stats.skipped,
                                      stats.too_long_note(spec.max_prompt_length))]
    if len(rows) < need:
        why = "rows in its files" if idx.total < need else "usable rows (see skipped)"
        problem = shortfall_problem(stats, len(rows), spec.settings.shortfall, config_file, why,
                                    spec.max_prompt_length)
        problems += [problem] if problem else []
        if problem is None:
            lines.append(f"  WARNING: only {len(rows)} usable rows; all of them will be used (shortfall: take_all)")
    if spec.required_columns is not None:
        found, warnings = check_required_columns(ds, i, rows, config_file, spec.required_columns)
        problems += found
        lines += warnings
    if counter is not None and all(not counter.render(r["prompt"]).strip() for r in rows[:EMPTY_CHECK_ROWS]):
        problems.append(Problem(config_file, spec.chat_template_key,
                                f"datasets[{i}]: the chat template renders every prompt drawn as empty text (checked "
                                f"{min(len(rows), EMPTY_CHECK_ROWS)}); the model would train on nothing. Does it "
                                "read `messages` and honour `add_generation_prompt`?"))
    lines += [f"  {note}"] + ["  " + ln for ln in _example_lines(rows[0], counter, counts)]
    if examples is not None:
        examples[i] = rows[0]
    if columns is not None:
        columns[i] = set(rows[0])
        lines.append("  columns: " + ", ".join(sorted(columns[i] - {"prompt", "dataset_index", "dataset_path",
                                                                    "row_id"})))
    return lines, problems


def inspect_datasets(spec: DataSpec, config_file: str, columns: Optional[dict[int, set[str]]] = None,
                     totals: Optional[dict[str, int]] = None, full_scan: bool = False,
                     examples: Optional[dict[int, dict[str, Any]]] = None) -> list[str]:
    """Summary lines for every dataset; raises ConfigError for unusable datasets, missing columns and
    shortfalls in error mode. ``columns`` receives, per dataset, the column names of a prepared example row
    (what rewards will see); ``totals["train_rows"]`` the training rows the sampler will draw; ``full_scan``
    also classifies every row of every local file; ``examples`` receives a drawn row per dataset."""
    train_counts = rows_per_dataset(spec.datasets, spec.settings.total_rows)
    eval_counts = split_eval(spec.eval_rows, train_counts)
    lines: list[str] = []
    problems: list[Problem] = []
    try:
        counter, counts, note = example_counter(spec)
    except ChatTemplateError as exc:   # the model folder's own template cannot be used
        raise ConfigError([Problem(config_file, spec.chat_template_key, str(exc))]) from None
    for i, ds in enumerate(spec.datasets):
        if train_counts[i] + eval_counts[i] == 0:
            lines.append(f"dataset[{i}] {ds.path}: not read (percentage {ds.percentage:g} gives 0 rows)")
            continue
        try:
            found_lines, found = _dataset_lines(spec, i, (train_counts[i], eval_counts[i]), counter, counts, note,
                                                config_file, full_scan, columns, totals, examples)
        except ChatTemplateError as exc:   # raised while rendering this dataset's prompts (budget or example)
            found_lines, found = [], [Problem(config_file, spec.chat_template_key, f"datasets[{i}]: {exc}")]
        lines += found_lines
        problems += found
    if problems:
        raise ConfigError(problems)
    return lines
