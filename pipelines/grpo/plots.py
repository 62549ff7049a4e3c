"""reward_curve.png: the combined reward and each component against the step, from metrics.jsonl."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable, Optional

from pipelines.common.io import read_jsonl
from pipelines.grpo.artifacts import EVAL_REWARD_KEY

log = logging.getLogger(__name__)

TOTAL_KEY = "rewards/combined/mean"     # the combined reward before scaling (one key; see rewards/metrics.py)
_COMPONENT_RE = re.compile(r"^rewards/(.+)/mean$")
_NOT_COMPONENTS = {"combined", "scaled"}


def reward_series(records: Iterable[dict], exclude: Iterable[str] = ()) -> dict[str, tuple[list[int], list[float]]]:
    """Series name -> (steps, values): ``combined`` (``rewards/combined/mean``), one per reward component
    (``rewards/<component>/mean``, without TRL's own per-function keys listed in ``exclude``), and ``eval``."""
    skip = _NOT_COMPONENTS | set(exclude)
    series: dict[str, tuple[list[int], list[float]]] = {}

    def add(name: str, step: int, value: object) -> None:
        if isinstance(value, (int, float)) and value == value:  # not NaN
            steps, values = series.setdefault(name, ([], []))
            steps.append(step)
            values.append(float(value))

    for rec in records:
        step = rec.get("step")
        if not isinstance(step, int):
            continue
        add("combined", step, rec.get(TOTAL_KEY))
        add("eval", step, rec.get(EVAL_REWARD_KEY))
        for key, value in rec.items():
            m = _COMPONENT_RE.match(key)
            if m and m.group(1) not in skip:
                add(m.group(1), step, value)
    return series


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on a rented box)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_path: str | Path) -> Path:
    """Lay out and write a figure atomically (temp file + rename): a reader never sees half a PNG."""
    out_path = Path(out_path)
    fig.tight_layout()
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, out_path)
    return out_path


def signal_series(records: Iterable[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """The signal panel's series from metrics.jsonl: ``zero spread``, ``all solved``, ``all failed`` (shares of
    groups), ``repetition``, each component's ``<component> variance share``, and ``completion length``."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    fixed = {"signal/zero_spread": "zero spread", "signal/all_solved": "all solved",
             "signal/all_failed": "all failed", "signal/repetition": "repetition",
             "signal/completion_length": "completion length"}
    for rec in records:
        step = rec.get("step")
        if not isinstance(step, int):
            continue
        for key, value in rec.items():
            name = fixed.get(key)
            if name is None and key.startswith("signal/") and key.endswith("/variance_share"):
                name = key[len("signal/"):-len("/variance_share")] + " variance share"
            if name is not None and isinstance(value, (int, float)) and value == value:
                steps, values = series.setdefault(name, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def _line(ax, steps: list[int], values: list[float], label: str, **style) -> None:
    """A series as a line; a series of one point gets a marker, or it would not show at all."""
    if len(values) == 1 and "marker" not in style:
        style["marker"] = "o"
    ax.plot(steps, values, label=label, **style)


def _reward_panel(ax, series: dict[str, tuple[list[int], list[float]]]) -> None:
    for name, (steps, values) in sorted(series.items(), key=lambda kv: kv[0] != "combined"):
        style = {"linewidth": 2.5, "color": "black"} if name == "combined" else {"linewidth": 1.2}
        if name == "eval":
            style = {"linewidth": 1.5, "linestyle": "--", "marker": "o"}
        _line(ax, steps, values, name, **style)
    ax.set_ylabel("reward (mean)")
    ax.set_title("Reward per step")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def _signal_panel(ax, series: dict[str, tuple[list[int], list[float]]]) -> None:
    """Shares (0..1) on the left axis; completion length in tokens on a right axis."""
    styles = {"zero spread": {"color": "black", "linewidth": 4, "alpha": 0.3}, "all solved": {"color": "tab:green"},
              "all failed": {"color": "tab:red"}, "repetition": {"color": "tab:purple", "linestyle": ":"}}
    for name, (steps, values) in series.items():
        if name != "completion length":
            _line(ax, steps, values, name, **styles.get(name, {"linestyle": "--", "linewidth": 1}))
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("share")
    ax.set_title("Signal: groups with zero reward spread (no advantage), variance shares, length")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "completion length" in series:
        right = ax.twinx()
        steps, values = series["completion length"]
        _line(right, steps, values, "completion length (tokens, right)", color="tab:gray", alpha=0.6)
        right.set_ylabel("tokens")
        right.set_ylim(bottom=0)
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="best", fontsize="small")


def plot_reward_curve(metrics_path: str | Path, out_path: str | Path,
                      exclude: Iterable[str] = ()) -> Optional[Path]:
    """Write the plot atomically (temp file + rename); None when there is nothing to plot yet.

    Two panels: the rewards per step, and the signal (:func:`signal_series`) when metrics.jsonl has it.
    Drawn with matplotlib's object API (no pyplot state), so it is safe off the main thread."""
    from matplotlib.figure import Figure

    metrics_path, out_path = Path(metrics_path), Path(out_path)
    if not metrics_path.exists():
        return None
    records = list(read_jsonl(metrics_path))
    series = reward_series(records, exclude)
    if not series:
        return None
    signal = signal_series(records)
    fig = Figure(figsize=(8, 8 if signal else 4.5), dpi=100)
    axes = fig.subplots(2, 1, sharex=True) if signal else [fig.subplots()]
    _reward_panel(axes[0], series)
    if signal:
        _signal_panel(axes[1], signal)
    else:
        axes[0].set_xlabel("step")
    save_figure(fig, out_path)
    return out_path
