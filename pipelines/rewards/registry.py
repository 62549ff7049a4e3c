"""The reward registries and their decorators: where reward factories, combination functions and scaling
functions are registered by name.

Each registered reward is one :class:`RegisteredReward` record: the object, its names, its declared form, the
row columns it needs, its extra kwarg check, how the engine must call it (``text_completions``,
``main_thread``), its signature and where it comes from. ``@register_reward_function`` and ``@needs_columns``
fill that record (in either decorator order); :mod:`pipelines.rewards.catalog` reads everything from it.
Third-party objects the project knows about without importing them (TRL's math rewards need the main thread)
are records too, in :data:`KNOWN_REWARDS`, keyed by qualified name.

This module only holds the records. Looking them up goes through :mod:`pipelines.rewards.catalog`, which first
imports every module that registers something (the built-ins, the LLM judge, and the user-editable files), so
a registration can never be missed because of import order.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pipelines.common.registry_base import Registry

Form = Literal["auto", "factory", "function"]
# builtin: registered by the project's own reward modules (pipelines/rewards/...); trl: TRL's shipped rewards;
# plugin: registered anywhere else (the user-editable file, a user's package, tests); import path: named in a
# config as `module:function` without being registered.
Origin = Literal["builtin", "trl", "plugin", "import path"]
KwargsCheck = Callable[[dict[str, Any]], list[str]]
BUILTIN_PACKAGE = "pipelines.rewards"
# The attribute @needs_columns leaves on a function that is not registered yet; registration picks it up.
COLUMNS_ATTR = "__reward_needs_columns__"


@dataclass(frozen=True)
class RegisteredReward:
    """Everything known about one reward object (see the module docstring).

    ``form``: ``auto`` (the catalog tells a factory from a reward function by its signature), ``factory`` or
    ``function``. ``columns``: fn(kwargs) -> the row columns the reward needs. ``validate``: fn(kwargs) ->
    problem messages, for checks a signature cannot express. ``text_completions``: completions reach the reward
    function as plain strings, not TRL's message lists. ``main_thread``: a synchronous reward that must run on
    the main thread (signal-based timeouts, such as math-verify's ``signal.alarm``). ``target``: the qualified
    name (``module:qualname``) of a known third-party object that is not imported yet (``obj`` is None).
    """

    obj: Callable[..., Any] | None
    names: tuple[str, ...]
    form: Form = "auto"
    columns: KwargsCheck | None = None
    validate: KwargsCheck | None = None
    text_completions: bool = False
    main_thread: bool = False
    origin: Origin = "plugin"
    target: str = ""

    @property
    def name(self) -> str:
        """The registered name (for an import-path record, the path it was named by)."""
        return self.names[0]

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.names[1:]

    @property
    def qualified_name(self) -> str:
        """``module:qualname`` of the object."""
        return self.target or qualified_name(self.obj)

    @functools.cached_property
    def location(self) -> str:
        """``file:line`` where the object's definition starts (its first decorator), or '' when Python cannot
        tell (a C function)."""
        try:
            obj = inspect.unwrap(self.obj)   # type: ignore[arg-type]
            return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
        except (TypeError, OSError, ValueError):
            return ""

    @functools.cached_property
    def signature(self) -> inspect.Signature | None:
        """The object's signature, read once; string annotations are evaluated when they can be, else kept as
        names. None when it cannot be read."""
        try:
            return inspect.signature(self.obj, eval_str=True)   # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        except Exception:  # noqa: BLE001 - an annotation that does not evaluate: check names, not types
            try:
                return inspect.signature(self.obj)   # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None

    def needed_columns(self, kwargs: dict[str, Any]) -> list[str]:
        """The row columns the reward needs with these entry kwargs ([] when it declared none)."""
        return list(self.columns(kwargs)) if self.columns is not None else []

    def kwarg_problems(self, kwargs: dict[str, Any]) -> list[str]:
        """The ``validate=`` hook's messages for these entry kwargs ([] without a hook)."""
        return list(self.validate(kwargs)) if self.validate is not None else []


def qualified_name(obj: Any) -> str:
    """``module:qualname`` of ``obj`` (``?`` for a part it lacks)."""
    return f"{getattr(obj, '__module__', None) or '?'}:{getattr(obj, '__qualname__', None) or '?'}"


REWARD_REGISTRY: Registry[RegisteredReward] = Registry("reward function")
COMBINATION_REGISTRY: Registry[Callable[..., Any]] = Registry("combination function")
SCALING_REGISTRY: Registry[Callable[..., Any]] = Registry("scaling function")
# Third-party objects known by qualified name (`module:qualname`), each a record with obj=None.
KNOWN_REWARDS: dict[str, RegisteredReward] = {}


def add_reward(record: RegisteredReward) -> RegisteredReward:
    """Register ``record`` under each of its names; ValueError when a name is taken by another object (the
    same object registered again under a name gets the new record)."""
    for n in record.names:
        if n in REWARD_REGISTRY and REWARD_REGISTRY.get(n).obj is record.obj:
            REWARD_REGISTRY.replace(n, record)
        else:
            REWARD_REGISTRY.register(n, record)
    return record


def know_reward(record: RegisteredReward) -> RegisteredReward:
    """Remember a third-party object by its qualified name (``record.target``), without importing it: the
    catalog gives an import path that names it this record's flags."""
    KNOWN_REWARDS[record.target] = record
    return record


def registered_record(obj: Any) -> RegisteredReward | None:
    """The record ``obj`` was registered with, if it was."""
    for n in REWARD_REGISTRY.names():
        record = REWARD_REGISTRY.get(n)
        if record.obj is obj:
            return record
    return None


def _origin(obj: Any) -> Origin:
    module = getattr(obj, "__module__", None) or ""
    return "builtin" if module == BUILTIN_PACKAGE or module.startswith(BUILTIN_PACKAGE + ".") else "plugin"


def register_reward_function(name: str, *, aliases: tuple[str, ...] = (), validate: KwargsCheck | None = None,
                             kind: Form = "auto", text_completions: bool = False, main_thread: bool = False):
    """Register a reward *factory* or a plain reward *function* under ``name`` (and ``aliases``).

    ``validate``, if given, is called at ``--validate`` time with the entry's kwargs and returns a list of
    problem messages; use it for checks a signature cannot express (a file exists, a range is sane).
    ``kind`` (the record's ``form``), ``text_completions`` and ``main_thread``: see :class:`RegisteredReward`.
    Raises ValueError when a name is already registered for another object.
    """

    def wrap(obj: Callable[..., Any]) -> Callable[..., Any]:
        add_reward(RegisteredReward(obj, (name, *aliases), form=kind, columns=getattr(obj, COLUMNS_ATTR, None),
                                    validate=validate, text_completions=text_completions,
                                    main_thread=main_thread, origin=_origin(obj)))
        return obj

    return wrap


def needs_columns(columns: KwargsCheck):
    """Declare which row columns a reward factory needs, given its config kwargs: ``columns(kwargs)`` -> column
    names. ``--validate`` reports a dataset whose rows lack them (e.g. prompt-only rows without an `answer`)
    instead of the reward silently scoring None. Stack it under or over ``@register_reward_function``."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        record = registered_record(factory)              # already registered (this decorator sits above)
        if record is not None:
            add_reward(dataclasses.replace(record, columns=columns))   # same object: its names get the new record
        try:
            setattr(factory, COLUMNS_ATTR, columns)      # picked up when it is registered after this
        except (AttributeError, TypeError):
            if record is None:
                raise TypeError(f"@needs_columns cannot mark {factory!r} (it takes no attributes); put it above "
                                f"@register_reward_function instead") from None
        return factory

    return wrap


def register_combination_function(name: str):
    """Register a per-completion combination function (see post_processors.py for the contract)."""
    return COMBINATION_REGISTRY.decorator(name)


def register_scaling_function(name: str):
    """Register a batch scaling function (see post_processors.py for the contract)."""
    return SCALING_REGISTRY.decorator(name)
