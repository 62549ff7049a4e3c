"""Augmentoolkit's top-level ``post_processors`` section, read with Augmentoolkit's meaning.

Augmentoolkit's pipeline function takes ``reward_combination_function`` and ``reward_scaling_function`` from
``post_processors``; the ``reward`` section's ``combination_function`` / ``scaling_function`` reach it only as
ignored keyword arguments. So ``post_processors`` decides, and a different value under ``reward`` is reported
as ignored. Works on the raw dict before the schema.
"""
from __future__ import annotations

from typing import Any

from pipelines.common.compat import Notice, info, warning
from pipelines.common.problems import Problem, did_you_mean

POST_PROCESSOR_KEYS = {"reward_combination_function": "combination_function",
                       "reward_scaling_function": "scaling_function"}


def _canonical(name: Any) -> Any:
    return "identity" if name == "none" else name      # "none" is registered as identity's alias


def normalise_post_processors(raw: dict[str, Any], file: str, notices: list[Notice]) -> list[Problem]:
    """Move ``post_processors`` into the ``reward`` section (in place); problems for unknown keys."""
    if "post_processors" not in raw:
        return []
    section = raw.pop("post_processors")
    if section is None:
        return []
    if not isinstance(section, dict):
        return [Problem(file, "post_processors", "expected a mapping with reward_combination_function and "
                                                 "reward_scaling_function")]
    problems = [Problem(file, f"post_processors.{k}", f"unknown key{did_you_mean(k, POST_PROCESSOR_KEYS)}")
                for k in section if k not in POST_PROCESSOR_KEYS]
    reward = raw.setdefault("reward", {})
    if not isinstance(reward, dict):
        return problems      # the schema reports the reward section
    for key, ours in POST_PROCESSOR_KEYS.items():
        if key not in section:
            continue
        value = section[key]
        if ours in reward and _canonical(reward[ours]) != _canonical(value):
            notices.append(warning(f"reward.{ours}", f"{reward[ours]!r} is ignored: post_processors.{key} "
                                                     f"{value!r} applies, as in Augmentoolkit"))
        reward[ours] = value
        notices.append(info(f"post_processors.{key}", f"{value!r}, used as reward.{ours}"))
    return problems
