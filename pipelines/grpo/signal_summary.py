"""The ``signal`` and ``alerts`` parts of summary.json: how the signal metrics moved, and what the monitor said."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pipelines.common.io import read_jsonl
from pipelines.grpo.artifacts import METRICS_FILE
from pipelines.grpo.callbacks import reward_windows
from pipelines.grpo.monitor import ALERTS_FILE

SUMMARY_KEYS = ("zero_spread", "all_solved", "all_failed", "completion_length", "repetition")
TREND_KEYS = ("completion_length", "repetition")


def run_slope(metrics: Path, key: str) -> float | None:
    """Theil-Sen slope per step of ``key`` over the whole run (scipy; robust to a few odd steps)."""
    from scipy.stats import theilslopes

    points = {r["step"]: r[key] for r in read_jsonl(metrics)
              if isinstance(r.get("step"), int) and isinstance(r.get(key), (int, float))}
    if len(points) < 3:
        return None
    steps = sorted(points)
    return float(theilslopes([points[s] for s in steps], steps).slope)


def signal_summary(run_dir: Path) -> dict[str, Any]:
    """Per signal metric (``signal/<key>``), its mean over the first and the last window of logged steps (as the
    reward's in summary.json), and for length and repetition their trend over the run (``slope_per_step``);
    ``alerts``: the monitor's alerts by kind and the first one's step."""
    metrics = Path(run_dir) / METRICS_FILE
    signal = {}
    for key in SUMMARY_KEYS:
        windows = reward_windows(metrics, f"signal/{key}")
        if windows:
            signal[key] = {"first": windows["first"], "last": windows["last"], "window": windows["window"]}
    for key in TREND_KEYS:
        if key in signal:
            signal[key]["slope_per_step"] = run_slope(metrics, f"signal/{key}")
    alerts_path = Path(run_dir) / ALERTS_FILE
    records = list(read_jsonl(alerts_path)) if alerts_path.exists() else []
    alerts = {"count": len(records), "by_kind": dict(Counter(r.get("kind") for r in records)),
              "first_step": min((r["step"] for r in records if isinstance(r.get("step"), int)), default=None),
              "file": str(alerts_path) if records else None}
    return {"signal": signal, "alerts": alerts}
