"""Backends: choice, GRPOConfig mapping, and the Unsloth/vLLM seam (exact arguments, checked on CPU)."""
from __future__ import annotations

import pytest

from pipelines.grpo.config import GRPOConfigFile
from pipelines.grpo.model import (DEFAULT_TARGET_MODULES, choose_backend, load_unsloth_model,
                                  unsloth_from_pretrained_kwargs, unsloth_peft_kwargs, vllm_sampling_kwargs)


def make_cfg(**tp) -> GRPOConfigFile:
    return GRPOConfigFile.model_validate({
        "seed": 7, "model": {"base_model_name": "Qwen/Qwen2.5-0.5B-Instruct", "lora_rank": 32, "lora_alpha": 64,
                             "max_seq_length": 1024, "gpu_memory_utilization": 0.5, "load_in_4bit": True},
        "training_parameters": {"max_completion_length": 200, "model_stop_sequences": ["</answer>"], **tp},
        "datasets": [{"path": "x.jsonl", "percentage": 1.0, "reward_funcs": [{"name": "keyword", "keywords": ["a"]}]}],
        "dataset_settings": {"total_rows": 10}})


def test_choose_backend():
    assert choose_backend("auto", has_cuda=True, has_unsloth=True) == "unsloth"
    assert choose_backend("auto", has_cuda=True, has_unsloth=False) == "transformers"
    assert choose_backend("auto", has_cuda=False, has_unsloth=True) == "transformers"
    assert choose_backend("transformers", has_cuda=True, has_unsloth=True) == "transformers"
    assert choose_backend("unsloth", has_cuda=False, has_unsloth=False) == "unsloth"


class RecordingFastLanguageModel:
    """Stands in for unsloth.FastLanguageModel, which cannot be imported without CUDA."""

    calls: list = []

    class Tok:
        chat_template = "orig"
        pad_token = None
        eos_token = "<eos>"
        padding_side = "right"

    @classmethod
    def from_pretrained(cls, **kwargs):
        cls.calls.append(("from_pretrained", kwargs))
        return "base-model", cls.Tok()

    @classmethod
    def get_peft_model(cls, model, **kwargs):
        cls.calls.append(("get_peft_model", model, kwargs))
        return "peft-model"


class RecordingSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def test_unsloth_seam_exact_arguments():
    cfg = make_cfg(chat_template="{{ messages }}", temperature=0.8)
    RecordingFastLanguageModel.calls = []
    loaded = load_unsloth_model(cfg, "/models/q", fast_language_model=RecordingFastLanguageModel,
                                sampling_params_cls=RecordingSamplingParams)
    (name, fp_kwargs), (name2, base, peft_kwargs) = RecordingFastLanguageModel.calls
    assert name == "from_pretrained" and fp_kwargs == {
        "model_name": "/models/q", "max_seq_length": 1024, "load_in_4bit": True, "fast_inference": True,
        "max_lora_rank": 32, "gpu_memory_utilization": 0.5, "dtype": None}
    assert name2 == "get_peft_model" and base == "base-model" and peft_kwargs == {
        "r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": DEFAULT_TARGET_MODULES, "bias": "none",
        "use_gradient_checkpointing": "unsloth", "random_state": 7}
    sp = loaded.grpo_overrides["vllm_sampling_params"]
    assert sp.kwargs == {"temperature": 0.8, "top_p": 1.0, "max_tokens": 200, "seed": 7, "stop": ["</answer>"],
                         "include_stop_str_in_output": True}
    assert loaded.model == "peft-model" and loaded.peft_config is None
    assert loaded.tokenizer.chat_template == "{{ messages }}" and loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token == "<eos>"


def test_seam_functions_follow_config():
    cfg = make_cfg(model_stop_sequences=[])
    assert "stop" not in vllm_sampling_kwargs(cfg)
    cfg.model.target_modules = ["q_proj"]
    cfg.model.dtype = "bf16"
    assert unsloth_peft_kwargs(cfg)["target_modules"] == ["q_proj"]
    import torch
    assert unsloth_from_pretrained_kwargs(cfg, "m")["dtype"] is torch.bfloat16


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


@pytest.mark.gpu
def test_unsloth_backend_runs_a_few_steps_on_gpu(tmp_path):  # pragma: no cover - needs CUDA + unsloth
    pytest.importorskip("unsloth")
    from pipelines.grpo.node import run  # noqa: F401 - a GPU box runs configs/countdown.yaml with max_steps=3
    from pipelines.runner import main

    assert main(["--super-config", "super_config.yaml", "--outputs", str(tmp_path), "--set",
                 "model.backend=unsloth", "--set", "model.base_model_name=Qwen/Qwen2.5-0.5B-Instruct", "--set",
                 "training_parameters.max_steps=3"]) == 0
