"""Generation backends: transformers generate on the tiny model (base, base + adapter, merged), stop
sequences, and the vLLM seam (the exact arguments vLLM gets), checked on CPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.rollout.config import RolloutConfigFile
from pipelines.common.stops import cut_text_at_stop
from pipelines.rollout.generation import (TransformersGenerator, generate_kwargs, load_tokenizer,
                                          model_paths, render_prompts, resolve_backend, vllm_arguments)

PROMPTS = [[{"role": "user", "content": "Tell me about the city."}],
           [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Describe the sea."}]]
MARKER = "<|im_start|>system\nADAPTER TEMPLATE<|im_end|>\n"


def make_cfg(model: str, adapter: str | None = None, dtype: str = "auto", **generation) -> RolloutConfigFile:
    gen = {"backend": "transformers", "num_completions": 3, "max_new_tokens": 12, **generation}
    return RolloutConfigFile.model_validate({
        "seed": 3, "model": {"base_model_name": model, "adapter": adapter, "dtype": dtype}, "generation": gen,
        "datasets": [{"path": "inputs/quickstart.jsonl", "percentage": 1.0,
                      "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}],
        "dataset_settings": {"total_rows": 4}})


def generate(cfg: RolloutConfigFile, prompts=PROMPTS):
    tokenizer = load_tokenizer(model_paths(cfg)[2], cfg.generation.chat_template)
    return TransformersGenerator(cfg, tokenizer).generate(prompts)


@pytest.fixture(scope="module")
def adapter_and_merged(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights (so it changes outputs), saved with a tokenizer whose chat template
    differs from the base one, and the same adapter merged into a full model folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(root / "adapter")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = "{{ '" + MARKER.replace("\n", "\\n") + "' }}" + tok.chat_template
    tok.save_pretrained(root / "adapter")
    peft_model.merge_and_unload().save_pretrained(root / "merged")
    tok.save_pretrained(root / "merged")
    return root / "adapter", root / "merged"


def test_base_model_gives_k_completions_per_prompt(tiny_model_dir):
    out = generate(make_cfg(str(tiny_model_dir)))
    assert [len(g) for g in out] == [3, 3]
    for comp in (c for g in out for c in g):
        assert set(comp) == {"text", "finish_reason", "num_tokens"}
        assert comp["finish_reason"] in ("stop", "length") and 0 < comp["num_tokens"] <= 12
    assert len({c["text"] for c in out[0]}) > 1      # sampled, not greedy


def test_stop_sequences_cut_generation_like_the_uncut_text(tiny_model_dir):
    """Greedy, so the run without stops shows what the model writes; with stops each completion must be that
    text cut right after the first stop sequence."""
    free = generate(make_cfg(str(tiny_model_dir), temperature=0, max_new_tokens=24))
    texts = [g[0]["text"] for g in free]
    stops = sorted({t[len(t) // 3:len(t) // 3 + 2] for t in texts if len(t) > 6})
    assert stops, texts
    stopped = generate(make_cfg(str(tiny_model_dir), temperature=0, max_new_tokens=24, stop_sequences=stops))
    hits = 0
    for full, group in zip(texts, stopped):
        expected, hit = cut_text_at_stop(full, stops)
        hits += hit
        assert all(c["text"] == expected for c in group)
        if hit:
            assert all(c["finish_reason"] == "stop" for c in group)
            assert all(c["num_tokens"] < 24 for c in group)   # generation itself stopped early
    assert hits >= 1


def test_generate_kwargs_pass_stops_with_the_tokenizer(tiny_model_dir):
    cfg = make_cfg(str(tiny_model_dir), stop_sequences=["</answer>"], top_k=5)
    tok = load_tokenizer(str(tiny_model_dir), None)
    kw = generate_kwargs(cfg, tok)
    assert kw["stop_strings"] == ["</answer>"] and kw["tokenizer"] is tok
    assert (kw["do_sample"], kw["top_k"], kw["num_return_sequences"], kw["max_new_tokens"]) == (True, 5, 3, 12)
    assert "stop_strings" not in generate_kwargs(make_cfg(str(tiny_model_dir)), tok)


def test_adapter_tokenizer_and_chat_template_are_used(tiny_model_dir, adapter_and_merged):
    adapter, _ = adapter_and_merged
    base, found_adapter, tok_src = model_paths(make_cfg(str(tiny_model_dir), str(adapter)))
    assert (base, found_adapter, tok_src) == (str(tiny_model_dir), str(adapter), str(adapter))
    text = render_prompts(load_tokenizer(tok_src, None), PROMPTS[:1])[0]
    assert text.startswith(MARKER) and text.endswith("<|im_start|>assistant\n")
    override = render_prompts(load_tokenizer(tok_src, "{{ 'X' }}"), PROMPTS[:1])[0]
    assert override == "X"


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_adapter_changes_outputs_and_matches_the_merged_model(tiny_model_dir, adapter_and_merged, dtype):
    """base + adapter is merged in fp32 and then cast, as cli_utils/merge_lora.py does, so in bf16 (the GPU
    default) it is the very model a user gets from the merged folder: same weights bit for bit, same greedy text.
    Merging straight into bf16 weights rounds once more and generates other text."""
    import torch

    adapter, merged = adapter_and_merged
    template = "{{ messages[0]['content'] }}"
    tok = load_tokenizer(str(tiny_model_dir), template)
    gen_base = TransformersGenerator(make_cfg(str(tiny_model_dir), dtype=dtype, temperature=0), tok)
    gen_adapter = TransformersGenerator(make_cfg(str(tiny_model_dir), str(adapter), dtype=dtype, temperature=0), tok)
    gen_merged = TransformersGenerator(make_cfg(str(merged), dtype=dtype, temperature=0), tok)
    ours, theirs = gen_adapter.model.state_dict(), gen_merged.model.state_dict()
    assert next(iter(ours.values())).dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    assert set(ours) == set(theirs)
    assert [k for k in ours if not torch.equal(ours[k].cpu(), theirs[k].cpu())] == []
    buffers = [{n: b.dtype for n, b in gen.model.named_buffers()} for gen in (gen_adapter, gen_merged)]
    assert buffers[0] == buffers[1]     # RoPE's inv_freq stays fp32 in both (not in the state dict)
    texts = [[g[0]["text"] for g in gen.generate(PROMPTS)] for gen in (gen_base, gen_adapter, gen_merged)]
    assert texts[1] != texts[0]
    assert texts[1] == texts[2]


def test_adapter_folder_must_hold_an_adapter(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        model_paths(make_cfg(str(tiny_model_dir), str(tmp_path)))


def test_auto_backend_is_transformers_without_cuda():
    import torch
    if torch.cuda.is_available():
        pytest.skip("CPU-only expectation")
    assert resolve_backend("auto") == "transformers"
    assert resolve_backend("vllm") == "vllm"


def test_vllm_arguments_seam(tiny_model_dir, adapter_and_merged):
    adapter, _ = adapter_and_merged
    cfg = make_cfg(str(tiny_model_dir), str(adapter), stop_sequences=["</answer>"], temperature=0.7, top_p=0.9,
                   top_k=20, max_new_tokens=64)
    args = vllm_arguments(cfg, str(tiny_model_dir), str(adapter), str(adapter))
    # max_seq_length 2048 (the default) is capped to the tiny model's 512 positions (vLLM refuses more)
    assert args["llm"] == {"model": str(tiny_model_dir), "tokenizer": str(adapter), "seed": 3, "dtype": "auto",
                           "max_model_len": 512, "gpu_memory_utilization": 0.85, "enable_lora": True,
                           "max_lora_rank": 4}
    assert args["sampling"] == {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "stop": ["</answer>"],
                                "include_stop_str_in_output": True, "seed": 3, "top_k": 20}
    assert args["lora"] == {"lora_name": "adapter", "lora_int_id": 1, "lora_path": str(adapter)}
    assert json.loads((Path(adapter) / "adapter_config.json").read_text())["r"] == 4
    plain = vllm_arguments(make_cfg("some/model"), "some/model", None, "some/model")
    assert plain["lora"] is None and "max_lora_rank" not in plain["llm"] and plain["llm"]["enable_lora"] is False
    assert plain["sampling"]["stop"] is None and "top_k" not in plain["sampling"]


@pytest.mark.gpu
def test_vllm_backend_generates_on_gpu(tiny_model_dir, adapter_and_merged):
    pytest.importorskip("vllm")
    from pipelines.rollout.generation import VLLMGenerator
    adapter, _ = adapter_and_merged
    cfg = make_cfg(str(tiny_model_dir), str(adapter), stop_sequences=["a"], max_new_tokens=16)
    out = VLLMGenerator(cfg, load_tokenizer(str(adapter), None)).generate(PROMPTS)
    assert [len(g) for g in out] == [3, 3]
    assert all("a" not in c["text"] for g in out for c in g)


def test_vllm_max_model_len_is_capped_to_the_model_positions(tiny_model_dir, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    cfg = make_cfg(str(tiny_model_dir))
    assert vllm_arguments(cfg, str(tiny_model_dir), None, str(tiny_model_dir))["llm"]["max_model_len"] == 512
    assert "model.max_seq_length 2048 exceeds the 512 positions of" in caplog.text
    caplog.clear()
    small = RolloutConfigFile.model_validate({**cfg.model_dump(), "model": {**cfg.model.model_dump(),
                                                                             "max_seq_length": 256}})
    assert vllm_arguments(small, str(tiny_model_dir), None, str(tiny_model_dir))["llm"]["max_model_len"] == 256
    assert caplog.text == ""
    # a hub id (no local config.json): left to vLLM, which derives the length itself
    assert vllm_arguments(cfg, "Qwen/Qwen2.5-0.5B", None, "Qwen/Qwen2.5-0.5B")["llm"]["max_model_len"] == 2048


def test_vllm_greedy_asks_for_one_completion(tiny_model_dir):
    """vLLM refuses n > 1 with temperature 0; greedy completions are identical, so one is asked for (and copied
    K times by the generator, as the transformers backend does)."""
    greedy = vllm_arguments(make_cfg(str(tiny_model_dir), temperature=0.0), str(tiny_model_dir), None,
                            str(tiny_model_dir))
    assert greedy["sampling"]["n"] == 1 and greedy["sampling"]["temperature"] == 0.0
    sampled = vllm_arguments(make_cfg(str(tiny_model_dir), temperature=0.5), str(tiny_model_dir), None,
                             str(tiny_model_dir))
    assert sampled["sampling"]["n"] == 3
