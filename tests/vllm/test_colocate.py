"""The grpo node on the transformers backend with ``model.vllm.mode: colocate``, end to end on CPU: TRL's
GRPOTrainer generates through vLLM's CPU build, the trained weights reach the engine after every optimizer step,
stop strings and sampling settings reach vLLM, held-out evaluation generates through the same engine, and the run
logs the same reward keys as the transformers run of the same config (fixture ``grpo_runs``, one process)."""
from __future__ import annotations

import json
import math

import pytest

from tests.vllm.vllm_runs import step_logs

pytestmark = pytest.mark.vllm


def test_trains_two_steps_through_vllm(grpo_runs):
    run = grpo_runs["vllm"]
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    assert (run / "final_adapter" / "adapter_model.safetensors").is_file()
    log = (run / "run.log").read_text()
    assert "vllm 0.30.0+cpu" in log                                     # the stack line: vLLM's CPU build ran
    assert "trained weights reach the colocated engine through vLLM's reload_weights" in log
    steps = step_logs(run)
    assert sorted(steps) == [1, 2]
    # TRL compares vLLM's sampling logprobs with the trainer's only when vLLM generated the completions
    assert all("sampling/sampling_logp_difference/mean" in steps[s] for s in (1, 2))
    assert not any(k.startswith("sampling/") for m in step_logs(grpo_runs["transformers"]).values() for k in m)


def test_second_step_samples_from_the_updated_weights(grpo_runs):
    """Step 2's completions come from the weights after step 1. The first step moved the policy far from the base
    model (kl, beta 0.04), yet the trainer's logprobs of step 2's completions match vLLM's sampling logprobs as
    closely as at step 1, when both held the base weights. An engine left on the base weights would differ by
    about sqrt(2 * kl) per token (over 1 here); the floor of ~0.05 is vLLM's CPU engine running the float32
    checkpoint in bf16 (vLLM's `auto` dtype, which TRL does not set) against the fp32 trainer."""
    steps = step_logs(grpo_runs["vllm"])
    diff1 = steps[1]["sampling/sampling_logp_difference/mean"]
    diff2 = steps[2]["sampling/sampling_logp_difference/mean"]
    assert steps[1]["kl"] == 0.0 and steps[1]["loss"] != 0.0          # step 1 had an advantage to follow
    stale = math.sqrt(2 * steps[2]["kl"])
    assert stale > 0.5, steps[2]
    assert diff1 < 0.15 and diff2 < 0.15 and diff2 < stale / 4, (diff1, diff2, stale)


def test_sampling_temperature_reaches_vllm(grpo_runs):
    """temperature 0.7: TRL scores its own logprobs at 0.7; vLLM's agree (below 0.15 per token), where sampling
    at vLLM's default 1.0 would differ by 0.45 per token (measured on this model's T=0.7 samples)."""
    steps = step_logs(grpo_runs["vllm"])
    assert steps[1]["sampling/sampling_logp_difference/mean"] < 0.15
    assert all(steps[s]["completions/max_length"] <= 16 for s in (1, 2))  # max_completion_length -> max_tokens


def test_stop_strings_cut_what_the_rewards_see(grpo_runs):
    """Stop string "e": vLLM stops at it, and the completion the rewards score (and export) ends right after it,
    as on the transformers backend, even where the token holding it goes on ("lovely")."""
    completions = {}
    for backend, run in grpo_runs.items():
        rows = [json.loads(line) for line in (run / "high_scoring_examples.jsonl").read_text().splitlines()]
        completions[backend] = [row["completion"] for row in rows]
        assert len(rows) == 16, backend                                   # threshold 0: every training completion
    for backend, texts in completions.items():
        assert all("e" not in text[:-1] for text in texts), (backend, texts)
        assert sum(text.endswith("e") for text in texts) >= 4, (backend, texts)
    steps = step_logs(grpo_runs["vllm"])
    assert steps[1]["completions/mean_length"] < 16                      # vLLM stopped early


def test_held_out_evaluation_generates_through_vllm(grpo_runs):
    run = grpo_runs["vllm"]
    assert "held-out evaluation generates with trl_vllm" in (run / "run.log").read_text()
    evals = {m["step"]: m for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "eval/completions" in m}
    assert sorted(evals) == [1, 2]
    for m in evals.values():
        assert m["eval/completions"] == 4.0 and 0 < m["eval/completion_length"] <= 16
        assert "eval/rewards/quickstart/length_target/mean" in m and "eval/accuracy" in m


def test_reward_keys_match_the_transformers_run(grpo_runs):
    def reward_keys(run):
        return {k for m in step_logs(run).values() for k in m if k.startswith("rewards/")} | \
            {k for line in (run / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)
             if k.startswith("eval/")}

    ours, theirs = reward_keys(grpo_runs["vllm"]), reward_keys(grpo_runs["transformers"])
    assert ours == theirs
    assert {"rewards/quickstart/keyword/mean", "rewards/quickstart/length_target/mean", "rewards/combined/mean"} \
        <= ours
