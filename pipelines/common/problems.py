"""Configuration problems: collected, never raised one at a time.

Every check in the project appends :class:`Problem` objects to a list so a user sees all of their
mistakes in one run, each as ``<file>: <key.path>: <message>``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Problem:
    """One configuration or input mistake, located by file and dotted key path."""

    file: str
    key: str
    message: str
    kind: str = "config"   # "busy": the input is fine, but its run dir is in use by another run right now

    def __str__(self) -> str:
        return f"{self.file}: {self.key or '<root>'}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found; the runner turns it into exit code 2."""

    def __init__(self, problems: Sequence[Problem], lines: Sequence[str] = ()):
        self.problems = list(problems)
        self.lines = list(lines)      # summary lines gathered before the problems were found (--validate)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or ''."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return ""


def join_key(*parts: object) -> str:
    """Join key-path parts as ``a.b[0].c``."""
    out = ""
    for part in parts:
        if part is None or part == "":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out
