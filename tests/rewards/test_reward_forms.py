"""Issue 13.4 and 16 F17: a reward entry names a factory or a plain reward function (TRL's contract), by
registry name or import path; the registry tells them apart and says which; completions can be asked for as
text; entry keys are bound and type-checked against the signature."""
from __future__ import annotations

import logging

import pytest

from pipelines.rewards import catalog
from pipelines.rewards.checks import check_reward_funcs
from pipelines.rewards.registry import REWARD_REGISTRY, register_reward_function
from tests.rewards.reward_cfg import make_cfg, row, stack_for

HERE = "tests.rewards.test_reward_forms"


def course_len_reward(completions, **kwargs):
    """Ported from the TRL course notes: it expects plain-text completions."""
    return [float(len(completion)) for completion in completions]


def tuned_reward(completions, bonus: float = 0.0, **kwargs):
    """A plain function with a parameter of its own, settable from the entry."""
    return [bonus] * len(completions)


def penalty_factory(max_penalty: float = 1.0, ngram: int = 3, mode: str = "soft"):
    def penalty(prompts, completions, **kwargs):
        return [-max_penalty] * len(completions)
    return penalty


def needs_texts(texts, **kwargs):
    """Neither form: no completions parameter, and a required argument no entry can mean."""
    return [0.0]


NOT_CALLABLE = 42


def test_plain_function_by_import_path_and_trl_name(caplog):
    caplog.set_level(logging.INFO, logger="pipelines.rewards.catalog")
    for name in ("trl.rewards:think_format_reward", "think_format_reward"):
        resolved = catalog.resolve_reward(name)
        assert resolved.kind == "function"
        assert catalog.check_reward_kwargs(name, {}) == []
    assert catalog.resolve_reward("trl.rewards:think_format_reward").source == "import path"
    assert catalog.resolve_reward("think_format_reward").source == "registry"
    stack = stack_for(make_cfg([{"name": "trl.rewards:think_format_reward"}, {"name": "keyword", "keywords": "x"}]))
    results = stack.score_batch(None, ["<think>hm</think>yes", "no think"], [row(0), row(0)])
    assert [r.rewards["ds0/think_format_reward"] for r in results] == [1.0, 0.0]
    said = [r.getMessage() for r in caplog.records]
    assert any("'trl.rewards:think_format_reward' (import path): a plain reward function" in m for m in said)
    assert any("'keyword' (registry): a factory" in m for m in said)


def test_trl_shipped_rewards_registered_under_their_names():
    from pipelines.rewards import trl_rewards

    names = catalog.rewards().names()
    for name in ("think_format_reward", "accuracy_reward", "reasoning_accuracy_reward", "cosine_scaled_reward",
                 "get_cosine_scaled_reward", "soft_overlong_punishment", "get_soft_overlong_punishment"):
        assert name in names
    assert trl_rewards.MISSING == []                      # TRL 1.14.2 ships every one
    assert catalog.resolve_reward("soft_overlong_punishment").kind == "factory"
    assert catalog.resolve_reward("accuracy_reward").options.main_thread
    # the same object by import path carries the same options
    assert catalog.resolve_reward("trl.rewards:accuracy_reward").options.main_thread
    fn, _ = catalog.build_reward("soft_overlong_punishment", {"max_completion_len": 10, "soft_punish_cache": 4})
    assert fn(completion_ids=[[1] * 5, [1] * 8, [1] * 11]) == [0.0, -0.5, -1.0]


def test_neither_form_explains_both():
    msgs = catalog.check_reward_kwargs(f"{HERE}:needs_texts", {})
    assert len(msgs) == 1 and "read as a factory" in msgs[0] and "'texts'" in msgs[0]
    assert "f(completions, **kwargs)" in msgs[0] and "called once per run" in msgs[0]
    msgs = catalog.check_reward_kwargs(f"{HERE}:NOT_CALLABLE", {})
    assert "it is a int, not a function" in msgs[0] and "f(completions, **kwargs)" in msgs[0]


