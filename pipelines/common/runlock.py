"""One run per run dir: an exclusive lock on ``<run_dir>/run.lock`` for the run's whole life.

The runner takes the lock before it writes anything into the run dir and keeps it until the node has ended; a
multi-process launch hands the locked file to the launcher, so the lock is held while any rank runs, and each
rank checks it belongs to the launch holding it. A second run on the same folder is refused at once
(:class:`RunDirBusy`, exit 2) with the holder's PID.

The lock is an ``fcntl.flock`` on an open file, so the kernel releases it when the holder exits, however it
exits (a crash or ``kill -9`` included): a lock file left behind never blocks a resume. The file keeps the last
holder's PID only for messages.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Optional

LOCK_FILE = "run.lock"
LAUNCH_TOKEN_ENV = "GRPO_PIPELINES_RUN_LOCK"   # set for the ranks of a launch: the token of the lock they run under


class RunDirBusy(Exception):
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


def read_holder(run_dir: Path) -> dict[str, Any]:
    """What the lock file says about its last holder ({} when unreadable)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
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
    """The holder of a live lock on ``run_dir`` (None when it is free or has no lock file). Creates nothing."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
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
