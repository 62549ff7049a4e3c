"""Tool-using rollouts: the rollout node's tool loop (transformers backend) and its --validate checks.

For a dataset with ``tools``, each of a prompt's K completions is a conversation: the model's turn is parsed
for tool calls (transformers' ``parse_response``, through TRL's helper that falls back to plain text), each call
runs (timed, as in training: :mod:`pipelines.rewards.tools`), its result is appended as a ``tool`` message, and
the model continues, up to ``generation.max_tool_calling_iterations`` rounds. The completion keeps every message
(``messages``); rewards score that message list, as they do in GRPO training, and the outputs keep it whole.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from pipelines.common import availability, devices
from pipelines.common.problems import Problem
from pipelines.rewards.forms import completion_text
from pipelines.rollout.config import RolloutConfigFile

log = logging.getLogger(__name__)


def uses_tools(cfg: RolloutConfigFile) -> bool:
    return any(not isinstance(ds, dict) and ds.tools for ds in cfg.datasets)


def check_tools(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    """Every tool resolves and has TRL's schema; the chat template renders tools; the backend is transformers."""
    from pipelines.rewards.tools import lookup_tool, schema_problem, tool_schema

    problems, schemas = [], []
    for i, ds in enumerate(cfg.datasets):
        for j, name in enumerate([] if isinstance(ds, dict) else ds.tools):
            try:
                fn = lookup_tool(name)
            except (KeyError, TypeError) as exc:
                problems.append(Problem(file, f"datasets[{i}].tools[{j}]", str(exc)))
                continue
            message = schema_problem(fn)
            if message:
                problems.append(Problem(file, f"datasets[{i}].tools[{j}]", message))
            else:
                schemas.append(tool_schema(fn))
    if not uses_tools(cfg):
        return problems
    g = cfg.generation
    picks_vllm = g.backend == "auto" and devices.visible_gpu_count() > 0 and availability.is_available("vllm")
    if g.backend == "vllm" or picks_vllm:
        problems.append(Problem(file, "generation.backend", "the rollout node runs tool calls on the transformers "
                                "backend only; set backend: transformers"))
    template, key = _template(cfg)
    if template is not None and schemas:
        from pipelines.data.tokenization import template_tool_problem

        message = template_tool_problem(template, schemas[0])
        if message:
            problems.append(Problem(file, key, message))
    return problems


def _template(cfg: RolloutConfigFile) -> tuple[Optional[str], str]:
    """(the chat template generation uses, its key), or (None, key) where no local copy can be read."""
    from pathlib import Path

    from pipelines.common.refs import is_reference
    from pipelines.common.tiny_model import BUILTIN_TINY, TINY_CHAT_TEMPLATE
    from pipelines.data.tokenization import folder_chat_template, local_tokenizer_folder

    if cfg.generation.chat_template:
        return cfg.generation.chat_template, "generation.chat_template"
    adapter = cfg.model.adapter
    if adapter and not is_reference(adapter) and Path(adapter).is_dir():
        template = folder_chat_template(Path(adapter))
        if template:
            return template, "model.adapter"
    name = cfg.model.base_model_name
    if name == BUILTIN_TINY:
        return TINY_CHAT_TEMPLATE, "model.base_model_name"
    folder = None if is_reference(name) else local_tokenizer_folder(name)
    return (folder_chat_template(folder) if folder else None), "model.base_model_name"


def prepare_parser(tokenizer: Any) -> None:
    """Give the tokenizer a response parser for tool calls: the tiny model's own, else TRL's for the templates
    it knows. Raises ValueError for a template neither knows."""
    from pipelines.common.tiny_model import TINY_CHAT_TEMPLATE, TINY_RESPONSE_TEMPLATE

    if getattr(tokenizer, "response_template", None) is not None or \
            getattr(tokenizer, "response_schema", None) is not None:
        return
    if tokenizer.chat_template == TINY_CHAT_TEMPLATE:
        tokenizer.response_template = TINY_RESPONSE_TEMPLATE
        return
    from trl.chat_template_utils import add_response_schema

    add_response_schema(tokenizer)   # ValueError: "Unrecognized chat template"


