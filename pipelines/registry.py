"""Pipeline nodes: name -> config model, checks and a lazily imported run function.

Registering a node imports nothing heavy: the run function is named as ``module:function`` and imported only
when the node runs, so validating a whole pipeline never loads torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel

from pipelines.common.problems import Problem, did_you_mean


@dataclass
class NodeContext:
    """What a node run receives besides its config."""

    label: str                      # the entry's name in the pipeline (node name, or import path)
    index: int                      # position in pipeline_order
    config_file: str                # the node config file, for messages
    raw_config: dict[str, Any]      # the resolved config as a dict (overrides + env applied)
    secrets: set[str]               # secret values that must never be written
    run_dir: Path
    outputs_root: Path
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier nodes' manifests, by label
    num_processes: Optional[int] = None   # --num-processes from the command line
    validate_only: bool = False
    launched: bool = False          # this process is one rank of a multi-process run started by the runner


@dataclass
class NodeSpec:
    """A registered node type."""

    name: str
    config_model: Optional[type[BaseModel]]
    run: str                                                     # "module:function", fn(cfg, ctx) -> outputs dict
    check: Optional[Callable[[Any, NodeContext], list[Problem]]] = None     # fast checks, no heavy imports
    # checks that still make sense when the schema rejected the config (so every mistake is reported at once)
    check_partial: Optional[Callable[[dict[str, Any], NodeContext], list[Problem]]] = None
    inspect: Optional[Callable[[Any, NodeContext], list[str]]] = None       # --validate summary (may read data)
    resume_hint: str = "--set training_parameters.resume_from_checkpoint=auto"   # how a user resumes this node
    outputs: tuple[str, ...] = ()   # names in the run's outputs dict that later nodes may refer to (@label.name)

    def run_function(self) -> Callable[..., Any]:
        return import_callable(self.run)


def import_callable(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr)
    if not callable(fn):
        raise TypeError(f"{path} is not callable")
    return fn


def _grpo_spec() -> NodeSpec:
    from pipelines.grpo import spec
    return spec.NODE


def _rollout_spec() -> NodeSpec:
    from pipelines.rollout import spec
    return spec.NODE


def _grpo_hpo_spec() -> NodeSpec:
    from pipelines.grpo.hpo import spec
    return spec.NODE


NODE_FACTORIES: dict[str, Callable[[], NodeSpec]] = {"grpo": _grpo_spec, "rollout": _rollout_spec,
                                                     "grpo_hpo": _grpo_hpo_spec}


def get_node(name: str) -> NodeSpec:
    """A registered node, or an import-path node ``package.module:function`` (config passed as a dict)."""
    if name in NODE_FACTORIES:
        return NODE_FACTORIES[name]()
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise KeyError(f"cannot import node module {module_name!r}: {exc}") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise KeyError(f"module {module_name!r} has no callable {attr!r}{did_you_mean(attr, dir(module))}")
        # An import-path node may declare `fn.outputs = ("name", ...)` so references to it are checked.
        return NodeSpec(name=name, config_model=None, run=name, outputs=tuple(getattr(fn, "outputs", ())))
    raise KeyError(f"unknown node {name!r}{did_you_mean(name, NODE_FACTORIES)}; registered nodes: "
                   f"{', '.join(sorted(NODE_FACTORIES))}, or give an import path package.module:function")
