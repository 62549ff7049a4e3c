"""Chaining: a config string ``@<label>.<output>`` names an output of an earlier node's run.

References are scoped to one super-config. Outputs come from run manifests: the one written by an earlier entry
of this pipeline invocation, or, for an entry not run this time (``--only``), the latest completed run of that
entry *of the same super-config*, recorded in ``<outputs>/.latest/<scope>/<label>.json`` (the scope names the
super-config file: :func:`ref_scope`). A run started from another super-config is never picked up.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipelines.common.io import atomic_write_text
from pipelines.common.problems import Problem, did_you_mean, join_key

REF_RE = re.compile(r"^@([A-Za-z0-9_\-]+)\.([A-Za-z0-9_]+)$")
RUN_DIR_OUTPUT = "run_dir"


def is_reference(value: Any) -> bool:
    """True for an unresolved ``@label.output`` string (checked and substituted by the runner)."""
    return isinstance(value, str) and value.strip().startswith("@")


def find_refs(data: Any, key: str = "") -> Iterator[tuple[str, str, str]]:
    """Yield (key path, label, output) for every reference string in a config."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from find_refs(v, join_key(key, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from find_refs(v, join_key(key, i))
    elif isinstance(data, str):
        m = REF_RE.match(data.strip())
        if m:
            yield key, m.group(1), m.group(2)


def ref_scope(super_config: str | Path) -> str:
    """The name under ``<outputs>/.latest/`` of one super-config: its file stem plus a hash of its full path."""
    resolved = Path(super_config).resolve()
    return f"{resolved.stem}-{hashlib.sha256(str(resolved).encode('utf-8')).hexdigest()[:10]}"


def latest_pointer(outputs_root: Path, label: str, scope: str) -> Path:
    return outputs_root / ".latest" / scope / f"{label}.json"


def record_latest(outputs_root: Path, label: str, manifest: Mapping[str, Any], scope: str) -> None:
    """Remember a completed run's manifest so later invocations of the same super-config can refer to it."""
    atomic_write_text(latest_pointer(outputs_root, label, scope), json.dumps(dict(manifest), indent=2) + "\n")


def read_latest(outputs_root: Path, label: str, scope: str) -> dict[str, Any] | None:
    try:
        return json.loads(latest_pointer(outputs_root, label, scope).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_refs(raw: Any, file: str, upstream: Mapping[str, tuple[str, ...]], outputs_root: Path,
               all_labels: list[str], scope: str) -> list[Problem]:
    """Problems for references to nodes that will not have run, or to outputs they do not have.

    ``upstream`` maps labels of entries that run earlier in this invocation to their declared outputs.
    """
    problems = []
    for key, label, output in find_refs(raw):
        if label in upstream:
            names = (*upstream[label], RUN_DIR_OUTPUT)
            if output not in names:
                problems.append(Problem(file, key, f"node {label!r} has no output {output!r}"
                                                   f"{did_you_mean(output, names)}; it has: {', '.join(names)}"))
            continue
        manifest = read_latest(outputs_root, label, scope)
        if manifest is None or manifest.get("status") != "completed":
            where = ("it comes later in the pipeline" if label in all_labels else
                     f"no entry is named {label!r}{did_you_mean(label, all_labels)}")
            problems.append(Problem(file, key, f"refers to node {label!r}, which has not run: {where}, and this "
                                               f"super-config has no completed run of it (recorded in "
                                               f"{latest_pointer(outputs_root, label, scope)}; runs of other "
                                               f"super-configs are not used). Run that entry first"))
        elif output not in manifest.get("outputs", {}) and output != RUN_DIR_OUTPUT:
            names = list(manifest.get("outputs", {}))
            problems.append(Problem(file, key, f"the recorded run of {label!r} has no output {output!r}"
                                               f"{did_you_mean(output, names)}; it has: {', '.join(names)}"))
    return problems


@dataclass(frozen=True)
class ResolvedRef:
    """One reference and the path it resolved to, with where that came from (for run.log and --validate)."""

    key: str
    ref: str
    value: Any
    source: str

    def __str__(self) -> str:
        return f"{self.key}: {self.ref} -> {self.value} ({self.source})"


def _lookup(label: str, output: str, manifests: Mapping[str, Mapping[str, Any]], outputs_root: Path,
            scope: str) -> tuple[Any, str]:
    if label in manifests:
        manifest, source = manifests[label], f"entry {label!r} of this invocation"
    else:
        manifest = read_latest(outputs_root, label, scope) or {}
        source = (f"latest completed run of entry {label!r} of this super-config, finished "
                  f"{manifest.get('finished', '?')}")
    value = manifest.get("run_dir") if output == RUN_DIR_OUTPUT else manifest.get("outputs", {}).get(output)
    return value, source


def substitute_refs(data: Any, manifests: Mapping[str, Mapping[str, Any]], outputs_root: Path, scope: str,
                    found: list[ResolvedRef] | None = None, key: str = "") -> Any:
    """Replace every reference with the path from the manifest of this invocation, else the latest record of
    this super-config; each substitution is appended to ``found``."""
    if isinstance(data, dict):
        return {k: substitute_refs(v, manifests, outputs_root, scope, found, join_key(key, k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_refs(v, manifests, outputs_root, scope, found, join_key(key, i))
                for i, v in enumerate(data)]
    if isinstance(data, str):
        m = REF_RE.match(data.strip())
        if m:
            value, source = _lookup(m.group(1), m.group(2), manifests, outputs_root, scope)
            if value is None:
                return data
            if found is not None:
                found.append(ResolvedRef(key, data.strip(), value, source))
            return value
    return data


def describe_refs(raw: Any, earlier: Mapping[str, Any], outputs_root: Path, scope: str) -> list[str]:
    """--validate summary lines: where each reference will resolve (``earlier``: labels run before it now)."""
    lines = []
    for key, label, output in find_refs(raw):
        ref = f"@{label}.{output}"
        if label in earlier:
            lines.append(f"{key}: {ref} -> the {output} of entry {label!r}, which runs earlier in this invocation")
            continue
        value, source = _lookup(label, output, {}, outputs_root, scope)
        lines.append(f"{key}: {ref} -> {value} ({source})")
    return lines
