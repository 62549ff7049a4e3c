"""The reward stack: one trainer-facing reward callable over every dataset's reward list.

Each completion is scored by the reward functions of its own dataset (its row's ``dataset_index``), so
datasets with entirely different reward configs mix in one batch. All reward calls of a batch run
concurrently on the stack's own event loop (``async def`` ones as coroutines, sync ones in daemon worker
threads bounded by ``reward.sync_timeout_s``, and rewards registered ``main_thread`` on the main thread while it
waits: see :mod:`pipelines.rewards.threads`); then each completion's scores are combined
(``reward.combination_function``) and the batch is scaled (``reward.scaling_function``).

Component names are ``<dataset label>/<reward label>`` (:mod:`pipelines.rewards.components`). Metrics keys follow:
``rewards/quickstart/keyword/mean``; the combined reward is ``rewards/combined/mean`` (see
:mod:`pipelines.rewards.metrics`).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, Sequence

from pipelines.rewards import catalog
from pipelines.rewards.combine import PostProcessor, Score, combine, scale
from pipelines.rewards.components import Component, build_components, dataset_labels
from pipelines.rewards.config import RewardedDataset, RewardSection
from pipelines.rewards.errors import CircuitBreakerOpen, RewardFunctionError, RewardTimeout
from pipelines.rewards.export import HighScoreExport, high_score_record
from pipelines.rewards.forms import call_reward, is_async_callable
from pipelines.rewards.metrics import RewardMetrics
from pipelines.rewards.signal_metrics import SignalTracker
from pipelines.rewards.threads import MainThreadPump

log = logging.getLogger(__name__)

NON_COLUMNS = ("prompt", "completion", "completion_ids")


@dataclass
class ScoreResult:
    """One completion's scores: ``rewards`` by component name, ``combined`` (before scaling), ``scaled``."""

    dataset_index: int
    rewards: dict[str, float | None]
    combined: float | None
    scaled: float | None
    errors: list[str] = field(default_factory=list)


def _columns_from_rows(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(k for k in row if k not in NON_COLUMNS))
    return {k: [row.get(k) for row in rows] for k in keys}