def test_plain_function_entry_keys_set_its_own_parameters():
    assert catalog.check_reward_kwargs(f"{HERE}:tuned_reward", {"bonus": 2}) == []
    fn, _ = catalog.build_reward(f"{HERE}:tuned_reward", {"bonus": 2})
    assert fn(completions=["a", "b"]) == [2.0, 2.0]
    msgs = catalog.check_reward_kwargs(f"{HERE}:tuned_reward", {"bonsu": 2})
    assert "no parameter 'bonsu'" in msgs[0] and 'did you mean "bonus"' in msgs[0]
    # keys meant for TRL's own arguments are refused, not silently overridden per batch
    assert "no parameter 'completions'" in catalog.check_reward_kwargs(f"{HERE}:tuned_reward",
                                                                        {"completions": []})[0]
    assert catalog.check_reward_kwargs("think_format_reward", {"x": 1})


def test_text_completions_from_the_entry_and_the_decorator():
    rows = [row(0), row(0)]
    plain = make_cfg([{"name": f"{HERE}:course_len_reward"}])
    assert [r.combined for r in stack_for(plain).score_batch(None, ["four", "sixsix"], rows)] == [1.0, 1.0]
    as_text = make_cfg([{"name": f"{HERE}:course_len_reward", "text_completions": True}])
    assert [r.combined for r in stack_for(as_text).score_batch(None, ["four", "sixsix"], rows)] == [4.0, 6.0]

    name = "test_forms_course_len_text"
    if name not in REWARD_REGISTRY:
        register_reward_function(name, text_completions=True)(lambda completions, **kw: [float(len(c))
                                                                                          for c in completions])
    assert catalog.resolve_reward(name).kind == "function"
    registered = make_cfg([{"name": name}])
    assert [r.combined for r in stack_for(registered).score_batch(None, ["four", "sixsix"], rows)] == [4.0, 6.0]
    # the entry can turn the registered default off
    off = make_cfg([{"name": name, "text_completions": False}])
    assert [r.combined for r in stack_for(off).score_batch(None, ["four", "sixsix"], rows)] == [1.0, 1.0]


def test_f17_kwargs_of_the_wrong_type_are_validate_errors_with_the_key_path():
    cfg = make_cfg([{"name": "repetition_penalty", "max_penalty": "lots"},
                    {"name": f"{HERE}:penalty_factory", "ngram": True, "mode": 3},
                    {"name": "keyword", "keywords": ["a"], "case_sensitive": "perhaps"}])
    problems = check_reward_funcs(cfg.datasets, "cfg.yaml")
    keys = sorted(p.key for p in problems)
    assert keys == ["datasets[0].reward_funcs[0].max_penalty", "datasets[0].reward_funcs[1].mode",
                    "datasets[0].reward_funcs[1].ngram", "datasets[0].reward_funcs[2].case_sensitive"]
    by_key = {p.key: p.message for p in problems}
    assert "'lots'" in by_key["datasets[0].reward_funcs[0].max_penalty"]
    assert "max_penalty: float" in by_key["datasets[0].reward_funcs[0].max_penalty"]
    # right types (an int where a float is declared) pass
    ok = make_cfg([{"name": "repetition_penalty", "max_penalty": 2, "ngram_size": 2}])
    assert check_reward_funcs(ok.datasets, "cfg.yaml") == []


def test_plain_function_wrong_type_for_its_own_parameter():
    msgs = catalog.check_reward_kwargs(f"{HERE}:tuned_reward", {"bonus": "big"})
    assert msgs and msgs[0].startswith("bonus: ")


@pytest.mark.parametrize("path, expected", [
    (":fn", "has no module before ':'"),
    (".relative_mod:fn", "is relative"),
    ("json:", "names no attribute"),
    ("a:b:c", "more than one ':'"),
    ("tests.rewards.bad_imports.raises_at_import:fn", "raised RuntimeError: broken at import"),
    ("tests.rewards.bad_imports.exits_at_import:fn", "called sys.exit(3)"),
    ("tests.rewards.bad_imports.missing_dependency:fn", "No module named 'no_such_dependency_xyz' (at "),
    ("no_such_package_xyz.mod:fn", "cannot import 'no_such_package_xyz.mod'"),
])
def test_f14_bad_import_paths_are_config_problems(path, expected):
    cfg = make_cfg([{"name": path}])
    problems = check_reward_funcs(cfg.datasets, "cfg.yaml")
    assert len(problems) == 1 and problems[0].key == "datasets[0].reward_funcs[0].name"
    assert expected in problems[0].message, problems[0].message
