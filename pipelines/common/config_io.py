"""Loading node configs: YAML, dotted overrides, ``${ENV}`` interpolation (secrets noted for redaction), placeholders.

Nothing here imports torch, transformers or trl: a config mistake must be reported in well under
three seconds.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from pipelines.common.problems import ConfigError, Problem, join_key
from pipelines.common.redaction import is_secret_env_name, is_secret_name

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER_RE = re.compile(r"!!PLACEHOLDER!!|<YOUR_[A-Z0-9_]*>", re.IGNORECASE)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file, a syntax error or a duplicate key is a :class:`ConfigError` naming
    the file (a duplicate with both line numbers: YAML would silently keep the last value)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([Problem(str(path), "", "file not found")])
    try:
        with open(path, encoding="utf-8") as fh:
            loader = yaml.SafeLoader(fh)
            try:
                node = loader.get_single_node()
                duplicates = list(_duplicate_keys(node)) if node is not None else []
                if duplicates:
                    raise ConfigError([Problem(str(path), key, f"duplicate key: first at line {first}, again at "
                                                               f"line {again}; YAML would silently keep the last "
                                                               f"value. Keep one") for key, first, again in duplicates])
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(str(path), "", f"invalid YAML{where}: {problem}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    return data


def _duplicate_keys(node: yaml.Node, key: str = "") -> Iterator[tuple[str, int, int]]:
    """(key path, first line, repeated line) for every key given twice in one mapping, at any depth."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k_node, v_node in node.value:
            name = k_node.value if isinstance(k_node, yaml.ScalarNode) else None
            line = k_node.start_mark.line + 1
            if name is not None and name in seen:
                yield join_key(key, name), seen[name], line
            elif name is not None:
                seen[name] = line
            yield from _duplicate_keys(v_node, join_key(key, name if name is not None else "?"))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, join_key(key, i))


def parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value as a YAML scalar (``5`` -> int, ``true`` -> bool, ``a`` -> str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: dict, overrides: Mapping[str, Any], file: str, source: str) -> list[Problem]:
    """Set dotted keys (``a.b.c``, ``datasets.0.path``, or ``datasets[0].path`` as problems print them) in place;
    return problems for bad paths."""
    problems: list[Problem] = []
    for dotted, value in overrides.items():
        parts = re.sub(r"\[(\d+)\]", r".\1", str(dotted)).split(".")
        node: Any = config
        try:
            for part in parts[:-1]:
                if isinstance(node, list):
                    node = node[int(part)]
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                raise TypeError
        except (ValueError, IndexError, TypeError, AttributeError):
            problems.append(Problem(file, str(dotted), f"{source}: cannot set this key path in the config"))
    return problems


class EnvResolver:
    """Interpolates ``${VAR}`` and ``${VAR:-default}`` in every string, remembering secret values."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ
        self.secret_values: set[str] = set()
        self.secret_fields: dict[str, set[str]] = {}   # dotted key path -> secret values interpolated there

    def resolve(self, data: Any, file: str, problems: list[Problem], key: str = "") -> Any:
        if isinstance(data, dict):
            return {k: self.resolve(v, file, problems, join_key(key, k)) for k, v in data.items()}
        if isinstance(data, list):
            return [self.resolve(v, file, problems, join_key(key, i)) for i, v in enumerate(data)]
        if not isinstance(data, str) or "${" not in data:
            return data

        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    problems.append(Problem(file, key, f"environment variable {name} is not set "
                                            f"(export {name}=... or write ${{{name}:-default}})"))
                    return ""
                value = default
            if value and (is_secret_env_name(name) or is_secret_name(key.rsplit(".", 1)[-1])):
                self.secret_values.add(value)
                self.secret_fields.setdefault(key, set()).add(value)
            return value

        return _ENV_RE.sub(sub, data)


def find_placeholders(data: Any, file: str, key: str = "") -> list[Problem]:
    """Report template placeholders such as ``!!PLACEHOLDER!!`` or ``<YOUR_API_KEY>`` left in a config."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in find_placeholders(v, file, join_key(key, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in find_placeholders(v, file, join_key(key, i))]
    if isinstance(data, str) and _PLACEHOLDER_RE.search(data):
        return [Problem(file, key, f"placeholder {_PLACEHOLDER_RE.search(data).group(0)!r} "
                                   "was left in the config: replace it with a real value")]
    return []


def dump_yaml(data: Any) -> str:
    """YAML text with keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
