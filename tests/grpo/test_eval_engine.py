"""Held-out evaluation generates with the training engine when the backend has one (Unsloth's vLLM with the live
LoRA, TRL's vLLM), HF generate otherwise: the selection, and the exact arguments each engine gets, on a CPU.

vLLM cannot run here, so the engines are recording stand-ins passed through the evaluator's seams
(``sampling_params_cls``, a model with ``fast_generate``/``load_lora``, ``engine_generate``); the tokenizer, the
chat template, the cut at EOS and stop strings and the scoring are the real ones.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pipelines.grpo.evaluation import HF, TRL_VLLM, UNSLOTH_LORA_NAME, UNSLOTH_VLLM, Evaluator, eval_engine

ROWS = [{"prompt": [{"role": "user", "content": "Say hi."}]}, {"prompt": [{"role": "user", "content": "Bye?"}]}]


def test_engine_follows_the_training_backend():
    assert eval_engine("transformers", generates_with_vllm=False) == HF
    assert eval_engine("unsloth", generates_with_vllm=False) == HF            # fast_inference false
    assert eval_engine("unsloth", generates_with_vllm=True) == UNSLOTH_VLLM
    assert eval_engine("transformers", generates_with_vllm=True) == TRL_VLLM  # model.vllm
    # several processes: evaluation runs on the main one only, TRL's vLLM server mode would wait for the others
    assert eval_engine("transformers", generates_with_vllm=True, world_size=2) == HF


class RecordingSamplingParams:
    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs


class FakeUnslothModel:
    """Unsloth's PEFT model with fast_inference: fast_generate (vLLM) and load_lora (the live adapter)."""

    def __init__(self, outputs: list[list[list[int]]]):
        self.outputs, self.calls = outputs, []

    def load_lora(self, name: str, load_tensors: bool = False):
        self.calls.append(("load_lora", name, load_tensors))
        return "lora-request"

    def fast_generate(self, texts, sampling_params=None, use_tqdm=True, lora_request=None):
        self.calls.append(("fast_generate", list(texts), sampling_params.kwargs, use_tqdm, lora_request))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids) for ids in group]) for group in self.outputs]


def evaluator(tok, engine: str, **kw) -> Evaluator:
    return Evaluator(ROWS, stack=None, tokenizer=tok, num_generations=2, max_new_tokens=12, max_reward=1.0,
                     stops=["</a>"], temperature=0.7, top_p=0.9, seed=5, engine=engine, **kw)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from pipelines.grpo.model import load_tokenizer

    return load_tokenizer(str(tiny_model_dir), None)


def test_unsloth_engine_arguments_and_completions(tok):
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    outputs = [[ids("hello</a> more"), ids("hi") + [tok.eos_token_id] + ids("junk")], [ids("bye"), ids("ciao")]]
    model = FakeUnslothModel(outputs)
    ev = evaluator(tok, UNSLOTH_VLLM, sampling_params_cls=RecordingSamplingParams)
    texts, lengths = ev.generate(model, ROWS, step=3)
    rendered = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in ROWS]
    assert model.calls[0] == ("load_lora", UNSLOTH_LORA_NAME, True)
    assert model.calls[1] == ("fast_generate", rendered, {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 12,
                                                         "seed": 8, "stop": ["</a>"],
                                                         "include_stop_str_in_output": True}, False, "lora-request")
    assert texts == ["hello</a>", "hi", "bye", "ciao"]          # cut after the stop string and at EOS, as on HF
    assert lengths[1] == len(ids("hi"))


def test_trl_engine_gets_the_chat_templated_prompt_ids(tok):
    calls = []

    def engine_generate(prompt_ids, n):
        calls.append((prompt_ids, n))
        return [tok(f"c{i}", add_special_tokens=False)["input_ids"] for i in range(len(prompt_ids) * n)]

    ev = evaluator(tok, TRL_VLLM)
    ev.engine_generate = engine_generate
    texts, _ = ev.generate(None, ROWS)
    expected = [tok(tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False)["input_ids"] for r in ROWS]
    assert calls == [(expected, 2)]
    assert texts == ["c0", "c1", "c2", "c3"]


def test_hf_engine_stays_the_fallback(tok, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    texts, lengths = evaluator(tok, HF).generate(model, ROWS)
    assert len(texts) == 4 and all(0 <= n <= 12 for n in lengths)
