"""Import paths (``package.module:attribute``) named in configs: reward functions, nodes.

Importing user code runs it, so anything may happen: the module may be missing, raise, or call ``sys.exit``.
:func:`import_attribute` turns each of those into one :class:`ImportPathError` whose message says what went
wrong and what an import path looks like, so the config check can report it with the key path (exit 2)
instead of a traceback or a silent exit. A module that is not this project's nor an installed package's is
first imported in a child process (:mod:`pipelines.common.import_probe`): one that calls ``os._exit``, raises
``KeyboardInterrupt`` or waits at import is refused there and never imported here.
"""
from __future__ import annotations

import importlib
import traceback
from typing import Any

from pipelines.common.import_probe import is_probed, probe_import
from pipelines.common.problems import did_you_mean

FORM = "an import path is `package.module:attribute` (absolute, e.g. `my_rewards.math:exact_answer`)"


class ImportPathError(KeyError):
    """An import path that cannot be loaded; ``args[0]`` is the whole message (a KeyError, as registry
    lookups raise, so callers treat an unknown name and a bad path alike)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def is_import_path(name: str) -> bool:
    """True when ``name`` is meant as ``module:attribute`` rather than a registered name."""
    return ":" in name


def split_import_path(path: str) -> tuple[str, str]:
    """(module, attribute) of a well-formed path; ImportPathError says what is wrong with a malformed one."""
    module_name, _, attr = path.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not module_name:
        raise ImportPathError(f"import path {path!r} has no module before ':'; {FORM}")
    if module_name.startswith("."):
        raise ImportPathError(f"import path {path!r} is relative; configs cannot import relative to a package: "
                              f"write the full module path; {FORM}")
    if not attr:
        raise ImportPathError(f"import path {path!r} names no attribute after ':'; {FORM}")
    if ":" in attr:
        raise ImportPathError(f"import path {path!r} has more than one ':'; {FORM}")
    bad = [part for part in (*module_name.split("."), *attr.split(".")) if not part.isidentifier()]
    if bad:
        raise ImportPathError(f"import path {path!r}: {bad[0]!r} is not a Python name; {FORM}")
    return module_name, attr


def _where(exc: BaseException) -> str:
    """`file:line` of the innermost frame of ``exc`` (where the import failed), or ''."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def import_module(module_name: str, path: str) -> Any:
    """Import ``module_name`` (of ``path``), with every failure as an ImportPathError."""
    if is_probed(module_name):
        refused = probe_import(module_name)
        if refused:
            raise ImportPathError(f"import path {path!r}: module {module_name!r}: {refused}")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):   # the module itself (or a parent)
            raise ImportPathError(f"import path {path!r}: cannot import {module_name!r}: no module named "
                                  f"{exc.name!r} (is the package installed, or its folder on PYTHONPATH?)") from None
        raise ImportPathError(f"import path {path!r}: importing {module_name!r} failed: {exc}{_where(exc)}") \
            from None
    except SystemExit as exc:
        raise ImportPathError(f"import path {path!r}: module {module_name!r} called sys.exit({exc.code!r}) while "
                              f"being imported; a module named in a config must not exit on import") from None
    except Exception as exc:  # noqa: BLE001 - user code at import: any error becomes a config problem
        raise ImportPathError(f"import path {path!r}: importing {module_name!r} raised {type(exc).__name__}: "
                              f"{exc}{_where(exc)}") from None


def import_attribute(path: str) -> Any:
    """The object named by ``package.module:attribute`` (the attribute may be dotted: ``mod:Class.meth``)."""
    module_name, attr = split_import_path(path)
    obj = import_module(module_name, path)
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            raise ImportPathError(f"import path {path!r}: {owner!r} has no attribute {part!r}"
                                  f"{did_you_mean(part, [n for n in dir(obj) if not n.startswith('_')])}")
        obj = getattr(obj, part)
    return obj
