"""Sentinels: watch the reward signal while a run trains and raise an alert, with evidence, when it goes wrong.

The reward stack's :class:`~pipelines.rewards.signal_metrics.SignalTracker` summarises every training batch; the
:class:`Monitor` keeps the last steps' summaries and, after each optimizer step, runs the configured sentinels
(``monitor.kinds``, see :mod:`pipelines.grpo.monitor_config`). Trends are scipy's: Kendall's tau against the step
(the Mann-Kendall trend test) for "rises", Siegel's repeated-medians slope (a robust Theil-Sen variant) for how
much. Each alert is a warning in run.log and a
JSON line in ``<run_dir>/alerts.jsonl`` (step, kind, statistic, threshold, details, evidence: recent completions
with their component scores). With ``on_alert: stop`` the callback raises
:class:`~pipelines.common.guards.GuardStop`: the node saves a checkpoint and the runner exits 3.
"""
from __future__ import annotations

import logging
import time
from statistics import median
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from pipelines.grpo.monitor_config import MonitorSection

log = logging.getLogger(__name__)

ALERTS_FILE = "alerts.jsonl"
JUDGE_REWARDS = ("llm_judge", "generic_llm_reward")


@dataclass
class Alert:
    """One sentinel's finding at one step (a record of alerts.jsonl)."""

    step: int
    kind: str
    message: str
    statistic_name: str
    statistic: float
    threshold: float
    details: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"step": self.step, "kind": self.kind, "message": self.message, "statistic_name": self.statistic_name,
                "statistic": self.statistic, "threshold": self.threshold, "details": self.details,
                "evidence": self.evidence}


@dataclass
class Trend:
    """Kendall's tau of a series against its index (p-value) and its robust rise over the whole series."""

    tau: float
    p: float
    rise: float

    def rising(self, alpha: float, min_rise: float) -> bool:
        return self.tau > 0 and self.p < alpha and self.rise >= min_rise


def trend(values: Sequence[float], min_rise: Optional[float] = None) -> Trend:
    """The trend of ``values`` (NaN-free): its rise (Siegel's repeated-medians slope x steps, a robust Theil-Sen
    variant) and Kendall's tau against the step. A constant or short series has no trend (tau 0, p 1, rise 0);
    with ``min_rise``, a smaller rise skips the tau test (tau 0, p 1): the cheap test first, at every step."""
    from scipy.stats import kendalltau, siegelslopes

    y = np.asarray(values, dtype=float)
    if y.size < 3 or np.ptp(y) == 0:
        return Trend(0.0, 1.0, 0.0)
    rise = float(siegelslopes(y).slope * (y.size - 1))
    if min_rise is not None and rise < min_rise:
        return Trend(0.0, 1.0, rise)
    test = kendalltau(np.arange(y.size), y)
    return Trend(float(test.statistic), float(test.pvalue), rise)


@dataclass
class RunShape:
    """What the sentinels need to know about the run's rewards (component names per dataset)."""

    anchors: list[str]                    # component names of monitor.anchor
    judges: dict[str, list[str]]          # dataset label -> its judge components
    programmatic: dict[str, list[str]]    # dataset label -> its other components
    per_dataset: dict[str, list[str]]     # dataset label -> every component


def run_shape(section: MonitorSection, datasets: Sequence[Any]) -> RunShape:
    """Read component names, the anchor and the judges from the ``datasets`` section."""
    from pipelines.rewards.components import component_names, dataset_labels, reward_label

    shape = RunShape([], {}, {}, {})
    for label, ds, names in zip(dataset_labels(datasets), datasets, component_names(datasets)):
        shape.per_dataset[label] = list(names)
        for entry, name in zip(ds.reward_funcs, names):
            if section.anchor is not None and section.anchor in (reward_label(entry), name):
                shape.anchors.append(name)
            group = shape.judges if entry.name in JUDGE_REWARDS else shape.programmatic
            group.setdefault(label, []).append(name)
    return shape


