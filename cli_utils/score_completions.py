#!/usr/bin/env python3
"""Score completions offline with a GRPO config's reward functions: no GPU, no model load.

    python -m cli_utils.score_completions --config pipelines/grpo/configs/quickstart.yaml \\
        --input completions.jsonl --output scored.jsonl [--dataset 0]
    python -m cli_utils.score_completions --config pipelines/grpo/configs/quickstart.yaml --sample 20

Each input line is a data row as it appears in a dataset (``conversations`` or ``messages`` plus its extra
columns) with a ``completion`` string and, optionally, ``dataset`` (an index or a configured path). The row
goes through the same prompt construction as in training (system prompt, cut at an assistant turn). Each
output line is the input line plus ``rewards`` ({component: score or null}), ``reward`` (combined, before
scaling) and ``errors`` (only when there were any). A table of mean scores per component is printed.

``--sample N`` (instead of ``--input``) samples N rows from the config's datasets and scores their reference
``answer`` s: the quickest way to try a new reward or rubric.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from pipelines.common.problems import ConfigError, Problem

CLI_KEYS = ("completion", "dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="score_completions", description=__doc__.split("\n\n")[0],
        epilog="Example: python -m cli_utils.score_completions --config pipelines/grpo/configs/quickstart.yaml "
               "--sample 20")
    parser.add_argument("--config", required=True, help="GRPO node config (YAML) whose datasets and reward_funcs "
                                                        "are used")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="JSONL of data rows, each with a `completion` (and optionally `dataset`)")
    src.add_argument("--sample", type=int, metavar="N", help="score the reference answers of N rows sampled "
                                                            "from the config's datasets")
    parser.add_argument("--output", help="JSONL to write the scored lines to (required with --input)")
    parser.add_argument("--dataset", help="dataset (0-based index or its configured path) for lines without a "
                                          "`dataset` field; default: the only dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override of the config, value parsed as YAML (repeatable)")
    parser.add_argument("--batch-size", type=int, default=64, help="completions scored together (async rewards "
                                                                  "of a batch run concurrently; default 64)")
    return parser


def load_config(path: str, sets: Sequence[str]):
    """Load, override, interpolate and validate the config; check its rewards. ConfigError on problems."""
    from pipelines.common.config_io import EnvResolver, apply_overrides, load_yaml, parse_scalar
    from pipelines.common.schema import validate_model
    from pipelines.common.compat import log_notices
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
    try:
        row = prepare_prompt(raw, ds, index, ds.path, row_id, cfg.seed)
    except BadRow as exc:
        if exc.reason != "no_assistant_turn":
            raise ValueError(f"unusable row: {exc}") from None
        # A line holding only the prompt turns: score the completion as the next assistant turn.
        key = "conversations" if "conversations" in raw else "messages"
        turn = {"from": "gpt", "value": ""} if key == "conversations" else {"role": "assistant", "content": ""}
        raw[key] = list(raw[key]) + [turn]
        row = prepare_prompt(raw, ds, index, ds.path, row_id, cfg.seed)
    return row, completion


def read_input(path: str) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, exc


def _redact(text: str, secrets: set[str]) -> str:
    from pipelines.common.redaction import redact_text

    return redact_text(text, secrets)


class Summary:
    """Running means per component for the closing table."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # name -> [sum, count, nones]
        self.lines = self.errors = 0

    def add(self, rewards: dict[str, Any], combined: Any, had_error: bool) -> None:
        self.lines += 1
        self.errors += had_error
        for name, value in [*rewards.items(), ("combined", combined)]:
            s = self.stats.setdefault(name, [0.0, 0, 0])
            if value is None:
                s[2] += 1
            else:
                s[0] += value
                s[1] += 1

    def table(self) -> str:
        width = max([len(n) for n in self.stats] + [9])
        out = [f"{'component':<{width}}  {'mean':>9}  {'scored':>6}  {'null':>6}"]
        for name in sorted(self.stats, key=lambda n: (n == "combined", n)):
            total, count, nones = self.stats[name]
            mean = f"{total / count:9.4f}" if count else f"{'-':>9}"
            out.append(f"{name:<{width}}  {mean}  {count:>6}  {nones:>6}")
        out.append(f"{self.lines} line(s) scored, {self.errors} with errors")
        return "\n".join(out)


