"""Looking up registered reward factories and post-processors, and checking a config's use of them.

Before the first lookup every registering module is imported: the built-in rewards and post-processors and the
LLM judge (plain imports), then the user-editable files named in :data:`PLUGIN_MODULES`. Those are the one
deliberate plugin seam of the shared layers: they live beside the GRPO node, where users edit them, and they
import :mod:`pipelines.rewards.registry` to register, so they are imported here by name, never statically. The
built-ins do not depend on them: trimming a user file never removes a built-in.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import TypeAdapter, ValidationError

from pipelines.common.imports import import_attribute, is_import_path
from pipelines.common.problems import did_you_mean
from pipelines.common.registry_base import Registry
from pipelines.rewards import builtin, builtin_post_processors  # noqa: F401  (register the built-ins)
from pipelines.rewards import code_tests as code_tests_reward  # noqa: F401  (registers code_tests)
from pipelines.rewards.judge import generic as generic_judge  # noqa: F401  (registers generic_llm_reward)
from pipelines.rewards.judge import reward as judge_reward  # noqa: F401  (registers llm_judge)
from pipelines.rewards import trl_rewards  # noqa: F401  (registers TRL's shipped rewards)
from pipelines.rewards.registry import (COLUMNS_ATTR, COMBINATION_REGISTRY, KNOWN_REWARDS, REWARD_REGISTRY,
                                        SCALING_REGISTRY, RegisteredReward, qualified_name, registered_record)

log = logging.getLogger(__name__)

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


def rewards() -> Registry[RegisteredReward]:
    """The reward records by registered name (plugins loaded)."""
    load_plugins()
    return REWARD_REGISTRY


def combinations() -> Registry[Callable[..., Any]]:
    load_plugins()
    return COMBINATION_REGISTRY


def scalings() -> Registry[Callable[..., Any]]:
    load_plugins()
    return SCALING_REGISTRY


# Records of unregistered objects named by import path, by path: each object's signature is read once.
_imported: dict[str, RegisteredReward] = {}


def lookup_reward(name: str) -> RegisteredReward:
    """The record of the reward registered as ``name``, or of the object importable as ``module:function``: its
    registered record when it is a registered object, else one carrying what is known of it by qualified name
    (:data:`~pipelines.rewards.registry.KNOWN_REWARDS`), else a plain one. Raises KeyError: an unknown name
    (listing the registered ones) or a bad import path (ImportPathError says what is wrong)."""
    registry = rewards()
    if name in registry or not is_import_path(name):
        return registry.get(name)
    obj = import_attribute(name)
    record = registered_record(obj)
    if record is not None:
        return record
    cached = _imported.get(name)
    if cached is not None and cached.obj is obj:
        return cached
    known = KNOWN_REWARDS.get(qualified_name(obj))
    if known is not None:
        record = dataclasses.replace(known, obj=obj, names=(name,), origin="import path", target="")
    else:
        record = RegisteredReward(obj, (name,), columns=getattr(obj, COLUMNS_ATTR, None), origin="import path")
    _imported[name] = record
    return record


def get_reward_factory(name: str) -> Callable[..., Any]:
    """The object registered as ``name`` or importable as ``module:function`` (a factory or a plain reward
    function: see :func:`resolve_reward`); KeyError otherwise."""
    return lookup_reward(name).obj   # type: ignore[return-value]


def entry_kwargs(entry: Any) -> dict[str, Any]:
    """A ``reward_funcs`` entry's factory arguments: its extra keys, plus its ``label`` when the factory takes a
    ``label`` argument (the LLM judge names its own metrics by it)."""
    kwargs = dict(entry.kwargs)
    if getattr(entry, "label", None) is None:
        return kwargs
    try:
        sig = lookup_reward(entry.name).signature
    except KeyError:
        return kwargs
    return {**kwargs, "label": entry.label} if sig is not None and "label" in sig.parameters else kwargs


# Parameters through which TRL hands a reward function the batch (a plain function has at least one of the
# first three); the config cannot set any of them.
CONTRACT_PARAMS = ("prompts", "completions", "completion_ids")
TRL_PASSED = (*CONTRACT_PARAMS, "trainer_state", "log_extra", "log_metric", "environments")
TWO_FORMS = ("a reward entry names one of two forms: a factory, `f(**keys of the entry) -> reward function`, "
             "called once per run; or a reward function (TRL's contract), `f(completions, **kwargs) -> "
             "list[float | None]`, with a `completions`, `prompts` or `completion_ids` parameter, called on "
             "every batch (see pipelines/grpo/reward_functions.py)")


@dataclass(frozen=True)
class ResolvedReward:
    """What a reward entry's ``name`` refers to: its record, which form it is, and how it was found."""

    name: str
    record: RegisteredReward
    kind: str          # "factory" | "function"
    source: str        # "registry" | "import path"

    @property
    def obj(self) -> Callable[..., Any]:
        return self.record.obj   # type: ignore[return-value]

    @property
    def options(self) -> RegisteredReward:
        """The record, read for its call flags (``text_completions``, ``main_thread``)."""
        return self.record

    def describe(self) -> str:
        if self.kind == "factory":
            return f"reward {self.name!r} ({self.source}): a factory, called once with the entry's keys"
        return (f"reward {self.name!r} ({self.source}): a plain reward function (TRL's contract), called on "
                f"every batch")