def _subset(kwargs: dict[str, Any], n: int, positions: list[int]) -> dict[str, Any]:
    """Slice per-completion columns (lists of length ``n``) to ``positions``; keep call-wide extras."""
    return {k: ([v[p] for p in positions] if isinstance(v, (list, tuple)) and len(v) == n else v)
            for k, v in kwargs.items()}


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The stack's loop thread. A task whose reward code raises KeyboardInterrupt or SystemExit re-raises it out
    of ``run_forever`` (asyncio's rule for those two) after storing it in the task, where the awaiting
    component turns it into that reward's error; the loop must keep running for that to happen, so it restarts
    instead of leaving every later batch waiting for ever. ``stop()`` (from :meth:`RewardStack.close`) ends it."""
    while True:
        try:
            loop.run_forever()
            return
        except (KeyboardInterrupt, SystemExit) as exc:
            log.error("a reward function raised %s inside the reward stack's event loop; it is reported as that "
                      "reward's error", type(exc).__name__)


class RewardStack:
    """Builds every dataset's reward functions once and scores completions with them.

    It takes a node's ``reward`` section and its ``datasets`` (each with its ``reward_funcs``). ``reward_func``
    is the one callable to give TRL. ``run_dir``: where the high-scoring export goes (None: no export).
    ``resume_step``: when resuming from the checkpoint of that step, records of later steps are dropped from the
    high-scoring export (the trainer redoes them).
    """

    def __init__(self, reward: RewardSection, datasets: Sequence[RewardedDataset], run_dir: Path | None = None, *,
                 resume_step: int | None = None):
        self.datasets = list(datasets)
        self.combination = PostProcessor.from_config(reward.combination_function, catalog.combinations())
        self.scaling = PostProcessor.from_config(reward.scaling_function, catalog.scalings())
        self.components = build_components(self.datasets)
        self.sync_timeout = reward.sync_timeout_s
        self._pump = MainThreadPump()
        sync = [c.label for comps in self.components for c in comps if not is_async_callable(c.fn)]
        if sync:
            log.info("synchronous reward functions (%d) time out after %s per call (reward.sync_timeout_s)",
                     len(sync), f"{self.sync_timeout:g} s" if self.sync_timeout else "no limit")
        self.metrics = RewardMetrics()
        self.signal: SignalTracker | None = None     # signal metrics of training batches (track_signal)
        self.export: HighScoreExport | None = None
        if run_dir is not None and reward.score_save_threshold is not None and reward.high_scoring_save_path:
            self.export = HighScoreExport(Path(run_dir) / reward.high_scoring_save_path,
                                          reward.score_save_threshold)
            if resume_step is not None:
                self.export.truncate_after_step(resume_step)
        # The combined rewards (before scaling) of the latest batch TRL scored, in its order: the difficulty pool
        # reads them (TRL itself only receives the scaled ones).
        self.last_combined: list[float | None] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self.reward_func = self._trl_callable()

    # ------------------------------------------------------------------------------------------ public API
    @property
    def component_names(self) -> list[str]:
        return [c.name for comps in self.components for c in comps]

    def score_batch(self, prompts: Sequence[Any] | None, completions: Sequence[Any],
                    rows: Sequence[dict[str, Any]], step: int | None = None, *, record: bool = False,
                    raise_errors: bool = True) -> list[ScoreResult]:
        """Score completions of data rows (evaluation, offline scoring, rollouts).

        ``prompts`` default to the rows' ``prompt``; completions may be strings or message lists. ``record``
        adds the scores to the metrics and the high-scoring export (off by default: evaluation is not
        training). ``raise_errors=False`` turns a failing reward into ``None`` scores plus messages in
        ``ScoreResult.errors`` (each failing completion is found by retrying one at a time);
        CircuitBreakerOpen always propagates.
        """
        prompts = [r.get("prompt") for r in rows] if prompts is None else list(prompts)
        completions = [_as_trl_completion(p, c) for p, c in zip(prompts, completions)]
        kwargs = _columns_from_rows(rows)
        results = self._run(self._score(prompts, completions, kwargs, raise_errors))
        if record:
            self._record(prompts, completions, kwargs, results, step)
        return results

    async def ascore_batch(self, prompts: Sequence[Any] | None, completions: Sequence[Any],
                           rows: Sequence[dict[str, Any]], raise_errors: bool = True) -> list[ScoreResult]:
        """:meth:`score_batch` for callers already inside an event loop (never records)."""
        prompts = [r.get("prompt") for r in rows] if prompts is None else list(prompts)
        completions = [_as_trl_completion(p, c) for p, c in zip(prompts, completions)]
        return await self._score(prompts, completions, _columns_from_rows(rows), raise_errors)

    def track_signal(self, group_size: int) -> SignalTracker:
        """Keep signal metrics (:mod:`pipelines.rewards.signal_metrics`) of every batch recorded from now on."""
        self.signal = SignalTracker(group_size, dataset_labels(self.datasets),
                                    [[c.name for c in comps] for comps in self.components])
        return self.signal

    def pop_metrics(self) -> dict[str, float]:
        """Means and stds since the last pop (``rewards/...`` keys; ``rewards/combined/mean`` is the combined
        reward), plus what reward functions with their own ``pop_metrics()`` report, as
        ``rewards/<component>/<key>``."""
        out = self.metrics.pop()
        for comp in (c for comps in self.components for c in comps):
            pop = getattr(comp.fn, "pop_metrics", None)
            if callable(pop):
                for key, value in (pop() or {}).items():
                    out[f"rewards/{comp.name}/{key}"] = value
        if self.signal is not None:
            out.update(self.signal.pop())
        return out

    def judge_models(self) -> dict[str, str]:
        """Component name -> judge model name, for every LLM-judge component (what a budget prices)."""
        out = {}
        for comp in (c for comps in self.components for c in comps):
            judge = getattr(comp.fn, "judge", None)
            if judge is not None:
                out[comp.name] = str(judge.transport.model)
        return out

    def close(self) -> None:
        """Close the export and any reward function with a ``close()``; stop the private event loop."""
        if self.export is not None:
            self.export.close()
        for comp in (c for comps in self.components for c in comps):
            aclose = getattr(comp.fn, "aclose", None)
            closer = getattr(comp.fn, "close", None)
            try:
                if callable(aclose) and self._loop is not None:  # async clients used by score_batch's loop
                    self._run(aclose())
                if callable(closer):
                    result = closer()
                    if asyncio.iscoroutine(result):
                        self._run(result)
            except Exception:  # closing must not mask the run's real outcome
                log.exception("closing %s failed", comp.label)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            self._loop.close()
            self._loop = self._loop_thread = None

    # ---------------------------------------------------------------------------------------------- internals
    def _trl_callable(self) -> Callable[..., Any]:
        stack = self

        def reward_stack(prompts, completions, **kwargs):
            """TRL reward function: routes, combines, scales, records metrics and the high-scoring export.

            Synchronous on purpose: TRL calls it on the main thread, which then runs the stack's loop to the
            end of the batch and meanwhile the rewards that need the main thread (see ``_run``)."""
            state = kwargs.get("trainer_state")
            step = getattr(state, "global_step", None)
            # The batch being scored trains optimizer step global_step + 1: the number TRL logs it under and
            # the checkpoint-N that first contains it.
            step = step + 1 if isinstance(step, int) else None
            results = stack._run(stack._score(list(prompts), list(completions), kwargs, raise_errors=True))
            stack._record(prompts, completions, kwargs, results, step)
            stack.last_combined = [r.combined for r in results]
            return [r.scaled for r in results]

        return reward_stack

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the stack's own long-lived loop (async clients stay bound to one loop).

        On the main thread, the wait runs the jobs of ``main_thread`` rewards, and Ctrl-C cancels the batch."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=_serve, args=(self._loop,), name="RewardStack-loop",
                                                 daemon=True)
            self._loop_thread.start()
        loop = self._loop
        if threading.current_thread() is threading.main_thread():
            return self._pump.run_until_done(lambda: asyncio.run_coroutine_threadsafe(coro, loop))
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _dataset_indices(self, kwargs: dict[str, Any], n: int) -> list[int]:
        raw = kwargs.get("dataset_index")
        if raw is None:
            if len(self.components) == 1:
                return [0] * n
            raise RewardFunctionError("the rows have no dataset_index column, so completions cannot be routed to "
                                      "their dataset's rewards; build rows with the data layer (pipelines.data)")
        out = []
        for value in raw:
            try:
                index = int(value)
            except (TypeError, ValueError):
                index = -1
            if not 0 <= index < len(self.components):
                raise RewardFunctionError(f"dataset_index {value!r} does not name one of the "
                                          f"{len(self.components)} configured datasets")
            out.append(index)
        return out

    async def _score(self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any],
                     raise_errors: bool) -> list[ScoreResult]:
        n = len(completions)
        if len(prompts) != n:
            raise RewardFunctionError(f"{len(prompts)} prompts for {n} completions")
        ds_index = self._dataset_indices(kwargs, n)
        groups: dict[int, list[int]] = defaultdict(list)
        for pos, d in enumerate(ds_index):
            groups[d].append(pos)
        jobs, coros = [], []
        for d, positions in groups.items():
            sub = _subset(kwargs, n, positions)
            sub_prompts, sub_completions = [prompts[p] for p in positions], [completions[p] for p in positions]
            for comp in self.components[d]:
                jobs.append((comp, positions))
                coros.append(self._run_component(comp, sub_prompts, sub_completions, sub, raise_errors))
        outcomes = await asyncio.gather(*coros, return_exceptions=True)
        for outcome in outcomes:  # a breaker trip wins over ordinary errors: it stops the run cleanly
            if isinstance(outcome, CircuitBreakerOpen):
                raise outcome
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        results = [ScoreResult(d, {c.name: None for c in self.components[d]}, None, None) for d in ds_index]
        for (comp, positions), (scores, errors) in zip(jobs, outcomes):
            for p, s, e in zip(positions, scores, errors):
                results[p].rewards[comp.name] = s
                if e:
                    results[p].errors.append(e)
        for res in results:
            scored = [None if res.rewards[c.name] is None else Score(res.rewards[c.name], c.name, c.weight, c.gate)
                      for c in self.components[res.dataset_index]]
            res.combined = combine(scored, self.combination)
        for res, value in zip(results, scale([r.combined for r in results], self.scaling)):
            res.scaled = value
        return results

    async def _run_component(self, comp: Component, prompts: list[Any], completions: list[Any],
                             kwargs: dict[str, Any], raise_errors: bool
                             ) -> tuple[list[float | None], list[str | None]]:
        n = len(completions)
        try:
            scores = await call_reward(comp.fn, prompts, completions, kwargs, comp.label,
                                       timeout=self.sync_timeout, pump=self._pump, main_thread=comp.main_thread)
            return scores, [None] * n
        except (CircuitBreakerOpen, RewardTimeout) as exc:
            if raise_errors or isinstance(exc, CircuitBreakerOpen):
                raise
            return [None] * n, [str(exc)] * n   # retrying one by one would wait out the timeout n times
        except (Exception, KeyboardInterrupt, SystemExit) as exc:
            # KeyboardInterrupt/SystemExit here come from the reward's own code (a real Ctrl-C reaches the main
            # thread, not this loop): an error of that reward, not the end of the process or a dead loop.
            message = str(exc) if isinstance(exc, RewardFunctionError) else \
                f"{comp.label} raised {type(exc).__name__}: {exc}"
            if raise_errors:
                raise RewardFunctionError(message) from exc
            if n == 1:
                return [None], [message]
        singles = await asyncio.gather(*(
            self._run_component(comp, [prompts[i]], [completions[i]], _subset(kwargs, n, [i]), False)
            for i in range(n)), return_exceptions=True)
        scores, errors = [], []
        for single in singles:
            if isinstance(single, BaseException):
                raise single
            scores.append(single[0][0])
            errors.append(single[1][0])
        return scores, errors

    def _record(self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: dict[str, Any],
                results: list[ScoreResult], step: int | None) -> None:
        for comps in self.components:
            for comp in comps:
                values = [r.rewards[comp.name] for r in results if r.dataset_index == comp.dataset_index]
                if values:
                    self.metrics.add(comp.name, values)
        self.metrics.add("combined", [r.combined for r in results])
        self.metrics.add("scaled", [r.scaled for r in results])
        if self.signal is not None:     # the whole generated batch, before any filtering of groups
            self.signal.add(step, prompts, completions, kwargs, results)
        if self.export is None:
            return
        self.export.observe([r.combined for r in results])
        row_ids = kwargs.get("row_id") or [None] * len(results)
        for i, res in enumerate(results):
            if res.combined is not None and res.combined >= self.export.threshold:
                self.export.offer(high_score_record(
                    prompt=prompts[i], completion=completions[i], reward=res.combined, rewards=res.rewards,
                    dataset=self.datasets[res.dataset_index].path, dataset_index=res.dataset_index,
                    row_id=row_ids[i], step=step))


def _as_trl_completion(prompt: Any, completion: Any) -> Any:
    """A string completion of a chat prompt becomes TRL's form: one assistant message."""
    if isinstance(completion, str) and isinstance(prompt, (list, tuple)):
        return [{"role": "assistant", "content": completion}]
    return completion
