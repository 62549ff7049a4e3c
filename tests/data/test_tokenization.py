"""Prompt token counting: the torch-free folder path must count exactly what the transformers tokenizer does."""
from __future__ import annotations

import json
import shutil

import pytest

from pipelines.common import tiny_model
from pipelines.data.tokenization import make_token_counter
from pipelines.data.tokenization import local_tokenizer_folder

PROMPTS = [
    [{"role": "user", "content": "Tell me about the city."}],
    [{"role": "system", "content": "You are a cheerful assistant."}, {"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Joy: hello."}, {"role": "user", "content": "Describe the sea, please. 123"}],
    [{"role": "user", "content": "unicode: café naïve — 漢字 😀\n\nnew lines\ttabs"}],
]
OTHER_TEMPLATE = ("{% for m in messages %}{% generation %}[{{ m['role'] | upper }}] {{ m['content'] }}\n"
                  "{% endgeneration %}{% endfor %}{% if add_generation_prompt %}[ASSISTANT] {% endif %}")


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("template", [None, OTHER_TEMPLATE])
def test_folder_counter_matches_the_transformers_tokenizer(tiny_model_dir, hf_tokenizer, template):
    from_folder = make_token_counter(tiny_model_dir, template)
    from_object = make_token_counter(hf_tokenizer, template)
    for prompt in PROMPTS:
        assert from_folder.render(prompt) == from_object.render(prompt)
        assert from_folder(prompt) == from_object(prompt) > 5
        expected = len(hf_tokenizer(from_object.render(prompt), add_special_tokens=False)["input_ids"])
        assert from_object(prompt) == expected
    assert from_folder.render(PROMPTS[0]).endswith("[ASSISTANT] " if template else "<|im_start|>assistant\n")


def test_longer_prompt_counts_more(tiny_model_dir):
    count = make_token_counter(tiny_model_dir, None)
    assert count(PROMPTS[1]) > count(PROMPTS[1][-1:])


def test_folder_template_sources(tmp_path, tiny_model_dir):
    folder = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat template"):
        make_token_counter(folder, None)
    (folder / "chat_template.jinja").write_text(OTHER_TEMPLATE)
    assert make_token_counter(folder, None).render(PROMPTS[0]).startswith("[USER] Tell")


def test_missing_model_is_file_not_found_and_has_no_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        make_token_counter("some-org/not-downloaded-model", None)
    assert local_tokenizer_folder("some-org/not-downloaded-model") is None
    assert local_tokenizer_folder(str(tmp_path)) == tmp_path


def test_builtin_tiny_folder_is_found_only_once_built(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    assert local_tokenizer_folder("builtin:tiny") is None
    target = tmp_path / "outputs/.cache" / f"tiny-{tiny_model.TINY_VERSION}-seed{tiny_model.TINY_SEED}"
    shutil.copytree(tiny_model_dir, target)
    assert local_tokenizer_folder("builtin:tiny").resolve() == target.resolve()
    assert tiny_model.resolve_model_name("builtin:tiny") == str(target.relative_to(tmp_path))


@pytest.mark.parametrize("source", ["folder", "transformers"])
def test_byte_bound_never_undercounts_and_spares_tokenizing_prompts_that_fit(tiny_model_dir, source):
    """at_most() bounds the chat-template token count from above (so a prompt under the limit by that bound
    surely fits), and fit_budget then does not tokenize it."""
    from pipelines.data.prompts import fit_budget

    if source == "folder":
        counter = make_token_counter(tiny_model_dir)
    else:
        from transformers import AutoTokenizer
        counter = make_token_counter(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    texts = ["hello", "café naïve — ünïcödé ✓ 日本語のテキスト", "x" * 3000, " ".join(["word"] * 500), "\n\n\t  ",
             "<|im_start|>user\nnested<|im_end|>", "🙂" * 50, "ﬁ ㍿ Å"]
    for text in texts:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
        assert counter.at_most(messages) >= counter(messages), text
    calls = []

    class Spy:
        max_token_chars = counter.max_token_chars

        def at_most(self, messages):
            return counter.at_most(messages)

        def __call__(self, messages):
            calls.append(messages)
            return counter(messages)
    short = [{"role": "user", "content": "hello there"}]
    assert fit_budget(short, Spy(), 512) == short and calls == []
    long = [{"role": "user", "content": "one two three " * 60}]
    with pytest.raises(Exception, match="longer than max_prompt_length"):
        fit_budget(long, Spy(), 100)
    assert calls    # near or over the limit: counted exactly