class Monitor:
    """The sentinels of one run. ``samples``: returns recent completions (the tracker's), for evidence."""

    def __init__(self, section: MonitorSection, shape: RunShape, samples: Callable[[], list[dict[str, Any]]]):
        self.section = section
        self.shape = shape
        self.samples = samples
        self.history: deque = deque(maxlen=2 * section.window)     # StepSignal values, oldest first
        self.baseline: list[dict[str, float]] = []                  # the first window's values (length_drift)
        self.evals: list[tuple[int, float]] = []                    # (step, eval/reward_mean)
        self.quiet_until: dict[str, int] = {}                       # kind -> step before which it stays silent
        self.seconds = 0.0

    def observe(self, values: dict[str, float]) -> None:
        """Add one step's batch summary."""
        self.history.append(values)
        if len(self.baseline) < self.section.window:
            self.baseline.append(values)

    def observe_eval(self, step: int, reward: float) -> None:
        self.evals.append((step, float(reward)))

    def check(self, step: int) -> list[Alert]:
        """Run every configured sentinel on the window ending now; an alert silences its kind for a window."""
        started = time.thread_time()
        alerts = []
        if len(self.history) >= self.section.window:
            for kind in self.section.kinds:
                if self.quiet_until.get(kind, 0) > step:
                    continue
                alert = getattr(self, kind)(step)
                if alert is not None:
                    self.quiet_until[kind] = step + self.section.window
                    alerts.append(alert)
        self.seconds += time.thread_time() - started
        return alerts

    # ------------------------------------------------------------------------------------------ helpers
    def series(self, key: str, steps: Optional[int] = None) -> list[float]:
        """``key``'s values over the last ``steps`` (default: the window) summaries, missing ones left out."""
        window = list(self.history)[-(steps or self.section.window):]
        return [v[key] for v in window if key in v and v[key] == v[key]]

    def mean_series(self, keys: Sequence[str]) -> list[float]:
        """Per step, the mean of ``keys`` present that step (the anchor over several datasets)."""
        out = []
        for values in list(self.history)[-self.section.window:]:
            got = [values[k] for k in keys if k in values]
            if got:
                out.append(float(np.mean(got)))
        return out

    def evidence(self, key: Callable[[dict[str, Any]], float], keep: Callable[[dict[str, Any]], bool] = bool
                 ) -> list[dict[str, Any]]:
        """The recent completions ``keep`` accepts, highest ``key`` first, at most ``monitor.evidence``."""
        chosen = sorted((s for s in self.samples() if keep(s)), key=lambda s: (key(s), s["step"] or 0),
                        reverse=True)    # ties: the newest first
        return chosen[:self.section.evidence]

    def rising(self, t: Trend) -> bool:
        return t.rising(self.section.alpha, self.section.min_rise)

    # ---------------------------------------------------------------------------------------- sentinels
    def anchor_divergence(self, step: int) -> Optional[Alert]:
        anchors = self.shape.anchors
        if not anchors:
            return None
        combined = self.series("combined")
        anchor = self.mean_series(anchors)
        if len(combined) < self.section.window or len(anchor) < 3:
            return None
        up = trend(combined, self.section.min_rise)
        if not self.rising(up):
            return None
        held = trend(anchor)
        if held.tau > 0 and held.p < self.section.alpha:
            return None

        def anchor_score(s: dict[str, Any]) -> float:
            got = [s["rewards"][a] for a in anchors if s["rewards"].get(a) is not None]
            return float(np.mean(got)) if got else float("nan")

        low = min((anchor_score(s) for s in self.samples() if anchor_score(s) == anchor_score(s)), default=0.0)
        proof = self.evidence(lambda s: s["combined"] or 0.0, lambda s: anchor_score(s) <= low)
        return Alert(step, "anchor_divergence", f"the combined reward rose by {up.rise:.3g} over {len(combined)} "
                     f"steps (Kendall tau {up.tau:.2f}, p {up.p:.2g}) while the anchor {', '.join(anchors)} did not "
                     f"(tau {held.tau:.2f}, p {held.p:.2g}, change {held.rise:+.3g})", "combined_trend_p", up.p,
                     self.section.alpha, {"combined_tau": up.tau, "combined_rise": up.rise, "anchor_tau": held.tau,
                                          "anchor_p": held.p, "anchor_rise": held.rise, "min_rise":
                                          self.section.min_rise, "anchor": anchors}, proof)

    def heldout_divergence(self, step: int) -> Optional[Alert]:
        if len(self.evals) < 3:
            return None
        combined = self.series("combined")
        recent = [(s, r) for s, r in self.evals if s > step - 2 * self.section.window]
        if len(combined) < self.section.window:
            return None
        points = self.evals[-max(3, len(recent)):]
        up = trend(combined, self.section.min_rise)
        if not self.rising(up):
            return None
        from scipy.stats import theilslopes

        slope = float(theilslopes([r for _, r in points], [s for s, _ in points]).slope)
        if slope > 0:
            return None
        return Alert(step, "heldout_divergence", f"the training reward rose by {up.rise:.3g} over {len(combined)} "
                     f"steps (p {up.p:.2g}) while the held-out reward's slope over its last {len(points)} "
                     f"evaluations is {slope:+.3g} per step", "heldout_slope", slope, 0.0,
                     {"combined_tau": up.tau, "combined_p": up.p, "combined_rise": up.rise,
                      "evaluations": [[s, r] for s, r in points]}, self.evidence(lambda s: s["combined"] or 0.0))

    def component_dominance(self, step: int) -> Optional[Alert]:
        bound, w = self.section.max_component_share, self.section.window
        for label, names in self.shape.per_dataset.items():
            if len(names) < 2:
                continue
            for name in names:
                shares = self.series(f"{name}/variance_share", 2 * w)
                before, now = shares[:-w], self.series(f"{name}/variance_share")
                if len(now) < w // 2 or not before or median(before) >= bound or median(now) <= bound:
                    continue
                share = float(median(now))
                return Alert(step, "component_dominance", f"{name} carries {share:.0%} of the combined reward's "
                             f"variance (median over the window; before: {median(before):.0%})",
                             "variance_share_median", share, bound, {"component": name, "before": float(
                                 median(before))}, self.evidence(lambda s, n=name: s["rewards"].get(n) or 0.0,
                                                                    lambda s, d=label: s["dataset"] == d))
        return None

    def length_drift(self, step: int) -> Optional[Alert]:
        sec = self.section
        lengths = self.series("completion_length")
        base = [v["completion_length"] for v in self.baseline if "completion_length" in v]
        if len(lengths) >= sec.window and base and len(self.baseline) >= sec.window:
            ratio = float(median(lengths) / max(median(base), 1e-9))
            up = trend(lengths) if ratio >= sec.max_length_growth else None
            if up is not None and up.tau > 0 and up.p < sec.alpha:
                return Alert(step, "length_drift", f"completion length grew to {ratio:.2f}x the first window's "
                             f"(median {median(lengths):.0f} tokens; tau {up.tau:.2f}, p {up.p:.2g})",
                             "length_growth", ratio, sec.max_length_growth, {"tau": up.tau, "p": up.p},
                             self.evidence(lambda s: s["tokens"] or 0))
        reps = self.series("repetition")
        if len(reps) >= sec.window and median(reps) > sec.max_repetition:
            up, middle = trend(reps), float(median(reps))
            if up.tau > 0 and up.p < sec.alpha:
                return Alert(step, "length_drift", f"repetition rose to {middle:.0%} of token 3-grams (tau "
                             f"{up.tau:.2f}, p {up.p:.2g})", "repetition_median", middle, sec.max_repetition,
                             {"tau": up.tau, "p": up.p}, self.evidence(lambda s: s["tokens"] or 0))
        return None

    def judge_divergence(self, step: int) -> Optional[Alert]:
        for label, judges in self.shape.judges.items():
            others = self.shape.programmatic.get(label, [])
            if not others:
                continue
            for judge in judges:
                scores = self.series(judge)
                if len(scores) < self.section.window:
                    continue
                up = trend(scores, self.section.min_rise)
                if not self.rising(up):
                    continue
                moved = {o: trend(self.series(o)) for o in others}
                if any(t.tau > 0 and t.p < self.section.alpha for t in moved.values()):
                    continue
                return Alert(step, "judge_divergence", f"the judge {judge} rose by {up.rise:.3g} (p {up.p:.2g}) "
                             f"while {', '.join(others)} on the same rows did not", "judge_trend_p", up.p,
                             self.section.alpha, {"judge_tau": up.tau, "judge_rise": up.rise, "programmatic": {
                                 o: {"tau": t.tau, "p": t.p} for o, t in moved.items()}},
                             self.evidence(lambda s, j=judge: s["rewards"].get(j) or 0.0,
                                           lambda s, d=label: s["dataset"] == d))
        return None

    def dead_signal(self, step: int) -> Optional[Alert]:
        shares = self.series("zero_spread")
        if len(shares) < self.section.window or min(shares) < self.section.max_zero_spread:
            return None
        latest = max((s["step"] or 0 for s in self.samples()), default=0)
        return Alert(step, "dead_signal", f"{min(shares):.0%} or more of the groups had zero reward spread (no "
                     f"advantage, nothing to learn) at every one of the last {len(shares)} steps",
                     "zero_spread_min", float(min(shares)), self.section.max_zero_spread, {},
                     self.evidence(lambda s: 0.0, lambda s: s["step"] == latest))


