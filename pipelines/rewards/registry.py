"""The reward registries and their decorators: where reward factories, combination functions and scaling
functions are registered by name.

This module only holds the names. Looking them up goes through :mod:`pipelines.rewards.catalog`, which first
imports every module that registers something (the built-ins, the LLM judge, and the user-editable files), so
a registration can never be missed because of import order.
"""
from __future__ import annotations

from typing import Any, Callable

from pipelines.common.registry_base import Registry

REWARD_REGISTRY: Registry[Callable[..., Any]] = Registry("reward function")
COMBINATION_REGISTRY: Registry[Callable[..., Any]] = Registry("combination function")
SCALING_REGISTRY: Registry[Callable[..., Any]] = Registry("scaling function")

# Extra validators, keyed by factory: fn(kwargs) -> list of messages (e.g. the judge checks its rubric file).
KWARG_VALIDATORS: dict[int, Callable[[dict[str, Any]], list[str]]] = {}


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
            KWARG_VALIDATORS[id(factory)] = validate
        return factory

    return wrap


def register_combination_function(name: str):
    """Register a per-completion combination function (see post_processors.py for the contract)."""
    return COMBINATION_REGISTRY.decorator(name)


def register_scaling_function(name: str):
    """Register a batch scaling function (see post_processors.py for the contract)."""
    return SCALING_REGISTRY.decorator(name)


# Row columns a reward factory needs, keyed by factory: fn(kwargs) -> column names. --validate reports a dataset
# whose rows lack them (e.g. prompt-only rows without an `answer`) instead of the reward silently scoring None.
REQUIRED_COLUMNS: dict[int, Callable[[dict[str, Any]], list[str]]] = {}


def needs_columns(columns: Callable[[dict[str, Any]], list[str]]):
    """Declare which row columns a reward factory needs, given its config kwargs (stack it under
    ``@register_reward_function``)."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        REQUIRED_COLUMNS[id(factory)] = columns
        return factory

    return wrap
