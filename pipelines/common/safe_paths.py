"""Outputs that can never destroy inputs: the checks the offline tools run before they write anything.

A tool's output may not be one of its inputs, contain one (a folder holding the adapter it merges), or lie
inside one (a file written into the adapter folder). Paths are compared after resolving symlinks and ``..``.
Paths are shown with undecodable bytes replaced, so a non-UTF-8 file name never breaks a message.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from pipelines.common.io import current_umask


def shown(path: str | os.PathLike) -> str:
    """A path for messages and JSON: bytes that are not UTF-8 appear as U+FFFD instead of raising."""
    return os.fsencode(os.fspath(path)).decode("utf-8", errors="replace")


def overlap(output: str | os.PathLike, inp: str | os.PathLike) -> Optional[str]:
    """How ``output`` overlaps ``inp`` ("is", "contains", "lies inside"), or None when they are apart."""
    out, src = Path(output).resolve(), Path(inp).resolve()
    if out == src:
        return "is"
    if out in src.parents:
        return "contains"
    if src in out.parents:
        return "lies inside"
    return None


def output_problem(output: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike]]) -> Optional[str]:
    """Why ``output`` must not be written, given the tool's ``(role, path)`` inputs; None when it may."""
    for role, path in inputs:
        how = overlap(output, path)
        if how is not None:
            return (f"the output {shown(output)} {how} the {role} {shown(path)}; writing it would destroy "
                    f"the {role}. Choose an output path outside the inputs")
    return None


class AtomicOutputFile:
    """A JSONL output written to a temp file beside ``target`` and renamed over it by ``commit()``: the target
    is complete or untouched. ``discard()`` removes an uncommitted temp file. Permissions follow the umask."""

    def __init__(self, target: Path):
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False, default=str)
        self.fh.write(text.encode("utf-8", "replace").decode("utf-8") + "\n")
        self.fh.flush()   # progress is visible in the temp file; the target changes only at commit()

    def commit(self) -> None:
        self.fh.close()
        os.chmod(self.tmp, 0o644 & ~current_umask())
        os.replace(self.tmp, self.target)

    def discard(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
