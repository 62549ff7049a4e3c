"""Importing a config's module once in a child process first, so its import-time code cannot end, interrupt or
stall the process that checks the config.

An import path (``my_rewards.math:exact_answer``) names user code, and importing it runs that code. A module
that calls ``os._exit``, raises ``KeyboardInterrupt`` or sleeps while being imported would end ``--validate``
silently, with a traceback, or never. :func:`probe_import` imports the module in a child process (stdin closed,
its own session) and watches it: it must finish, and it may not sit idle (no CPU used for
:data:`IDLE_LIMIT_S` seconds: a sleep, or a wait for input or the network) nor run past :data:`TOTAL_LIMIT_S`.
Only a module that imported cleanly there, or failed with an ordinary exception (which the in-process import
then reports with its file and line), is imported in this process.

Modules of this project (``pipelines``) and of installed packages and the standard library (``trl.rewards``,
``math``) are not probed: they are not config-supplied code, and probing would only double their import time.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from functools import lru_cache
from typing import Optional

from pipelines.common.availability import locate_module

log = logging.getLogger(__name__)
IDLE_LIMIT_S = 2.0       # seconds without CPU use that end the probe (a sleep or a wait at import)
TOTAL_LIMIT_S = 60.0     # a busy import (a large package) gets this long
_CHILD = """
import importlib, sys
name, token = sys.argv[1], sys.argv[2]
def report(status):
    sys.stdout.flush()
    sys.__stdout__.write("\\n" + token + " " + status + "\\n")
    sys.__stdout__.flush()
try:
    importlib.import_module(name)
except KeyboardInterrupt:
    report("interrupt")
except BaseException:
    report("error")
else:
    report("ok")
"""


def _trusted_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(p) for p in {paths["stdlib"], paths["platstdlib"], paths["purelib"],
                                                  paths["platlib"]} if p)


def is_probed(module_name: str) -> bool:
    """Whether importing ``module_name`` is probed first: not when it is loaded already, part of this project,
    or its top-level package lives in the standard library or an installed package's folder."""
    top = module_name.split(".")[0]
    if module_name in sys.modules or top in ("pipelines", "cli_utils"):
        return False
    spec = locate_module(top)     # a top-level lookup runs no module code
    if spec is None or spec.origin in ("built-in", "frozen"):
        return False        # missing: the in-process import says so; built in: not user code
    if spec.origin is None:
        return True         # a namespace package: folders anywhere
    origin = os.path.realpath(spec.origin)
    return not any(origin.startswith(root + os.sep) for root in _trusted_roots())


def _cpu_seconds(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _watch(proc: subprocess.Popen) -> tuple[Optional[str], bytes]:
    """(why the child was stopped or None when it ended by itself, its stdout)."""
    started = time.monotonic()
    last_cpu, last_change = 0.0, started
    while True:
        try:
            out, _ = proc.communicate(timeout=0.2)
            return None, out
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        cpu = _cpu_seconds(proc.pid)
        if cpu is not None and cpu - last_cpu > 0.02:
            last_cpu, last_change = cpu, now
        why = None
        if now - last_change > IDLE_LIMIT_S:
            why = (f"it waited {IDLE_LIMIT_S:g} s without using the CPU while being imported (a sleep, or a wait "
                   "for input or the network); a module named in a config must import without waiting")
        elif now - started > TOTAL_LIMIT_S:
            why = f"importing it did not finish within {TOTAL_LIMIT_S:g} s"
        if why:
            _kill(proc)
            return why, b""


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.communicate()


def _search_roots() -> list[str]:
    """Where this process finds modules beyond the installed ones: PYTHONPATH, the folder of the script it runs
    (``run_pipeline.py``'s) and the working folder; the child searches the same places."""
    roots = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    if script and os.path.isfile(script):
        roots.append(os.path.dirname(os.path.abspath(script)))
    return roots + [os.getcwd()]


@lru_cache(maxsize=256)
def probe_import(module_name: str) -> Optional[str]:
    """Why importing ``module_name`` must not happen in this process (None when it may: it imported in the
    child, or failed there with an ordinary exception that the in-process import reports)."""
    token = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(_search_roots()))
    try:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, module_name, token], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as exc:   # no child process here: import in process, as before
        log.warning("module %s not probed before import (%s)", module_name, exc)
        return None
    try:
        why, out = _watch(proc)
    finally:
        if proc.poll() is None:
            _kill(proc)
    if why:
        return why
    marker = token.encode() + b" "
    status = next((ln[len(marker):].decode().strip() for ln in reversed(out.splitlines()) if ln.startswith(marker)),
                  None)
    if status == "interrupt":
        return "it raised KeyboardInterrupt while being imported; a module named in a config must import cleanly"
    if status is None:
        code = proc.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"ended the process with exit code {code}"
        return (f"importing it {how} (os._exit or a crash at import); a module named in a config must not end "
                "the process")
    return None
