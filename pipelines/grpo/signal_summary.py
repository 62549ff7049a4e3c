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


def signal_summary(run_dir: Path) -> dict[str, Any]:
    """Per signal metric (``signal/<key>``), its mean over the first and the last window of logged steps (as the
    reward's in summary.json); ``alerts``: the monitor's alerts by kind and the first one's step."""
    metrics = Path(run_dir) / METRICS_FILE
    signal = {}
    for key in SUMMARY_KEYS:
        windows = reward_windows(metrics, f"signal/{key}")
        if windows:
            signal[key] = {"first": windows["first"], "last": windows["last"], "window": windows["window"]}
    alerts_path = Path(run_dir) / ALERTS_FILE
    records = list(read_jsonl(alerts_path)) if alerts_path.exists() else []
    alerts = {"count": len(records), "by_kind": dict(Counter(r.get("kind") for r in records)),
              "first_step": min((r["step"] for r in records if isinstance(r.get("step"), int)), default=None),
              "file": str(alerts_path) if records else None}
    return {"signal": signal, "alerts": alerts}
