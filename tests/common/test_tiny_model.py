"""The builtin tiny model: reloads, round-trips text, renders ChatML, is deterministic and cached safely."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines.common.tiny_model import BUILTIN_TINY, TINY_CHAT_TEMPLATE, build_tiny_model, resolve_model_name


def test_save_and_reload(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.tie_word_embeddings
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert tok.padding_side == "left"
    assert tok.eos_token == "<|im_end|>"
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.config.vocab_size == len(tok)
    ids = tok(["Joy: hi", "Describe the sea please"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == len(tok)
    # Large init: the logits are far from uniform, which is what lets GRPO learn on a CPU.
    assert logits.std().item() > 0.5


@pytest.mark.parametrize("text", ["Joy: the city is lovely.", "  Héllo, wörld! 123\n\ttabs ✓ 日本",
                                  "<think>2+2</think><answer>4</answer>"])
def test_tokenizer_round_trip(tiny_model_dir, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_special_tokens_are_single_ids(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    ids = tok("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"
    # Common quickstart words are whole tokens, so a short completion can say something.
    assert len(tok("Joy", add_special_tokens=False)["input_ids"]) == 1


def test_chat_template_renders_system_user_and_generation_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hello?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHello?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    no_prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert not no_prompt.endswith("assistant\n")
    assert tok.chat_template == TINY_CHAT_TEMPLATE


def test_deterministic_for_a_seed(tmp_path, tiny_model_dir):
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (Path(tiny_model_dir) / name).read_bytes(), name
    assert (other / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()


def test_resolve_model_name_builds_once_and_is_race_safe(tmp_path):
    assert resolve_model_name("Qwen/Qwen2.5-0.5B", cache_root=tmp_path) == "Qwen/Qwen2.5-0.5B"
    results: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            results.append(resolve_model_name(BUILTIN_TINY, cache_root=tmp_path))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    built = Path(results[0])
    assert (built / "config.json").exists() and (built / "model.safetensors").exists()
    # Only the finished model is left in the cache: no temp build folders.
    assert [p.name for p in tmp_path.iterdir()] == [built.name]
    mtime = (built / "config.json").stat().st_mtime_ns
    assert resolve_model_name(BUILTIN_TINY, cache_root=tmp_path) == str(built)
    assert (built / "config.json").stat().st_mtime_ns == mtime


def test_cli_builds_a_model(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, "-m", "cli_utils.make_tiny_model", "--help"], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--output" in proc.stdout
    from cli_utils.make_tiny_model import main

    assert main(["--output", str(tmp_path / "cli"), "--seed", "3"]) == 0
    assert (tmp_path / "cli" / "config.json").exists()


def test_template_renders_plain_chats_as_chatml_and_tools_in_qwen_format(tiny_model_dir):
    """Without tools the template is plain ChatML (the quickstart renders as before); with tools it lists them,
    renders a tool call and its result, passes TRL's tool-calling check, and its parser reads a call back."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import is_chat_template_prefix_preserving, parse_response, supports_tool_calling

    from pipelines.common.chat_templates import TEMPLATE_NAMES
    from pipelines.common.tiny_model import TINY_RESPONSE_TEMPLATE
    from pipelines.rewards.tools import calculator

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"}, {"role": "user", "content": "more"}]
    plain = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert plain == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True,
                                            chat_template=TEMPLATE_NAMES["chatml"])
    with_tools = tok.apply_chat_template(chat, tools=[calculator], tokenize=False, add_generation_prompt=True)
    assert with_tools.startswith("<|im_start|>system\nS\n\n# Tools\n<tools>\ncalculator(expression): Evaluate")
    assert supports_tool_calling(tok) and is_chat_template_prefix_preserving(tok)
    tok.response_template = TINY_RESPONSE_TEMPLATE
    prompt = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=False)
    text = 'ok\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+2"}}\n</tool_call><|im_end|>'
    parsed = parse_response(tok, tok(text, add_special_tokens=False)["input_ids"], prefix=prompt)
    assert parsed["content"] == "ok"
    assert parsed["tool_calls"] == [{"type": "function",
                                     "function": {"name": "calculator", "arguments": {"expression": "1+2"}}}]


def test_tiny_vllm_is_the_tiny_model_with_head_size_64(tmp_path, tiny_model_dir):
    """builtin:tiny-vllm: the same vocabulary, tokenizer and chat template, head size 64 (vLLM's CPU attention
    refuses 16); builtin:tiny keeps its shape. Both resolve to their own cache folders."""
    import json

    from pipelines.common.tiny_model import BUILTIN_TINY_VLLM, tiny_model_path

    folder = Path(resolve_model_name(BUILTIN_TINY_VLLM, cache_root=tmp_path))
    assert folder == tiny_model_path(tmp_path, BUILTIN_TINY_VLLM) != tiny_model_path(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    tiny = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]) \
        == (128, 2, 1, 256)
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    assert tiny["hidden_size"] // tiny["num_attention_heads"] == 16   # the quickstart's model is unchanged
    for key in ("vocab_size", "num_hidden_layers", "max_position_embeddings", "eos_token_id", "pad_token_id"):
        assert cfg[key] == tiny[key], key
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (folder / name).read_bytes() == (Path(tiny_model_dir) / name).read_bytes(), name
    assert resolve_model_name("builtin:unknown", cache_root=tmp_path) == "builtin:unknown"


def test_make_tiny_model_builds_either_builtin(tmp_path):
    import json

    from cli_utils.make_tiny_model import main

    assert main(["--output", str(tmp_path / "v"), "--name", "builtin:tiny-vllm"]) == 0
    assert json.loads((tmp_path / "v" / "config.json").read_text())["hidden_size"] == 128
    assert main(["--output", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "config.json").read_text())["hidden_size"] == 64
