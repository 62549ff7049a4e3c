"""The GPU-only backends through their seams (on CPU), and a few real GRPO steps on CUDA (@pytest.mark.gpu).

Unsloth and vLLM cannot be imported without CUDA (and must never be installed into the CPU environment, see
STACK.md), so ``load_unsloth_model`` is driven here with recording stand-ins passed through its
``fast_language_model`` / ``sampling_params_cls`` parameters, and the exact keyword arguments are asserted.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.common import availability
from pipelines.common.config_io import load_yaml
from pipelines.grpo import model as gm
from pipelines.grpo.config import GRPOConfigFile

REPO = Path(__file__).resolve().parents[2]
COUNTDOWN = REPO / "pipelines" / "grpo" / "configs" / "countdown.yaml"
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart.yaml"
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def config(path: Path = COUNTDOWN, **sections: dict) -> GRPOConfigFile:
    raw = load_yaml(path)
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if isinstance(values, dict) else values
    return GRPOConfigFile.model_validate(raw)


class FakeTokenizer:
    def __init__(self):
        self.chat_template = "{{ 'own template' }}"
        self.pad_token = None
        self.eos_token = "<|im_end|>"
        self.padding_side = "right"


class FakeFastLanguageModel:
    """Records the calls load_unsloth_model makes, in order, with their exact arguments."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.base, self.peft, self.tokenizer = object(), object(), FakeTokenizer()

    def from_pretrained(self, *args: Any, **kwargs: Any):
        self.calls.append(("from_pretrained", args, kwargs))
        return self.base, self.tokenizer

    def get_peft_model(self, *args: Any, **kwargs: Any):
        self.calls.append(("get_peft_model", args, kwargs))
        return self.peft


class FakeSamplingParams:
    instances: list["FakeSamplingParams"] = []

    def __init__(self, *args: Any, **kwargs: Any):
        assert not args, "SamplingParams must be built from keywords"
        self.kwargs = kwargs
        FakeSamplingParams.instances.append(self)


def expected_half_precision() -> tuple[bool, bool]:
    """(bf16, fp16) the Unsloth path asks for here: bf16 where the GPU supports it, else fp16 (it always trains
    in half precision; on a CPU, where the seam is tested, that is fp16)."""
    import torch

    bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bf16, not bf16


def load_fake(cfg: GRPOConfigFile, path: str = "/models/qwen"):
    flm = FakeFastLanguageModel()
    FakeSamplingParams.instances = []
    loaded = gm.load_unsloth_model(cfg, path, fast_language_model=flm, sampling_params_cls=FakeSamplingParams)
    return loaded, flm


def test_countdown_config_exact_unsloth_and_vllm_arguments():
    cfg = config(model={"fast_inference": True})   # explicit: `auto` would follow whether vllm is installed
    loaded, flm = load_fake(cfg)
    assert [c[0] for c in flm.calls] == ["from_pretrained", "get_peft_model"]
    (_, fp_args, fp_kwargs), (_, peft_args, peft_kwargs) = flm.calls
    assert fp_args == ()
    assert fp_kwargs == {"model_name": "/models/qwen", "max_seq_length": 1280, "load_in_4bit": False,
                         "fast_inference": True, "max_lora_rank": 32, "gpu_memory_utilization": 0.6, "dtype": None}
    assert peft_args == (flm.base,)
    assert peft_kwargs == {"r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": ALL_PROJECTIONS,
                           "bias": "none", "use_gradient_checkpointing": "unsloth", "random_state": 42}
    [params] = FakeSamplingParams.instances
    assert params.kwargs == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 1024, "seed": 42,
                             "stop": ["</answer>"], "include_stop_str_in_output": True}
    assert loaded.backend == "unsloth" and loaded.model is flm.peft and loaded.peft_config is None
    assert loaded.grpo_overrides["vllm_sampling_params"] is params
    assert (loaded.grpo_overrides["bf16"], loaded.grpo_overrides["fp16"]) == expected_half_precision()
    assert loaded.generates_with_vllm
    tok = loaded.tokenizer
    assert tok.chat_template == cfg.training_parameters.chat_template
    assert (tok.pad_token, tok.padding_side) == ("<|im_end|>", "left")


def test_unsloth_arguments_follow_the_config():
    import torch

    cfg = config(seed=7, model={"load_in_4bit": True, "dtype": "bf16", "lora_rank": 4, "lora_alpha": 8,
                                "fast_inference": True,
                                "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "max_seq_length": 700,
                                "gpu_memory_utilization": 0.35},
                 training_parameters={"model_stop_sequences": [], "chat_template": None, "temperature": 0.7,
                                      "top_p": 0.9, "max_completion_length": 300, "max_prompt_length": 200})
    loaded, flm = load_fake(cfg, "Qwen/Qwen2.5-0.5B-Instruct")
    fp_kwargs, peft_kwargs = flm.calls[0][2], flm.calls[1][2]
    assert fp_kwargs == {"model_name": "Qwen/Qwen2.5-0.5B-Instruct", "max_seq_length": 700, "load_in_4bit": True,
                         "fast_inference": True, "max_lora_rank": 4, "gpu_memory_utilization": 0.35,
                         "dtype": torch.bfloat16}
    assert peft_kwargs == {"r": 4, "lora_alpha": 8, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
                           "bias": "none", "use_gradient_checkpointing": "unsloth", "random_state": 7}
    # No stop sequences: no stop keys at all (vLLM's default), sampling values from training_parameters.
    assert FakeSamplingParams.instances[0].kwargs == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 300, "seed": 7}
    assert loaded.tokenizer.chat_template == "{{ 'own template' }}"   # no chat_template: the tokenizer's own


