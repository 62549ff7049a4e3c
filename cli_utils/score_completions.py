#!/usr/bin/env python3
"""Score completions offline with a GRPO config's reward functions: no GPU, no model load.

    .venv/bin/python -m cli_utils.score_completions --config pipelines/grpo/configs/quickstart.yaml \\
        --input completions.jsonl --output scored.jsonl [--dataset 0] [--show-judge]
    .venv/bin/python -m cli_utils.score_completions --config pipelines/grpo/configs/quickstart.yaml --sample 20

Each input line is a data row as it appears in a dataset (``conversations`` or ``messages`` plus its extra
columns) with a ``completion`` string and, optionally, ``dataset`` (an index or a configured path). The row
goes through the same prompt construction as in training (system prompt, cut at an assistant turn). Each
output line is the input line plus ``rewards`` ({component: score or null}), ``reward`` (combined, before
scaling) and ``errors`` (only when there were any). A table of mean scores per component is printed.

Every line is scored: a line that cannot be read, a reward that raises, a judge call that fails after its
retries becomes an ``errors`` entry of that line, never the end of the run (the training circuit breaker and
``on_error: fail`` do not apply here). ``--show-judge`` prints each judge reply and how it was read.

The output is written to a temporary file beside it and renamed at the end, so it is complete or absent. It
may not be, contain or lie inside an input (``--input``, ``--config``, the config's data files); an existing
output is replaced only with ``--overwrite``, and only when it is a regular file (not a symlink, device or FIFO)
whose first line is a record this tool wrote; ``--show-judge`` prints every judge reply with secrets masked.

With a group judge (``mode: group``), consecutive lines with the same prompt are one group, judged in one
call: write each prompt's completions next to each other.

``--sample N`` (instead of ``--input``) samples N rows from the config's datasets and scores their reference
``answer`` s: the quickest way to try a new reward or rubric.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from pipelines.common.problems import ConfigError, Problem
from pipelines.common.redaction import redact_text
from pipelines.common.safe_paths import AtomicOutputFile, output_problem, shown

from cli_utils.scoring_report import JudgeLog, Summary

CLI_KEYS = ("completion", "dataset")
Item = tuple[dict, Optional[dict], str, Optional[str]]   # (output base, trainer row or None, completion, error)


def build_parser(prog: str = "score_completions") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        epilog="Example: .venv/bin/python -m cli_utils.score_completions --config "
               "pipelines/grpo/configs/quickstart.yaml --sample 20. Exit codes: 0 scored (line errors are in the "
               "output), 2 a bad config, input or output path.")
    parser.add_argument("--config", required=True, help="GRPO node config (YAML) whose datasets and reward_funcs "
                                                        "are used")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="JSONL of data rows, each with a `completion` (and optionally `dataset`)")
    src.add_argument("--sample", type=int, metavar="N", help="score the reference answers of N rows sampled "
                                                            "from the config's datasets")
    parser.add_argument("--output", help="JSONL to write the scored lines to (required with --input); never an "
                                         "input, written whole or not at all")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output that an earlier "
                                                                 "run of this tool wrote")
    parser.add_argument("--dataset", help="dataset (0-based index or its configured path) for lines without a "
                                          "`dataset` field; default: the only dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override of the config, value parsed as YAML (repeatable)")
    parser.add_argument("--batch-size", type=int, default=64, help="completions scored together (async rewards "
                                                                  "of a batch run concurrently; default 64)")
    parser.add_argument("--show-judge", action="store_true", help="print every LLM-judge reply and how it was "
                                                                  "read (score, or why not)")
    return parser


def load_config(path: str, sets: Sequence[str]):
    """Load, override, interpolate and validate the config; check its rewards. ConfigError on problems."""
    from pipelines.common.config_io import EnvResolver, apply_overrides, load_yaml, parse_scalar
    from pipelines.common.schema import validate_model
    from pipelines.common.notices import log_notices
    from pipelines.grpo.compat import normalise
    from pipelines.grpo.config import GRPOConfigFile
    from pipelines.rewards.checks import check_post_processors, check_reward_funcs

    raw = load_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem(path, "", "expected a mapping at the top level")])
    problems: list[Problem] = []
    overrides = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            problems.append(Problem("--set", item, "expected KEY=VALUE"))
        overrides[key] = parse_scalar(value)
    problems += apply_overrides(raw, overrides, path, "--set")
    env = EnvResolver()
    raw = env.resolve(raw, path, problems)
    from pipelines.common.redaction import register_secrets
    register_secrets(env.secret_values)
    raw, notices, shape_problems = normalise(raw, path)      # an Augmentoolkit config reads as training reads it
    problems += shape_problems
    log_notices(notices, path)
    cfg, schema_problems = validate_model(GRPOConfigFile, raw, path)
    problems += schema_problems
    if cfg is not None:
        problems += check_reward_funcs(cfg.datasets, path) + check_post_processors(cfg.reward, path)
    if problems:
        raise ConfigError(problems)
    return cfg, env.secret_values


def resolve_dataset(value: Any, cfg, where: str) -> int:
    """A dataset named by index (int or digits) or by its configured path; ValueError otherwise."""
    n = len(cfg.datasets)
    if value is None:
        if n == 1:
            return 0
        raise ValueError(f"{where}: no `dataset` field and no --dataset, but the config has {n} datasets; name one "
                         f"by index (0-{n - 1}) or path")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        index = int(value)
        if 0 <= index < n:
            return index
        raise ValueError(f"{where}: dataset index {index} is out of range (0-{n - 1})")
    for i, ds in enumerate(cfg.datasets):
        if str(value) == ds.path or Path(str(value)).resolve() == Path(ds.path).resolve():
            return i
    paths = ", ".join(f"{i}: {ds.path}" for i, ds in enumerate(cfg.datasets))
    raise ValueError(f"{where}: dataset {value!r} is not configured; use one of {paths}")


def prepare_line(line: dict, cfg, default_dataset: Optional[str], row_id: str) -> tuple[dict, str]:
    """The trainer row for one input line (same construction as training) and its completion."""
    from pipelines.data.sampling import BadRow, prepare_prompt

    completion = line.get("completion")
    if not isinstance(completion, str):
        raise ValueError("the line has no `completion` string")
    index = resolve_dataset(line.get("dataset", default_dataset), cfg, "dataset")
    ds = cfg.datasets[index]
    raw = {k: v for k, v in line.items() if k not in CLI_KEYS}
    try:  # a line holding only the prompt turns is a prompt as it stands, as in training
        row = prepare_prompt(raw, ds, index, ds.path, row_id, cfg.seed)
    except BadRow as exc:
        raise ValueError(f"unusable row: {exc}") from None
    return row, completion


def read_input(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or the exception) for each non-blank line; a line that is not UTF-8 or nests
    too deeply is an error of that line."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, ValueError("the line is not valid UTF-8")
            except (json.JSONDecodeError, RecursionError) as exc:
                yield number, ValueError(f"not a JSON object ({type(exc).__name__})")


def _score(stack, rows: list[dict], completions: list[str]) -> list[Any]:
    """Scores of a batch; when a reward stops the whole batch (a circuit breaker of a custom reward), each
    line is scored alone and a line that still stops becomes that line's error."""
    from pipelines.rewards.engine import ScoreResult
    from pipelines.rewards.errors import CircuitBreakerOpen, RewardFunctionError

    try:
        return stack.score_batch(None, completions, rows, raise_errors=False)
    except (CircuitBreakerOpen, RewardFunctionError) as exc:
        if len(rows) == 1:
            return [ScoreResult(rows[0].get("dataset_index", 0), {}, None, None, [f"{type(exc).__name__}: {exc}"])]
    return [r for row, c in zip(rows, completions) for r in _score(stack, [row], [c])]


