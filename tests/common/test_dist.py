"""Metrics gathered across ranks: two real gloo processes on 127.0.0.1, each recording different values."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

RANK_SCRIPT = r"""
import json, os, sys
import torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
from pipelines.rewards.judge.metrics import JudgeMetrics
from pipelines.rewards.metrics import RewardMetrics
judge = JudgeMetrics("j")
judge.add(samples=4 + rank, calls=5 + rank, failures=rank)
for s in ([0.1, 0.2] if rank == 0 else [0.9]):
    judge.latency(s)
rewards = RewardMetrics()
rewards.add("combined", [1.0, 1.0] if rank == 0 else [0.0, 0.0, 0.0, None])
out = {"judge": judge.pop(), "rewards": rewards.pop(), "empty": JudgeMetrics("e").pop()}
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as fh:
    json.dump(out, fh)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_judge_and_reward_metrics_are_aggregated_over_ranks(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1]          # every rank logs the same, global, values
    judge, rewards = results[0]["judge"], results[0]["rewards"]
    assert judge["judge/j/samples"] == 9 and judge["judge/j/calls"] == 11 and judge["judge/j/failures"] == 1
    assert judge["judge/j/failure_rate"] == pytest.approx(1 / 9)
    assert judge["judge/j/latency_p50_s"] == pytest.approx(0.2)     # median of 0.1, 0.2, 0.9
    assert rewards["rewards/combined/count"] == 6.0                  # 2 + 4 completions, the None included
    assert rewards["rewards/combined/mean"] == pytest.approx(2 / 5)   # None left out of the mean
    assert results[0]["empty"] == {}                                 # nothing judged anywhere: no keys


def test_single_process_gather_is_identity():
    from pipelines.common.dist import all_gather_objects, world_size
    assert world_size() == 1 and all_gather_objects({"a": 1}) == [{"a": 1}]
