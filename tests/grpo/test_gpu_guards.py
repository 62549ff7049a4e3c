"""What the GPU box needs, refused at --validate where it cannot work: processes vs visible GPUs (the launch
guard), ``model.fast_inference`` without vLLM, ``model.load_in_4bit`` without CUDA or bitsandbytes; and the
Unsloth-without-vLLM and bitsandbytes seams (the exact arguments), all checked on a CPU.

The GPU count comes from ``nvidia-smi -L`` (validation imports no torch); the tests put a stand-in
``nvidia-smi`` script first on PATH, so the real counting code runs against a one- or two-GPU listing.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from pipelines.grpo import model as gm
from pipelines.common.devices import visible_gpu_count
from pipelines.launch import build_command
from pipelines.runner import main
from tests.grpo.test_model_seams import FakeSamplingParams, config, load_fake

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart.yaml"


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """``fake_gpus(n)``: an ``nvidia-smi`` on PATH that lists n H100s (n=0: no driver at all)."""
    def install(n: int) -> None:
        bin_dir = tmp_path / f"bin{n}"
        bin_dir.mkdir()
        if n:
            lines = "\n".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})" for i in range(n))
            script = bin_dir / "nvidia-smi"
            script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
            script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


def validate(tmp_path: Path, capsys, *args: str) -> tuple[int, str]:
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": str(QUICKSTART)}]}))
    rc = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--validate", *args])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


# ------------------------------------------------------------------------------------------- launch guard
def test_gpu_count_reads_nvidia_smi_and_cuda_visible_devices(fake_gpus, monkeypatch):
    fake_gpus(2)
    assert visible_gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert visible_gpu_count() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpu_count() == 0
    fake_gpus(0)
    assert visible_gpu_count() == 0


def test_more_processes_than_gpus_is_refused_at_validate(fake_gpus, tmp_path, capsys):
    fake_gpus(1)
    rc, text = validate(tmp_path, capsys, "--num-processes", "2")
    assert rc == 2
    assert "launch.num_processes: 2 processes asked for (launch.num_processes or --num-processes) but 1 GPU is " \
           "visible" in text
    assert "launch.device: cpu" in text
    rc, text = validate(tmp_path, capsys, "--set", "launch.num_processes=3", "--set", "run_name=b")
    assert rc == 2 and "3 processes asked for" in text


def test_processes_within_the_gpus_or_on_cpu_are_accepted(fake_gpus, tmp_path, capsys):
    fake_gpus(2)
    assert validate(tmp_path, capsys, "--num-processes", "2")[0] == 0
    fake_gpus(1)
    # Two CPU processes on a one-GPU box, asked for explicitly.
    assert validate(tmp_path, capsys, "--num-processes", "2", "--set", "launch.device=cpu")[0] == 0
    fake_gpus(0)   # a CPU machine: CPU processes, as before
    assert validate(tmp_path, capsys, "--num-processes", "2")[0] == 0


def test_cpu_device_launches_torchrun_with_the_gpus_hidden(fake_gpus, monkeypatch):
    from pipelines.launch import launch_env

    fake_gpus(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert "accelerate.commands.launch" in " ".join(build_command({}, 1, []))
    assert launch_env({})["CUDA_VISIBLE_DEVICES"] == "0"
    cpu = {"launch": {"device": "cpu"}}
    assert "torch.distributed.run --nproc_per_node 2" in " ".join(build_command(cpu, 2, []))
    assert launch_env(cpu)["CUDA_VISIBLE_DEVICES"] == ""


def test_cpu_device_pins_the_transformers_backend_to_the_cpu(monkeypatch):
    monkeypatch.setattr(gm, "cuda_available", lambda: True)   # as on a GPU machine
    assert gm.use_gpu(config(QUICKSTART))
    assert not gm.use_gpu(config(QUICKSTART, launch={"device": "cpu"}))


# ------------------------------------------------------------------------------------- fast_inference
def test_fast_inference_true_without_vllm_is_refused(tmp_path, capsys, monkeypatch):
    from pipelines.grpo import checks

    monkeypatch.setattr(checks, "package_installed", lambda name: name != "vllm")
    rc, text = validate(tmp_path, capsys, "--set", "model.backend=unsloth", "--set", "model.fast_inference=true")
    assert rc == 2 and "model.fast_inference: true needs vLLM, which is not installed" in text
    rc, _ = validate(tmp_path, capsys, "--set", "model.backend=unsloth", "--set", "model.fast_inference=false",
                     "--set", "run_name=b")
    assert rc == 0
    rc, text = validate(tmp_path, capsys, "--set", "model.fast_inference=false", "--set", "run_name=c")
    assert rc == 2 and "model.fast_inference: applies to the unsloth backend only" in text   # quickstart: transformers


def test_fast_inference_auto_follows_vllm():
    cfg = config()
    assert gm.resolve_fast_inference(cfg, has_vllm=True) is True
    assert gm.resolve_fast_inference(cfg, has_vllm=False) is False
    assert gm.resolve_fast_inference(config(model={"fast_inference": False}), has_vllm=True) is False


def test_unsloth_without_vllm_arguments_and_compile_notice(caplog):
    caplog.set_level(logging.INFO)
    cfg = config(model={"fast_inference": False})
    loaded, flm = load_fake(cfg)
    fp_kwargs = flm.calls[0][2]
    # No vLLM: its arguments are not passed (they would do nothing), no SamplingParams is built.
    assert fp_kwargs == {"model_name": "/models/qwen", "max_seq_length": 1280, "load_in_4bit": False,
                         "fast_inference": False, "dtype": None}
    assert FakeSamplingParams.instances == [] and "vllm_sampling_params" not in loaded.grpo_overrides
    # ... so the node's trainer applies the stop strings, as on the transformers backend.
    assert not loaded.generates_with_vllm
    assert "compiles its kernels during the first training step" in caplog.text
    assert "HF generate (fast_inference false: no vLLM)" in caplog.text


def test_vllm_sampling_takes_the_same_sampling_keys_as_hf_generation():
    cfg = config(training_parameters={"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05,
                                      "repetition_penalty": 1.1})
    kwargs = gm.vllm_sampling_kwargs(cfg)
    assert {k: kwargs[k] for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")} == {
        "temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1}
    # The same values reach TRL's GRPOConfig, which HF generation reads (the unsloth-without-vLLM path).
    from pipelines.grpo.trainer import grpo_config_kwargs

    grpo = grpo_config_kwargs(cfg, Path("/tmp/x"), {})
    assert (grpo["temperature"], grpo["top_p"], grpo["top_k"], grpo["min_p"], grpo["repetition_penalty"]) == (
        0.8, 0.95, 40, 0.05, 1.1)


# ---------------------------------------------------------------------------------------------- 4-bit
def test_4bit_without_a_gpu_is_refused(fake_gpus, tmp_path, capsys):
    fake_gpus(0)
    rc, text = validate(tmp_path, capsys, "--set", "model.load_in_4bit=true")
    assert rc == 2 and "model.load_in_4bit: 4-bit loading (bitsandbytes) needs a CUDA GPU and none is visible" in text


def test_4bit_on_the_transformers_backend_needs_bitsandbytes(fake_gpus, tmp_path, capsys, monkeypatch):
    from pipelines.grpo import checks

    fake_gpus(1)
    monkeypatch.setattr(checks, "package_installed", lambda name: False)
    rc, text = validate(tmp_path, capsys, "--set", "model.load_in_4bit=true")
    assert rc == 2 and "through bitsandbytes, which is not installed" in text
    monkeypatch.setattr(checks, "package_installed", lambda name: name == "bitsandbytes")
    assert validate(tmp_path, capsys, "--set", "model.load_in_4bit=true", "--set", "run_name=b")[0] == 0
    rc, text = validate(tmp_path, capsys, "--set", "model.load_in_4bit=true", "--set", "launch.device=cpu",
                        "--set", "run_name=c")
    assert rc == 2 and "launch.device is cpu" in text


class RecordingBnbConfig:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def test_4bit_transformers_load_goes_through_bitsandbytes_config(monkeypatch):
    import torch

    cfg = config(QUICKSTART, model={"load_in_4bit": True, "dtype": "bf16"})
    monkeypatch.setenv("LOCAL_RANK", "1")
    kwargs = gm.transformers_load_kwargs(cfg, on_gpu=True, bnb_config_cls=RecordingBnbConfig)
    assert kwargs["dtype"] is torch.bfloat16 and kwargs["device_map"] == {"": 1}
    assert kwargs["quantization_config"].kwargs == {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                                    "bnb_4bit_use_double_quant": True,
                                                    "bnb_4bit_compute_dtype": torch.bfloat16}
    assert gm.transformers_load_kwargs(config(QUICKSTART), on_gpu=False) == {"dtype": torch.float32}
    with pytest.raises(RuntimeError, match="load_in_4bit needs a CUDA GPU"):
        gm.transformers_load_kwargs(cfg, on_gpu=False, bnb_config_cls=RecordingBnbConfig)
