"""The forms a reward function can take, and how the engine calls them.

* **Batch form** (TRL's contract): ``fn(prompts, completions, **columns) -> list[float | None]``, sync or
  ``async def``. ``completions`` are what TRL hands over: for chat prompts, one message list per completion
  (``[{"role": "assistant", "content": "..."}]``); :func:`completion_text` turns either form into a string.
* **Per-sample form**: ``fn(prompt, completion, **row) -> float | None`` wrapped with :func:`per_sample`, which
  turns it into the batch form. ``completion`` is a plain string, ``prompt`` the message list, ``row`` that
  completion's data columns (``answer``, ``dataset_index``, extra columns...).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
from typing import Any, Callable, Sequence

from pipelines.rewards.errors import RewardFunctionError
from pipelines.rewards.threads import MainThreadPump, run_in_thread

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def completion_text(completion: Any) -> str:
    """The text of a completion given as a string, a message dict or a list of messages."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        return "".join(_content_text(m.get("content")) if isinstance(m, dict) else str(m) for m in completion)
    return str(completion)


def _content_text(content: Any) -> str:
    # Message content may be a string or a list of typed blocks ({"type": "text", "text": ...}).
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, partials of them, and objects with an ``async def __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _row_kwargs_filter(fn: Callable[..., Any]) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """How to build a per-sample call's keyword arguments from (row columns, everything available).

    With ``**row`` in its signature the function gets the row's columns; otherwise only the names it declares,
    which may also be ``completion_ids`` or ``trainer_state``.
    """
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        named = {n for n in params if n not in ("prompt", "completion")}
        return lambda row, available: {**row, **{k: v for k, v in available.items() if k in named}}
    wanted = [n for n in params if n not in ("prompt", "completion")]
    return lambda row, available: {k: available[k] for k in wanted if k in available}


def _split_kwargs(n: int, kwargs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any]]:
    """Per-completion column dicts, per-completion token ids and the call-wide extras (trainer_state, ...).

    A keyword argument holding a list of ``n`` values is a column; anything else is call-wide.
    """
    columns = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n}
    extras = {k: v for k, v in kwargs.items() if k not in columns}
    ids = columns.pop("completion_ids", None) or [None] * n
    rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    return rows, list(ids), extras


def per_sample(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ``fn(prompt, completion, **row) -> float | None`` into a batch reward function.

    ``fn`` may be ``async def``; the samples of one batch are then awaited concurrently.
    """
    pick = _row_kwargs_filter(fn)

    def calls(prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict[str, Any]):
        rows, ids, extras = _split_kwargs(len(completions), kwargs)
        for prompt, completion, row, row_ids in zip(prompts, completions, rows, ids):
            available = {**extras, **row, "completion_ids": row_ids}
            yield prompt, completion_text(completion), pick(row, available)

    if is_async_callable(fn):
        @functools.wraps(fn)
        async def batch_async(prompts, completions, **kwargs):
            return list(await asyncio.gather(*(fn(p, c, **kw) for p, c, kw in calls(prompts, completions, kwargs))))
        batch_async.per_sample = True  # type: ignore[attr-defined]
        return batch_async

    @functools.wraps(fn)
    def batch(prompts, completions, **kwargs):
        return [fn(p, c, **kw) for p, c, kw in calls(prompts, completions, kwargs)]
    batch.per_sample = True  # type: ignore[attr-defined]
    return batch


def text_completions(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (batch form) called with each completion as plain text instead of TRL's message list, so a reward
    written as ``len(completion)`` measures the text (the ``text_completions`` flag)."""
    if is_async_callable(fn):
        @functools.wraps(fn)
        async def as_text_async(*args, completions, **kwargs):
            return await fn(*args, completions=[completion_text(c) for c in completions], **kwargs)
        return as_text_async

    @functools.wraps(fn)
    def as_text(*args, completions, **kwargs):
        return fn(*args, completions=[completion_text(c) for c in completions], **kwargs)
    return as_text


async def call_reward(fn: Callable[..., Any], prompts: list[Any], completions: list[Any],
                      kwargs: dict[str, Any], label: str, *, timeout: float | None = None,
                      pump: MainThreadPump | None = None, main_thread: bool = False) -> list[float | None]:
    """Call a batch-form reward and check what it returns.

    ``async def``: awaited. Sync: on the main thread through ``pump`` when ``main_thread`` and the pump is
    running, else in a daemon worker thread bounded by ``timeout`` seconds (see :mod:`.threads`).
    """
    if is_async_callable(fn):
        out = await fn(prompts=prompts, completions=completions, **kwargs)
    else:
        call = functools.partial(fn, prompts=prompts, completions=completions, **kwargs)
        if main_thread and pump is not None and pump.active:
            out = await pump.run(call)
        else:
            if main_thread and label not in _WARNED:
                _WARNED.add(label)
                log.warning("%s asks for the main thread, but this batch is scored from another thread: it runs "
                            "in a worker thread, where math-verify turns its own timeouts off; the per-call "
                            "timeout (reward.sync_timeout_s) bounds it instead", label)
            out = await run_in_thread(call, timeout, label)
    return coerce_scores(out, len(completions), label)


def coerce_scores(out: Any, n: int, label: str) -> list[float | None]:
    """Check a reward function's output: ``n`` finite numbers or ``None`` s. inf and NaN are errors: a
    non-finite reward would poison the advantages (or be dropped silently) and is not valid JSON."""
    if hasattr(out, "tolist"):  # numpy arrays, torch tensors
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        raise RewardFunctionError(f"{label} returned {type(out).__name__}; a reward function must return a list "
                                  f"with one float (or None) per completion")
    if len(out) != n:
        raise RewardFunctionError(f"{label} returned {len(out)} scores for {n} completions; return exactly one "
                                  f"score (or None) per completion")
    scores: list[float | None] = []
    for value in out:
        if value is None:
            scores.append(None)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RewardFunctionError(f"{label} returned {value!r}, which is not a number; return a float or "
                                      f"None") from None
        if not math.isfinite(number):
            raise RewardFunctionError(f"{label} returned {value!r} for completion {len(scores)}; a reward must be a "
                                      f"finite number (return None for 'not applicable')")
        scores.append(number)
    return scores
