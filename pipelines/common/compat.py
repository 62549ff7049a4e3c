"""Notices from reading a config in a compatibility mode: what was accepted, translated or ignored.

A node that accepts another tool's config shape (the GRPO nodes read Augmentoolkit's GRPO configs, see
:mod:`pipelines.grpo.compat`) translates it into its own shape before the schema sees it, and says so: each
translation is a :class:`Notice`. An ignored key is an INFO notice; a value that differs from what the file
says (a raised batch, normalised percentages) is a WARNING that names the effective value. Notices are logged
once per process and printed in the ``--validate`` summary.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

log = logging.getLogger(__name__)
MODES = ("strict", "augmentoolkit")
_logged: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class Notice:
    """One thing a compatibility reading did to a config, located by key path."""

    level: int          # logging.INFO or logging.WARNING
    key: str
    message: str

    def __str__(self) -> str:
        kind = "warning" if self.level >= logging.WARNING else "note"
        return f"{kind}: {self.key or '<root>'}: {self.message}"


def info(key: str, message: str) -> Notice:
    return Notice(logging.INFO, key, message)


def warning(key: str, message: str) -> Notice:
    return Notice(logging.WARNING, key, message)


def compat_mode(raw: dict[str, Any]) -> str:
    """The mode a raw config asks for: its ``compat`` key, else ``augmentoolkit`` when it carries
    Augmentoolkit's ``pipeline:`` key, else ``strict``. An unknown value is left to the schema to refuse."""
    explicit = raw.get("compat")
    if explicit is not None:
        return str(explicit)
    return "augmentoolkit" if "pipeline" in raw else "strict"


def log_notices(notices: Iterable[Notice], file: str) -> None:
    """Log each notice once per process (validation may run more than once: references, launched ranks)."""
    for n in notices:
        ident = (file, n.key, n.message)
        if ident not in _logged:
            _logged.add(ident)
            log.log(n.level, "%s: %s: %s", file, n.key or "<root>", n.message)
