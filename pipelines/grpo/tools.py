"""Tools and environments of a GRPO run, wired into TRL's GRPOTrainer (``tools=``, ``environment_factory=``).

Each dataset names its own ``tools`` and ``environment`` (``datasets[i]``, :class:`GRPODatasetEntry`). When
every dataset has the same ones they go to TRL as they are: ``tools=[...]`` and a single environment factory.
When datasets differ, they use TRL's dict form: one named environment per dataset (its label), each row
carrying an ``environment`` column with its dataset's name, and each dataset's tools bound to its environment
instance as methods, so a row's prompt lists, and its rollout may call, only its own dataset's tools (a
dataset without any gets an empty environment). Every tool and environment method is wrapped to time and
count its calls (:class:`~pipelines.rewards.tools.ToolMetrics`), logged as ``tools/...`` in metrics.jsonl.
"""
from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from pipelines.grpo.config import GRPOConfigFile
from pipelines.rewards.tools import ToolMetrics, bind_method, environment_methods, lookup_tool, timed

log = logging.getLogger(__name__)

ENVIRONMENT_COLUMN = "environment"   # TRL's routing field in its dict form


def uses_tools(cfg: GRPOConfigFile) -> bool:
    """Whether any dataset gives the model tools or an environment."""
    return any(not isinstance(ds, dict) and (ds.tools or ds.environment) for ds in cfg.datasets)


class ToolsOnly:
    """The environment of a dataset that has tools but no environment of its own (dict form only): its tools
    are bound to it as methods; it keeps no state."""

    def reset(self, **row: Any) -> None:
        """Nothing to set up: the prompt is the row's own."""
        return None


@dataclass
class ToolSetup:
    """What GRPOTrainer gets (``trainer_kwargs``) and how rows are routed (``route``)."""

    metrics: ToolMetrics
    tools: list[Callable[..., Any]] = field(default_factory=list)
    environment_factory: Any = None                  # a factory, or {name: factory} (dict form)
    routes: Optional[list[str]] = None              # dict form: environment name per dataset index

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"tools": self.tools or None, "environment_factory": self.environment_factory}

    def route(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows with TRL's ``environment`` column naming their dataset's environment (dict form); as they
        are otherwise."""
        if self.routes is None:
            return list(rows)
        return [{**row, ENVIRONMENT_COLUMN: self.routes[int(row["dataset_index"])]} for row in rows]


def _instrumented(factory: Callable[[], Any], tools: Sequence[Callable[..., Any]], metrics: ToolMetrics
                  ) -> Callable[[], Any]:
    """A factory whose instances time their tool methods and carry ``tools`` as methods too."""
    def make() -> Any:
        instance = factory()
        for name, method in environment_methods(instance):
            if inspect.ismethod(method):
                try:
                    bind_method(instance, timed(method, metrics, name), name)
                except AttributeError:   # __slots__: the calls still work, untimed
                    log.debug("cannot time the methods of %s", type(instance).__name__)
                    break
        for tool in tools:
            bind_method(instance, tool)
        return instance
    functools.update_wrapper(make, factory, assigned=("__name__", "__qualname__", "__doc__"), updated=())
    return make


def _dataset_parts(ds: Any, metrics: ToolMetrics) -> tuple[list[Callable[..., Any]], Optional[Any]]:
    from pipelines.common.imports import import_attribute

    tools = [timed(lookup_tool(name), metrics) for name in ds.tools]
    return tools, (import_attribute(ds.environment) if ds.environment else None)


def build_tool_setup(cfg: GRPOConfigFile, metrics: Optional[ToolMetrics] = None) -> Optional[ToolSetup]:
    """TRL's arguments for the configured tools and environments; None when no dataset has any. The
    config was validated (every name resolves), so a lookup failing here is a bug, not a user error."""
    from pipelines.rewards.components import dataset_labels

    if not uses_tools(cfg):
        return None
    metrics = metrics or ToolMetrics()
    keys = [(tuple(ds.tools), ds.environment) for ds in cfg.datasets]
    parts = [_dataset_parts(ds, metrics) for ds in cfg.datasets]
    if len(set(keys)) == 1:           # every dataset alike: TRL's plain form
        tools, environment = parts[0]
        factory = _instrumented(environment, [], metrics) if environment is not None else None
        return ToolSetup(metrics, tools, factory)
    names = dataset_labels(cfg.datasets)
    factories = {name: _instrumented(env or ToolsOnly, tools, metrics)
                 for name, (tools, env) in zip(names, parts)}
    log.info("tools differ between datasets: each dataset is its own TRL environment (%s)", ", ".join(names))
    return ToolSetup(metrics, [], factories, routes=names)


def tool_lines(cfg: GRPOConfigFile) -> list[str]:
    """The --validate summary of the tools: each dataset's, how they reach TRL, the round cap."""
    from pipelines.rewards.components import dataset_labels

    if not uses_tools(cfg):
        return []
    keys = {(tuple(ds.tools), ds.environment) for ds in cfg.datasets}
    form = "TRL's tools=/environment_factory= as given" if len(keys) == 1 else \
        "one TRL environment per dataset (dict form), rows routed by an `environment` column"
    cap = cfg.training_parameters.max_tool_calling_iterations
    parts = [f"{label}: {', '.join(ds.tools) or 'no tools'}" + (f" + environment {ds.environment}"
                                                                  if ds.environment else "")
             for label, ds in zip(dataset_labels(cfg.datasets), cfg.datasets)]
    return [f"effective: tools {'; '.join(parts)} ({form}); max_tool_calling_iterations "
            f"{cap if cap is not None else 'null (no cap)'}"]


def prepare_tokenizer(tokenizer: Any) -> None:
    """Let TRL parse tool calls out of completions: the tiny model's template gets its response template
    (TRL sets one itself for the templates it knows, e.g. Qwen, Llama 3.1, GPT-OSS)."""
    from pipelines.common.tiny_model import TINY_CHAT_TEMPLATE, TINY_RESPONSE_TEMPLATE

    if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None \
            and tokenizer.chat_template == TINY_CHAT_TEMPLATE:
        tokenizer.response_template = TINY_RESPONSE_TEMPLATE


def observed(reward_func: Callable[..., Any], metrics: ToolMetrics) -> Callable[..., Any]:
    """``reward_func`` counting the tool calls of every completion it scores (same name: TRL's metric keys)."""
    @functools.wraps(reward_func)
    def observing(prompts: Any, completions: Any, **kwargs: Any) -> Any:
        metrics.observe_completions(completions)
        return reward_func(prompts, completions, **kwargs)
    return observing


def trainer_inputs(cfg: GRPOConfigFile, tokenizer: Any, reward_func: Callable[..., Any],
                   rows: Sequence[dict[str, Any]]) -> tuple[Callable[..., Any], list[dict[str, Any]], dict[str, Any],
                                                            Optional[ToolMetrics]]:
    """The node's hook: (reward function, training rows, extra GRPOTrainer kwargs, tool metrics) for this
    config; unchanged inputs, no kwargs and no metrics when no dataset has tools."""
    setup = build_tool_setup(cfg)
    if setup is None:
        return reward_func, list(rows), {}, None
    prepare_tokenizer(tokenizer)
    return observed(reward_func, setup.metrics), setup.route(rows), setup.trainer_kwargs(), setup.metrics
