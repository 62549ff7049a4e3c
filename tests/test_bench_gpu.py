"""bench/bench_gpu.py without CUDA: it says so and exits 0 (the figures need a GPU box; see bench/README.md)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_without_cuda_says_so_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")   # no GPU visible, also on a GPU machine
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bench_gpu: no CUDA device is visible" in done.stdout and "Nothing was measured" in done.stdout
    assert "(a)" not in done.stdout