@pytest.mark.parametrize("requested, cuda, unsloth, expected", [
    ("auto", True, True, "unsloth"),
    ("auto", True, False, "transformers"),
    ("auto", False, True, "transformers"),
    ("auto", False, False, "transformers"),
    ("unsloth", False, False, "unsloth"),          # an explicit choice is kept (load_model then explains)
    ("transformers", True, True, "transformers"),
])
def test_choose_backend(requested, cuda, unsloth, expected):
    assert gm.choose_backend(requested, has_cuda=cuda, has_unsloth=unsloth) == expected


def test_choose_backend_detects_this_machine():
    import torch

    expected = "unsloth" if torch.cuda.is_available() and availability.is_available("unsloth") else "transformers"
    assert gm.choose_backend("auto") == expected


def test_unsloth_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(gm, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device is visible.*backend: transformers"):
        gm.load_model(config(), "/models/qwen", tokenizer=None)


def test_transformers_backend_on_cpu(tiny_model_dir):
    """Pinned to the CPU with launch.device: cpu, so the expectation holds on a GPU machine too."""
    cfg = config(QUICKSTART, launch={"device": "cpu"})
    tok = gm.load_tokenizer(str(tiny_model_dir), None)
    loaded = gm.load_model(cfg, str(tiny_model_dir), tok)
    assert loaded.backend == "transformers"
    assert loaded.grpo_overrides == {"bf16": False, "fp16": False, "use_cpu": True}
    assert loaded.model.device.type == "cpu" and not loaded.generates_with_vllm
    lc = loaded.peft_config
    assert (lc.r, lc.lora_alpha, set(lc.target_modules), lc.task_type) == (8, 16, set(ALL_PROJECTIONS), "CAUSAL_LM")


def test_transformers_backend_vllm_stop_strings_seam(tiny_model_dir, monkeypatch):
    """On a GPU with model.vllm, TRL hands generation_kwargs to vLLM's SamplingParams: the stops go there."""
    monkeypatch.setattr(gm, "cuda_available", lambda: True)
    cfg = config(COUNTDOWN, model={"backend": "transformers", "dtype": "fp32", "vllm": {"mode": "server",
                                                                                      "port": 8123}},
                 training_parameters={"generation_kwargs": {"min_p": 0.1}})
    tok = gm.load_tokenizer(str(tiny_model_dir), None)
    loaded = gm.load_transformers_model(cfg, str(tiny_model_dir), tok)
    assert loaded.grpo_overrides == {
        "bf16": False, "fp16": False, "use_vllm": True, "vllm_mode": "server", "vllm_gpu_memory_utilization": 0.6,
        "vllm_server_host": "127.0.0.1", "vllm_server_port": 8123,
        "generation_kwargs": {"min_p": 0.1, "stop": ["</answer>"], "include_stop_str_in_output": True}}


# --------------------------------------------------------------------------------------------- real GPU runs
def _run_quickstart(tmp_path: Path, *sets: str) -> Path:
    from pipelines.runner import main

    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": str(QUICKSTART)}]}))
    rc = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"),
               "--set", "training_parameters.max_steps=4", "--set", "training_parameters.save_steps=2",
               "--set", "run_name=gpu", *sets])
    assert rc == 0
    return tmp_path / "out" / "gpu"


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_transformers_backend_few_steps(tmp_path):
    run = _run_quickstart(tmp_path, "--set", "model.backend=transformers")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4
    assert (run / "final_adapter" / "adapter_model.safetensors").is_file()
    assert (run / "checkpoint-4").is_dir()


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_unsloth_backend_few_steps(tmp_path):
    pytest.importorskip("unsloth")
    pytest.importorskip("vllm")
    run = _run_quickstart(tmp_path, "--set", "model.backend=unsloth", "--set", "model.gpu_memory_utilization=0.3",
                          "--set", "model.max_seq_length=256")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4
    assert (run / "final_adapter" / "adapter_model.safetensors").is_file()


def test_tokenizer_without_chat_template_names_the_key_to_set(tiny_model_dir, tmp_path):
    import shutil

    from pipelines.grpo.model import load_tokenizer
    from pipelines.rollout.generation import load_tokenizer as rollout_tokenizer
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="has no chat template; set training_parameters.chat_template"):
        load_tokenizer(str(bare), None)
    with pytest.raises(ValueError, match="has no chat template; set generation.chat_template"):
        rollout_tokenizer(str(bare), None)
    tok = load_tokenizer(str(bare), "{{ messages[0]['content'] }}")   # the config's template fills the gap
    assert tok.padding_side == "left" and tok.pad_token is not None
