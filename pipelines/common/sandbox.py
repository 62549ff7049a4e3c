"""Run untrusted Python (a model's code) in a sandbox built on bubblewrap (``bwrap``), never a hand-written jail.

Shared by every node that runs model code (the ``code_tests`` reward, the ``python_exec`` tool). In the default
``bwrap`` mode one call is one ``bwrap`` process that:

- shares nothing with the host (``--unshare-all``): no network (only a loopback of its own), its own pid
  namespace and ``/proc`` (the parent's ``/proc/<pid>/environ`` does not exist there), its own IPC and hostname;
- sees the system read-only (``/usr`` and its ``/bin``, ``/lib*`` links) and a private, size-capped tmpfs as
  ``/tmp``, its working folder; nothing else of the host (no ``/home``, ``/root``, ``/work``, ``/etc``);
- starts with an empty environment (``--clearenv``: no API keys), in a new session, and dies with its parent;
- runs as an unprivileged user id of its own (a fresh one per call when the caller is root), with rlimits on CPU
  time, address space, processes, file size and open files; the processes limit counts per user id, which is
  why the call drops to its own id (as root the kernel does not apply it at all);
- is killed whole (its pid namespace goes with it) at the wall-time limit or when stdout or stderr passes the
  output limit; only that many bytes are ever read.

The bwrap command line itself is :mod:`pipelines.common.bwrap`; the rlimits are set by util-linux ``prlimit``
(or a ``preexec_fn`` where it is missing) after the switch to the sandbox's user id.

The interpreter is the system's ``/usr/bin/python3`` run with ``-I -S`` (isolated, no site-packages): the
snippets need the standard library only, and the project's venv stays out of reach.

Where ``bwrap`` is missing or cannot start (containers that forbid namespaces), :func:`probe` says why (one tiny
run, cached per process) and :func:`run_python` raises :class:`SandboxUnavailable`, unless the settings name the
weaker ``unsafe_subprocess`` mode: a plain subprocess with the same empty environment, rlimits, output cap and
timeout, run as an unprivileged user of its own when the caller is root (every process of that user is killed
after the run), but sharing the host's network, file system and process table. It logs a warning on every run.
"""
from __future__ import annotations

import functools
import logging
import os
import random
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import Field

from pipelines.common.bwrap import bwrap_command, bwrap_path
from pipelines.common.schema import StrictModel

log = logging.getLogger(__name__)

Mode = Literal["bwrap", "unsafe_subprocess"]
SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_HINT = ("install bubblewrap (`apt-get install bubblewrap`; linux.sh does it), or in a container that "
                "forbids namespaces run it with --privileged (or a seccomp profile that allows unshare/clone "
                "with new namespaces), or run model code without isolation: `sandbox: {mode: unsafe_subprocess}` "
                "on a code_tests entry, make_python_exec(SandboxSettings(mode='unsafe_subprocess')) for a tool "
                "(README: Code rewards and the sandbox)")
UID_BASE = 200_000   # per-call user ids (root callers) start here: far above the ids of real accounts
UID_SPAN = 1_000_000
_MB = 1024 * 1024
PRLIMIT_NAMES = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "as", resource.RLIMIT_NPROC: "nproc",
                 resource.RLIMIT_FSIZE: "fsize", resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_CORE: "core"}


