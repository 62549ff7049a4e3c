"""GRPOConfig mapping: the seed keys, warmup_ratio, pass-through TRL fields and the node-owned keys."""
from __future__ import annotations

from pipelines.grpo.config import GRPOConfigFile


def make_cfg(**tp) -> GRPOConfigFile:
    return GRPOConfigFile.model_validate({
        "seed": 7, "model": {"base_model_name": "builtin:tiny", "max_seq_length": 1024},
        "training_parameters": {"max_completion_length": 200, **tp},
        "datasets": [{"path": "x.jsonl", "percentage": 1.0, "reward_funcs": [{"name": "keyword", "keywords": ["a"]}]}],
        "dataset_settings": {"total_rows": 10}})


def test_grpo_config_mapping(tmp_path):
    from pipelines.grpo.trainer import build_grpo_config

    cfg = make_cfg(learning_rate=3e-4, warmup_ratio=0.25, save_steps=5, max_steps=20, beta=0.04,
                   loss_type="grpo", num_generations=4, per_device_train_batch_size=4, optim="adamw_torch")
    cfg.run_name = "r"
    args = build_grpo_config(cfg, tmp_path, {"use_cpu": True, "bf16": False})
    assert args.output_dir == str(tmp_path) and args.run_name == "r"
    assert args.learning_rate == 3e-4 and args.save_steps == 5 and args.max_steps == 20
    assert args.get_warmup_steps(20) == 5
    assert args.beta == 0.04 and args.loss_type == "grpo" and args.num_generations == 4
    assert args.seed == 7 and args.bf16 is False and args.report_to == []
    assert args.max_completion_length == 200 and args.adam_beta2 == 0.99 and args.max_grad_norm == 0.1
