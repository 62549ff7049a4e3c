"""Planning a run: load the super-config, select its entries, and load, override, interpolate and validate
each entry's node config into a :class:`PlannedNode` (no model is loaded; used by every runner mode)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from pipelines.common.config_io import (EnvResolver, apply_overrides, find_placeholders, load_yaml,
                                        parse_scalar)
from pipelines.common.node import NodeContext, NodeSpec, validate_node_config
from pipelines.common.notices import warning
from pipelines.common.problems import ConfigError, Problem, did_you_mean
from pipelines.common.redaction import register_secrets
from pipelines.common.refs import check_refs, ref_scope
from pipelines.common.rundir import check_run_location, default_run_name, run_dir_for
from pipelines.common.runlock import RunDirBusy, busy_holder
from pipelines.registry import config_alias, get_node

log = logging.getLogger(__name__)


@dataclass
class PlannedNode:
    """A pipeline entry after loading and validation."""

    label: str
    spec: NodeSpec
    cfg: Any                      # validated model, or the dict for import-path nodes
    ctx: NodeContext
    summary: list[str] = field(default_factory=list)


def _parse_sets(sets: Sequence[str]) -> tuple[dict[str, Any], list[Problem]]:
    out, problems = {}, []
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            problems.append(Problem("--set", item, "expected KEY=VALUE, e.g. --set training_parameters.max_steps=5"))
            continue
        out[key.strip()] = parse_scalar(value)
    return out, problems


def load_super_config(path: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The pipeline_order entries, or problems describing what is wrong with the super-config."""
    file = str(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        return [], [Problem(file, "", "expected a mapping with a `pipeline_order` list")]
    problems = [Problem(file, k, f"unknown key{did_you_mean(k, ['pipeline_order'])}")
                for k in data if k != "pipeline_order"]
    order = data.get("pipeline_order")
    if not isinstance(order, list) or not order:
        problems.append(Problem(file, "pipeline_order", "must be a non-empty list of {node, config, overrides}"))
        return [], problems
    entries = []
    for i, entry in enumerate(order):
        key = f"pipeline_order[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(file, key, "must be a mapping with `node` and `config`"))
            continue
        for k in entry:
            if k not in ("node", "config", "overrides", "name"):
                problems.append(Problem(file, f"{key}.{k}", f"unknown key"
                                        f"{did_you_mean(k, ['node', 'config', 'overrides', 'name'])}"))
        if not isinstance(entry.get("node"), str):
            problems.append(Problem(file, f"{key}.node", "missing: a registered node name or package.module:function"))
        if not isinstance(entry.get("config"), str):
            problems.append(Problem(file, f"{key}.config", "missing: path of the node's config file"))
        if entry.get("overrides") is not None and not isinstance(entry.get("overrides"), dict):
            problems.append(Problem(file, f"{key}.overrides", "must be a mapping of dotted keys to values"))
        entries.append(entry)
    return entries, problems


def select_entries(entries: list[dict[str, Any]], only: Optional[str], file: str) -> tuple[list[int], list[Problem]]:
    if only is None:
        return list(range(len(entries))), []
    if only.isdigit():
        if int(only) < len(entries):
            return [int(only)], []
        return [], [Problem("--only", only, f"index out of range: {file} has {len(entries)} entries")]
    labels = [e.get("name") or e.get("node") for e in entries]
    hits = [i for i, label in enumerate(labels) if label == only]
    if not hits:
        return [], [Problem("--only", only, f"no such entry{did_you_mean(only, labels)}; entries: "
                                            f"{', '.join(map(str, labels))}")]
    return hits, []


def _display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it, for short messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _command_line_run_name(raw: dict[str, Any], sets: dict[str, Any], notices: list[Any]) -> list[Problem]:
    """``--set run_name=X`` names the run dir even where the config file sets ``training_parameters.output_dir``
    (Augmentoolkit's configs do): the config's value gives way, with a warning. Both on the command line name
    two run dirs: a problem naming both keys."""
    tp = raw.get("training_parameters")
    if "run_name" not in sets or not isinstance(tp, dict) or not tp.get("output_dir"):
        return []
    if "training_parameters.output_dir" in sets:
        return [Problem("--set", "run_name", f"--set run_name={sets['run_name']} and --set "
                                             f"training_parameters.output_dir={tp['output_dir']} both name the run "
                                             "dir; give one of them")]
    value = tp.pop("output_dir")
    notices.append(warning("training_parameters.output_dir", f"{value!r} (from the config file) gives way to --set "
                                                             f"run_name={sets['run_name']}: the run dir is "
                                                             f"<outputs>/{sets['run_name']}"))
    return []


def plan_node(entry: dict[str, Any], index: int, base_dir: Path, sets: dict[str, Any], args: argparse.Namespace,
              manifests: dict[str, dict[str, Any]], upstream: dict[str, tuple[str, ...]],
              all_labels: list[str]) -> tuple[Optional[PlannedNode], list[Problem]]:
    """Load, override, interpolate and validate one entry's config; return all its problems."""
    label = entry.get("name") or entry["node"]
    aliased = config_alias(entry["config"])
    config_path = aliased[1] if aliased else Path(entry["config"])
    if not config_path.is_absolute():
        config_path = base_dir / config_path
    file = _display_path(config_path)
    if aliased and not config_path.is_file():
        return None, [Problem(args.super_config, f"pipeline_order[{index}].config", (
            f"{entry['config']!r}: {aliased[0]}: is Augmentoolkit's name for the GRPO configs folder, read here as "
            f"{_display_path(config_path.parent)}/, and it holds no {config_path.name!r}: copy your config there, "
            f"or give its path"))]
    try:
        spec = get_node(entry["node"])
    except KeyError as exc:
        return None, [Problem(args.super_config, f"pipeline_order[{index}].node", str(exc.args[0]))]
    try:
        raw = load_yaml(config_path)
    except ConfigError as exc:
        return None, exc.problems
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [Problem(file, "", "expected a mapping at the top level")]
    problems = apply_overrides(raw, entry.get("overrides") or {}, file, "super-config override")
    problems += apply_overrides(raw, sets, file, "--set")
    env = EnvResolver()
    raw = env.resolve(raw, file, problems)
    register_secrets(env.secret_values)
    problems += find_placeholders(raw, file)
    scope = ref_scope(args.super_config)
    problems += check_refs(raw, file, upstream, Path(args.outputs), all_labels, scope)
    notices: list[Any] = []
    if spec.normalize is not None:      # another tool's config shape (e.g. Augmentoolkit's), in this node's terms
        raw, notices, shape_problems = spec.normalize(raw, file)
        problems += shape_problems      # notices: printed by --validate, logged by a run into run.log (once)
    problems += _command_line_run_name(raw, sets, notices)
    if not raw.get("run_name") and spec.config_model is not None and "run_name" in spec.config_model.model_fields:
        raw["run_name"] = default_run_name(spec.name)
    if args.num_processes is not None and spec.config_model is not None and "launch" in spec.config_model.model_fields:
        raw.setdefault("launch", {})
        if isinstance(raw["launch"], dict):
            raw["launch"]["num_processes"] = args.num_processes
    location_problems = check_run_location(raw, spec.name, Path(args.outputs), file)
    if location_problems:  # the node's own checks would look at (and report on) a folder outside outputs/
        return None, problems + location_problems
    run_dir = run_dir_for(raw, spec.name, Path(args.outputs))
    ctx = NodeContext(label=label, index=index, config_file=file, raw_config=raw, secrets=env.secret_values,
                      run_dir=run_dir, outputs_root=Path(args.outputs), manifests=manifests,
                      num_processes=args.num_processes, validate_only=args.validate or args.preflight,
                      launched=args.launched_rank, secret_fields=env.secret_fields, ref_scope=scope,
                      full_scan=args.full_scan,
                      check_judges=bool(getattr(args, "check_judges", False)), notices=notices,
                      preflight=bool(getattr(args, "preflight", False)))
    cfg, node_problems = validate_node_config(spec, raw, ctx)
    # Probed after the node's checks: a run that started meanwhile is named, not reported as "holds a run".
    holder = None if args.launched_rank or secondary_machine(raw) else busy_holder(run_dir)
    if holder is not None:   # another run is writing there now: nothing else about this entry matters
        return None, problems + [Problem(file, "run_name", str(RunDirBusy(run_dir, holder)), kind="busy")]
    return PlannedNode(label, spec, cfg, ctx), problems + node_problems


def plan(args: argparse.Namespace) -> tuple[list[PlannedNode], list[Problem]]:
    super_path = Path(args.super_config)
    entries, problems = load_super_config(super_path)
    sets, set_problems = _parse_sets(args.sets)
    problems += set_problems
    if problems:
        return [], problems
    selected, sel_problems = select_entries(entries, args.only, args.super_config)
    problems += sel_problems
    planned: list[PlannedNode] = []
    manifests: dict[str, dict[str, Any]] = {}
    upstream: dict[str, tuple[str, ...]] = {}
    all_labels = [e.get("name") or e.get("node") for e in entries]
    for i in selected:
        node, node_problems = plan_node(entries[i], i, super_path.resolve().parent, sets, args, manifests,
                                        upstream, all_labels)
        problems += node_problems
        if node is not None:
            planned.append(node)
            upstream[node.label] = node.spec.outputs
    labels = [n.label for n in planned]
    for label in {x for x in labels if labels.count(x) > 1}:
        problems.append(Problem(args.super_config, "pipeline_order", f"two entries are labelled {label!r}; give "
                                                                      "one a distinct `name:`"))
    problems += _shared_run_dirs(planned)
    return planned, problems


def _shared_run_dirs(planned: list[PlannedNode]) -> list[Problem]:
    """Two entries of one invocation writing into one run dir would refuse (or overwrite) each other."""
    seen: dict[Path, PlannedNode] = {}
    problems = []
    for node in planned:
        key = node.ctx.run_dir.resolve()
        if key in seen:
            first = seen[key]
            problems.append(Problem(node.ctx.config_file, "run_name",
                                    f"entries {first.label!r} and {node.label!r} would both write to {node.ctx.run_dir}; "
                                    "give each its own run_name (--set applies to every selected entry: use the "
                                    "super-config's per-entry `overrides`, or --only)"))
        else:
            seen[key] = node
    return problems


def secondary_machine(raw: dict[str, Any]) -> bool:
    """A multi-machine run's machine with ``launch.machine_rank`` > 0: machine 0 holds the run dir's lock."""
    launch = raw.get("launch") if isinstance(raw, dict) else None
    try:
        return isinstance(launch, dict) and int(launch.get("machine_rank") or 0) > 0
    except (TypeError, ValueError):
        return False
