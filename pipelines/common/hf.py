"""Hugging Face helpers every model-loading node shares: whether CUDA is usable, the torch dtype a config
asks for, and the tokenizer with the chat template used everywhere. torch and transformers are imported inside
the functions, so importing this module costs nothing."""
from __future__ import annotations

from typing import Any, Optional


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def torch_dtype(name: str, on_gpu: bool):
    """Config dtype -> torch dtype. ``auto``: bf16 on a GPU that supports it, else fp32 (CPU: always fp32)."""
    import torch

    if name == "auto":
        if on_gpu and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_tokenizer(model_path: str, chat_template: Optional[str], template_key: str) -> Any:
    """The tokenizer with the config's chat template (if any), a pad token and left padding.
    ``template_key`` names the config key to set when the tokenizer has no template of its own."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    if chat_template:
        tok.chat_template = chat_template
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"{model_path} has no chat template; set {template_key} to a Jinja template (e.g. ChatML)")
    if tok.pad_token is None:
        # Reusing EOS as pad is the usual choice for causal LMs without a pad token.
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok
