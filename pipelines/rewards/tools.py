"""Tools a model may call while it answers: the built-in tools, lookup by name or import path, the checks
TRL's tool schema needs, and the timing wrappers behind the tool metrics.

A tool is a plain Python function with type hints and a docstring (an ``Args:`` line per parameter): TRL
builds the JSON schema the chat template shows the model from them (transformers' ``get_json_schema``), and
calls the function with the arguments the model wrote. What it returns is shown to the model as the tool
result; what it raises is shown as ``{"error": ...}`` and counted as a tool error.

The built-ins are :data:`BUILTIN_TOOLS` (one line each); plugin files register more with
``@register_tool("name")``; a config may also name any ``package.module:function``.
Nodes wire tools into their trainer (``pipelines/grpo/tools.py``); this module imports no node.
"""
from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import types
from collections import Counter
from typing import Any, Callable, Optional, Sequence

from pipelines.common.builtin_tools import python_exec
from pipelines.common.imports import ImportPathError, import_attribute, is_import_path
from pipelines.common.problems import did_you_mean
from pipelines.rewards import safe_arith

log = logging.getLogger(__name__)

# Parameters TRL hands an environment's ``reset`` and the names it never exposes as tools.
NOT_TOOLS = ("reset", "get_reward")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression over numbers with + - * / and parentheses.

    Args:
        expression: The expression to evaluate, for example "(25 - 5) * 4 + 3".

    Returns:
        The value of the expression.
    """
    value = safe_arith.evaluate(expression).value   # UnsafeExpression (a ValueError) for anything else
    return str(int(value)) if value.is_integer() else repr(value)


# name -> tool. python_exec runs the model's snippet in the bubblewrap sandbox (pipelines/common/sandbox.py).
BUILTIN_TOOLS: dict[str, Callable[..., Any]] = {"calculator": calculator, "python_exec": python_exec}
_REGISTERED: dict[str, Callable[..., Any]] = {}


def register_tool(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make a tool function available to configs as ``name``. A taken name is refused."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in BUILTIN_TOOLS or (name in _REGISTERED and _REGISTERED[name] is not fn):
            raise ValueError(f"tool name {name!r} is already taken")
        _REGISTERED[name] = fn
        return fn
    return decorate


def tool_names() -> list[str]:
    """Every tool name a config may use (built-ins and the plugin files' registrations)."""
    from pipelines.rewards.catalog import load_plugins

    load_plugins()   # the user-editable files register their tools on import
    return sorted({*BUILTIN_TOOLS, *_REGISTERED})


def lookup_tool(name: str) -> Callable[..., Any]:
    """The tool a config names: a registered name or an import path. Raises KeyError (ImportPathError for a
    path that does not load) with the names that exist, or TypeError for an object that is not a function."""
    if is_import_path(name):
        obj = import_attribute(name)
    else:
        names = tool_names()
        if name not in names:
            raise KeyError(f"unknown tool {name!r}{did_you_mean(name, names)}; registered tools: "
                           f"{', '.join(names)}; or give an import path `package.module:function`")
        obj = BUILTIN_TOOLS.get(name) or _REGISTERED[name]
    if inspect.isclass(obj) or not callable(obj):
        raise TypeError(f"tool {name!r} is {type(obj).__name__ if not inspect.isclass(obj) else 'a class'}, not "
                        "a function; a tool is a function with type hints and a docstring (an environment class "
                        "goes in `environment`)")
    return obj


def schema_problem(fn: Callable[..., Any]) -> Optional[str]:
    """Why TRL could not describe ``fn`` to the model (transformers' ``get_json_schema`` error), or None."""
    from transformers.utils.chat_template_utils import get_json_schema

    try:
        get_json_schema(fn)
    except Exception as exc:  # noqa: BLE001 - DocstringParsingException, TypeHintParsingException, ...
        return (f"TRL cannot build the tool schema of {getattr(fn, '__name__', fn)!r}: {exc} (a tool needs a "
                "type hint on every parameter and a docstring with an `Args:` line for each)")
    return None


def tool_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema the chat template shows the model for ``fn``."""
    from transformers.utils.chat_template_utils import get_json_schema

    return get_json_schema(fn)


def environment_methods(obj: Any) -> list[tuple[str, Callable[..., Any]]]:
    """The public methods of an environment (instance or class) TRL exposes as tools: not ``reset``,
    ``get_reward`` or ``_private`` ones."""
    return [(name, member) for name, member in inspect.getmembers(obj, callable)
            if not name.startswith("_") and name not in NOT_TOOLS and not inspect.isclass(member)]


def environment_problems(path: str) -> tuple[Optional[Any], list[str]]:
    """(the environment factory, what is wrong with it). A class is inspected as it is; any other factory is
    called once to inspect what it returns. Every problem is one message."""
    try:
        factory = import_attribute(path)
    except ImportPathError as exc:
        return None, [str(exc)]
    if not callable(factory):
        return None, [f"{path!r} is a {type(factory).__name__}, not a class or a function returning an environment"]
    target = factory
    if not inspect.isclass(factory):
        try:
            target = factory()
        except Exception as exc:  # noqa: BLE001 - user code: any error is a config problem
            return None, [f"calling the environment factory {path!r} raised {type(exc).__name__}: {exc}"]
    problems = []
    if not callable(getattr(target, "reset", None)):
        problems.append(f"the environment {path!r} has no `reset` method: TRL calls reset(**row) before each "
                        "rollout (return None, or text appended to the last user message)")
    for name, method in environment_methods(target):
        if inspect.isclass(target) and inspect.isfunction(method):
            method = types.MethodType(method, object())   # a view without `self`, as an instance would show it
        message = schema_problem(method)
        if message:
            problems.append(f"method {name!r} of {path!r}: {message}")
    return factory, problems


class ToolMetrics:
    """Counts and times tool calls (thread-safe: TRL may call async tools on its own loop). ``pop`` gives the
    ``tools/...`` metrics since the last pop; percentiles come from numpy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sandboxes: dict[str, Any] = {}    # tool name -> its SandboxStats (tools that run code)
        self._latencies: list[float] = []
        self._errors: Counter[str] = Counter()
        self._by_tool: Counter[str] = Counter()
        self._per_completion: list[int] = []

    def record(self, name: str, seconds: float, error: Optional[str] = None) -> None:
        with self._lock:
            self._latencies.append(seconds)
            self._by_tool[name] += 1
            if error:
                self._errors[error] += 1

    def watch_sandbox(self, name: str, fn: Callable[..., Any]) -> None:
        """Report the sandbox runs of tool ``name`` (one carrying ``sandbox_stats``) as ``tools/<name>/sandbox/...``:
        runs, latency p50/p95 and kills by reason."""
        stats = getattr(fn, "sandbox_stats", None)
        if stats is not None:
            stats.discard()   # the tool is module-level: drop runs made before this run (an earlier node, a check)
            with self._lock:
                self._sandboxes[name] = stats

    def observe_completions(self, completions: Sequence[Any]) -> None:
        """Count the tool calls each completion (a message list) made."""
        with self._lock:
            self._per_completion.extend(count_tool_calls(c) for c in completions)

    def pop(self) -> dict[str, float]:
        import numpy as np

        with self._lock:
            latencies, errors, by_tool, per = self._latencies, self._errors, self._by_tool, self._per_completion
            self._latencies, self._errors, self._by_tool, self._per_completion = [], Counter(), Counter(), []
        out: dict[str, float] = {}
        if per:
            out["tools/calls_per_completion"] = float(np.mean(per))
            out["tools/completions_with_calls"] = float(np.mean([n > 0 for n in per]))
        if per or latencies:
            out["tools/calls"] = float(len(latencies))
            out["tools/errors"] = float(sum(errors.values()))
        for reason, n in sorted(errors.items()):
            out[f"tools/errors/{reason}"] = float(n)
        for name, n in sorted(by_tool.items()):
            out[f"tools/{name}/calls"] = float(n)
        if latencies:
            p50, p95 = np.percentile(latencies, [50, 95])
            out["tools/latency_s/p50"] = float(p50)
            out["tools/latency_s/p95"] = float(p95)
        for name, stats in sorted(self._sandboxes.items()):   # a collective: every rank pops at the same step
            for key, value in stats.pop().items():
                out[f"tools/{name}/sandbox/{key}"] = value
        return out


def count_tool_calls(completion: Any) -> int:
    """Tool calls in one completion: the ``tool_calls`` of its assistant messages (0 for plain text)."""
    if not isinstance(completion, (list, tuple)):
        return 0
    return sum(len(m.get("tool_calls") or []) for m in completion
               if isinstance(m, dict) and m.get("role") == "assistant")


def error_reason(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], exc: BaseException) -> str:
    """``bad_arguments`` when the model's arguments do not fit the signature, else the exception's class."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return "bad_arguments"
    except ValueError:   # no signature to check against
        pass
    return type(exc).__name__


def timed(fn: Callable[..., Any], metrics: ToolMetrics, name: Optional[str] = None) -> Callable[..., Any]:
    """``fn`` recording each call's latency and error reason in ``metrics``; same name, signature, type hints
    and docstring (TRL's schema), async when ``fn`` is."""
    label = name or fn.__name__
    metrics.watch_sandbox(label, fn)

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                metrics.record(label, time.perf_counter() - start, error_reason(fn, args, kwargs, exc))
                raise
            metrics.record(label, time.perf_counter() - start)
            return result
        return timed_async

    @functools.wraps(fn)
    def timed_call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            metrics.record(label, time.perf_counter() - start, error_reason(fn, args, kwargs, exc))
            raise
        metrics.record(label, time.perf_counter() - start)
        return result
    return timed_call


def bind_method(instance: Any, fn: Callable[..., Any], name: Optional[str] = None) -> None:
    """Attach ``fn`` to ``instance`` as a bound method named ``name`` (default: its own), which TRL then
    finds as one of the environment's tools; its schema is ``fn``'s. Raises AttributeError where the instance
    takes no new attributes (``__slots__``)."""
    inner = fn

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def method(_self: Any, *args: Any, **kwargs: Any) -> Any:
            return await inner(*args, **kwargs)
    else:
        @functools.wraps(fn)
        def method(_self: Any, *args: Any, **kwargs: Any) -> Any:
            return inner(*args, **kwargs)
    # A bound method's signature drops the first parameter: put `self` in front of the tool's own.
    params = list(inspect.signature(fn).parameters.values())
    method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY), *params],
        return_annotation=inspect.signature(fn).return_annotation)
    setattr(instance, name or fn.__name__, types.MethodType(method, instance))
