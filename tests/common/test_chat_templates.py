"""chat_template values: known names map to real templates (rendered by the real tokenizer), anything else that is
not Jinja is exit 2 with the key path, and a Jinja syntax error is exit 2, not a traceback (issue 16, F15)."""
from __future__ import annotations

import pytest

from pipelines.common.chat_templates import ALIASES, TEMPLATE_NAMES, resolve_chat_template
from pipelines.common.schema import validate_model
from pipelines.grpo.config import TrainingParameters
from pipelines.rollout.config import GenerationSection

MESSAGES = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}]
# What each format must show around the last user turn and the generation prompt.
EXPECTED = {"chatml": ("<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n", "<|im_start|>system"),
            "llama-3": ("<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n", "system<|end_header_id|>"),
            "mistral": ("[INST] How are you? [/INST]", "[INST] Be kind.\n\nHi there [/INST]"),
            "gemma": ("<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n",
                      "<start_of_turn>user\nBe kind.\n\nHi there"),
            "zephyr": ("How are you?<|im_end|>\n<|assistant|>\n", "<|system|>\nBe kind.<|im_end|>"),  # tiny's eos
            "phi-3": ("<|user|>\nHow are you?<|end|>\n<|assistant|>\n", "<|system|>\nBe kind.<|end|>"),
            "alpaca": ("### Instruction:\nHow are you?\n\n### Response:\n", "Be kind.\n\n### Instruction:")}


@pytest.mark.parametrize("name", sorted(TEMPLATE_NAMES))
def test_named_template_renders_with_the_real_tokenizer(tiny_model_dir, name):
    from pipelines.common.hf import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), resolve_chat_template(name.upper()), "chat_template")
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    tail, system = EXPECTED[name]
    assert text.endswith(tail) and system in text and "Hello!" in text
    assert name not in text.lower()                     # never the name as literal text


def test_aliases_and_jinja_pass_through():
    assert all(resolve_chat_template(alias) == TEMPLATE_NAMES[target] for alias, target in ALIASES.items())
    jinja = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert resolve_chat_template(jinja) == jinja and resolve_chat_template(None) is None
    generation = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    assert resolve_chat_template(generation) == generation     # transformers' own block tag


@pytest.mark.parametrize("model, key", [(TrainingParameters, "chat_template"), (GenerationSection, "chat_template")])
@pytest.mark.parametrize("value, needle", [("chatmlx", "did you mean 'chatml'"),
                                           ("You are a helpful assistant", "known names: alpaca, chatml"),
                                           ("{% for m in messages %}{{ m }", "does not parse (line 1")])
def test_bad_values_are_config_problems(model, key, value, needle):
    cfg, problems = validate_model(model, {key: value}, "c.yaml")
    assert cfg is None and len(problems) == 1
    assert problems[0].key == key and needle in problems[0].message


def test_seed_config_name_resolves_in_the_grpo_schema():
    tp = TrainingParameters(chat_template="chatml")
    assert tp.chat_template == TEMPLATE_NAMES["chatml"]
