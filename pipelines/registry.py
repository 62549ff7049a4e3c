"""The node table: node name -> :class:`~pipelines.common.node.NodeSpec`.

Each node package declares its spec in its own ``spec`` module, imported only when the node is named; the run
function is named as ``module:function`` and imported only when the node runs, so validating a whole pipeline
never loads torch.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Callable, Optional

from pipelines.common.imports import ImportPathError, import_attribute, is_import_path
from pipelines.common.node import NodeSpec
from pipelines.common.problems import did_you_mean


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
NODE_ALIASES = {"grpo-rl-pipeline": "grpo"}     # Augmentoolkit's super-config name for its GRPO node
# Augmentoolkit's super-config names a config as `<folder alias>:<file>` (`config: grpo-rl-folder:grpo_config.yaml`):
# the alias is the folder of that pipeline's configs, here the GRPO node's shipped configs folder.
CONFIG_FOLDER_ALIASES = {"grpo-rl-folder": Path(__file__).resolve().parent / "grpo" / "configs"}


def config_alias(value: str) -> Optional[tuple[str, Path]]:
    """(alias, file path) for an Augmentoolkit-style ``<folder alias>:<file>`` config value, else None."""
    alias, colon, rest = value.partition(":")
    if colon and alias in CONFIG_FOLDER_ALIASES and rest:
        return alias, CONFIG_FOLDER_ALIASES[alias] / rest
    return None


def node_contract_problem(fn: Callable[..., object]) -> Optional[str]:
    """Why ``fn`` cannot be an import-path node (None when it can): it must be a Python function (or method)
    that takes the node's config and context as its two positional arguments."""
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        kind = "a built-in function" if inspect.isbuiltin(fn) else f"a {type(fn).__name__}"
        return f"is {kind}, not a Python function"
    if str(getattr(fn, "__module__", "")).split(".")[0] in sys.stdlib_module_names:
        return f"is {fn.__module__}.{fn.__qualname__} of the Python standard library, not a node"
    try:
        inspect.signature(fn).bind(object(), object())
    except TypeError:
        return f"takes {inspect.signature(fn)}, not (config, ctx)"
    return None


def get_node(name: str) -> NodeSpec:
    """A registered node, or an import-path node ``package.module:function`` (config passed as a dict)."""
    name = NODE_ALIASES.get(name, name)
    if name in NODE_FACTORIES:
        return NODE_FACTORIES[name]()
    if is_import_path(name):
        fn = import_attribute(name)   # ImportPathError (a KeyError): a bad path, or a module that fails to import
        if not callable(fn):
            raise ImportPathError(f"node {name!r} is a {type(fn).__name__}, not a function taking the node's "
                                  f"config")
        problem = node_contract_problem(fn)
        if problem:
            raise ImportPathError(f"node {name!r} {problem}; an import-path node is a Python function "
                                  "`def run(config: dict, ctx) -> dict` (its outputs)")
        # An import-path node may declare `fn.outputs = ("name", ...)` so references to it are checked.
        return NodeSpec(name=name, config_model=None, run=name, outputs=tuple(getattr(fn, "outputs", ())))
    raise KeyError(f"unknown node {name!r}{did_you_mean(name, [*NODE_FACTORIES, *NODE_ALIASES])}; registered nodes: "
                   f"{', '.join(sorted(NODE_FACTORIES))}, or give an import path package.module:function")
