"""Crash-safe file writing: atomic replace for whole files, whole-line flushed appends for JSONL."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file (0644 under the usual umask 022), as ``save_pretrained`` does."""
    return 0o666 & ~current_umask()


def make_readable(path: str | Path) -> None:
    """Give files (and folders, recursively) under ``path`` the read (and folder search) bits the umask allows.

    Temp-file writers (``tempfile.mkstemp``/``mkdtemp``, safetensors' ``save_file``) create 0600 files and 0700
    folders; a teammate, or a vLLM container running as another user, could not read them. Bits are only added,
    never removed.
    """
    path = Path(path)
    allowed_file, allowed_dir = 0o666 & ~current_umask(), 0o777 & ~current_umask()
    if not path.exists():
        return
    items = [path] if path.is_file() else [path, *path.rglob("*")]
    for item in items:
        if item.is_symlink():
            continue
        try:
            mode = item.stat().st_mode & 0o7777
            wanted = mode | (allowed_dir & 0o555 if item.is_dir() else allowed_file & 0o444)
            if wanted != mode:
                os.chmod(item, wanted)
        except OSError:    # a file removed meanwhile (checkpoint rotation) or owned by someone else
            continue


def atomic_write_parquet(path: str | Path, table) -> None:
    """Write a pyarrow ``table`` as Parquet to a temp file in the same folder, then rename over ``path`` (the
    mode :func:`atomic_write_text` gives): a kill leaves the old file or the new one."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, fsync, then rename over ``path``.

    A kill at any moment leaves either the old file or the new one, never a torn one. The file gets the mode
    a plain ``open()`` would give it (0644 under umask 022), not the temp file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class JsonlAppender:
    """Appends one JSON object per line; each line is written with a single ``write`` and flushed.

    Opening repairs a torn last line left by a kill during an earlier run (it is cut off), so readers always
    see whole records.
    """

    def __init__(self, path: str | Path, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Several processes (ranks) may append to one file. Each record is one O_APPEND write() made while
        # holding an exclusive flock, and the torn-line repair below runs under the same lock: without it, a
        # process opening the file could see another's record half-copied into the page cache, take it for a
        # torn line and cut it off.
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync = fsync
        self._lock = threading.Lock()
        with self._locked():
            truncate_partial_last_line(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self.path} is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield self._fd
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._locked() as fd:
            written = os.write(fd, data)
            if written != len(data):  # only on a full disk: never leave a torn line behind
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"short write to {self.path} (disk full?)")
            if self._fsync:
                os.fsync(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_partial_last_line(path: Path) -> None:
    """Cut a trailing line that has no newline (a write interrupted by a kill)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        size = fh.seek(0, os.SEEK_END)
        block = 65536
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                fh.truncate(start + idx + 1)
                return
            pos = start
        fh.truncate(0)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield records of a JSONL file, skipping a torn last line."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n") and line.strip():
                yield json.loads(line)


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing any previous ``final``.

    The old folder is renamed aside first and deleted only after the new one is in place, so a kill at any
    moment leaves either the old complete folder or the new complete one at ``final`` (never a mix).
    """
    import shutil

    tmp, final = Path(tmp), Path(final)
    make_readable(tmp)   # a mkdtemp folder is 0700 and saved weights may be 0600
    if final.exists():
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
