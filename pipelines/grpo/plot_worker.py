"""Draw reward_curve.png off the training process: a long-lived child process redraws it on request.

Drawing the figure costs a few hundred milliseconds of CPU with the GIL held, so it runs in its own process
(``python -m pipelines.grpo.plot_worker METRICS PLOT [EXCLUDED...]``, started at the first request, at the lowest
CPU priority so that it never competes with training for a core). Requests
are lines on its stdin; the worker reads every request waiting, then draws once (coalescing). Closing stdin
(the node at the end of training, or the end of the training process, even a crash) makes it draw a last time
if metrics.jsonl changed, and exit. Each picture is written atomically (temp file + rename), so the last
complete one survives a crash. Where the child cannot run, :class:`PlotWorker` draws in-process instead.
"""
from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Optional

from pipelines.grpo.plots import plot_reward_curve

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 300     # the last picture of a very long run still gets drawn


class PlotWorker:
    """The training side: :meth:`request` a redraw (never waits), :meth:`close` to get the final picture."""

    def __init__(self, metrics_path: Path, plot_path: Path, exclude: Iterable[str] = ()) -> None:
        self.metrics_path, self.plot_path, self.exclude = Path(metrics_path), Path(plot_path), tuple(exclude)
        self.proc: Optional[subprocess.Popen] = None
        self.broken = False
        self.requested = False

    def start(self) -> None:
        """Start the child now (at train begin: the process start is not paid inside the training loop)."""
        if self.proc is None and not self.broken:
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "pipelines.grpo.plot_worker", str(self.metrics_path), str(self.plot_path),
                     *self.exclude], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)
            except OSError as exc:
                log.warning("the plot worker could not be started (%s); %s is drawn at the end of training "
                            "instead", exc, self.plot_path.name)
                self.broken = True

    def request(self) -> None:
        """Ask for a redraw; returns at once (the child draws when it is free)."""
        self.requested = True
        self.start()
        if self.broken:
            return
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(b"draw\n")
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            log.warning("the plot worker could not be reached (%s); %s is drawn at the end of training instead",
                        exc, self.plot_path.name)
            self.broken = True

    def close(self) -> None:
        """Wait for the final picture (drawn in-process if the child failed). Safe to call twice."""
        proc, self.proc = self.proc, None
        if not self.requested:      # started but never asked: nothing to draw
            if proc is not None and proc.stdin is not None:
                proc.stdin.close()
                proc.wait(timeout=CLOSE_TIMEOUT_S)
            return
        self.requested = False
        failed = self.broken or proc is None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                failed = proc.wait(timeout=CLOSE_TIMEOUT_S) != 0
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                failed = True
        if failed:
            draw(self.metrics_path, self.plot_path, self.exclude)
        self.broken = False


def draw(metrics_path: Path, plot_path: Path, exclude: Iterable[str]) -> None:
    try:
        plot_reward_curve(metrics_path, plot_path, exclude)
    except Exception:  # a plotting failure must never stop training
        log.exception("could not draw %s", plot_path)


def _stamp(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def serve(metrics_path: Path, plot_path: Path, exclude: tuple[str, ...]) -> None:
    """The child's loop: block for a request, take every waiting one, draw once; at EOF, a last draw."""
    fd = sys.stdin.fileno()
    drawn: Optional[tuple[int, int]] = None
    while True:
        eof = not os.read(fd, 4096)
        while not eof and select.select([fd], [], [], 0)[0]:
            eof = not os.read(fd, 4096)    # coalesce: requests that came while drawing are one redraw
        stamp = _stamp(metrics_path)
        if stamp != drawn:
            draw(metrics_path, plot_path, exclude)
            drawn = stamp
        if eof:
            return


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        os.nice(19)    # background work: on a busy machine training gets the CPU first
    except OSError:
        pass
    logging.basicConfig(level=logging.WARNING, format="plot worker: %(levelname)s %(message)s")
    import matplotlib.figure  # noqa: F401 - imported while waiting, not when the first picture is due
    serve(Path(args[0]), Path(args[1]), tuple(args[2:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
