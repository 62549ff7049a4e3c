"""The ``monitor:`` section of a GRPO config (sentinels that watch the reward signal; see
:mod:`pipelines.grpo.monitor`) and its cross-field checks for ``--validate``."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from pipelines.common.problems import Problem, did_you_mean
from pipelines.common.schema import StrictModel

AlertKind = Literal["anchor_divergence", "heldout_divergence", "component_dominance", "length_drift",
                    "judge_divergence", "dead_signal"]
ALL_KINDS: tuple[str, ...] = ("anchor_divergence", "heldout_divergence", "component_dominance", "length_drift",
                              "judge_divergence", "dead_signal")


class MonitorSection(StrictModel):
    """Sentinels over the reward signal. Each alert is a line in run.log and a record in alerts.jsonl (step,
    kind, statistic, threshold, evidence: the completions that drove it); `on_alert: stop` then saves a
    checkpoint and exits with code 3 (resumable). Trends are Kendall tau tests (Mann-Kendall) and Siegel
    slopes over the last `window` steps (scipy)."""

    enabled: bool = Field(True, description="Watch the run (the section's presence turns the monitor on; "
                                            "`--set monitor.enabled=false` turns it off).")
    on_alert: Literal["warn", "stop"] = Field("warn", description="`warn`: log and record the alert, keep "
                                              "training; `stop`: also save a checkpoint and exit 3.")
    kinds: list[AlertKind] = Field(list(ALL_KINDS), description="Which sentinels run: anchor_divergence, "
                                   "heldout_divergence, component_dominance, length_drift, judge_divergence, "
                                   "dead_signal. A sentinel whose inputs a run lacks (no anchor, no evaluation, no "
                                   "judge beside a programmatic reward) stays silent.")
    anchor: Optional[str] = Field(None, description="anchor_divergence: the reward that measures correctness, "
                                  "by its label (e.g. `answer_match`) or component name (`<dataset>/<label>`). "
                                  "Alert when the combined reward rises while the anchor stays flat or falls.")
    window: int = Field(10, ge=4, le=1000, description="Steps in the trend window of every sentinel.")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="Significance level of a trend test: a reward `rises` "
                         "when Kendall's tau against the step is positive with p below alpha.")
    min_rise: float = Field(0.2, ge=0, description="A rise must also be at least this much over the window "
                            "(Siegel repeated-medians slope x window, in reward units) to count.")
    max_component_share: float = Field(0.9, gt=0, le=1, description="component_dominance: alert when one "
                                       "component's share of the combined reward's variance has a median above "
                                       "this over the window, having been below it before (datasets with 2+ "
                                       "rewards).")
    max_length_growth: float = Field(2.0, gt=1, le=100, description="length_drift: alert when completion length "
                                     "rises significantly and the window's median is this many times the first "
                                     "window's.")
    max_repetition: float = Field(0.5, gt=0, le=1, description="length_drift: alert when the repetition share "
                                  "(repeated token 3-grams) rises significantly and its window median exceeds "
                                  "this.")
    max_zero_spread: float = Field(0.95, gt=0, le=1, description="dead_signal: alert when the share of "
                                   "zero-spread groups is at or above this at every step of the window.")
    evidence: int = Field(4, ge=1, le=32, description="Completions quoted as evidence in each alert.")


def check_monitor(cfg: Any, file: str) -> list[Problem]:
    """The anchor names a reward of some dataset (label or component name); the window fits in the run.

    ``cfg`` is a GRPO config (or any config with ``monitor``, ``datasets`` and ``training_parameters``)."""
    mon = getattr(cfg, "monitor", None)
    if mon is None or not mon.enabled:
        return []
    from pipelines.rewards.components import component_names, reward_label

    problems = []
    if mon.anchor is not None:
        labels = {reward_label(e) for ds in cfg.datasets for e in ds.reward_funcs}
        names = {n for comps in component_names(cfg.datasets) for n in comps}
        if mon.anchor not in labels | names:
            problems.append(Problem(file, "monitor.anchor", f"{mon.anchor!r} is not a reward of any dataset; the "
                                    f"rewards are {', '.join(sorted(labels))}"
                                    f"{did_you_mean(mon.anchor, sorted(labels | names))}"))
    max_steps = cfg.training_parameters.max_steps
    if max_steps is not None and mon.window > max_steps:
        problems.append(Problem(file, "monitor.window", f"{mon.window} steps is longer than the run "
                                f"(max_steps {max_steps}): no sentinel would ever judge a trend"))
    return problems
