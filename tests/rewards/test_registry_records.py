"""Issue 21: one record per registered reward. ``@register_reward_function`` and ``@needs_columns`` (in either
order) fill one :class:`RegisteredReward`; TRL's rewards and objects named by import path get records of the
same type; nothing is keyed by ``id()``."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pipelines.rewards import builtin, catalog, registry
from pipelines.rewards.registry import (REWARD_REGISTRY, RegisteredReward, needs_columns,
                                        register_reward_function)

HERE = "tests.rewards.test_registry_records"


def columns_below(completions, **kwargs):
    return [0.0] * len(completions)


def columns_above(ref_column: str = "ref"):
    def score(prompts, completions, **kwargs):
        return [0.0] * len(completions)
    return score


@needs_columns(lambda kw: [kw.get("gold", "gold")])
def unregistered_with_columns(completions, gold=None, **kwargs):
    """Named by import path only; it still declares a column."""
    return [0.0] * len(completions)


def _register_once() -> None:
    """Register the two test rewards (once per process: this module may be imported again by path)."""
    if "test_records_below" not in REWARD_REGISTRY:
        register_reward_function("test_records_below", aliases=("test_records_below_alias",), kind="function",
                                 text_completions=True, main_thread=True)(
            needs_columns(lambda kw: ["answer", kw.get("extra", "extra")])(columns_below))
    if "test_records_above" not in REWARD_REGISTRY:
        needs_columns(lambda kw: [kw.get("ref_column", "ref")])(
            register_reward_function("test_records_above", validate=lambda kw: ["always says no"])(columns_above))


_register_once()


def test_a_builtin_factory_has_one_record_with_everything():
    record = catalog.rewards().get("answer_match")
    assert isinstance(record, RegisteredReward)
    assert record.obj is builtin.answer_match and record.names == ("answer_match",) and record.aliases == ()
    assert record.form == "auto" and catalog.reward_kind(record) == "factory"
    assert record.origin == "builtin"
    assert record.needed_columns({}) == ["answer"] and record.needed_columns({"column": "gold"}) == ["gold"]
    assert record.kwarg_problems({"mode": "fuzzy"}) and record.kwarg_problems({"mode": "exact"}) == []
    assert (record.text_completions, record.main_thread) == (False, False)
    assert record.qualified_name == "pipelines.rewards.builtin:answer_match"
    path, line = record.location.rsplit(":", 1)
    assert Path(path).name == "builtin.py"
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert lines[int(line) - 1].startswith("@register_reward_function(\"answer_match\"")   # its decorators first
    assert any(text.startswith("def answer_match(") for text in lines[int(line):int(line) + 3])
    assert "mode" in record.signature.parameters
    assert record.signature is record.signature            # read once
    # the catalog reads everything from the record
    resolved = catalog.resolve_reward("answer_match")
    assert resolved.record is record and resolved.obj is builtin.answer_match and resolved.kind == "factory"
    assert catalog.required_columns("answer_match", {"column": "ref"}) == ["ref"]


def test_needs_columns_under_registration_and_every_flag():
    record = catalog.rewards().get("test_records_below")
    assert record.obj is columns_below and record.aliases == ("test_records_below_alias",)
    assert catalog.rewards().get("test_records_below_alias") is record      # aliases share the record
    assert (record.form, record.text_completions, record.main_thread) == ("function", True, True)
    assert record.origin == "plugin" and record.qualified_name == f"{HERE}:columns_below"
    assert catalog.required_columns("test_records_below_alias", {"extra": "nums"}) == ["answer", "nums"]
    resolved = catalog.resolve_reward("test_records_below")
    assert resolved.kind == "function" and resolved.options.main_thread and resolved.options.text_completions


def test_needs_columns_over_registration_updates_the_record():
    record = catalog.rewards().get("test_records_above")
    assert record.obj is columns_above and record.form == "auto"
    assert catalog.reward_kind(record) == "factory"
    assert catalog.required_columns("test_records_above", {}) == ["ref"]
    assert catalog.required_columns("test_records_above", {"ref_column": "gold"}) == ["gold"]
    assert record.validate is not None     # the update kept what registration had set
    assert catalog.check_reward_kwargs("test_records_above", {}) == ["always says no"]


def test_trl_shipped_rewards_have_records_of_origin_trl():
    record = catalog.rewards().get("get_cosine_scaled_reward")
    assert record is catalog.rewards().get("cosine_scaled_reward")
    assert record.names == ("cosine_scaled_reward", "get_cosine_scaled_reward") and record.origin == "trl"
    assert record.main_thread and record.validate is not None
    assert not catalog.rewards().get("think_format_reward").main_thread


def test_an_import_path_gets_a_record():
    trl_record = catalog.lookup_reward("trl.rewards:accuracy_reward")
    assert isinstance(trl_record, RegisteredReward) and trl_record.origin == "import path"
    assert trl_record.names == ("trl.rewards:accuracy_reward",)
    assert trl_record.main_thread                              # known to the registry by TRL's qualified name
    assert trl_record.obj.__module__.startswith("trl.rewards") and trl_record.target == ""
    assert "trl.rewards.accuracy_rewards:accuracy_reward" in registry.KNOWN_REWARDS

    plain = catalog.lookup_reward(f"{HERE}:unregistered_with_columns")
    assert plain.obj is unregistered_with_columns and plain.origin == "import path"
    assert (plain.form, plain.main_thread, plain.text_completions) == ("auto", False, False)
    assert catalog.reward_kind(plain) == "function"
    assert plain.needed_columns({}) == ["gold"]
    assert catalog.required_columns(f"{HERE}:unregistered_with_columns", {"gold": "solution"}) == ["solution"]
    assert catalog.lookup_reward(f"{HERE}:unregistered_with_columns") is plain     # signature read once

    # a registered object named by path is its registered record
    assert catalog.lookup_reward("pipelines.rewards.builtin:answer_match") is catalog.rewards().get("answer_match")
    with pytest.raises(KeyError) as unknown:
        catalog.lookup_reward("answer_mach")
    assert unknown.value.args[0].startswith("unknown reward function 'answer_mach' (did you mean \"answer_match\"")


def test_nothing_is_keyed_by_id():
    for module in (registry, catalog):
        assert not re.search(r"\bid\(", inspect.getsource(module))
        tables = [value for value in vars(module).values() if isinstance(value, dict)]
        assert all(not isinstance(key, int) for table in tables for key in table), module.__name__
    assert not hasattr(registry, "REWARD_OPTIONS") and not hasattr(registry, "KWARG_VALIDATORS")
    assert not hasattr(registry, "REQUIRED_COLUMNS") and not hasattr(registry, "OPTIONS_BY_QUALNAME")


def test_a_name_is_refused_twice_and_a_record_is_frozen():
    with pytest.raises(ValueError, match="registered twice"):
        register_reward_function("test_records_below")(columns_above)
    record = catalog.rewards().get("keyword")
    with pytest.raises(AttributeError):
        record.main_thread = True   # type: ignore[misc]


def test_registering_the_same_object_again_updates_its_record():
    def again(completions, **kwargs):
        return [0.0] * len(completions)

    register_reward_function("test_records_again")(again)
    register_reward_function("test_records_again", main_thread=True)(again)     # as before: no error
    assert catalog.rewards().get("test_records_again").main_thread


def test_needs_columns_on_an_unmarkable_unregistered_object_says_where_to_put_it():
    with pytest.raises(TypeError, match="cannot mark .* put it above @register_reward_function instead"):
        needs_columns(lambda kw: ["answer"])(len)      # a builtin takes no attributes and is not registered


def test_replacing_an_unregistered_name_is_refused():
    with pytest.raises(KeyError, match="reward function 'no_such_reward_xyz' is not registered"):
        REWARD_REGISTRY.replace("no_such_reward_xyz", REWARD_REGISTRY.get("keyword"))
