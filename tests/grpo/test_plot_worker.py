"""reward_curve.png drawn by a child process: on request, finally on close, and even when the training process
dies without closing it; the picture has the signal panel when metrics.jsonl has signal metrics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines.grpo.plot_worker import PlotWorker
from pipelines.grpo.plots import signal_series

REPO = Path(__file__).resolve().parents[2]


def write_metrics(path: Path, steps: int, signal: bool = True) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for step in range(1, steps + 1):
            rec = {"step": step, "rewards/combined/mean": step / steps, "rewards/qa/kw/mean": step / steps}
            if signal:
                rec.update({"signal/zero_spread": 0.5, "signal/all_solved": 0.25, "signal/all_failed": 0.25,
                            "signal/qa/kw/variance_share": 1.0, "signal/completion_length": 12.0})
            f.write(json.dumps(rec) + "\n")


def test_close_waits_for_the_final_picture(tmp_path):
    from PIL import Image

    metrics, png = tmp_path / "metrics.jsonl", tmp_path / "reward_curve.png"
    write_metrics(metrics, 3)
    worker = PlotWorker(metrics, png)
    for _ in range(5):
        worker.request()            # never waits; the child coalesces
    write_metrics(metrics, 6)
    worker.close()
    assert worker.proc is None and Image.open(png).size == (800, 800)
    worker.close()                  # twice is harmless
    assert not list(tmp_path.glob(".*tmp*"))


def test_without_signal_metrics_the_picture_has_one_panel(tmp_path):
    from PIL import Image

    metrics, png = tmp_path / "metrics.jsonl", tmp_path / "reward_curve.png"
    write_metrics(metrics, 3, signal=False)
    worker = PlotWorker(metrics, png)
    worker.request()
    worker.close()
    assert Image.open(png).size == (800, 450)


def test_the_child_draws_when_the_training_process_dies(tmp_path):
    metrics, png = tmp_path / "metrics.jsonl", tmp_path / "reward_curve.png"
    write_metrics(metrics, 4)
    script = ("import os, sys; from pipelines.grpo.plot_worker import PlotWorker; "
              f"w = PlotWorker({str(metrics)!r}, {str(png)!r}); w.request(); print(w.proc.pid, flush=True); "
              "os._exit(9)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(out.stdout.split()[0])
    deadline = time.time() + 120
    while time.time() < deadline and (not png.exists() or _alive(child)):
        time.sleep(0.2)
    assert png.exists() and not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_signal_series_names():
    records = [{"step": 1, "signal/zero_spread": 1.0, "signal/qa/kw/variance_share": 0.5, "signal/qa/zero_spread": 1}]
    assert set(signal_series(records)) == {"zero spread", "qa/kw variance share"}
