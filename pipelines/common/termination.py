"""SIGTERM ends a run the way Ctrl-C does: the work is saved where it can be, then the process exits 143.

``kill PID``, ``timeout``, ``docker stop``, systemd and SLURM preemption all send SIGTERM. Python's default is to
die at once, with nothing logged and nothing saved. While a run works, :func:`sigterm_as_interrupt` turns SIGTERM
into :class:`Terminated`, a ``KeyboardInterrupt``: every path that already handles Ctrl-C (the training node's
checkpoint of the last completed step, the rollout's finished prompts, the lock's release, the manifest) handles
it the same way, and the runner exits with 128 + 15 = 143, the code a shell reports for a SIGTERM'd process.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

EXIT_TERMINATED = 128 + signal.SIGTERM   # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where the signal landed; a KeyboardInterrupt so Ctrl-C's paths run."""

    def __init__(self) -> None:
        super().__init__("terminated by SIGTERM")


def interrupt_word(exc: BaseException) -> str:
    """How the log names an interruption: ``terminated (SIGTERM)`` or ``interrupted`` (Ctrl-C)."""
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the earlier handler is restored
    on the way out. Outside the main thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
