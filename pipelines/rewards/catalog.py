"""Looking up registered reward factories and post-processors, and checking a config's use of them.

Before the first lookup every registering module is imported: the built-in rewards and post-processors and the
LLM judge (plain imports), then the user-editable files named in :data:`PLUGIN_MODULES`. Those are the one
deliberate plugin seam of the shared layers: they live beside the GRPO node, where users edit them, and they
import :mod:`pipelines.rewards.registry` to register, so they are imported here by name, never statically. The
built-ins do not depend on them: trimming a user file never removes a built-in.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from pipelines.common.problems import did_you_mean
from pipelines.common.registry_base import Registry
from pipelines.rewards import builtin, builtin_post_processors  # noqa: F401  (register the built-ins)
from pipelines.rewards.judge import generic as generic_judge  # noqa: F401  (registers generic_llm_reward)
from pipelines.rewards.judge import reward as judge_reward  # noqa: F401  (registers llm_judge)
from pipelines.rewards.registry import (COMBINATION_REGISTRY, KWARG_VALIDATORS, REWARD_REGISTRY,
                                        SCALING_REGISTRY)

# The user-editable registration files (the plugin seam described above).
PLUGIN_MODULES = ("pipelines.grpo.reward_functions", "pipelines.grpo.post_processors")
_loaded = False


def load_plugins() -> None:
    """Import the user-editable files once, so their registrations exist."""
    global _loaded
    if not _loaded:
        for name in PLUGIN_MODULES:
            importlib.import_module(name)
        _loaded = True


def rewards() -> Registry[Callable[..., Any]]:
    load_plugins()
    return REWARD_REGISTRY


def combinations() -> Registry[Callable[..., Any]]:
    load_plugins()
    return COMBINATION_REGISTRY


def scalings() -> Registry[Callable[..., Any]]:
    load_plugins()
    return SCALING_REGISTRY


def get_reward_factory(name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` or importable as ``module:function``; KeyError otherwise."""
    return rewards().get(name)


def entry_kwargs(entry: Any) -> dict[str, Any]:
    """A ``reward_funcs`` entry's factory arguments: its extra keys, plus its ``label`` when the factory takes a
    ``label`` argument (the LLM judge names its own metrics by it)."""
    kwargs = dict(entry.kwargs)
    if getattr(entry, "label", None) is None:
        return kwargs
    try:
        params = inspect.signature(get_reward_factory(entry.name)).parameters
    except (KeyError, TypeError, ValueError):
        return kwargs
    return {**kwargs, "label": entry.label} if "label" in params else kwargs


def check_reward_kwargs(name: str, kwargs: dict[str, Any]) -> list[str]:
    """Messages for an unknown name, kwargs that do not bind to the factory's signature, or a failed
    factory-specific validator. Empty when the entry is usable. Does not call the factory."""
    try:
        factory = get_reward_factory(name)
    except KeyError as exc:
        return [str(exc.args[0])]
    if not callable(factory):
        return [f"{name!r} is not callable"]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        accepted = [p for p in sig.parameters if sig.parameters[p].kind not in
                    (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
        unknown = [k for k in kwargs if k not in sig.parameters]
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        if unknown and not has_var_kw:
            return [f"reward {name!r} takes no argument {k!r}{did_you_mean(k, accepted)}; "
                    f"it accepts: {', '.join(accepted) or '(none)'}" for k in unknown]
        return [f"reward {name!r}: {exc}; it accepts: {', '.join(accepted) or '(none)'}"]
    validator = KWARG_VALIDATORS.get(id(factory))
    if validator is not None:
        return list(validator(kwargs))
    return []


def check_function_kwargs(registry: Registry, name: str, kwargs: dict[str, Any]) -> list[str]:
    """Messages for an unknown post-processor name or kwargs that do not bind (beyond its data argument)."""
    load_plugins()
    try:
        fn = registry.get(name)
    except KeyError as exc:
        return [str(exc.args[0])]
    try:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1:]  # the first parameter receives the scores
        sig.replace(parameters=params).bind(**kwargs)
    except (TypeError, ValueError) as exc:
        return [f"{registry.kind} {name!r}: {exc}"]
    return []
