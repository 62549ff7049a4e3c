"""One run per run dir: an exclusive lock on ``<run_dir>/run.lock`` for the run's whole life.

The runner takes the lock before it writes anything into the run dir and keeps it until the node has ended; a
multi-process launch hands the locked file to the launcher, so the lock is held while any rank runs, and each
rank checks it belongs to the launch holding it. A second run on the same folder is refused at once
(:class:`RunDirBusy`, exit 2) with the holder's PID.

The lock is an ``fcntl.flock`` on an open file, so the kernel releases it when the holder exits, however it
exits (a crash or ``kill -9`` included): a lock file left behind never blocks a resume. The file keeps the last
holder's PID only for messages.

The lock file is opened with ``O_NOFOLLOW`` and must be a regular file: a ``run.lock`` that is a symlink (which
would make the run truncate and write its target, outside the run dir), a folder, a FIFO or a device is refused
(:class:`BadRunLock`, exit 2) and left as it is.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
import uuid
from pathlib import Path
from typing import Any, Optional

LOCK_FILE = "run.lock"
LAUNCH_TOKEN_ENV = "GRPO_PIPELINES_RUN_LOCK"   # set for the ranks of a launch: the token of the lock they run under


class RunLockRefused(Exception):
    """The run dir's lock cannot be taken: another run holds it, or the lock file is not a plain file."""


class BadRunLock(RunLockRefused):
    """``run.lock`` exists but is not a regular file (a symlink, a folder, a FIFO, a device)."""

    def __init__(self, run_dir: Path, what: str):
        self.run_dir = run_dir
        super().__init__(f"{Path(run_dir) / LOCK_FILE} {what}, not the regular file a run locks; nothing was "
                         f"written. Remove it (or choose another run_name, e.g. --set run_name=NEW)")


class RunDirBusy(RunLockRefused):
    """The run dir is locked by another live run."""

    def __init__(self, run_dir: Path, holder: dict[str, Any]):
        self.run_dir, self.holder = run_dir, holder
        pid = holder.get("pid", "?")
        since = holder.get("started")
        when = f", started {time.strftime('%H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
        host = holder.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        super().__init__(f"{run_dir} is in use by another run (PID {pid}{where}{when}); wait for it to end, or "
                         "choose another run_name (e.g. --set run_name=NEW)")


_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)   # never follow, never block on a FIFO


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISFIFO(mode):
        return "is a FIFO"
    return "is a device or socket"


def lock_file_problem(run_dir: Path) -> Optional[str]:
    """Why ``<run_dir>/run.lock`` cannot be the run's lock (None when it is absent or a regular file)."""
    try:
        mode = os.lstat(Path(run_dir) / LOCK_FILE).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else str(BadRunLock(Path(run_dir), _kind(mode)))


def _open_lock(run_dir: Path, flags: int) -> int:
    """The lock file's descriptor, opened without following a symlink; BadRunLock when it is not regular."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, flags | _OPEN_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            mode = os.lstat(Path(run_dir) / LOCK_FILE).st_mode
            raise BadRunLock(Path(run_dir), _kind(mode)) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BadRunLock(Path(run_dir), _kind(mode))
    return fd


def read_holder(run_dir: Path) -> dict[str, Any]:
    """What the lock file says about its last holder ({} when unreadable or not a regular file)."""
    try:
        fd = _open_lock(run_dir, os.O_RDONLY)
    except (OSError, BadRunLock):
        return {}
    try:
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(65536).decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class RunLock:
    """The exclusive lock of one run dir. ``acquire()`` raises :class:`RunDirBusy`; a context manager."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.token = uuid.uuid4().hex
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Take the lock. Raises: RunDirBusy (held by a live run), BadRunLock (run.lock is not a regular file)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = _open_lock(self.run_dir, os.O_RDWR | os.O_CREAT)
        if not _try_flock(fd):
            os.close(fd)
            raise RunDirBusy(self.run_dir, read_holder(self.run_dir))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "token": self.token}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def launch_env(self) -> dict[str, str]:
        """Environment for the ranks of a launch started while holding this lock (none when not held)."""
        return {LAUNCH_TOKEN_ENV: self.token} if self.fd is not None else {}

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy_holder(run_dir: Path) -> Optional[dict[str, Any]]:
    """The holder of a live lock on ``run_dir`` (None when it is free, has no lock file or a lock file that is
    not a regular file: :func:`lock_file_problem` reports that). Creates nothing."""
    try:
        fd = _open_lock(run_dir, os.O_RDONLY)
    except (OSError, BadRunLock):
        return None
    try:
        if _try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return read_holder(run_dir) or {"pid": "?"}
    finally:
        os.close(fd)


def check_launched_rank(run_dir: Path) -> Optional[str]:
    """Why this launched rank must not run (None when the run dir is locked by the launch that started it)."""
    token = os.environ.get(LAUNCH_TOKEN_ENV)
    holder = busy_holder(run_dir)
    if holder is None:
        return f"{run_dir} is not locked: a rank runs only under the runner that launched it"
    if not token or holder.get("token") != token:
        return f"{run_dir} is locked by another run (PID {holder.get('pid', '?')})"
    return None
