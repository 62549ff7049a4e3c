"""TRL's shipped reward functions (``trl.rewards``), registered under their own names.

Plain functions (``think_format_reward``, ``accuracy_reward``, ``reasoning_accuracy_reward``) are registered as
plain functions; TRL's factories (``get_soft_overlong_punishment``, ``get_cosine_scaled_reward``,
``get_repetition_penalty_reward``) under their reward's name, with TRL's factory name as an alias. Each is a thin
wrapper with TRL's signature that imports TRL only when called: ``--validate`` checks the keys against that
signature without importing trl (it must stay fast and free of heavy imports). Only what the installed TRL
ships is registered (read from its ``trl/rewards/__init__.py``); :data:`MISSING` lists the rest (empty with TRL
1.14.2).

The math rewards use math-verify, whose timeouts are ``signal.alarm`` based and so only work on the main
thread (in any other thread TRL turns them off, and one pathological answer can then hang the parse). They are
registered ``main_thread=True``, and so are TRL's own objects when named by import path
(``trl.rewards:accuracy_reward``): the engine runs them on the main thread, where math-verify's own timeouts
(10 s parse, 5 s verify) hold.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

from pipelines.common import availability
from pipelines.rewards.registry import RegisteredReward, add_reward, know_reward

REGISTERED: list[str] = []
MISSING: list[str] = []


def _trl(attr: str) -> Callable[..., Any]:
    return getattr(importlib.import_module("trl.rewards"), attr)


def think_format_reward(completions, **kwargs):
    """TRL's ``think_format_reward``: 1.0 when the completion is ``<think>…</think>`` then an answer."""
    return _trl("think_format_reward")(completions, **kwargs)


def accuracy_reward(completions, solution, **kwargs):
    """TRL's ``accuracy_reward``: math-verify compares the completion with the row's ``solution``."""
    return _trl("accuracy_reward")(completions, solution, **kwargs)


def reasoning_accuracy_reward(completions, solution, reasoning_delimiters: Optional[list[str]] = None, **kwargs):
    """TRL's ``reasoning_accuracy_reward``: ``accuracy_reward`` on the text after the reasoning."""
    return _trl("reasoning_accuracy_reward")(completions, solution, reasoning_delimiters=reasoning_delimiters,
                                             **kwargs)


def cosine_scaled_reward(max_len: int, min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
                         min_value_correct: float = 0.5, max_value_correct: float = 1.0):
    """TRL's ``get_cosine_scaled_reward``: correctness scaled by completion length (tokens)."""
    return _trl("get_cosine_scaled_reward")(max_len, min_value_wrong, max_value_wrong, min_value_correct,
                                            max_value_correct)


def soft_overlong_punishment(max_completion_len: int, soft_punish_cache: int):
    """TRL's ``get_soft_overlong_punishment`` (DAPO): 0 up to ``max - cache`` tokens, then down to -1."""
    return _trl("get_soft_overlong_punishment")(max_completion_len, soft_punish_cache)


def repetition_penalty_reward(ngram_size: int = 3, max_penalty: float = -1.0):
    """TRL's ``get_repetition_penalty_reward``: repeated token n-grams, 0 down to ``max_penalty`` (<= 0)."""
    return _trl("get_repetition_penalty_reward")(ngram_size, max_penalty)


# (wrapper, TRL's attribute, aliases, TRL's module, uses math-verify)
SHIPPED: tuple[tuple[Callable[..., Any], str, tuple[str, ...], str, bool], ...] = (
    (think_format_reward, "think_format_reward", (), "format_rewards", False),
    (accuracy_reward, "accuracy_reward", (), "accuracy_rewards", True),
    (reasoning_accuracy_reward, "reasoning_accuracy_reward", (), "accuracy_rewards", True),
    (cosine_scaled_reward, "get_cosine_scaled_reward", ("get_cosine_scaled_reward",), "accuracy_rewards", True),
    (soft_overlong_punishment, "get_soft_overlong_punishment", ("get_soft_overlong_punishment",), "other_rewards",
     False),
    (repetition_penalty_reward, "get_repetition_penalty_reward", ("get_repetition_penalty_reward",),
     "other_rewards", False),
)


def _needs_math_verify(kwargs: dict[str, Any]) -> list[str]:
    if not availability.is_available("math_verify"):
        return ["this TRL reward needs the math-verify package, which is not installed: run "
                "`.venv/bin/python -m pip install math-verify==0.9.0` (it is in requirements.txt)"]
    return []


def _shipped_names() -> str:
    """The text of the installed ``trl/rewards/__init__.py`` (its export list), read without importing trl."""
    trl_dir = availability.package_dir("trl")
    if trl_dir is None:
        return ""
    init = trl_dir / "rewards" / "__init__.py"
    return init.read_text(encoding="utf-8") if init.is_file() else ""


def register_shipped() -> None:
    """Register every reward of :data:`SHIPPED` that the installed TRL exports."""
    exported = _shipped_names()
    for wrapper, attr, aliases, module, math in SHIPPED:
        if f'"{attr}"' not in exported:
            MISSING.append(wrapper.__name__)
            continue
        validate = _needs_math_verify if math else None
        add_reward(RegisteredReward(wrapper, (wrapper.__name__, *aliases), validate=validate, main_thread=math,
                                    origin="trl"))
        if math:   # TRL's own object, named by import path, runs on the main thread too
            know_reward(RegisteredReward(None, (attr,), main_thread=True, origin="trl",
                                         target=f"trl.rewards.{module}:{attr}"))
        REGISTERED.append(wrapper.__name__)


register_shipped()
