"""The guards of the vLLM paths, without vLLM: ``model.vllm`` (grpo) and ``generation.backend: vllm`` (rollout)
without CUDA are allowed when the installed vLLM is its CPU build (.venv-vllm) and refused otherwise, naming the
key; server-mode training without CUDA is refused with the reason (TRL's weight sync needs NCCL). The installed
packages and GPUs are the facts changed here (availability answers, the nvidia-smi listing); the end-to-end runs
are the tests marked ``vllm`` (tests/vllm/)."""
from __future__ import annotations

import pytest

from pipelines.common import availability
from pipelines.grpo import checks
from pipelines.grpo import model as gm
from pipelines.rollout import spec as rollout_spec
from tests.grpo.test_model_seams import QUICKSTART, config

FILE = "c.yaml"


@pytest.fixture
def installed(monkeypatch):
    """``installed(vllm=..., cpu_build=..., gpus=...)``: what this machine has, as the checks see it."""
    def set_facts(vllm: bool, cpu_build: bool = False, gpus: int = 0) -> None:
        monkeypatch.setattr(checks, "package_installed", lambda name: vllm if name == "vllm" else True)
        monkeypatch.setattr(availability, "is_available", lambda name: vllm if name == "vllm" else True)
        monkeypatch.setattr(availability, "vllm_is_cpu_build", lambda: vllm and cpu_build)
        monkeypatch.setattr(availability, "version_of", lambda name: "0.30.0+cpu" if cpu_build else "0.30.0")
        monkeypatch.setattr("pipelines.common.devices.visible_gpu_count", lambda: gpus)
    return set_facts


def vllm_cfg(mode: str = "colocate", **launch):
    return config(QUICKSTART, model={"vllm": {"mode": mode}}, launch=launch or {})


def messages(problems) -> list[str]:
    return [f"{p.key}: {p.message}" for p in problems]


def test_no_model_vllm_no_problem(installed):
    installed(vllm=False)
    assert checks.check_vllm(config(QUICKSTART), FILE) == []


def test_model_vllm_without_vllm_is_refused(installed):
    installed(vllm=False)
    [msg] = messages(checks.check_vllm(vllm_cfg(), FILE))
    assert msg.startswith("model.vllm: needs vLLM, which is not installed here") and "--vllm-cpu" in msg


def test_gpu_build_without_cuda_is_refused_naming_the_key(installed):
    installed(vllm=True, cpu_build=False, gpus=0)
    [msg] = messages(checks.check_vllm(vllm_cfg(), FILE))
    assert msg.startswith("model.vllm: no CUDA device is visible, and the installed vLLM (0.30.0) is a GPU build")
    installed(vllm=True, cpu_build=False, gpus=1)
    assert checks.check_vllm(vllm_cfg(), FILE) == []                              # on a GPU: fine
    [msg] = messages(checks.check_vllm(vllm_cfg(device="cpu"), FILE))             # GPU there, but not used
    assert msg.startswith("model.vllm: launch.device is cpu, and the installed vLLM (0.30.0) is a GPU build")


def test_cpu_build_allows_colocate_and_refuses_server_training(installed):
    installed(vllm=True, cpu_build=True, gpus=0)
    assert checks.check_vllm(vllm_cfg("colocate"), FILE) == []
    [msg] = messages(checks.check_vllm(vllm_cfg("server"), FILE))
    assert msg.startswith("model.vllm.mode: server-mode training needs CUDA and no CUDA device is visible")
    assert "NCCL weight-transfer engine" in msg and "use mode: colocate" in msg
    installed(vllm=True, cpu_build=True, gpus=2)
    assert checks.check_vllm(vllm_cfg("server"), FILE) == []


def test_the_rule_is_registered_and_unsloth_is_left_to_check_backend(installed):
    installed(vllm=False)
    assert checks.check_vllm in [rule.fn for rule in checks.RULES]
    cfg = config(QUICKSTART, model={"backend": "unsloth", "vllm": {"mode": "colocate"}})
    assert checks.check_vllm(cfg, FILE) == []
    assert messages(checks.check_backend(cfg, FILE))[0].startswith("model.vllm: the unsloth backend")


def test_loader_uses_trl_vllm_on_cpu_only_with_the_cpu_build(installed, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(gm, "cuda_available", lambda: False)
    cfg = config(QUICKSTART, model={"vllm": {"mode": "colocate"}},
                 training_parameters={"model_stop_sequences": ["</answer>"]})
    tok = gm.load_tokenizer(str(tiny_model_dir), None)
    installed(vllm=True, cpu_build=True)
    loaded = gm.load_transformers_model(cfg, str(tiny_model_dir), tok)
    assert loaded.generates_with_vllm and gm.generates_with_vllm(cfg)
    assert loaded.grpo_overrides == {
        "bf16": False, "fp16": False, "use_cpu": True, "use_vllm": True, "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.6,
        "generation_kwargs": {"stop": ["</answer>"], "include_stop_str_in_output": True}}
    installed(vllm=True, cpu_build=False)
    assert not gm.generates_with_vllm(cfg)
    with pytest.raises(RuntimeError, match="model.vllm needs a CUDA GPU, or vLLM's CPU build"):
        gm.load_transformers_model(cfg, str(tiny_model_dir), tok)


def _rollout_cfg(backend: str):
    from pipelines.rollout.config import RolloutConfigFile

    return RolloutConfigFile.model_validate({
        "model": {"base_model_name": "builtin:tiny-vllm"}, "generation": {"backend": backend},
        "datasets": [{"path": "inputs/quickstart.jsonl", "percentage": 1.0,
                      "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}],
        "dataset_settings": {"total_rows": 8}})


def test_rollout_vllm_backend_needs_cuda_or_the_cpu_build(installed):
    cfg = _rollout_cfg("vllm")
    installed(vllm=False)
    [msg] = messages(rollout_spec.check_backend(cfg, FILE))
    assert msg.startswith("generation.backend: vllm is not installed here") and "--vllm-cpu" in msg
    installed(vllm=True, cpu_build=False, gpus=0)
    [msg] = messages(rollout_spec.check_backend(cfg, FILE))
    assert msg.startswith("generation.backend: no CUDA device is visible, and the installed vLLM (0.30.0) is a GPU")
    installed(vllm=True, cpu_build=True, gpus=0)
    assert rollout_spec.check_backend(cfg, FILE) == []
    installed(vllm=True, cpu_build=False, gpus=1)
    assert rollout_spec.check_backend(cfg, FILE) == []
    installed(vllm=False)
    assert rollout_spec.check_backend(_rollout_cfg("transformers"), FILE) == []
