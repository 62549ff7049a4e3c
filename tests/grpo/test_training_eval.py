"""Held-out evaluation during training: logged at each interval and at the end with the mean reward, each
component and accuracy; held-out rows are never trained on."""
from __future__ import annotations

import pytest

from pipelines.common.io import read_jsonl
from pipelines.grpo.config import GRPOConfigFile
from pipelines.data.sampling import sample_datasets
from pipelines.grpo.inputs import data_spec
from pipelines.grpo.evaluation import summarize
from pipelines.grpo.plots import reward_series
from tests.grpo.training_runs import (high_scores, outputs, quickstart_config, run_node,  # noqa: F401
                                      tiny_cache, write_super)


class Result:
    def __init__(self, combined, rewards):
        self.combined, self.rewards = combined, rewards


def test_summarize_accuracy_counts_completions_reaching_max_reward():
    results = [Result(2.0, {"a": 1.0, "b": 1.0}), Result(1.5, {"a": 1.0, "b": 0.5}),
               Result(float("nan"), {"a": None, "b": 0.0}), Result(2.0 - 1e-12, {"a": 1.0, "b": 1.0})]
    out = summarize(results, max_reward=2.0, lengths=[3, 5, 7, 9])
    assert out["eval/reward_mean"] == pytest.approx((2.0 + 1.5 + 2.0) / 3)       # NaN left out
    assert out["eval/rewards/a/mean"] == 1.0 and out["eval/rewards/b/mean"] == pytest.approx(2.5 / 4)
    assert out["eval/accuracy"] == 0.5                                        # 2 of 4 completions
    assert out["eval/completion_length"] == 6 and out["eval/completions"] == 4
    assert "eval/accuracy" not in summarize(results, max_reward=None, lengths=[])


@pytest.mark.slow
def test_evaluation_at_intervals_and_end_on_held_out_rows(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=5, save_steps=5)
    cfg.update(run_name="evals", evaluation={"rows": 4, "interval_steps": 2, "max_reward": 1.0,
                                             "num_generations": 2})
    cfg["dataset_settings"]["total_rows"] = 8        # 5 steps x 2 prompts: every training row is trained on
    cfg["reward"]["score_save_threshold"] = 0.0      # every trained completion is recorded with its row_id
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    run = outputs / "evals"

    evals = [r for r in read_jsonl(run / "metrics.jsonl") if "eval/reward_mean" in r]
    assert [r["step"] for r in evals] == [2, 4, 5]                 # every 2 steps, and at the end
    # evaluating inside a step must not swallow that step's own training log
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4, 5]
    for rec in evals:
        assert rec["eval/completions"] == 4 * 2
        assert 0.0 <= rec["eval/accuracy"] <= 1.0
        # a 0/1 keyword reward with max_reward 1: accuracy is the share of completions scoring 1
        assert rec["eval/accuracy"] == pytest.approx(rec["eval/reward_mean"])
        assert rec["eval/rewards/quickstart/keyword/mean"] == pytest.approx(rec["eval/reward_mean"])
    assert "evaluation at step 5 on 4 held-out prompts" in (run / "run.log").read_text()
    assert reward_series(read_jsonl(run / "metrics.jsonl"))["eval"][0] == [2, 4, 5]   # plotted too

    # the node's own draw (same config, same seed): held-out rows are disjoint from the trained ones
    node_cfg = GRPOConfigFile.model_validate(cfg)
    sample = sample_datasets(data_spec(node_cfg), None)
    held_out = {r["row_id"] for r in sample.eval}
    trained = {r["row_id"] for r in high_scores(run)}
    assert len(held_out) == 4 and trained == {r["row_id"] for r in sample.train}
    assert len(trained) == 8 and not held_out & trained
    # evaluation scores are not mixed into the training metrics or the high-score file
    assert len(high_scores(run)) == 5 * 8
