"""Notices: what a node did to a config while reading it, reported instead of done silently.

A node that accepts another tool's config shape (the GRPO nodes read Augmentoolkit's GRPO configs; everything
Augmentoolkit-specific lives in :mod:`pipelines.grpo.compat`) translates it into its own shape before the schema
sees it, and says so: each translation is a :class:`Notice`. An ignored key is an INFO notice; a value that
differs from what the file says (a raised batch, normalised percentages) is a WARNING that names the effective
value. Notices are logged once per process and printed in the ``--validate`` summary. This module is the only
part of that feature the shared layers know.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

log = logging.getLogger(__name__)
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


def log_notices(notices: Iterable[Notice], file: str) -> None:
    """Log each notice once per process (validation may run more than once: references, launched ranks)."""
    for n in notices:
        ident = (file, n.key, n.message)
        if ident not in _logged:
            _logged.add(ident)
            log.log(n.level, "%s: %s: %s", file, n.key or "<root>", n.message)