class ToolLoop:
    """Generates tool-using completions with a TransformersGenerator's model and tokenizer."""

    def __init__(self, cfg: RolloutConfigFile, generator: Any, metrics: Any = None):
        from pipelines.rewards.tools import ToolMetrics, lookup_tool, timed

        self.cfg, self.gen = cfg, generator
        self.metrics = metrics or ToolMetrics()
        self.tools: list[dict[str, Callable[..., Any]]] = []
        for ds in cfg.datasets:
            fns = [timed(lookup_tool(name), self.metrics) for name in ds.tools]
            self.tools.append({fn.__name__: fn for fn in fns})
        prepare_parser(generator.tokenizer)
        eos = generator.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        self._eos.add(generator.tokenizer.eos_token_id)

    def generate(self, rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """K completions per row; rows of datasets without tools go through the generator as usual."""
        out = []
        for row in rows:
            tools = self.tools[int(row.get("dataset_index") or 0)]
            if not tools:
                out.append(self.gen.generate([row["prompt"]])[0])
                continue
            firsts = self._turns(list(row["prompt"]), tools, self.cfg.generation.num_completions)
            out.append([self._conversation(list(row["prompt"]), tools, first) for first in firsts])
        return out

    def _turns(self, messages: list[dict[str, Any]], tools: dict[str, Callable[..., Any]], n: int
               ) -> list[tuple[dict[str, Any], int, str]]:
        """``n`` next assistant turns of ``messages``: (parsed message, tokens, finish reason) each."""
        import torch
        from trl.chat_template_utils import parse_response

        from pipelines.rollout.generation import generate_kwargs

        tok = self.gen.tokenizer
        text = tok.apply_chat_template(messages, tools=list(tools.values()), tokenize=False,
                                       add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(self.gen.device)
        kwargs = {**generate_kwargs(self.cfg, tok), "num_return_sequences": n}
        if not kwargs.get("do_sample"):
            kwargs["num_return_sequences"] = 1
        with torch.no_grad():
            seqs = self.gen.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1]:].tolist()
        seqs = seqs if len(seqs) == n else seqs * n
        prefix = enc["input_ids"][0].tolist()   # the parser finds the turn after the rendered prompt
        turns = []
        for ids in seqs:
            end = next((j for j, t in enumerate(ids) if t in self._eos), None)
            kept = ids if end is None else ids[:end + 1]
            reason = "stop" if end is not None or len(ids) < self.cfg.generation.max_new_tokens else "length"
            turns.append((parse_response(tok, kept, prefix=prefix), len(kept), reason))
        return turns

    def _conversation(self, prompt: list[dict[str, Any]], tools: dict[str, Callable[..., Any]],
                      first: tuple[dict[str, Any], int, str]) -> dict[str, Any]:
        """Run the calls of a first turn, and of each turn after it, up to max_tool_calling_iterations rounds."""
        from pipelines.common.stops import cut_text_at_stop

        message, tokens, reason = first
        messages = [message]
        for _ in range(self.cfg.generation.max_tool_calling_iterations):
            calls = message.get("tool_calls") or []
            if not calls:
                break
            messages += [self._run(call, tools) for call in calls]
            message, used, reason = self._turns(prompt + messages, tools, 1)[0]
            messages.append(message)
            tokens += used
        last = messages[-1]
        if not last.get("tool_calls") and isinstance(last.get("content"), str):
            last["content"] = cut_text_at_stop(last["content"], self.cfg.generation.stop_sequences)[0]
        return {"text": completion_text(messages), "finish_reason": reason, "num_tokens": tokens,
                "messages": messages}

    @staticmethod
    def _run(call: dict[str, Any], tools: dict[str, Callable[..., Any]]) -> dict[str, Any]:
        """One call as TRL runs it: the result as text, or ``{"error": ...}`` for an unknown tool or a failure."""
        function = call.get("function", call)
        name = function.get("name", "unknown")
        try:
            if name not in tools:
                raise ValueError(f"Tool {name} not found.")
            result: Any = tools[name](**(function.get("arguments") or {}))
        except Exception as exc:  # noqa: BLE001 - the model's call failed: the model is told, as in training
            result = {"error": str(exc)}
        return {"role": "tool", "name": name, "content": str(result)}
