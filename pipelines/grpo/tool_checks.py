"""--validate checks of a GRPO config's tools and environments (``datasets[i].tools``,
``datasets[i].environment``, ``training_parameters.max_tool_calling_iterations``), as Rules.

Each failure is a Problem naming its key. What is checked: every tool resolves (registered name or import path,
imported the way reward import paths are) and TRL can build its JSON schema (type hints and docstring, through
transformers' ``get_json_schema``, whose error is quoted); an environment imports, has ``reset``, and its
public methods have schemas too; one dataset never offers two tools of one name; the chat template renders the
tools block and a whole tool call (call and result); the backend runs tools. No torch is imported: the chat
template is rendered with jinja2 alone (``pipelines.data.tokenization``).
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

from pipelines.common import availability, devices
from pipelines.common.node import Rule
from pipelines.common.problems import Problem
from pipelines.grpo.config import GRPOConfigFile

def _datasets(cfg: GRPOConfigFile) -> list[tuple[int, Any]]:
    return [(i, ds) for i, ds in enumerate(cfg.datasets) if not isinstance(ds, dict)]


def _uses_tools(cfg: GRPOConfigFile) -> bool:
    return any(ds.tools or ds.environment for _, ds in _datasets(cfg))


def _tool_problems(i: int, ds: Any, file: str) -> list[Problem]:
    from pipelines.rewards.tools import environment_problems, lookup_tool, schema_problem

    problems, names = [], {}
    for j, name in enumerate(ds.tools):
        where = f"datasets[{i}].tools[{j}]"
        try:
            fn = lookup_tool(name)
        except (KeyError, TypeError) as exc:
            problems.append(Problem(file, where, str(exc)))
            continue
        message = schema_problem(fn)
        if message:
            problems.append(Problem(file, where, message))
            continue
        from pipelines.common.builtin_tools import tool_sandbox_problems

        problems += [Problem(file, where, m) for m in tool_sandbox_problems(fn)]   # python_exec: can bwrap start?
        if fn.__name__ in names:
            problems.append(Problem(file, where, f"a second tool named {fn.__name__!r} (also tools[{names[fn.__name__]}"
                                    "]); TRL finds tools by function name, so each must be unique per dataset"))
        names[fn.__name__] = j
    if ds.environment:
        factory, messages = environment_problems(ds.environment)
        problems += [Problem(file, f"datasets[{i}].environment", m) for m in messages]
        if factory is not None and not messages and inspect.isclass(factory):
            from pipelines.rewards.tools import environment_methods

            clash = sorted(set(names) & {n for n, _ in environment_methods(factory)})
            if clash:
                problems.append(Problem(file, f"datasets[{i}].environment", f"its method(s) {', '.join(clash)} have "
                                        "the names of tools of this dataset; TRL finds tools by name: rename one"))
    return problems


def check_tools(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """Every tool and environment of every dataset (see the module docstring)."""
    problems: list[Problem] = []
    for i, ds in _datasets(cfg):
        problems += _tool_problems(i, ds, file)
    return problems


def _template(cfg: GRPOConfigFile) -> tuple[Optional[str], str]:
    """(the chat template training will use, the key that sets it), or (None, key) when there is no local copy
    to read (a hub model not downloaded yet: TRL checks it when the run starts)."""
    from pipelines.common.tiny_model import BUILTIN_TINY, TINY_CHAT_TEMPLATE
    from pipelines.data.tokenization import folder_chat_template, local_tokenizer_folder

    tp = cfg.training_parameters
    if tp.chat_template:
        return tp.chat_template, "training_parameters.chat_template"
    name = cfg.model.base_model_name
    if name == BUILTIN_TINY:
        return TINY_CHAT_TEMPLATE, "model.base_model_name"
    folder = local_tokenizer_folder(name)
    return (folder_chat_template(folder) if folder else None), "model.base_model_name"


def check_tool_template(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """The chat template training uses can show the model its tools and a whole tool call."""
    import types

    from pipelines.rewards.tools import environment_methods, environment_problems, lookup_tool, tool_schema

    if not _uses_tools(cfg):
        return []
    schemas: list[dict] = []
    for _, ds in _datasets(cfg):
        for name in ds.tools:
            try:
                schemas.append(tool_schema(lookup_tool(name)))
            except Exception:  # noqa: BLE001 - reported by check_tools
                continue
        if ds.environment and not schemas:
            factory, messages = environment_problems(ds.environment)
            if factory is not None and not messages and inspect.isclass(factory):
                schemas += [tool_schema(types.MethodType(m, object())) for _, m in environment_methods(factory)]
    template, key = _template(cfg)
    if template is None or not schemas:
        return []
    from pipelines.data.tokenization import template_tool_problem

    message = template_tool_problem(template, schemas[0])
    return [Problem(file, key, message)] if message else []


def check_tool_backend(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """Tools run on the transformers backend (HF generate or vLLM through TRL); the Unsloth backend is refused:
    its patched GRPOTrainer is not tested with tools here."""
    if not _uses_tools(cfg):
        return []
    m = cfg.model
    picks_unsloth = m.backend == "auto" and cfg.launch.device != "cpu" and devices.visible_gpu_count() > 0 \
        and availability.is_available("unsloth")
    if m.backend == "unsloth" or picks_unsloth:
        how = "backend: unsloth" if m.backend == "unsloth" else "backend: auto (it picks unsloth on this machine)"
        return [Problem(file, "model.backend", f"{how} does not run tools or environments in this project (Unsloth "
                        "patches TRL's GRPOTrainer, and its tool loop is not tested here); set backend: transformers "
                        "(vLLM rollouts through model.vllm work with tools)")]
    if getattr(cfg, "hpo", None) is not None:
        return [Problem(file, "datasets", "the grpo_hpo node does not pass tools or environments to its members; "
                                          "use the grpo node for tool-using runs")]
    return []


def check_tool_iterations(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    if cfg.training_parameters.max_tool_calling_iterations is not None and not _uses_tools(cfg):
        return [Problem(file, "training_parameters.max_tool_calling_iterations", "set, but no dataset has `tools` "
                        "or an `environment`, so it would have no effect; remove it or give a dataset tools")]
    return []


TOOL_RULES: tuple[Rule, ...] = (
    Rule(check_tools, ("datasets",), partial_lists=True),
    Rule(check_tool_template, ("datasets", "model", "training_parameters"), partial_lists=True,
         reads=("training_parameters.chat_template", "model.base_model_name")),
    Rule(check_tool_backend, ("datasets", "model", "launch"), partial_lists=True),
    Rule(check_tool_iterations, ("datasets", "training_parameters"), partial_lists=True,
         reads=("training_parameters.max_tool_calling_iterations",)),
)