def score_lines(stack, items: list[tuple[dict, Optional[dict], str, Optional[str]]], secrets: set[str]):
    """Score (output base, row, completion, error) items; yield output records."""
    ok = [(i, it) for i, it in enumerate(items) if it[1] is not None]
    results = {}
    if ok:
        scored = stack.score_batch(None, [it[2] for _, it in ok], [it[1] for _, it in ok], raise_errors=False)
        results = {i: r for (i, _), r in zip(ok, scored)}
    for i, (base, _row, _completion, error) in enumerate(items):
        out = dict(base)
        res = results.get(i)
        errors = [error] if error else list(res.errors if res else [])
        out["rewards"] = res.rewards if res else {}
        out["reward"] = res.combined if res else None
        if errors:
            out["errors"] = [_redact(e, secrets) for e in errors]
        yield out


def _batches(args, cfg) -> Iterator[list[tuple[dict, Optional[dict], str, Optional[str]]]]:
    batch: list = []
    if args.sample is not None:
        import dataclasses

        from pipelines.data.sampling import sample_datasets
        from pipelines.grpo.inputs import data_spec
        spec = data_spec(cfg)
        settings = spec.settings.model_copy(update={"total_rows": args.sample, "shortfall": "take_all"})
        sized = dataclasses.replace(spec, settings=settings, eval_rows=0)
        for row in sample_datasets(sized, token_counter=None, config_file=args.config).train:
            batch.append(({**row, "completion": row["answer"]}, row, row["answer"], None))
            if len(batch) >= args.batch_size:
                yield batch
                batch = []
    else:
        for number, line in read_input(args.input):
            where = f"{args.input}:{number}"
            if isinstance(line, Exception) or not isinstance(line, dict):
                batch.append(({"line": number}, None, "", f"{where}: not a JSON object"))
            else:
                try:
                    row, completion = prepare_line(line, cfg, args.dataset, where)
                    batch.append((line, row, completion, None))
                except ValueError as exc:
                    batch.append((line, None, "", f"{where}: {exc}"))
            if len(batch) >= args.batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.input is not None and not args.output:
        build_parser().error("--output is required with --input")
    if args.sample is not None and args.sample < 1:
        build_parser().error("--sample must be at least 1")
    try:
        cfg, secrets = load_config(args.config, args.set)
        if args.dataset is not None:
            resolve_dataset(args.dataset, cfg, "--dataset")
    except (ConfigError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from tqdm import tqdm

    from pipelines.rewards.engine import RewardStack
    from pipelines.rewards.errors import CircuitBreakerOpen, RewardFunctionError
    try:
        stack = RewardStack(cfg.reward, cfg.datasets, run_dir=None)
    except RewardFunctionError as exc:
        print(_redact(str(exc), secrets), file=sys.stderr)
        return 2
    summary = Summary()
    out_fh = open(args.output, "w", encoding="utf-8") if args.output else None
    try:
        with tqdm(desc="scoring", unit="line", file=sys.stderr, disable=None) as bar:
            for batch in _batches(args, cfg):
                for record in score_lines(stack, batch, secrets):
                    summary.add(record["rewards"], record["reward"], bool(record.get("errors")))
                    if out_fh is not None:
                        out_fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                    bar.update(1)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (CircuitBreakerOpen, RewardFunctionError) as exc:
        print(f"scoring stopped: {_redact(str(exc), secrets)}", file=sys.stderr)
        return 1
    finally:
        stack.close()
        if out_fh is not None:
            out_fh.close()
    print(summary.table())
    if args.output:
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
