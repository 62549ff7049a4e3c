"""Trainer callbacks: metrics.jsonl, reward_curve.png, and the end-of-run summary figures."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable, Optional

from pipelines.common.io import JsonlAppender, atomic_write_text, read_jsonl
from pipelines.grpo.artifacts import EVAL_REWARD_KEY
from pipelines.grpo.plot_worker import PlotWorker
from pipelines.grpo.plots import TOTAL_KEY

log = logging.getLogger(__name__)
TRAIN_SUMMARY = "train_summary"   # metrics.jsonl's `record` value on the end-of-train line (runtime, mean loss)


def jsonable(value: Any) -> Any:
    """A log value as JSON: NaN/inf -> null, tensors and numpy scalars -> float, anything else -> str."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def truncate_metrics_after(path: Path, step: int) -> int:
    """Drop metrics.jsonl records of steps after ``step`` (written by a run killed after its last checkpoint,
    which the resumed run redoes). Atomic rewrite; returns the number of records dropped."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    import json

    for rec in read_jsonl(path):
        if isinstance(rec.get("step"), int) and rec["step"] > step:
            dropped += 1
        else:
            kept.append(json.dumps(rec, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(kept))
    return dropped


def metrics_callback(metrics_path: Path, plot_path: Path, exclude: Iterable[str] = ()) -> Any:
    """A TrainerCallback appending every log (one JSON line per logged step) and plotting at saves and the end."""
    from transformers import TrainerCallback

    exclude = tuple(exclude)

    class MetricsFileCallback(TrainerCallback):
        def __init__(self) -> None:
            self.writer: Optional[JsonlAppender] = None
            self.plotter = PlotWorker(metrics_path, plot_path, exclude)   # draws off the training process

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if self.writer is None:
                self.writer = JsonlAppender(metrics_path)
            record = {"step": state.global_step, **{k: jsonable(v) for k, v in logs.items()}}
            if "train_runtime" in logs:   # TRL's end-of-train totals, not a step: say so on the record
                record["record"] = TRAIN_SUMMARY
            self.writer.write(record)

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.plotter.start()

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.plotter.request()

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.close()     # the final picture is complete before the node returns

        def close(self) -> None:
            """Close metrics.jsonl and wait for the last picture (also of a run that ended early)."""
            if self.writer is not None:
                self.plotter.request()
            self.plotter.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None

    return MetricsFileCallback()


def reward_windows(metrics_path: Path, key: str = TOTAL_KEY) -> Optional[dict[str, float]]:
    """Mean reward over the first and the last window of logged steps (window = a fifth of them, 1 to 10)."""
    if not metrics_path.exists():
        return None
    by_step: dict[int, float] = {}
    for rec in read_jsonl(metrics_path):
        value = rec.get(key)
        if isinstance(rec.get("step"), int) and isinstance(value, (int, float)) and value == value:
            by_step[rec["step"]] = float(value)
    if not by_step:
        return None
    values = [by_step[s] for s in sorted(by_step)]
    window = max(1, min(10, len(values) // 5))
    first, last = values[:window], values[-window:]
    return {"window": float(window), "first": sum(first) / len(first), "last": sum(last) / len(last),
            "steps_logged": float(len(values))}


def use_compact_progress(trainer: Any) -> None:
    """Keep the progress bar but show a few numbers on it instead of printing every log dict as a line.

    transformers' ProgressCallback writes each step's ~30 metrics under the bar; they are all in
    metrics.jsonl and the trackers already, so the terminal shows step, loss and the combined reward.
    """
    from transformers.trainer_callback import ProgressCallback

    class CompactProgressCallback(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            shown = {short: logs[key] for key, short in (("loss", "loss"), (TOTAL_KEY, "reward"),
                                                          (EVAL_REWARD_KEY, "eval")) if key in logs}
            if shown:
                self.training_bar.set_postfix({k: f"{float(v):.3g}" for k, v in shown.items()}, refresh=False)

    if any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(CompactProgressCallback())
