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


def plot_reward_curve(metrics_path: str | Path, out_path: str | Path,
                      exclude: Iterable[str] = ()) -> Optional[Path]:
    """Write the plot atomically (temp file + rename); None when there is nothing to plot yet."""
    metrics_path, out_path = Path(metrics_path), Path(out_path)
    if not metrics_path.exists():
        return None
    series = reward_series(read_jsonl(metrics_path), exclude)
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for name, (steps, values) in sorted(series.items(), key=lambda kv: kv[0] != "combined"):
            style = {"linewidth": 2.5, "color": "black"} if name == "combined" else {"linewidth": 1.2}
            if name == "eval":
                style = {"linewidth": 1.5, "linestyle": "--", "marker": "o"}
            if len(steps) == 1:   # a line through one point draws nothing: mark it
                style = {**style, "marker": "o"}
            ax.plot(steps, values, label=name, **style)
        ax.set_xlabel("step")
        ax.set_ylabel("reward (mean)")
        ax.set_title("Reward per step")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        save_figure(fig, out_path)
    finally:
        plt.close(fig)
    return out_path