class SandboxSettings(StrictModel):
    """How model code runs: the isolation mode and its limits (one shape wherever code runs)."""

    mode: Mode = Field("bwrap", description="bwrap: isolated with bubblewrap (no network, read-only system, "
                       "private /tmp, empty environment). unsafe_subprocess: a plain subprocess with the same "
                       "limits and empty environment but the host's network and files; only where bwrap cannot "
                       "start and the code is trusted.")
    wall_s: float = Field(10.0, gt=0, le=3600, description="Wall-clock seconds before the whole sandbox is killed.")
    cpu_s: int = Field(5, ge=1, le=3600, description="CPU seconds (RLIMIT_CPU) of each process in the sandbox.")
    memory_mb: int = Field(1024, ge=64, description="Address space per process in MiB (RLIMIT_AS).")
    processes: int = Field(16, ge=1, le=4096, description="Processes and threads the sandbox may run at once "
                           "(RLIMIT_NPROC, per sandbox user id).")
    file_size_mb: int = Field(16, ge=0, description="Largest file the code may write, MiB (RLIMIT_FSIZE).")
    tmp_mb: int = Field(64, ge=1, description="Size of the private /tmp (tmpfs), MiB (bwrap mode).")
    output_bytes: int = Field(1_000_000, ge=1024, description="Bytes read from each of stdout and stderr; past "
                              "that the sandbox is killed and the output marked truncated.")
    python: Optional[str] = Field(None, description="Interpreter inside the sandbox; default /usr/bin/python3 "
                                  "(or the running interpreter's base when there is none). Must be readable by "
                                  "an unprivileged user.")


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one run. ``exit_code``: the process's status (128+N when bwrap reports signal N, -N in
    the unsafe mode); None when the sandbox was killed. ``killed``: why it was killed (``wall_time``,
    ``output_limit``) or ended by a limit (``cpu_time``, ``signal:NAME``); None for a normal exit."""

    stdout: str
    stderr: str
    exit_code: Optional[int]
    timed_out: bool
    killed: Optional[str]
    truncated: bool
    wall_s: float
    mode: Mode

    @property
    def ok(self) -> bool:
        """Exited with status 0, nothing killed or cut."""
        return self.exit_code == 0 and self.killed is None and not self.truncated


class SandboxStats:
    """Thread-safe record of sandbox runs between two pops (for metrics): how many, their latency, and how many
    each limit stopped. :meth:`pop` is a collective in a multi-process run (every rank pops at the same step)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._killed: dict[str, int] = {}

    def add(self, result: SandboxResult) -> None:
        with self._lock:
            self._latencies.append(result.wall_s)
            if result.killed:
                self._killed[result.killed] = self._killed.get(result.killed, 0) + 1

    def discard(self) -> None:
        """Forget the runs so far (this process only; not a collective)."""
        with self._lock:
            self._latencies, self._killed = [], {}

    def pop(self) -> dict[str, float]:
        """``runs``, ``latency_p50_s``, ``latency_p95_s`` and ``killed/<reason>`` since the last pop, over every
        rank; {} when nothing ran."""
        from pipelines.common.dist import all_gather_objects

        with self._lock:
            mine = (self._latencies, self._killed)
            self._latencies, self._killed = [], {}
        gathered = all_gather_objects(mine)
        latencies = [x for rank_latencies, _ in gathered for x in rank_latencies]
        if not latencies:
            return {}
        import numpy as np   # only once something ran

        p50, p95 = np.percentile(latencies, [50, 95])
        out = {"runs": float(len(latencies)), "latency_p50_s": float(p50), "latency_p95_s": float(p95)}
        for _, killed in gathered:
            for reason, count in killed.items():
                out[f"killed/{reason}"] = out.get(f"killed/{reason}", 0.0) + count
        return out


class SandboxUnavailable(RuntimeError):
    """The bwrap sandbox cannot start here and the settings do not allow the unsafe mode."""


def default_python() -> str:
    """The interpreter used inside the sandbox: the system's python3, else the running interpreter's base."""
    if os.path.exists(SYSTEM_PYTHON):
        return SYSTEM_PYTHON
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


@functools.lru_cache(maxsize=None)
def probe(python: Optional[str] = None) -> Optional[str]:
    """Why the bwrap sandbox cannot run ``python`` here, or None when it can (one tiny run, cached)."""
    if bwrap_path() is None:
        return "bubblewrap (`bwrap`) is not installed"
    try:
        result = _run(SandboxSettings(mode="bwrap", wall_s=20, python=python), "print(6 * 7)")
    except OSError as exc:
        return f"bwrap could not start: {exc}"
    if result.stdout.strip() != "42":
        detail = (result.stderr.strip() or result.killed or f"exit status {result.exit_code}")[-300:]
        return f"bwrap could not start a sandbox: {detail}"
    return None


