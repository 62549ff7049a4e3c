"""The node contract: what a pipeline node declares (:class:`NodeSpec`), what a run receives (:class:`NodeContext`),
and the one way a node config is checked (:func:`validate_node_config`).

A node's checks are :class:`Rule` objects, each naming the top-level sections it reads. On a config that passed
the schema every rule runs; on one the schema rejected, :func:`check_partial` validates each section on its own
and runs the rules whose sections all validated, so a user still sees every mistake in one pass.
Nothing here imports torch or a node package.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence

from pydantic import BaseModel, TypeAdapter, ValidationError

from pipelines.common.imports import import_attribute
from pipelines.common.problems import Problem
from pipelines.common.schema import validate_model


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


@dataclass(frozen=True)
class Rule:
    """A config check ``fn(cfg, file) -> problems`` reading only the top-level sections in ``needs``.

    ``partial_lists``: in a partial check the rule also runs when a list section it needs has entries that did
    not validate; those entries then reach it as their raw values (e.g. a dataset path is still checked when
    another key of its entry is wrong).
    """

    fn: Callable[[Any, str], list[Problem]]
    needs: tuple[str, ...]
    partial_lists: bool = False

    def __call__(self, cfg: Any, file: str) -> list[Problem]:
        return self.fn(cfg, file)


@dataclass
class NodeSpec:
    """A registered node type."""

    name: str
    config_model: Optional[type[BaseModel]]
    run: str                                                     # "module:function", fn(cfg, ctx) -> outputs dict
    rules: tuple[Rule, ...] = ()                                 # config checks (no heavy imports)
    check: Optional[Callable[[Any, NodeContext], list[Problem]]] = None     # checks that need the context (run dir)
    inspect: Optional[Callable[[Any, NodeContext], list[str]]] = None       # --validate summary (may read data)
    check_judges: Optional[Callable[[Any, NodeContext], list[Problem]]] = None  # --check-judges hook
    resume_hint: Optional[str] = None   # how a user resumes this node, e.g. "--set resume=true"
    outputs: tuple[str, ...] = ()   # names in the run's outputs dict that later nodes may refer to (@label.name)

    def run_function(self) -> Callable[..., Any]:
        return import_callable(self.run)


def import_callable(path: str) -> Callable[..., Any]:
    fn = import_attribute(path)
    if not callable(fn):
        raise TypeError(f"{path} is not callable")
    return fn


def run_rules(cfg: Any, rules: Sequence[Rule], file: str) -> list[Problem]:
    """Every rule on a config that passed the schema."""
    return [p for rule in rules for p in rule(cfg, file)]


def _section(annotation: Any, value: Any) -> tuple[Any, bool]:
    """(validated value, ok). A dict section whose only faults are unknown keys is validated without them, so
    its other values still serve the rules (the unknown keys are reported by the schema)."""
    adapter = TypeAdapter(annotation)
    try:
        return adapter.validate_python(value), True
    except ValidationError as exc:
        extra = [e["loc"][0] for e in exc.errors() if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
        if isinstance(value, dict) and extra and len(extra) == len(exc.errors()):
            return _section(annotation, {k: v for k, v in value.items() if k not in extra})
        return None, False


def validate_sections(model: type[BaseModel], raw: dict[str, Any]) -> tuple[SimpleNamespace, set[str],
                                                                              set[str]]:
    """Each top-level field of ``model`` validated on its own: (namespace, invalid sections, sections with
    some invalid list entries). An absent optional section takes its default; an invalid list entry is kept as
    its raw value."""
    values: dict[str, Any] = {}
    invalid: set[str] = set()
    holes: set[str] = set()
    for name, info in model.model_fields.items():
        if name not in raw:
            if info.is_required():
                invalid.add(name)
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        value, ok = _section(info.annotation, raw[name])
        if ok:
            values[name] = value
            continue
        invalid.add(name)
        item = _list_item_annotation(info.annotation)
        if item is not None and isinstance(raw[name], list):
            entries = [_section(item, v) for v in raw[name]]
            values[name] = [v if ok_ else raw_v for (v, ok_), raw_v in zip(entries, raw[name])]
            holes.add(name)
    return SimpleNamespace(**values), invalid, holes


def _list_item_annotation(annotation: Any) -> Any:
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return item
    return None


def check_partial(model: type[BaseModel], rules: Sequence[Rule], raw: dict[str, Any], file: str) -> list[Problem]:
    """The rules that still apply when the schema rejected ``raw``: each runs when the sections it reads
    validated (or, for a ``partial_lists`` rule, when the only fault of a list section is some of its entries)."""
    ns, invalid, holes = validate_sections(model, raw)
    problems: list[Problem] = []
    for rule in rules:
        bad = [n for n in rule.needs if n in invalid and not (rule.partial_lists and n in holes)]
        if not bad:
            problems += rule(ns, file)
    return problems


def validate_node_config(spec: NodeSpec, raw: dict[str, Any], ctx: NodeContext) -> tuple[Any, list[Problem]]:
    """Schema, then every rule and the context checks; on a schema failure, the rules that still apply."""
    if spec.config_model is None:
        return raw, []
    cfg, problems = validate_model(spec.config_model, raw, ctx.config_file)
    if cfg is None:
        return None, problems + check_partial(spec.config_model, spec.rules, raw, ctx.config_file)
    problems += run_rules(cfg, spec.rules, ctx.config_file)
    if spec.check is not None:
        problems += spec.check(cfg, ctx)
    return cfg, problems
