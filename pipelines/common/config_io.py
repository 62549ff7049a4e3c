"""Loading node configs: YAML, dotted overrides, ``${ENV}`` interpolation (secrets noted for redaction), placeholders.

Nothing here imports torch, transformers or trl: a config mistake must be reported in well under
three seconds.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from pipelines.common.problems import ConfigError, Problem, join_key
from pipelines.common.redaction import is_secret_env_name, is_secret_name

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER_RE = re.compile(r"!!PLACEHOLDER!!|<YOUR_[A-Z0-9_]*>", re.IGNORECASE)


MAX_YAML_VALUES = 100_000     # values of a YAML document once its aliases are expanded ("billion laughs" bound)
MAX_CONFIG_BYTES = 1 << 20    # a node config or super-config (real ones are a few KiB; YAML parses ~1 MB/s)


def read_text_capped(path: str | Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, read without blocking on a FIFO or device.
    Raises: ValueError saying what is wrong (not a regular file, too large, not UTF-8); OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file (a folder, FIFO or device)")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is {max(info.st_size, len(data)) / 1024:,.0f} KiB; at most {limit // 1024:,} KiB is read "
                         "(is it the right file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file, a syntax error or a duplicate key is a :class:`ConfigError` naming
    the file (a duplicate with both line numbers: YAML would silently keep the last value), and so are anchors
    and aliases that expand past :data:`MAX_YAML_VALUES` values or refer to themselves."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([Problem(str(path), "", "file not found")])
    try:
        text = read_text_capped(path, MAX_CONFIG_BYTES)
    except ValueError as exc:
        message = str(exc) if str(exc).startswith("is not UTF") else f"the file {exc}"
        raise ConfigError([Problem(str(path), "", message.replace("is not UTF-8 text", "not UTF-8 text"))]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot be read: {exc.strerror}")]) from None
    return load_yaml_text(text, str(path))


def load_yaml_text(stream: Any, file: str) -> Any:
    """Parse YAML text (a string or an open file) safely and within bounds; ConfigError naming ``file``.
    Raises: ConfigError."""
    try:
        loader = yaml.SafeLoader(stream)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expansion(node, file)
            duplicates = list(_duplicate_keys(node)) if node is not None else []
            if duplicates:
                raise ConfigError([Problem(file, key, f"duplicate key: first at line {first}, again at "
                                                      f"line {again}; YAML would silently keep the last "
                                                      f"value. Keep one") for key, first, again in duplicates])
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, "", f"invalid YAML{where}: {problem}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, "", "invalid YAML: it nests too deeply")]) from None


class _TooLarge(Exception):
    pass


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand past MAX_YAML_VALUES values or contain themselves. Sizes are
    memoized per node, so the check is linear in the text however far the aliases would expand."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            mark = node.start_mark
            raise ConfigError([Problem(file, "", f"an alias at line {mark.line + 1} refers to a value that "
                                                 "contains it (a recursive YAML structure)")])
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_YAML_VALUES:
                raise _TooLarge
        active.discard(key)
        sizes[key] = total
        return total

    try:
        size(root)
    except _TooLarge:
        raise ConfigError([Problem(file, "", f"anchors and aliases (&name / *name) expand to more than "
                                             f"{MAX_YAML_VALUES} values; a config this large is refused (is it "
                                             "a \"billion laughs\" document?)")]) from None


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
        return load_yaml_text(text, "--set")
    except ConfigError:
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
