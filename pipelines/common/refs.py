"""Chaining: a config string ``@<label>.<output>`` names an output of an earlier node's run.

Outputs come from run manifests: the one written by an earlier entry of this pipeline invocation, or, for an
entry not run this time (``--only``), the latest completed run recorded in ``<outputs>/.latest/<label>.json``.
"""
from __future__ import annotations

import json
import re
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


def latest_pointer(outputs_root: Path, label: str) -> Path:
    return outputs_root / ".latest" / f"{label}.json"


def record_latest(outputs_root: Path, label: str, manifest: Mapping[str, Any]) -> None:
    """Remember a completed run's manifest so later invocations can refer to it."""
    atomic_write_text(latest_pointer(outputs_root, label), json.dumps(dict(manifest), indent=2) + "\n")


def read_latest(outputs_root: Path, label: str) -> dict[str, Any] | None:
    try:
        return json.loads(latest_pointer(outputs_root, label).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_refs(raw: Any, file: str, upstream: Mapping[str, tuple[str, ...]], outputs_root: Path,
               all_labels: list[str]) -> list[Problem]:
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
        manifest = read_latest(outputs_root, label)
        if manifest is None or manifest.get("status") != "completed":
            where = ("it comes later in the pipeline" if label in all_labels else
                     f"no entry is named {label!r}{did_you_mean(label, all_labels)}")
            problems.append(Problem(file, key, f"refers to node {label!r}, which has not run: {where}, and no "
                                               f"completed run is recorded in {latest_pointer(outputs_root, label)}. "
                                               f"Run that node first"))
        elif output not in manifest.get("outputs", {}) and output != RUN_DIR_OUTPUT:
            names = list(manifest.get("outputs", {}))
            problems.append(Problem(file, key, f"the recorded run of {label!r} has no output {output!r}"
                                               f"{did_you_mean(output, names)}; it has: {', '.join(names)}"))
    return problems


def substitute_refs(data: Any, manifests: Mapping[str, Mapping[str, Any]], outputs_root: Path) -> Any:
    """Replace every reference with the path from the manifest of this invocation, else the latest record."""
    if isinstance(data, dict):
        return {k: substitute_refs(v, manifests, outputs_root) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_refs(v, manifests, outputs_root) for v in data]
    if isinstance(data, str):
        m = REF_RE.match(data.strip())
        if m:
            label, output = m.groups()
            manifest = manifests.get(label) or read_latest(outputs_root, label) or {}
            if output == RUN_DIR_OUTPUT:
                return manifest.get("run_dir", data)
            return manifest.get("outputs", {}).get(output, data)
    return data
