"""What ``--validate`` prints: the summary of every planned node (run dir, resolved references, data, judges)
and the one report of every problem found (``<file>: <key.path>: <message>``, exit 2)."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from pipelines.common.pins import version_warning
from pipelines.common.problems import ConfigError, Problem
from pipelines.common.redaction import redact_text
from pipelines.common.refs import describe_refs

EXIT_OK, EXIT_CONFIG = 0, 2


def report_problems(problems: Sequence[Problem]) -> None:
    if problems and all(p.kind == "busy" for p in problems):   # nothing to fix in the config: say so
        print("\nRun dir in use by another run; nothing was written:", file=sys.stderr)
        for p in problems:
            print(f"  {redact_text(str(p))}", file=sys.stderr)
        print("\nWait for that run to end, or choose another run_name.", file=sys.stderr)
        return
    print(f"\nConfiguration invalid: {len(problems)} problem{'s' if len(problems) != 1 else ''}:", file=sys.stderr)
    for p in problems:
        print(f"  {redact_text(str(p))}", file=sys.stderr)
    print("\nFix them and run again (.venv/bin/python run_pipeline.py --validate checks without training).", file=sys.stderr)


def calibrate(node: Any) -> list[Problem]:
    """--calibrate-judges for one node (the node's hook draws its rows and calls the reward layer's gate)."""
    if node.spec.calibrate_judges is None:
        print("    calibration: not run (this node scores no completions with LLM judges)")
        return []
    try:
        return node.spec.calibrate_judges(node.cfg, node.ctx)
    except ConfigError as exc:      # the rows could not be drawn
        return list(exc.problems)


def validate_summary(planned: Sequence[Any], args: argparse.Namespace, problems: Sequence[Problem] = ()) -> int:
    """Print what would run, and inspect the data (and probe the judges) of every node whose config validated,
    also when other problems were found; every problem is reported at the end (exit 2)."""
    problems = list(problems)
    earlier: set[str] = set()
    for node in planned:
        if node.cfg is None:
            print(f"[{node.ctx.index}] {node.label}: {node.ctx.config_file}: config invalid, data not inspected")
            for notice in node.ctx.notices:    # how it was read can explain the problems
                print(f"    {notice}")
            earlier.add(node.label)
            continue
        print(f"[{node.ctx.index}] {node.label}: {node.ctx.config_file}")
        print(f"    run dir: {node.ctx.run_dir}")
        for line in describe_refs(node.ctx.raw_config, earlier, node.ctx.outputs_root, node.ctx.ref_scope):
            print(f"    reference {line}")
        earlier.add(node.label)
        for notice in node.ctx.notices:        # what a compatibility reading translated (common/notices.py)
            print(f"    {notice}")
        if node.spec.inspect is not None:
            try:
                for line in node.spec.inspect(node.cfg, node.ctx):
                    print(f"    {line}")
            except ConfigError as exc:
                for line in exc.lines:
                    print(f"    {line}")
                problems += exc.problems
        if args.check_judges and node.spec.check_judges is not None:
            problems += node.spec.check_judges(node.cfg, node.ctx)
        elif args.check_judges:
            print("    judges: not checked (this node declares no LLM judges)")
        if getattr(args, "calibrate_judges", False):
            problems += calibrate(node)
    warning = version_warning()
    if warning:
        print(f"warning: {warning}")
    if problems:
        report_problems(list(dict.fromkeys(problems)))   # a rule and the data summary may find the same one
        return EXIT_CONFIG
    print(f"OK: {len(planned)} node(s) valid")
    return EXIT_OK
