"""A resumed run keeps the config its earlier part ran with.

When a run dir already holds ``resolved_config.yaml`` and the new (redacted) config differs from it, the earlier
one is kept as ``resolved_config.1.yaml`` (then ``.2``, ...) and the changed keys are reported, so what each part
of a run trained with is never lost, and a changed value is never taken silently.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

from pipelines.common.problems import join_key

# Keys that differ between a first run and its resume by design (how the resume is asked for).
RESUME_KEYS = frozenset({"resume_from_checkpoint", "resume"})


def config_changes(old: Any, new: Any, key: str = "") -> Iterator[str]:
    """``key: old -> new`` for every value that differs (keys in :data:`RESUME_KEYS` aside)."""
    if key.rsplit(".", 1)[-1] in RESUME_KEYS:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            yield from config_changes(old.get(k, "<absent>"), new.get(k, "<absent>"), join_key(key, k))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from config_changes(a, b, join_key(key, i))
    elif old != new:
        yield f"{key or '<root>'}: {_short(old)} -> {_short(new)}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def keep_earlier_config(path: Path, new: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """If ``path`` holds a config that differs from ``new``, rename it to the first free ``<stem>.N<suffix>``;
    returns (where it went, the changed keys). An unreadable earlier file is kept the same way."""
    if not path.is_file():
        return None, []
    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8"))
        changes = list(config_changes(old, new))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        changes = ["<the earlier resolved config could not be read>"]
    if not changes:
        return None, []
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    path.rename(kept)
    return kept, changes