def alert_line(alert: Alert) -> str:
    """The run.log line of an alert."""
    return (f"monitor alert at step {alert.step}: {alert.kind}: {alert.message} ({alert.statistic_name} "
            f"{alert.statistic:.3g}, threshold {alert.threshold:.3g}); evidence in {ALERTS_FILE}")


def write_alerts(path: Path, alerts: Sequence[Alert]) -> None:
    """Append alerts to alerts.jsonl (one JSON line each) and log them."""
    from pipelines.common.io import JsonlAppender

    writer = JsonlAppender(path)
    try:
        for alert in alerts:
            log.warning(alert_line(alert))
            writer.write(alert.record())
    finally:
        writer.close()


def truncate_alerts(run_dir: Path, step: int) -> int:
    """Drop alerts.jsonl records of steps after ``step`` (a resumed run redoes them), as metrics.jsonl's."""
    from pipelines.grpo.callbacks import truncate_metrics_after

    return truncate_metrics_after(Path(run_dir) / ALERTS_FILE, step)


def per_step(summaries: Sequence[Any]) -> list[dict[str, float]]:
    """One summary per step: batches scored for the same step (extra generation batches) are averaged."""
    by_step: dict[Any, list[dict[str, float]]] = {}
    for summary in summaries:
        by_step.setdefault(summary.step, []).append(summary.values)
    return [{key: float(np.mean([v[key] for v in batches if key in v])) for key in set().union(*batches)}
            for batches in by_step.values()]


