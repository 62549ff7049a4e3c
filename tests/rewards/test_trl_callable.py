"""The reward stack inside real TRL GRPOTrainer steps on the tiny offline model (CPU)."""
from __future__ import annotations

import pytest

from pipelines.common.io import read_jsonl
from pipelines.rewards.errors import CircuitBreakerOpen
from tests.rewards.reward_cfg import make_cfg, row, stack_for

pytestmark = pytest.mark.slow
SEEN: list = []


def spy():
    async def spy(prompts, completions, **kw):
        SEEN.append((list(kw["dataset_index"]), kw["trainer_state"].global_step, "completion_ids" in kw))
        return [0.5] * len(completions)
    return spy


def tripped():
    def tripped(prompts, completions, **kw):
        raise CircuitBreakerOpen("judge endpoint down: 8 of 8 calls failed")
    return tripped


def _trainer(tiny_model_dir, tmp_path, stack, steps=2):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rows = [row(i % 2, user=f"Say something {i}", row_id=f"r{i}") for i in range(8)]
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, max_steps=steps,
                      per_device_train_batch_size=4, num_generations=2, max_completion_length=6,
                      logging_steps=1, report_to="none", save_strategy="no", gradient_checkpointing=False,
                      seed=0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return GRPOTrainer(model=model, args=args, reward_funcs=[stack.reward_func], train_dataset=Dataset.from_list(rows),
                       processing_class=tok)


def test_trl_routes_records_and_exports(tiny_model_dir, tmp_path):
    SEEN.clear()
    cfg = make_cfg([{"name": "length_target", "ideal_length": 5, "normalize": True}],
                   [{"name": f"{__name__}:spy"}], reward={"score_save_threshold": 0.5})
    stack = stack_for(cfg, tmp_path)
    trainer = _trainer(tiny_model_dir, tmp_path, stack)
    trainer.train()
    stack.close()
    assert SEEN and all(set(ds) == {1} for ds, _, _ in SEEN)  # dataset 1's reward only sees dataset 1's rows
    assert all(has_ids for _, _, has_ids in SEEN) and {s for _, s, _ in SEEN} <= {0, 1}
    metrics = stack.pop_metrics()  # nothing popped by plain TRL: both steps accumulated
    assert {"rewards/ds0/length_target/mean", "rewards/ds1/spy/mean", "rewards/combined/mean"} <= set(metrics)
    assert metrics["rewards/ds1/spy/mean"] == 0.5
    records = list(read_jsonl(tmp_path / "high_scoring_examples.jsonl"))
    assert records and {r["step"] for r in records} <= {1, 2}
    assert all(r["reward"] >= 0.5 and r["conversations"][-1]["from"] == "gpt" for r in records)
    assert any(r["dataset_index"] == 1 for r in records)


def test_circuit_breaker_stops_training(tiny_model_dir, tmp_path):
    stack = stack_for(make_cfg([{"name": f"{__name__}:tripped"}], [{"name": "keyword", "keywords": ["a"]}]))
    trainer = _trainer(tiny_model_dir, tmp_path, stack, steps=1)
    with pytest.raises(CircuitBreakerOpen, match="judge endpoint down"):
        trainer.train()
