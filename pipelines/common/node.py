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
    full_scan: bool = False         # --validate --full-scan: classify every row of every data file
    check_judges: bool = False      # --validate --check-judges: requests to the judges are allowed
    launched: bool = False          # this process is one rank of a multi-process run started by the runner
    secret_fields: dict[str, set[str]] = field(default_factory=dict)   # key path -> secrets interpolated there
    ref_scope: str = ""             # the super-config's scope for @label.output references (common.refs)
    notices: list[Any] = field(default_factory=list)   # what the node's `normalize` translated (common/notices.py)
    preflight: bool = False         # --preflight: the run dir is never written (a run that exists there is fine)


@dataclass(frozen=True)
class Rule:
    """A config check ``fn(cfg, file) -> problems`` reading only the top-level sections in ``needs``.

    ``partial_lists``: in a partial check the rule also runs when a list section it needs has entries that did
    not validate; those entries then reach it as their raw mappings, ``{}`` for an entry that is not a mapping
    (e.g. a dataset path is still checked when another key of its entry is wrong). In a partial check a mapping section with invalid keys reaches the rule
    with those keys at their defaults; a rule whose verdict depends on particular keys names them in ``reads``
    and is skipped when one of them was invalid (it would judge a default the user did not write).
    """

    fn: Callable[[Any, str], list[Problem]]
    needs: tuple[str, ...]
    partial_lists: bool = False
    reads: tuple[str, ...] = ()     # dotted keys it reads (``section.key``): skipped when one of them is invalid

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
    check_needs: Optional[tuple[str, ...]] = None  # sections `check` reads: it then also runs on a partial config
    inspect: Optional[Callable[[Any, NodeContext], list[str]]] = None       # --validate summary (may read data)
    check_judges: Optional[Callable[[Any, NodeContext], list[Problem]]] = None  # --check-judges hook
    calibrate_judges: Optional[Callable[[Any, NodeContext], list[Problem]]] = None  # --calibrate-judges hook
    preflight: Optional[str] = None   # "module:function", fn(cfg, ctx) -> report lines (--preflight; heavy imports)
    resume_hint: Optional[str] = None   # how a user resumes this node, e.g. "--set resume=true"
    outputs: tuple[str, ...] = ()   # names in the run's outputs dict that later nodes may refer to (@label.name)
    # Reads another tool's config shape: fn(raw, file) -> (raw in this node's shape, notices, problems). The
    # runner applies it before anything else looks at the config (see pipelines/common/notices.py).
    normalize: Optional[Callable[[dict[str, Any], str], tuple[dict[str, Any], list[Any], list[Problem]]]] = None

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


def _section(annotation: Any, value: Any, drop_invalid: bool = False) -> tuple[Any, bool, set[str]]:
    """(validated value, ok, dropped keys). A dict section whose only faults are unknown keys is validated without
    them, so its other values still serve the rules (the unknown keys are reported by the schema). With
    ``drop_invalid``, keys with invalid values are dropped the same way (they take their defaults) and returned."""
    adapter = TypeAdapter(annotation)
    try:
        return adapter.validate_python(value), True, set()
    except ValidationError as exc:
        errors = exc.errors()
        top = {e["loc"][0] for e in errors if e["loc"] and isinstance(e["loc"][0], str)}
        extra = {e["loc"][0] for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1}
        drop = top if drop_invalid else extra
        if isinstance(value, dict) and drop and drop == top and len(top) == len({e["loc"][:1] for e in errors}) \
                and drop & set(value):
            inner, ok, dropped = _section(annotation, {k: v for k, v in value.items() if k not in drop},
                                          drop_invalid)
            return inner, ok, dropped | (drop - extra)
        return None, False, set()


def validate_sections(model: type[BaseModel], raw: dict[str, Any]) -> tuple[SimpleNamespace, set[str],
                                                                              set[str]]:
    """Each top-level field of ``model`` validated on its own: (namespace, invalid sections, sections with
    some invalid list entries). An absent optional section takes its default; an invalid list entry is kept as
    its raw mapping (``{}`` when it is not one); a mapping section's invalid keys take their defaults and are listed in the namespace's
    ``_invalid_keys`` (as ``section.key``)."""
    values: dict[str, Any] = {}
    invalid: set[str] = set()
    holes: set[str] = set()
    invalid_keys: set[str] = set()
    for name, info in model.model_fields.items():
        if name not in raw:
            if info.is_required():
                invalid.add(name)
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        value, ok, dropped = _section(info.annotation, raw[name], drop_invalid=True)
        if ok:
            values[name] = value
            invalid_keys |= {f"{name}.{k}" for k in dropped}
            continue
        invalid.add(name)
        item = _list_item_annotation(info.annotation)
        if item is not None and isinstance(raw[name], list):
            entries = [_section(item, v)[:2] for v in raw[name]]
            # An invalid entry reaches the rules as its raw mapping, so they read what is there; one that is not
            # a mapping at all (null, a string) as an empty one: a rule never meets a type it cannot read.
            values[name] = [v if ok_ else (raw_v if isinstance(raw_v, dict) else {})
                            for (v, ok_), raw_v in zip(entries, raw[name])]
            holes.add(name)
    ns = SimpleNamespace(**values)
    ns._invalid_keys = invalid_keys
    return ns, invalid, holes


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
        if not bad and not set(rule.reads) & ns._invalid_keys:
            problems += [p for p in rule(ns, file) if not _about_invalid_key(p.key, ns._invalid_keys)]
    return problems


def _about_invalid_key(key: str, invalid_keys: set[str]) -> bool:
    """A rule's problem about a key the schema already rejected would judge its default: leave it out."""
    return any(key == k or key.startswith(k + ".") or key.startswith(k + "[") for k in invalid_keys)


def check_context_partial(spec: "NodeSpec", raw: dict[str, Any], ctx: "NodeContext") -> list[Problem]:
    """The node's context check (e.g. a run dir already in use) on a config the schema rejected, when the
    sections it reads validated: one pass reports it beside the schema errors."""
    if spec.check is None or spec.check_needs is None or spec.config_model is None:
        return []
    ns, invalid, _ = validate_sections(spec.config_model, raw)
    if set(spec.check_needs) & invalid:
        return []
    return spec.check(ns, ctx)


def validate_node_config(spec: NodeSpec, raw: dict[str, Any], ctx: NodeContext) -> tuple[Any, list[Problem]]:
    """Schema, then every rule and the context checks; on a schema failure, the rules that still apply."""
    if spec.config_model is None:
        return raw, []
    cfg, problems = validate_model(spec.config_model, raw, ctx.config_file)
    if cfg is None:
        return None, (problems + check_partial(spec.config_model, spec.rules, raw, ctx.config_file)
                      + check_context_partial(spec, raw, ctx))
    problems += run_rules(cfg, spec.rules, ctx.config_file)
    if spec.check is not None:
        problems += spec.check(cfg, ctx)
    return cfg, problems