def reward_kind(record: RegisteredReward) -> str:
    """``factory`` or ``function``: the record's declared form, or read from the signature (a parameter named
    ``completions``, ``prompts`` or ``completion_ids`` makes a reward function). TypeError when neither fits."""
    obj = record.obj
    if not callable(obj):
        raise TypeError(f"it is a {type(obj).__name__}, not a function; {TWO_FORMS}")
    if record.form != "auto":
        return record.form
    if getattr(obj, "per_sample", False):
        return "function"
    if isinstance(obj, type):
        return "factory"   # a class: its instances are the reward functions
    sig = record.signature
    if sig is None:
        raise TypeError(f"its signature cannot be read, so it is neither a factory nor a reward function that "
                        f"can be checked; {TWO_FORMS}")
    return "function" if any(p in sig.parameters for p in CONTRACT_PARAMS) else "factory"


def resolve_reward(name: str) -> ResolvedReward:
    """Look ``name`` up (registry, or import path) and tell its form. KeyError: unknown name or a bad import
    path; TypeError: it is neither a factory nor a reward function (the message explains both)."""
    record = lookup_reward(name)
    return ResolvedReward(name, record, reward_kind(record), "registry" if name in rewards() else "import path")


def _type_problems(sig: inspect.Signature, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Check each kwarg against its parameter's annotation; (values as the annotation types them, problems)."""
    out, problems = dict(kwargs), []
    for key, value in kwargs.items():
        param = sig.parameters.get(key)
        ann = param.annotation if param is not None else inspect.Parameter.empty
        if ann is inspect.Parameter.empty or isinstance(ann, str) or ann is Any:
            continue
        try:
            adapter = TypeAdapter(ann)
        except Exception:  # noqa: BLE001 - an annotation pydantic cannot check (an arbitrary class): skip it
            continue
        try:
            # Lax mode takes "1.5" for a float (YAML quoting) and passes the number on; a boolean for a number
            # would become 1/0 there, so booleans are checked strictly.
            out[key] = adapter.validate_python(value, strict=isinstance(value, bool) or None)
        except ValidationError as exc:
            err = exc.errors()[0]
            problems.append((key, f"{err['msg']}: got {value!r}; the parameter is `{key}: "
                                  f"{inspect.formatannotation(ann)}`"))
    return out, problems


def bind_reward_kwargs(resolved: ResolvedReward, kwargs: dict[str, Any]
                       ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Bind an entry's keys to the factory's (or reward function's own) parameters and type-check them against
    the annotations. Returns (the kwargs to pass, problems as (key, message); key '' for the entry)."""
    sig = resolved.record.signature
    if sig is None:
        return dict(kwargs), []
    params = sig.parameters
    settable = [n for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_KEYWORD,
                                                               inspect.Parameter.VAR_POSITIONAL)]
    name = resolved.name
    if resolved.kind == "function":
        settable = [n for n in settable if n not in TRL_PASSED]
        unknown = [k for k in kwargs if k not in settable]
        if unknown:
            return {}, [(k, f"{name!r} is a plain reward function, so an entry key can only set one of its own "
                            f"parameters, and it has no parameter {k!r}{did_you_mean(k, settable)} (settable: "
                            f"{', '.join(settable) or 'none'}); to configure it, wrap it in a factory; {TWO_FORMS}")
                        for k in unknown]
    else:
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in kwargs if k not in params]
        if unknown and not has_var_kw:
            return {}, [(k, f"reward {name!r} takes no argument {k!r}{did_you_mean(k, settable)}; it accepts: "
                            f"{', '.join(settable) or '(none)'}") for k in unknown]
        try:
            sig.bind(**kwargs)
        except TypeError as exc:
            return {}, [("", f"reward {name!r} was read as a factory (it has no `completions`, `prompts` or "
                             f"`completion_ids` parameter) and {exc}; it accepts: {', '.join(settable) or '(none)'}."
                             f" Note: {TWO_FORMS}")]
    return _type_problems(sig, kwargs)


def reward_entry_problems(name: str, kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems of one entry as (key under the entry, message): an unknown name, a bad import path, an object
    of neither form, keys that do not bind or have the wrong type, or a failed ``validate=`` hook."""
    try:
        resolved = resolve_reward(name)
    except KeyError as exc:
        return [("name", str(exc.args[0]))]
    except TypeError as exc:
        return [("name", f"{name!r}: {exc}")]
    _, problems = bind_reward_kwargs(resolved, kwargs)
    if problems:
        return problems
    return [("", msg) for msg in resolved.record.kwarg_problems(kwargs)]


def check_reward_kwargs(name: str, kwargs: dict[str, Any]) -> list[str]:
    """:func:`reward_entry_problems` as messages (each prefixed with its key). Empty when the entry is usable.
    Does not call the factory."""
    return [f"{key}: {msg}" if key and key != "name" else msg for key, msg in reward_entry_problems(name, kwargs)]


def build_reward(name: str, kwargs: dict[str, Any]) -> tuple[Callable[..., Any], ResolvedReward]:
    """The reward function of an entry: the factory called once with its (type-checked) kwargs, or the plain
    function (with the keys bound to its parameters). Logs which form it saw. Raises TypeError/ValueError."""
    resolved = resolve_reward(name)
    bound, problems = bind_reward_kwargs(resolved, kwargs)
    if problems:
        raise TypeError("; ".join(f"{k}: {m}" if k else m for k, m in problems))
    log.info("%s", resolved.describe())
    if resolved.kind == "factory":
        fn = resolved.obj(**bound)
        if not callable(fn):
            raise TypeError(f"the factory returned {type(fn).__name__}, not a function; a factory must return the "
                            f"reward function. Note: {TWO_FORMS}")
        return fn, resolved
    return (functools.partial(resolved.obj, **bound) if bound else resolved.obj), resolved


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


def required_columns(name: str, kwargs: dict[str, Any]) -> list[str]:
    """The row columns the reward ``name`` needs for these kwargs: those it declared (``@needs_columns``), and,
    for a plain reward function, its required parameters that neither TRL nor the entry's keys fill (TRL's
    ``accuracy_reward(completions, solution, **kwargs)`` needs ``solution``). [] for an unknown name (reported
    elsewhere)."""
    try:
        resolved = resolve_reward(name)
    except Exception:  # noqa: BLE001 - a name that does not resolve is reported by check_reward_kwargs
        return []
    needed = resolved.record.needed_columns(kwargs)
    return needed + [p for p in signature_columns(resolved, kwargs) if p not in needed]


def signature_columns(resolved: ResolvedReward, kwargs: dict[str, Any]) -> list[str]:
    """A plain reward function's parameters without a default that the engine fills from row columns: every one
    but TRL's own (``prompts``, ``completions``, ``trainer_state``, ...) and those the entry sets. [] for a
    factory (its reward function exists only once the factory runs) and a per-sample function."""
    sig = resolved.record.signature
    if resolved.kind != "function" or sig is None or getattr(resolved.obj, "per_sample", False):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in sig.parameters.items() if p.kind in kinds and p.default is inspect.Parameter.empty
            and n not in TRL_PASSED and n not in kwargs]