def score_lines(stack, items: list[Item], secrets: set[str], judges: JudgeLog) -> Iterator[dict]:
    """Score (output base, row, completion, error) items; yield output records."""
    ok = [(i, it) for i, it in enumerate(items) if it[1] is not None]
    results = {}
    if ok:
        scored = _score(stack, [it[1] for _, it in ok], [it[2] for _, it in ok])
        results = {i: r for (i, _), r in zip(ok, scored)}
    for i, (base, row, _completion, error) in enumerate(items):
        out = dict(base)
        res = results.get(i)
        errors = [error] if error else list(res.errors if res else [])
        if row is not None:
            errors += judges.take(row.get("row_id"), str(row.get("row_id")))
        out["rewards"] = res.rewards if res else {}
        out["reward"] = res.combined if res else None
        if errors:
            out["errors"] = [redact_text(e, secrets) for e in errors]
        yield out


def _items(args, cfg) -> Iterator[Item]:
    if args.sample is not None:
        import dataclasses

        from pipelines.data.sampling import sample_datasets
        from pipelines.grpo.inputs import data_spec
        spec = data_spec(cfg)
        settings = spec.settings.model_copy(update={"total_rows": args.sample, "shortfall": "take_all"})
        sized = dataclasses.replace(spec, settings=settings, eval_rows=0)
        for row in sample_datasets(sized, token_counter=None, config_file=args.config).train:
            if row["answer"] is None:  # a prompt-only row has no reference answer to score
                yield {"row_id": row["row_id"]}, None, "", f"{row['row_id']}: no reference answer to score"
            else:
                yield {**row, "completion": row["answer"]}, row, row["answer"], None
        return
    for number, line in read_input(args.input):
        where = f"{shown(args.input)}:{number}"
        if isinstance(line, Exception) or not isinstance(line, dict):
            reason = str(line) if isinstance(line, Exception) else "not a JSON object"
            yield {"line": number}, None, "", f"{where}: {reason}"
            continue
        try:
            row, completion = prepare_line(line, cfg, args.dataset, where)
            yield line, row, completion, None
        except ValueError as exc:
            yield line, None, "", f"{where}: {exc}"


