"""The installed TRL GRPOConfig's fields, read from source without importing TRL: names, types, defaults and
the values a field accepts.

Validation must not import torch/transformers/trl (it has to answer in well under 3 s), yet extra
``training_parameters`` keys must be checked against the GRPOConfig that will actually run. The dataclass
fields are plain annotated assignments, so parsing the source files with ``ast`` finds them all, with their
annotation, their default and their help text. A ``str`` field whose help lists its values in quotes
(``'grpo', 'dapo', ...``), or declares them (``metadata["choices"]``), or whose annotation is one of transformers' string enums (``SchedulerType``,
``OptimizerNames``, ...) gets those values as its choices. Nothing is hard-coded per TRL version.
"""
from __future__ import annotations

import ast
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pipelines.common.availability import package_dir

# A quoted value, but not one assigned to another parameter (``loss_type='grpo'`` in another field's help).
_QUOTED_RE = re.compile(r"(?<![=\w])'([A-Za-z0-9_\-]+)'")
# Help text that lists the accepted values (TRL's wording); a field without it gets no choices from its help.
_LISTS_VALUES_RE = re.compile(r"supported (values|options)|must be (one of|either)|one of|whether", re.IGNORECASE)
_BASE_TYPES = {"float", "int", "bool", "str", "dict", "list", "None", "Any"}


@dataclass(frozen=True)
class TRLField:
    """One GRPOConfig field as its source declares it."""

    name: str
    types: frozenset[str]               # of float, int, bool, str, dict, list, None, Any
    default: Any = None
    choices: tuple[str, ...] = ()       # accepted strings, when the source lists them
    accepts_bool: bool = False          # a str field whose help also accepts True/False (scale_rewards)


def _literal(node: Optional[ast.AST]) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, SyntaxError, TypeError):
        return None


def _field_call(stmt: ast.AnnAssign) -> tuple[Any, dict[str, Any]]:
    """(default, metadata) of ``name: T = field(default=..., metadata={...})`` or ``name: T = value``."""
    value = stmt.value
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        kw = {k.arg: k.value for k in value.keywords}
        meta = _literal(kw.get("metadata"))
        return _literal(kw.get("default")), meta if isinstance(meta, dict) else {}
    return _literal(value), {}


def _enum_values(paths: list[Path]) -> dict[str, tuple[str, ...]]:
    """String values of the ``Enum`` classes defined in ``paths`` (transformers' SchedulerType and friends)."""
    out: dict[str, tuple[str, ...]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and any("Enum" in ast.unparse(b) for b in node.bases):
                values = [_literal(s.value) for s in node.body if isinstance(s, ast.Assign)]
                out[node.name] = tuple(v for v in values if isinstance(v, str))
    return out


def _types_and_enums(annotation: ast.AST, enums: dict[str, tuple[str, ...]]) -> tuple[frozenset[str], tuple[str, ...]]:
    text = ast.unparse(annotation).replace("Optional[", "None | ").replace("Union[", "")
    parts = {p.strip().split("[")[0].strip("] ") for p in re.split(r"[|,]", text)}
    choices: list[str] = []
    types = set()
    for part in parts:
        if part in enums:
            choices += enums[part]
            types.add("str")
        elif part in _BASE_TYPES:
            types.add(part)
        elif part:
            types.add("Any")      # a class we cannot check from source: accept anything
    return frozenset(types), tuple(choices)


def _choices_from_help(types: frozenset[str], default: Any, help_text: str) -> tuple[str, ...]:
    """Quoted values listed in a plain ``str`` field's help (two or more), plus its default."""
    if types != frozenset({"str"}) or not _LISTS_VALUES_RE.search(help_text):
        return ()
    found = list(dict.fromkeys(_QUOTED_RE.findall(help_text)))
    if len(found) < 2:
        return ()
    return tuple(dict.fromkeys([*([default] if isinstance(default, str) else []), *found]))


def _class_fields(path: Path, class_names: set[str] | None, enums: dict[str, tuple[str, ...]]) -> dict[str, TRLField]:
    out: dict[str, TRLField] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not (isinstance(node, ast.ClassDef) and (class_names is None or node.name in class_names)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                    and not stmt.target.id.startswith("_"):
                default, meta = _field_call(stmt)
                help_text = str(meta.get("help", ""))
                types, choices = _types_and_enums(stmt.annotation, enums)
                declared = tuple(str(c) for c in meta.get("choices") or ())
                choices = declared or choices or _choices_from_help(types, default, help_text)
                bool_too = bool(choices) and bool(re.search(r"`(True|False)` or", help_text))
                out[stmt.target.id] = TRLField(stmt.target.id, types, default, choices, accepts_bool=bool_too)
    return out


@functools.lru_cache(maxsize=1)
def grpo_config_specs() -> dict[str, TRLField] | None:
    """Every GRPOConfig field (TrainingArguments included), or None when TRL is not installed. Subclass
    declarations win over the base classes' (as in the dataclass)."""
    trl_dir, tf_dir = package_dir("trl"), package_dir("transformers")
    if trl_dir is None or tf_dir is None:
        return None
    enums = _enum_values([tf_dir / "training_args.py", tf_dir / "trainer_utils.py"])
    fields: dict[str, TRLField] = {}
    sources = [(tf_dir / "training_args.py", {"TrainingArguments"}),
               (trl_dir / "trainer" / "base_config.py", None),
               (trl_dir / "trainer" / "grpo_config.py", {"GRPOConfig"})]
    for path, classes in sources:
        if path.is_file():
            fields.update(_class_fields(path, classes, enums))
    return fields or None


def grpo_config_fields() -> frozenset[str] | None:
    """Field names of GRPOConfig (TrainingArguments included), or None when TRL is not installed."""
    specs = grpo_config_specs()
    return frozenset(specs) if specs is not None else None


def _type_name(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", dict: "dict", list: "list"}.get(type(value), "Any")


def value_problem(spec: TRLField, value: Any) -> Optional[str]:
    """Why ``value`` does not fit the field, or None. Ints are floats; floats must be finite."""
    kind = _type_name(value)
    types = spec.types
    if "Any" not in types:
        ok = kind in types or (kind == "int" and "float" in types) or (kind == "bool" and spec.accepts_bool)
        if not ok:
            wanted = " or ".join(sorted(t for t in types if t != "None")) or "null"
            return f"must be {wanted}" + (" or null" if "None" in types else "") + f" (got {value!r})"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number (got {value!r})"
    if spec.choices and isinstance(value, str) and value not in spec.choices:
        from pipelines.common.problems import did_you_mean

        return (f"{value!r} is not a value the installed TRL accepts{did_you_mean(value, spec.choices)}; "
                f"choose one of: {', '.join(spec.choices)}")
    return None
