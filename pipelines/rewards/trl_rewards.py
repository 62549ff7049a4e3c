"""TRL's shipped reward functions (``trl.rewards``), registered under their own names.

Plain functions (``think_format_reward``, ``accuracy_reward``, ``reasoning_accuracy_reward``) are registered as
they are; TRL's factories (``get_soft_overlong_punishment``, ``get_cosine_scaled_reward``,
``get_repetition_penalty_reward``) under their reward's name, with TRL's factory name as an alias. Only what
the installed TRL has is registered; :data:`MISSING` lists the rest (empty with TRL 1.14.2).

The math rewards use math-verify, whose timeouts are ``signal.alarm`` based and so only work on the main
thread (in any other thread TRL turns them off, and one pathological answer can then hang the parse). They are
registered ``main_thread=True``: the engine runs them on the main thread, where math-verify's own timeouts
(10 s parse, 5 s verify) hold. Importing ``trl.rewards`` loads neither torch nor transformers.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

from pipelines.rewards.registry import register_reward_function

log = logging.getLogger(__name__)

# (registered name, attribute of trl.rewards, aliases, uses math-verify)
SHIPPED: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("think_format_reward", "think_format_reward", (), False),
    ("accuracy_reward", "accuracy_reward", (), True),
    ("reasoning_accuracy_reward", "reasoning_accuracy_reward", (), True),
    ("cosine_scaled_reward", "get_cosine_scaled_reward", ("get_cosine_scaled_reward",), True),
    ("soft_overlong_punishment", "get_soft_overlong_punishment", ("get_soft_overlong_punishment",), False),
    ("repetition_penalty_reward", "get_repetition_penalty_reward", ("get_repetition_penalty_reward",), False),
)
REGISTERED: list[str] = []
MISSING: list[str] = []


def _needs_math_verify(kwargs: dict[str, Any]) -> list[str]:
    if importlib.util.find_spec("math_verify") is None:
        return ["this TRL reward needs the math-verify package, which is not installed: run "
                "`.venv/bin/python -m pip install math-verify==0.9.0` (it is in requirements.txt)"]
    return []


def register_shipped() -> None:
    """Register every reward of :data:`SHIPPED` that the installed TRL has."""
    try:
        module = importlib.import_module("trl.rewards")
    except ImportError:
        MISSING.extend(name for name, *_ in SHIPPED)
        return
    for name, attr, aliases, math in SHIPPED:
        try:
            obj = getattr(module, attr)
        except (AttributeError, ImportError, RuntimeError):   # TRL's lazy module raises on a missing submodule
            MISSING.append(name)
            continue
        register_reward_function(name, aliases=aliases, validate=_needs_math_verify if math else None,
                                 main_thread=math)(obj)
        REGISTERED.append(name)


register_shipped()