def monitor_callback(section: MonitorSection, datasets: Sequence[Any], tracker: Any, run_dir: Path) -> Any:
    """A TrainerCallback running the sentinels after every optimizer step (main process) and, with
    ``on_alert: stop``, raising GuardStop on every rank (the decision is shared: a collective in multi-process)."""
    import scipy.stats  # noqa: F401 - imported once here, not inside the first training step that needs it
    from transformers import TrainerCallback

    from pipelines.common.dist import all_gather_objects
    from pipelines.common.guards import GuardStop
    from pipelines.grpo.artifacts import EVAL_REWARD_KEY

    monitor = Monitor(section, run_shape(section, datasets), tracker.samples)
    alerts_path = Path(run_dir) / ALERTS_FILE

    class MonitorCallback(TrainerCallback):
        def __init__(self) -> None:
            self.monitor = monitor
            self.pending: Optional[GuardStop] = None    # a stop decided at on_step_end, raised at the step's log
            self.seconds = 0.0       # CPU seconds spent in the callback (the bench reads it)

        def on_step_end(self, args, state, control, **kwargs):
            started = time.thread_time()
            for values in per_step(tracker.take_steps()):
                monitor.observe(values)
            alerts = monitor.check(state.global_step) if state.is_world_process_zero else []
            if alerts:
                write_alerts(alerts_path, alerts)
            stop = [a.kind for a in alerts] if section.on_alert == "stop" else []
            stop = [kind for rank in all_gather_objects(stop) for kind in rank]
            self.seconds += time.thread_time() - started
            if stop:
                # Raised once the step is logged (on_log below), so its metrics.jsonl record is kept: the step's
                # log is forced even off a logging_steps boundary.
                self.pending = GuardStop(stop[0], f"monitor.on_alert is stop and the monitor raised "
                                         f"{', '.join(stop)} (evidence in {alerts_path}); to go on anyway resume "
                                         "with --set monitor.on_alert=warn", step=state.global_step,
                                         evidence=str(alerts_path))
                control.should_log = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            value = (logs or {}).get(EVAL_REWARD_KEY)
            if isinstance(value, (int, float)) and value == value:
                monitor.observe_eval(state.global_step, float(value))
            if self.pending is not None and "loss" in (logs or {}):   # the step's training log, now written
                pending, self.pending = self.pending, None
                raise pending

    return MonitorCallback()
