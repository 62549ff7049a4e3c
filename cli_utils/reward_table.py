"""Print the README's table of built-in rewards, generated from the reward records, or write it into a file.

Usage: .venv/bin/python -m cli_utils.reward_table [--write README.md]

With ``--write`` the table replaces what lies between the ``<!-- builtin-rewards:start -->`` and
``<!-- builtin-rewards:end -->`` lines of that file; the rest of the file is left as it is.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--write", type=Path, metavar="FILE", help="replace the table between the markers of FILE")
    args = p.parse_args(argv)
    from pipelines.rewards.table import builtin_reward_table, splice

    table = builtin_reward_table()
    if args.write is None:
        print(table)
        return 0
    try:
        text = args.write.read_text(encoding="utf-8")
        updated = splice(text, table)
    except (OSError, ValueError) as exc:
        print(f"{args.write}: {exc}", file=sys.stderr)
        return 2
    if updated != text:
        from pipelines.common.io import atomic_write_text

        atomic_write_text(args.write, updated)    # a crash mid-write never leaves a half README
    print(f"{args.write}: built-in rewards table {'updated' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
