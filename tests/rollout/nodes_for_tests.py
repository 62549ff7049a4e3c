"""An import-path node standing in for training in the chaining tests: it writes a LoRA adapter."""
from __future__ import annotations

from pathlib import Path


def make_adapter(config: dict, ctx) -> dict:
    """Save a LoRA adapter (non-zero weights) for config['base'] plus its tokenizer in <run_dir>/final_adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(int(config.get("seed", 0)))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(config["base"]),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False))
    out = Path(ctx.run_dir) / "final_adapter"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config["base"]).save_pretrained(out)
    return {"final_adapter": out}


make_adapter.outputs = ("final_adapter",)
