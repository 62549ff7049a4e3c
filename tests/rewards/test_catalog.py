"""The reward catalog: built-ins are always registered, the user-editable files are loaded by name (the plugin
seam), and a name registered twice is refused."""
from __future__ import annotations

import subprocess
import sys

import pytest

TRIMMED = """
import sys, types
# The user emptied both editable files: they register nothing (and import nothing).
for name in ("pipelines.grpo.reward_functions", "pipelines.grpo.post_processors"):
    sys.modules[name] = types.ModuleType(name)
from pipelines.rewards import catalog
print(sorted(catalog.rewards().names()))
print(sorted(catalog.combinations().names()), sorted(catalog.scalings().names()))
"""


def test_trimming_the_user_files_removes_no_built_in():
    out = subprocess.run([sys.executable, "-c", TRIMMED], capture_output=True, text=True, check=True).stdout
    rewards, post = out.splitlines()
    for name in ("keyword", "regex_match", "answer_match", "countdown_equation", "think_answer_format",
                 "cot_format", "length_target", "repetition_penalty", "llm_judge", "generic_llm_reward"):
        assert repr(name) in rewards
    assert "example_mentions_topic" not in rewards          # the worked examples live in the user file
    for name in ("sum", "mean", "weighted_sum", "min", "product", "identity", "zscore", "minmax", "rank", "clip"):
        assert repr(name) in post


def test_user_file_registrations_are_found():
    from pipelines.rewards import catalog

    assert "example_mentions_topic" in catalog.rewards().names()
    assert catalog.check_reward_kwargs("example_mentions_topic", {"topic": "rivers"}) == []


def test_a_name_registered_twice_is_refused():
    from pipelines.rewards import catalog
    from pipelines.rewards.registry import register_combination_function, register_reward_function

    catalog.load_plugins()
    with pytest.raises(ValueError, match="registered twice"):
        register_reward_function("keyword")(lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        register_combination_function("sum")(lambda scores: 0.0)
