"""Names of the installed TRL GRPOConfig's fields, read from source without importing TRL.

Validation must not import torch/transformers/trl (it has to answer in well under 3 s), yet extra
``training_parameters`` keys must be checked against the GRPOConfig that will actually run. The dataclass
fields are plain annotated assignments, so parsing the three source files with ``ast`` finds them all.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _annotated_names(path: Path, class_names: set[str] | None) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and (class_names is None or node.name in class_names):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    if not stmt.target.id.startswith("_"):
                        names.add(stmt.target.id)
    return names


@functools.lru_cache(maxsize=1)
def grpo_config_fields() -> frozenset[str] | None:
    """Field names of GRPOConfig (TrainingArguments included), or None when TRL is not installed."""
    trl_dir, tf_dir = _package_dir("trl"), _package_dir("transformers")
    if trl_dir is None or tf_dir is None:
        return None
    fields: set[str] = set()
    sources = [(trl_dir / "trainer" / "grpo_config.py", {"GRPOConfig"}),
               (trl_dir / "trainer" / "base_config.py", None),
               (tf_dir / "training_args.py", {"TrainingArguments"})]
    for path, classes in sources:
        if path.is_file():
            fields |= _annotated_names(path, classes)
    return frozenset(fields) or None
