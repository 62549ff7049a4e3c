"""Prompt token counting with the chat template used for training.

Two sources: a loaded transformers tokenizer (the training path; its own ``apply_chat_template``, exactly as
TRL calls it), or a model folder read with ``tokenizers`` and ``jinja2`` only, so ``--validate`` never imports
torch or transformers. The folder path renders templates the way transformers does (sandboxed jinja2,
``trim_blocks``/``lstrip_blocks``, ``raise_exception``, ``tojson``, ``strftime_now``), bounded in time and size
(:mod:`pipelines.common.jinja_render`: every rendering error is a ``ChatTemplateError``); transformers has no
torch-free entry point for this, hence the small re-implementation.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Union

from pipelines.common.jinja_render import ChatTemplateError, compile_template, probe_template

logger = logging.getLogger(__name__)

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class ChatTokenCounter:
    """Callable: messages -> prompt length in tokens (generation prompt included). ``render`` gives the text."""

    def __init__(self, render_fn, encode_fn, source: str, max_token_chars: Optional[int] = None,
                 normalizer: Any = None):
        self._render, self._encode, self.source = render_fn, encode_fn, source
        self.max_token_chars = max_token_chars   # longest vocabulary entry, for a cheap "surely too long" test
        self._normalizer = normalizer            # the tokenizer's own (``tokenizers``), for at_most()

    def render(self, messages: list[dict]) -> str:
        return self._render(messages)

    def at_most(self, messages: list[dict]) -> Optional[int]:
        """An upper bound on the prompt's token count without tokenizing it, or None when there is none: every
        token of a fast tokenizer covers at least one byte of the normalized text (byte-level BPE, and
        SentencePiece/WordPiece with byte fallback or an unknown token), so the bytes bound the tokens."""
        if self._normalizer is None:
            return None
        text = self._render(messages)
        normalizer = self._normalizer if self._normalizer is not True else None
        return len((normalizer.normalize_str(text) if normalizer else text).encode("utf-8"))

    def __call__(self, messages: list[dict]) -> int:
        return self._encode(messages)


def _shipped(template: str) -> bool:
    """A template this project writes (the named ones, builtin:tiny's): nothing to probe."""
    from pipelines.common.chat_templates import TEMPLATE_NAMES
    from pipelines.common.tiny_model import TINY_CHAT_TEMPLATE

    return template == TINY_CHAT_TEMPLATE or template in TEMPLATE_NAMES.values()


def _token_text(value: Any) -> Optional[str]:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def folder_chat_template(folder: Path) -> Optional[str]:
    """The chat template stored in a model folder (chat_template.jinja, or tokenizer_config.json's)."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    config = _tokenizer_config(folder)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{name, template}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _folder_counter(folder: Path, chat_template: Optional[str], template_key: str) -> ChatTokenCounter:
    from tokenizers import Tokenizer

    tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise FileNotFoundError(f"{folder} has no tokenizer.json (a fast tokenizer is needed to count prompt "
                                "tokens without loading transformers)")
    tokenizer = Tokenizer.from_file(str(tok_file))
    template_text = chat_template or folder_chat_template(folder)
    if not template_text:
        raise ValueError(f"{folder} has no chat template; set {template_key}")
    if not chat_template and not _shipped(template_text):   # a downloaded template is code: probed as a config's
        problem = probe_template(template_text)
        if problem:
            raise ChatTemplateError(f"the chat template of {folder} cannot be used: {problem}; set {template_key}")
    template = compile_template(template_text)
    config = _tokenizer_config(folder)
    specials = {k: _token_text(config.get(k)) for k in SPECIAL_TOKEN_KEYS}

    def render(messages: list[dict]) -> str:
        return template.render(messages=messages, add_generation_prompt=True, **specials)

    def count(messages: list[dict]) -> int:
        # transformers tokenizes a rendered chat with add_special_tokens=False: the template has them already
        return len(tokenizer.encode(render(messages), add_special_tokens=False).ids)

    return ChatTokenCounter(render, count, str(folder), _longest_token(tokenizer.get_vocab(with_added_tokens=True)),
                            tokenizer.normalizer or True)


def _longest_token(vocab: Any) -> Optional[int]:
    """Characters in the longest vocabulary entry (byte-level BPE writes one character per byte)."""
    return max((len(t) for t in vocab), default=0) or None


def _tokenizer_object_counter(tokenizer: Any, chat_template: Optional[str]) -> ChatTokenCounter:
    def render(messages: list[dict]) -> str:
        return tokenizer.apply_chat_template(messages, chat_template=chat_template, add_generation_prompt=True,
                                             tokenize=False)

    def count(messages: list[dict]) -> int:
        # the same call TRL's GRPOTrainer makes to tokenize prompts
        out = tokenizer.apply_chat_template(messages, chat_template=chat_template, add_generation_prompt=True,
                                            tokenize=True, return_dict=True)
        ids = out["input_ids"]
        return len(ids[0]) if ids and isinstance(ids[0], list) else len(ids)

    try:
        longest = _longest_token(tokenizer.get_vocab())
    except Exception:  # noqa: BLE001 - a tokenizer without a vocabulary listing: always tokenize
        longest = None
    backend = getattr(tokenizer, "backend_tokenizer", None)   # fast tokenizers only; a slow one always tokenizes
    normalizer = (backend.normalizer or True) if backend is not None else None
    return ChatTokenCounter(render, count, type(tokenizer).__name__, longest, normalizer)


def make_token_counter(tokenizer_or_path: Union[str, Path, Any], chat_template: Optional[str] = None,
                       template_key: str = "chat_template") -> ChatTokenCounter:
    """Count a prompt's tokens as training will: a transformers tokenizer, or a model folder (``builtin:tiny``
    resolves to its cached build). ``chat_template`` overrides the tokenizer's own; ``template_key`` names
    its config key in messages. Raises FileNotFoundError
    for a name that is not a folder on this machine."""
    if isinstance(tokenizer_or_path, (str, Path)):
        name = str(tokenizer_or_path)
        if name.startswith("builtin:"):
            from pipelines.common.tiny_model import resolve_model_name
            name = resolve_model_name(name)
        folder = Path(name)
        if not folder.is_dir():
            raise FileNotFoundError(f"{name} is not a model folder on this machine")
        return _folder_counter(folder, chat_template, template_key)
    return _tokenizer_object_counter(tokenizer_or_path, chat_template)


def local_tokenizer_folder(model_name: str) -> Optional[Path]:
    """A folder holding ``model_name``'s tokenizer without downloading or building anything: a local folder,
    the cached ``builtin:tiny`` build, or the Hugging Face cache; None when there is none."""
    if model_name.startswith("builtin:"):
        from pipelines.common.tiny_model import SHAPES, tiny_model_path
        if model_name not in SHAPES:
            return None
        # where resolve_model_name builds it; calling that would build the model (and import torch)
        folder = tiny_model_path(name=model_name)
        return folder if (folder / "tokenizer.json").is_file() else None
    path = Path(model_name).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(model_name, "tokenizer.json")
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: there is simply no local copy
        return None
    return Path(cached).parent if isinstance(cached, str) else None


_TOOL_RESULT = "tool_result_5f1c"   # stands in for a tool's result when a template is rendered


def template_tool_problem(template: str, schema: dict) -> Optional[str]:
    """Why ``template`` cannot run tools (renders no tools block, or loses a tool call or its result), or None."""
    from jinja2 import TemplateError

    name = schema["function"]["name"]
    call = {"type": "function", "function": {"name": name, "arguments": {"arg": "value_9d2e"}}}
    listed = [{"role": "user", "content": "hi"}]
    turn = listed + [{"role": "assistant", "content": "", "tool_calls": [call]},
                     {"role": "tool", "name": name, "content": _TOOL_RESULT}]
    try:
        compiled = compile_template(template)
        with_tools = compiled.render(messages=listed, tools=[schema], add_generation_prompt=True)
        round_trip = compiled.render(messages=turn, tools=[schema], add_generation_prompt=True)
    except (TemplateError, TypeError, ValueError) as exc:
        return f"the chat template fails to render tools: {exc}"
    if name not in with_tools:
        return (f"the chat template renders no tools block: the tool {name!r} does not appear when it is given "
                "tools=[...]; use a template with a tools section (the model's own, if it was trained for tools)")
    missing = [what for what, text in (("the tool call", "value_9d2e"), ("the tool result", _TOOL_RESULT))
               if text not in round_trip]
    if missing:
        return (f"the chat template drops {' and '.join(missing)} of a tool-calling turn (assistant tool_calls, "
                "then a `tool` message); TRL needs both rendered")
    return None