def sandbox_problems(settings: SandboxSettings) -> list[str]:
    """What ``--validate`` reports for these settings: the bwrap mode cannot start here, or an interpreter that
    does not exist. The unsafe mode is allowed (it warns when it runs)."""
    python = settings.python or default_python()
    if not os.path.isfile(python):
        return [f"sandbox.python {python!r} does not exist"]
    if settings.mode == "unsafe_subprocess":
        return []
    reason = probe(settings.python)
    return [f"the code sandbox cannot run here: {reason}; {INSTALL_HINT}"] if reason else []


def run_python(code: str, settings: Optional[SandboxSettings] = None) -> SandboxResult:
    """Run ``code`` (a Python program, standard library only) in the sandbox and return what it did.

    The program is read from stdin by ``python -I -S -``, so it has no stdin of its own.

    Raises:
        SandboxUnavailable: bwrap mode, and :func:`probe` says bwrap cannot start here.
    """
    settings = settings or SandboxSettings()
    if settings.mode == "bwrap":
        reason = probe(settings.python)
        if reason:
            raise SandboxUnavailable(f"the code sandbox cannot run here: {reason}; {INSTALL_HINT}")
    else:
        log.warning("running model code WITHOUT isolation (sandbox mode unsafe_subprocess): it shares this "
                    "machine's network and files; only rlimits, a timeout and an empty environment apply")
    return _run(settings, code)


# ------------------------------------------------------------------------------------------------ internals
def _call_uid() -> Optional[int]:
    """A fresh unprivileged user id for this call when running as root (None otherwise): RLIMIT_NPROC counts
    the processes of a user id, and the kernel never applies it to root."""
    return UID_BASE + random.randrange(UID_SPAN) if os.geteuid() == 0 else None


def _limits(settings: SandboxSettings, uid: Optional[int]) -> list[tuple[int, tuple[int, int]]]:
    processes = settings.processes
    if uid is None:   # our own user id: its other processes count too
        processes += _processes_of(os.getuid())
    return [(resource.RLIMIT_CPU, (settings.cpu_s, settings.cpu_s + 1)),
            (resource.RLIMIT_AS, (settings.memory_mb * _MB,) * 2),
            (resource.RLIMIT_NPROC, (processes,) * 2),
            (resource.RLIMIT_FSIZE, (settings.file_size_mb * _MB,) * 2),
            (resource.RLIMIT_NOFILE, (256, 256)),
            (resource.RLIMIT_CORE, (0, 0))]


def _processes_of(uid: int) -> int:
    return sum(1 for e in os.scandir("/proc") if e.name.isdigit() and _owner(e.path) == uid)


def _child_env(home: str = "/tmp") -> dict[str, str]:
    """The whole environment of the sandboxed program: nothing of the parent's."""
    return {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "TMPDIR": home}


