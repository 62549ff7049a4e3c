"""Where synchronous reward functions run: worker threads with a per-call timeout, or the main thread.

Worker threads are daemon threads started per call, not a thread pool: a reward that hangs can be abandoned
(Python cannot stop a thread), and a daemon thread never keeps the process alive, so Ctrl-C still ends the run
(``asyncio.to_thread``'s pool threads are joined at exit, which hung a run with a hung reward for ever). A call
that outlives its timeout is a :class:`~pipelines.rewards.errors.RewardTimeout` naming the reward.

Rewards registered ``main_thread=True`` (math-verify's ``signal.alarm`` timeouts work only there) are handed to
a :class:`MainThreadPump`: while the main thread waits for a batch's scores it runs those jobs itself. When the
batch is scored from another thread (a caller already inside an event loop), no pump is running; such a reward
then runs in a worker thread like the others, where math-verify turns its own timeouts off (TRL's rewards do
this themselves) and the per-call timeout bounds it instead.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from typing import Any, Callable, Optional

from pipelines.rewards.errors import RewardTimeout

log = logging.getLogger(__name__)


def _settle(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.done():   # timed out or cancelled meanwhile: nobody waits for this result
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _post(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, ok: bool, value: Any) -> None:
    try:
        loop.call_soon_threadsafe(_settle, fut, ok, value)
    except RuntimeError:   # the loop is closed: the run is over, nobody waits
        pass


async def run_in_thread(fn: Callable[[], Any], timeout: Optional[float], label: str) -> Any:
    """``fn()`` in a new daemon thread; RewardTimeout after ``timeout`` seconds (None: no limit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def target() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            _post(loop, fut, False, exc)
        else:
            _post(loop, fut, True, value)

    threading.Thread(target=target, name=f"reward {label}"[:60], daemon=True).start()
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        raise RewardTimeout(f"{label} did not return within {timeout:g} s (reward.sync_timeout_s); the call is "
                            f"abandoned. Make the reward faster or bound its own work, or raise the limit") from None


class MainThreadPump:
    """Jobs that must run on the main thread, queued from the event loop and run by the main thread while it
    waits for the coroutine that queued them (:meth:`wait`)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.active = False   # True while the main thread is inside wait(): jobs will be run

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Queue ``fn`` for the main thread and await its result (call only while :attr:`active`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._jobs.put((fn, loop, fut))
        return await fut

    def run_until_done(self, submit: Callable[[], concurrent.futures.Future]) -> Any:
        """On the main thread: ``submit()`` the work (it may queue jobs from now on), run queued jobs until its
        future completes, then return its result. Ctrl-C (or any BaseException from a job) cancels the work
        and propagates."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("MainThreadPump.run_until_done must be called on the main thread")
        self.active = True
        done: Optional[concurrent.futures.Future] = None
        try:
            done = submit()
            done.add_done_callback(lambda _: self._jobs.put(None))   # wake the loop below
            while True:
                try:
                    job = self._jobs.get(timeout=0.5)
                except queue.Empty:
                    job = None
                if job is None:
                    if done.done():
                        return done.result()
                    continue
                fn, loop, fut = job
                try:
                    value = fn()
                except Exception as exc:  # noqa: BLE001 - the reward's error, reported by the engine
                    _post(loop, fut, False, exc)
                else:
                    _post(loop, fut, True, value)
        except BaseException:
            if done is not None:
                done.cancel()
            raise
        finally:
            self.active = False
            self._drain()

    def _drain(self) -> None:
        """Cancel jobs nobody will run (left over after an interrupt)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _, loop, fut = job
                try:
                    loop.call_soon_threadsafe(fut.cancel)
                except RuntimeError:
                    pass
