"""Reward-factory registry.

A *factory* is registered by name and called once per run with the keyword arguments from a dataset's
``reward_funcs`` entry; it returns the reward function TRL calls. Registrations users edit live in
``pipelines/grpo/reward_functions.py``; this module holds the machinery.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from pipelines.common.registry_base import Registry


def _load_user_registrations() -> None:
    # Importing these modules runs their @register_reward_function decorators: the LLM judge (machinery)
    # and the user-editable reward_functions.py.
    import importlib
    try:
        importlib.import_module("pipelines.grpo.rewards.judge")
    except ModuleNotFoundError as exc:
        if exc.name != "pipelines.grpo.rewards.judge":
            raise
    importlib.import_module("pipelines.grpo.reward_functions")


REWARD_REGISTRY: Registry[Callable[..., Any]] = Registry("reward function", loader=_load_user_registrations)

# Extra validators, keyed by factory: fn(kwargs) -> list of messages (e.g. the judge checks its rubric file).
_KWARG_VALIDATORS: dict[int, Callable[[dict[str, Any]], list[str]]] = {}


def register_reward_function(name: str, *, aliases: tuple[str, ...] = (),
                             validate: Callable[[dict[str, Any]], list[str]] | None = None):
    """Register a reward *factory* under ``name`` (and ``aliases``).

    ``validate``, if given, is called at ``--validate`` time with the entry's kwargs and returns a list of
    problem messages; use it for checks a signature cannot express (a file exists, a range is sane).
    """

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        for n in (name, *aliases):
            REWARD_REGISTRY.register(n, factory)
        if validate is not None:
            _KWARG_VALIDATORS[id(factory)] = validate
        return factory

    return wrap


def get_reward_factory(name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` or importable as ``module:function``; KeyError otherwise."""
    return REWARD_REGISTRY.get(name)


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
        from pipelines.common.problems import did_you_mean
        unknown = [k for k in kwargs if k not in sig.parameters]
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        if unknown and not has_var_kw:
            return [f"reward {name!r} takes no argument {k!r}{did_you_mean(k, accepted)}; "
                    f"it accepts: {', '.join(accepted) or '(none)'}" for k in unknown]
        return [f"reward {name!r}: {exc}; it accepts: {', '.join(accepted) or '(none)'}"]
    validator = _KWARG_VALIDATORS.get(id(factory))
    if validator is not None:
        return list(validator(kwargs))
    return []


def _load_post_processors() -> None:
    import pipelines.grpo.post_processors  # noqa: F401


COMBINATION_REGISTRY: Registry[Callable[..., Any]] = Registry("combination function", loader=_load_post_processors)
SCALING_REGISTRY: Registry[Callable[..., Any]] = Registry("scaling function", loader=_load_post_processors)


def register_combination_function(name: str):
    """Register a per-completion combination function (see post_processors.py for the contract)."""
    return COMBINATION_REGISTRY.decorator(name)


def register_scaling_function(name: str):
    """Register a batch scaling function (see post_processors.py for the contract)."""
    return SCALING_REGISTRY.decorator(name)


def check_function_kwargs(registry: Registry, name: str, kwargs: dict[str, Any]) -> list[str]:
    """Messages for an unknown post-processor name or kwargs that do not bind (beyond its data argument)."""
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
