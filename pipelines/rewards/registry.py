"""The reward registries and their decorators: where reward factories, combination functions and scaling
functions are registered by name.

A registered object is a reward *factory* or a plain reward *function* (TRL's contract);
:mod:`pipelines.rewards.catalog` tells them apart by signature. ``register_reward_function`` also records how
the engine must call what it registers (:class:`RewardOptions`).

This module only holds the names. Looking them up goes through :mod:`pipelines.rewards.catalog`, which first
imports every module that registers something (the built-ins, the LLM judge, and the user-editable files), so
a registration can never be missed because of import order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pipelines.common.registry_base import Registry

REWARD_REGISTRY: Registry[Callable[..., Any]] = Registry("reward function")
COMBINATION_REGISTRY: Registry[Callable[..., Any]] = Registry("combination function")
SCALING_REGISTRY: Registry[Callable[..., Any]] = Registry("scaling function")

# Extra validators, keyed by factory: fn(kwargs) -> list of messages (e.g. the judge checks its rubric file).
KWARG_VALIDATORS: dict[int, Callable[[dict[str, Any]], list[str]]] = {}


@dataclass(frozen=True)
class RewardOptions:
    """How the engine calls a registered reward.

    ``kind``: ``auto`` (tell a factory from a reward function by its signature), ``factory`` or ``function``.
    ``text_completions``: completions reach the reward function as plain strings, not TRL's message lists.
    ``main_thread``: a synchronous reward that must run on the main thread (signal-based timeouts, such as
    math-verify's ``signal.alarm``); see :mod:`pipelines.rewards.engine`.
    """

    kind: Literal["auto", "factory", "function"] = "auto"
    text_completions: bool = False
    main_thread: bool = False


REWARD_OPTIONS: dict[int, RewardOptions] = {}
# Options for objects named by import path, keyed by (module, qualified name): a third-party reward the
# registry knows about without importing it (TRL's math rewards need the main thread).
OPTIONS_BY_QUALNAME: dict[tuple[str, str], RewardOptions] = {}


def reward_options(obj: Any) -> RewardOptions:
    """The options ``obj`` was registered with, or known for it by qualified name; defaults otherwise."""
    if id(obj) in REWARD_OPTIONS:
        return REWARD_OPTIONS[id(obj)]
    key = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
    return OPTIONS_BY_QUALNAME.get(key, RewardOptions())  # type: ignore[arg-type]


def register_reward_function(name: str, *, aliases: tuple[str, ...] = (),
                             validate: Callable[[dict[str, Any]], list[str]] | None = None,
                             kind: Literal["auto", "factory", "function"] = "auto",
                             text_completions: bool = False, main_thread: bool = False):
    """Register a reward *factory* or a plain reward *function* under ``name`` (and ``aliases``).

    ``validate``, if given, is called at ``--validate`` time with the entry's kwargs and returns a list of
    problem messages; use it for checks a signature cannot express (a file exists, a range is sane).
    ``kind``, ``text_completions`` and ``main_thread``: see :class:`RewardOptions`.
    """
    options = RewardOptions(kind=kind, text_completions=text_completions, main_thread=main_thread)

    def wrap(obj: Callable[..., Any]) -> Callable[..., Any]:
        for n in (name, *aliases):
            REWARD_REGISTRY.register(n, obj)
        if validate is not None:
            KWARG_VALIDATORS[id(obj)] = validate
        if options != RewardOptions():
            REWARD_OPTIONS[id(obj)] = options
        return obj

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