def _group_key(item: Item) -> Optional[str]:
    """The prompt (and dataset) of an item: consecutive lines sharing it are one prompt group."""
    row = item[1]
    if row is None:
        return None
    return json.dumps([row.get("dataset_index"), row.get("prompt")], sort_keys=True, default=str)


def has_group_judge(cfg) -> bool:
    """Whether a reward of the config is a group judge (``mode: group``)."""
    return any(e.name == "llm_judge" and e.kwargs.get("mode") == "group" for ds in cfg.datasets
               for e in ds.reward_funcs)


def _batches(args, cfg) -> Iterator[list[Item]]:
    """Items in batches of --batch-size; with a group judge (``mode: group``) a batch never ends between
    consecutive lines of one prompt, so the judge sees each prompt's completions together."""
    batch: list[Item] = []
    grouped = has_group_judge(cfg)
    for item in _items(args, cfg):
        if len(batch) >= args.batch_size and not (grouped and _group_key(item) == _group_key(batch[-1])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def overwrite_problem(path: Path) -> Optional[str]:
    """Why ``--overwrite`` may not replace ``path`` (None when it may): only a regular file, not a symlink,
    whose first line is a record this tool wrote (a JSON object with ``rewards`` and ``reward``). A device
    (``/dev/null``), a FIFO, a symlink, an empty file or any other file is never replaced."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link; --overwrite replaces only a regular file this tool wrote (give the real path)"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, FIFO or socket); --overwrite replaces only a file this tool wrote"
    try:   # O_NOFOLLOW | O_NONBLOCK: a path swapped for a symlink or FIFO since lstat neither follows nor blocks
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"cannot be read ({exc.strerror}); --overwrite replaces only a file this tool wrote"
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "is not a regular file; --overwrite replaces only a file this tool wrote"
        first = next((line for line in fh if line.strip()), None)
    if first is None:
        return ("is empty, so nothing shows that score_completions wrote it; --overwrite replaces only an earlier "
                "output (remove the file yourself to reuse the name)")
    try:
        record = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        record = None
    if isinstance(record, dict) and isinstance(record.get("rewards"), dict) and "reward" in record:
        return None
    return ("exists and is not an output of score_completions (no `rewards` in its first line); --overwrite "
            "replaces only an earlier output")


def path_problems(args, cfg) -> list[str]:
    """Everything wrong with --input and --output, before anything is read or written."""
    problems = []
    if args.input is not None:
        src = Path(args.input)
        if not src.exists():
            problems.append(f"--input {shown(src)}: file not found")
        elif not src.is_file():
            problems.append(f"--input {shown(src)}: is a folder, not a JSONL file")
    if not args.output:
        return problems
    out = Path(args.output)
    inputs = [("--config file", args.config)] + ([("--input file", args.input)] if args.input else [])
    inputs += [(f"data file of datasets[{i}]", p) for i, ds in enumerate(cfg.datasets) for p in _data_files(ds.path)]
    clash = output_problem(out, inputs)
    if clash:
        problems.append(f"--output: {clash}")
    elif out.is_dir():
        problems.append(f"--output {shown(out)}: is a folder; give a file path")
    elif os.path.lexists(out) and not args.overwrite:   # lexists: a dangling symlink exists too
        problems.append(f"--output {shown(out)}: exists; add --overwrite to replace an earlier output")
    elif os.path.lexists(out):
        refused = overwrite_problem(out)
        if refused:
            problems.append(f"--output {shown(out)}: {refused}")
    return problems


def _data_files(pattern: str) -> list[str]:
    return glob.glob(pattern) if glob.has_magic(pattern) else [pattern] if os.path.exists(pattern) else []


def main(argv: Optional[Sequence[str]] = None, prog: str = "score_completions") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.input is not None and not args.output:
        parser.error("--output is required with --input")
    if args.sample is not None and args.sample < 1:
        parser.error("--sample must be at least 1")
    try:
        cfg, secrets = load_config(args.config, args.set)
        if args.dataset is not None:
            resolve_dataset(args.dataset, cfg, "--dataset")
    except (ConfigError, ValueError) as exc:
        print(redact_text(str(exc), set()), file=sys.stderr)
        return 2
    problems = path_problems(args, cfg)
    if problems:
        print("\n".join(f"score_completions: error: {p}" for p in problems), file=sys.stderr)
        return 2
    from pipelines.rewards.engine import RewardStack
    from pipelines.rewards.errors import RewardFunctionError
    try:
        stack = RewardStack(cfg.reward, cfg.datasets, run_dir=None)
    except RewardFunctionError as exc:
        print(redact_text(str(exc), secrets), file=sys.stderr)
        return 2
    output = AtomicOutputFile(Path(args.output)) if args.output else None
    try:
        summary = _score_all(args, cfg, stack, secrets, output)
        counters = _reward_counters(stack)
        if output is not None:
            output.commit()
    except ConfigError as exc:
        print(redact_text(str(exc), secrets), file=sys.stderr)
        return 2
    finally:
        stack.close()
        if output is not None:
            output.discard()
    print(summary.table())
    if counters:
        print(counters)
    if args.output:
        print(f"wrote {shown(args.output)}")
    return 0


def _reward_counters(stack) -> str:
    """What the reward functions counted while scoring (e.g. code_tests' zero scores by reason), the non-zero
    ones, one per line; '' when there are none."""
    lines = [f"  {key.removeprefix('rewards/')}: {value:g}" for key, value in sorted(stack.pop_metrics().items())
             if value and not key.endswith(("/mean", "/std", "/none_ratio", "/count"))]
    return "reward counters:\n" + "\n".join(lines) if lines else ""


def _score_all(args, cfg, stack, secrets: set[str], output: Optional[AtomicOutputFile]) -> Summary:
    from tqdm import tqdm

    judges = JudgeLog(stack, args.show_judge, secrets)
    if judges.judges:
        print(f"LLM judges ({', '.join(j.options.label for j in judges.judges)}): every line is scored; a failed "
              "call is that line's error (the training circuit breaker and on_error: fail do not apply here)",
              file=sys.stderr)
    summary = Summary()
    with tqdm(desc="scoring", unit="line", file=sys.stderr, disable=None) as bar:
        for batch in _batches(args, cfg):
            for record in score_lines(stack, batch, secrets, judges):
                summary.add(record["rewards"], record["reward"], bool(record.get("errors")))
                if output is not None:
                    output.write(record)
                bar.update(1)
    return summary


if __name__ == "__main__":
    sys.exit(main())