def _run(settings: SandboxSettings, code: str) -> SandboxResult:
    python = settings.python or default_python()
    uid = _call_uid()
    workdir = None
    if settings.mode == "bwrap":
        cmd, cwd = bwrap_command(python, settings.tmp_mb * _MB, _child_env()), "/"
    else:
        workdir = tempfile.mkdtemp(prefix="sandbox-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        cmd, cwd = [python, "-I", "-S", "-X", "utf8", "-"], workdir
    start = time.monotonic()
    try:
        proc = _spawn(cmd, cwd, uid, _limits(settings, uid), _child_env(workdir or "/tmp"))
        try:
            out, err, killed = _communicate(proc, code.encode("utf-8", "surrogatepass"), settings.output_bytes,
                                            start + settings.wall_s)
        finally:
            _kill_group(proc)
            proc.wait()
            if settings.mode != "bwrap" and uid is not None:
                _kill_user(uid)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    status = None if killed else proc.returncode
    killed = killed or _ended_by(status)
    return SandboxResult(out[:settings.output_bytes].decode("utf-8", "replace"),
                         err[:settings.output_bytes].decode("utf-8", "replace"), status,
                         timed_out=killed == "wall_time", killed=killed, truncated=killed == "output_limit",
                         wall_s=time.monotonic() - start, mode=settings.mode)


def _spawn(cmd: list[str], cwd: str, uid: Optional[int], limits: list[tuple[int, tuple[int, int]]],
           env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` in a new session as ``uid`` with ``limits``: set by util-linux ``prlimit`` where it is
    installed (exec'd in the same process; the child needs no Python ``preexec_fn``, which is unsafe beside
    threads and slower: fork instead of vfork), else by a ``preexec_fn`` that only calls setrlimit."""
    prlimit = shutil.which("prlimit")
    preexec = None
    if prlimit:
        cmd = [prlimit, *(f"--{PRLIMIT_NAMES[which]}={soft}:{hard}" for which, (soft, hard) in limits), "--", *cmd]
    else:
        def preexec() -> None:
            for which, values in limits:
                resource.setrlimit(which, values)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env=env, start_new_session=True, preexec_fn=preexec, user=uid, group=uid,
                            extra_groups=[] if uid is not None else None)


def _ended_by(status: Optional[int]) -> Optional[str]:
    """The limit a status reports: a signal (-N from Popen, 128+N from bwrap); SIGXCPU is the CPU limit."""
    if status is None or not (status < 0 or 128 < status < 128 + 65):
        return None
    number = -status if status < 0 else status - 128
    if number == signal.SIGXCPU:
        return "cpu_time"
    try:
        return f"signal:{signal.Signals(number).name}"
    except ValueError:
        return f"signal:{number}"


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's process group (bwrap's pid-namespace init dies with it, and every process of the
    namespace with that); the unsafe mode's leftovers in the group too."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_user(uid: int) -> None:
    """SIGKILL every process of a per-call user id (the unsafe mode has no pid namespace to end: this catches
    what left the process group); repeated until none is left, as a fork may race the first pass."""
    for _ in range(50):
        pids = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and _owner(e.path) == uid]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _owner(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def _communicate(proc: subprocess.Popen, data: bytes, limit: int, deadline: float
                 ) -> tuple[bytes, bytes, Optional[str]]:
    """Feed ``data`` to stdin and read stdout/stderr until both close or the process has exited with nothing
    left to read, the deadline passes (``wall_time``) or one stream passes ``limit`` bytes (``output_limit``);
    never reads more than ``limit + 64 KiB`` per stream."""
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    pending = memoryview(data)
    exited = False
    with selectors.DefaultSelector() as sel:
        for stream in bufs:
            sel.register(stream, selectors.EVENT_READ)
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), "wall_time"
            events = sel.select(0 if exited else min(remaining, 0.1))
            if not events:
                if exited:   # nothing left to read after the exit; a leftover child may hold the pipes open
                    break
                exited = proc.poll() is not None
                continue
            for key, _ in events:
                stream = key.fileobj
                if stream is proc.stdin:
                    pending = _feed(proc, sel, pending)
                    continue
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    sel.unregister(stream)
                    continue
                bufs[stream] += chunk
                if len(bufs[stream]) > limit:
                    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), "output_limit"
    remaining = deadline - time.monotonic()
    try:
        proc.wait(timeout=max(remaining, 0.001))
    except subprocess.TimeoutExpired:   # closed its output but kept running
        return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), "wall_time"
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), None


def _feed(proc: subprocess.Popen, sel: selectors.BaseSelector, pending: memoryview) -> memoryview:
    try:
        written = os.write(proc.stdin.fileno(), pending[:65536])
        pending = pending[written:]
    except BlockingIOError:
        return pending
    except (BrokenPipeError, OSError):   # the program stopped reading: nothing more to send
        pending = pending[:0]
    if not pending:
        sel.unregister(proc.stdin)
        proc.stdin.close()
    return pending
