"""`grpo-pipelines`: one installed command whose subcommands are the runner and the tools in cli_utils/.

Each subcommand is a thin call into an existing module's ``main(argv, prog)``: the rest of the command line is
passed on unchanged (``validate`` and ``preflight`` put the runner's ``--validate`` / ``--preflight`` in front),
the tool's own argparse answers ``--help``, and its exit code is this command's exit code (2 for a config error).
``run_pipeline.py`` and ``python -m cli_utils.<tool>`` remain the same entry points under their old names.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from pipelines.common.problems import did_you_mean

PROG = "grpo-pipelines"


@dataclass(frozen=True)
class Command:
    """One subcommand: the ``module:function`` it calls (imported only when it runs) and its help line."""

    name: str
    target: str
    summary: str
    prepend: tuple[str, ...] = ()

    def run(self, argv: Sequence[str]) -> int:
        """Call the target with ``prepend + argv``; returns its exit code (argparse's SystemExit passes through)."""
        module, _, function = self.target.partition(":")
        main = getattr(importlib.import_module(module), function)
        return main([*self.prepend, *argv], prog=f"{PROG} {self.name}")


COMMANDS: tuple[Command, ...] = (
    Command("run", "pipelines.runner:main", "run the nodes of a super-config in order (= run_pipeline.py)"),
    Command("validate", "pipelines.runner:main", "check configs, data, rewards and judges; load no model",
            ("--validate",)),
    Command("preflight", "pipelines.runner:main", "three real steps on the longest prompts: memory, time, projection",
            ("--preflight",)),
    Command("score", "cli_utils.score_completions:main", "score completions with a config's rewards and judges"),
    Command("merge-lora", "cli_utils.merge_lora:main", "merge a LoRA adapter into its base model (probe-checked)"),
    Command("config-reference", "cli_utils.config_reference:main", "print or write the config reference (Markdown)"),
    Command("reward-table", "cli_utils.reward_table:main",
            "print the built-in rewards table, or write it into README.md"),
    Command("make-tiny-model", "cli_utils.make_tiny_model:main", "build the tiny offline model (builtin:tiny)"),
    Command("make-countdown-data", "cli_utils.make_countdown_data:main",
            "write Countdown tasks with reachable targets"),
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; its help lists every subcommand with its one-line summary."""
    width = max(len(command.name) for command in COMMANDS) + 2
    listing = "\n".join(f"  {command.name:<{width}}{command.summary}" for command in COMMANDS)
    return argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [-h] COMMAND [ARGS ...]", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Config-driven GRPO training: the pipeline runner and its tools, one command.",
        epilog=f"commands:\n{listing}\n\nRun `{PROG} COMMAND --help` for a command's options. Exit codes are the "
               "command's own:\n0 success, 1 a node failed at run time, 2 invalid configuration or input.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch ``argv[0]`` to its subcommand with the remaining arguments; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    by_name = {command.name: command for command in COMMANDS}
    if args and args[0] in by_name:
        return by_name[args[0]].run(args[1:])
    parser = build_parser()
    if not args:
        parser.print_help(sys.stderr)
        return 2
    if not args[0].startswith("-"):
        parser.error(f"unknown command {args[0]!r}{did_you_mean(args[0], by_name)}; the commands are: "
                     + ", ".join(by_name))
    parser.parse_args(args)   # --help prints the commands and exits 0; any other option is a usage error (2)
    parser.error(f"a command is required: {', '.join(by_name)}")


if __name__ == "__main__":
    sys.exit(main())
