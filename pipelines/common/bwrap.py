"""The bubblewrap (``bwrap``) command line of one sandbox run: what the sandbox sees and shares.

Kept apart from the process handling in :mod:`pipelines.common.sandbox`, so that what is isolated reads in one
place. Options that older bubblewrap releases lack (``--size`` and ``--clearenv`` came with 0.5.0; Ubuntu 20.04
ships 0.4.0) are left out when ``bwrap --help`` does not list them: the environment is cleared anyway (bwrap
itself starts with only the sandbox's environment), and without ``--size`` the private ``/tmp`` is not capped
(a warning says so once).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from typing import Mapping, Optional

log = logging.getLogger(__name__)

SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")   # links into /usr, or real folders


def bwrap_path() -> Optional[str]:
    """Where ``bwrap`` is on this process's PATH, or None."""
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def supported_options(path: str) -> frozenset[str]:
    """The ``--options`` that ``bwrap --help`` of this binary lists (empty when it cannot say)."""
    try:
        text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(word for line in text.splitlines() for word in line.split()[:1] if word.startswith("--"))


def bwrap_command(python: str, tmp_bytes: int, env: Mapping[str, str]) -> list[str]:
    """The command that runs ``python -I -S -X utf8 -`` (the program on stdin) in a fresh sandbox: every
    namespace unshared (no network), the system read-only, a private tmpfs as ``/tmp`` and working folder
    (``tmp_bytes`` large), only ``env`` in the environment, no capabilities, a new session, killed with its
    parent."""
    path = bwrap_path() or "bwrap"
    options = supported_options(path)
    cmd = [path, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if "--clearenv" in options:
        cmd.append("--clearenv")
    cmd += ["--ro-bind", "/usr", "/usr"]
    for top in SYSTEM_DIRS:
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    cmd += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if not python.startswith("/usr/"):   # an interpreter elsewhere: its installation, read-only
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    if "--size" in options:   # applies to the --tmpfs right after it
        cmd += ["--size", str(tmp_bytes)]
    else:
        _warn_uncapped_tmp(path)
    cmd += ["--tmpfs", "/tmp", "--chdir", "/tmp", "--hostname", "sandbox"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + ["--", python, "-I", "-S", "-X", "utf8", "-"]


@functools.lru_cache(maxsize=None)
def _warn_uncapped_tmp(path: str) -> None:
    log.warning("%s has no --size option (bubblewrap older than 0.5.0): the sandbox's /tmp is not capped, only "
                "each file (file_size_mb); upgrade bubblewrap to cap it", path)
