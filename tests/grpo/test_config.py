"""The GRPO config schema, its cross-field rules, env interpolation, redaction and run-dir protection."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipelines.common.node import run_rules
from pipelines.common.config_io import EnvResolver, apply_overrides, find_placeholders
from pipelines.common.redaction import redact_config as redact
from pipelines.common.schema import validate_model
from pipelines.grpo import checks
from pipelines.grpo.config import GRPOConfigFile
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "pipelines/grpo/configs/quickstart.yaml"


def base_raw() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def model(raw: dict) -> GRPOConfigFile:
    cfg, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    assert cfg is not None, problems
    return cfg


def messages(problems) -> list[str]:
    return [str(p) for p in problems]


def test_quickstart_config_validates(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = model(base_raw())
    assert run_rules(cfg, checks.RULES, "q.yaml") == []


def test_unknown_key_gets_did_you_mean_and_path():
    raw = base_raw()
    raw["training_parameters"]["num_generation"] = 4
    raw["datasets"][0]["single_turn_ration"] = 0.5
    raw["modle"] = {}
    _, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    text = messages(problems)
    # training_parameters allows GRPOConfig passthrough keys, checked separately against TRL's fields
    assert 'c.yaml: datasets[0].single_turn_ration: unknown key (did you mean "single_turn_ratio"?)' in text
    assert 'c.yaml: modle: unknown key (did you mean "model"?)' in text
    cfg = model({**base_raw(), "training_parameters": {**base_raw()["training_parameters"], "num_generation": 4}})
    assert any('training_parameters.num_generation: unknown key: not a field of the installed TRL GRPOConfig '
               '(did you mean "num_generations"?)' in m for m in messages(checks.check_grpo_extras(cfg, "c.yaml")))


def test_grpo_passthrough_keys_accepted():
    raw = base_raw()
    raw["training_parameters"].update({"beta": 0.04, "loss_type": "grpo", "temperature": 0.9, "epsilon": 0.2,
                                       "scale_rewards": "group", "num_iterations": 1})
    assert checks.check_grpo_extras(model(raw), "c.yaml") == []


def test_node_owned_keys_refused():
    raw = base_raw()
    raw["training_parameters"]["bf16"] = True
    assert "`model.dtype`" in messages(checks.check_grpo_extras(model(raw), "c.yaml"))[0]


@pytest.mark.parametrize("field,value", [("percentage", 1.2), ("percentage", -0.1), ("single_turn_ratio", 2)])
def test_ranges_in_dataset_entries(field, value):
    raw = base_raw()
    raw["datasets"][0][field] = value
    _, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    assert [p.key for p in problems] == [f"datasets[0].{field}"]


def test_total_rows_and_at_least_one_dataset():
    raw = base_raw()
    raw["dataset_settings"]["total_rows"] = 0
    raw["datasets"] = []
    _, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    assert {p.key for p in problems} == {"dataset_settings.total_rows", "datasets"}


def test_num_generations_and_batch_divisibility():
    raw = base_raw()
    raw["training_parameters"]["num_generations"] = 1
    _, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    assert [p.key for p in problems] == ["training_parameters.num_generations"]
    raw["training_parameters"].update(num_generations=3, per_device_train_batch_size=8)
    msg = messages(checks.check_batch_sizes(model(raw), "c.yaml"))[0]
    assert "divisible by num_generations (3)" in msg
    raw["training_parameters"].update(per_device_train_batch_size=4, gradient_accumulation_steps=3)
    assert checks.check_batch_sizes(model(raw), "c.yaml") == []  # 4 x 1 x 3 = 12, divisible by 3


def test_length_budget_rule():
    raw = base_raw()
    raw["model"]["max_seq_length"] = 50
    msg = messages(checks.check_lengths(model(raw), "c.yaml"))[0]
    assert msg.startswith("c.yaml: model.max_seq_length:") and "exceeds max_seq_length (50)" in msg


def test_unsloth_is_single_process():
    raw = base_raw()
    raw["model"]["backend"] = "unsloth"
    raw["launch"] = {"num_processes": 2}
    raw["training_parameters"]["per_device_train_batch_size"] = 4
    assert "single process only" in messages(checks.check_backend(model(raw), "c.yaml"))[0]


def test_evaluation_needs_exactly_one_size_and_fewer_rows():
    raw = base_raw()
    raw["evaluation"] = {"rows": 5, "fraction": 0.1}
    _, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    assert "exactly one of `rows` or `fraction`" in problems[0].message
    raw["evaluation"] = {"rows": 500}
    assert "must be fewer" in messages(checks.check_evaluation(model(raw), "c.yaml"))[0]
    # 0.9 x 5 = 4.5 held-out rows: the sampler rounds half up to 5, so the check must count 5 and refuse
    raw["evaluation"] = {"fraction": 0.9}
    raw["dataset_settings"]["total_rows"] = 5
    assert messages(checks.check_evaluation(model(raw), "c.yaml")) == [
        "c.yaml: evaluation: held-out rows (5) must be fewer than dataset_settings.total_rows (5)"]


def test_env_interpolation_and_defaults():
    problems = []
    env = EnvResolver({"JUDGE_KEY": "sk-secret-123", "HOST": "h"})
    out = env.resolve({"a": "${HOST}:${PORT:-8000}", "api_key": "${JUDGE_KEY}", "n": ["${MISSING}"]}, "f.yaml",
                      problems)
    assert out["a"] == "h:8000" and out["api_key"] == "sk-secret-123"
    assert [str(p) for p in problems] == ["f.yaml: n[0]: environment variable MISSING is not set "
                                          "(export MISSING=... or write ${MISSING:-default})"]
    assert env.secret_values == {"sk-secret-123"}


def test_redaction_by_key_and_by_value():
    # A value of 8+ characters is masked wherever it stands as a whole token (shorter ones: tests/common)
    data = {"eval_llm_api_key": "sk-abc-12", "nested": [{"token": "t0k"}], "url": "http://x?k=sk-abc-12", "n": 1}
    red = redact(data, {"sk-abc-12"})
    assert red == {"eval_llm_api_key": "***", "nested": [{"token": "***"}], "url": "http://x?k=***", "n": 1}


def test_placeholders_are_reported():
    problems = find_placeholders({"a": "!!PLACEHOLDER!!", "b": ["<YOUR_API_KEY>"], "c": "fine"}, "f.yaml")
    assert [p.key for p in problems] == ["a", "b[0]"]


def test_overrides_with_list_index_and_bad_path():
    data = {"datasets": [{"path": "a"}], "x": 1}
    problems = apply_overrides(data, {"datasets.0.path": "b", "x.y": 2}, "f.yaml", "--set")
    assert data["datasets"][0]["path"] == "b"
    assert [p.key for p in problems] == ["x.y"]


def test_seed_doc_config_validates(tmp_path, monkeypatch):
    """A config written exactly as Augmentoolkit's GRPO doc describes it validates unchanged."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("EVAL_API_KEY", "sk-test-key")
    raw = yaml.safe_load((REPO / "tests/grpo/seed_doc_config.yaml").read_text())
    env_problems: list = []
    raw = EnvResolver().resolve(raw, "seed.yaml", env_problems)
    cfg = model(raw)
    assert env_problems == [] and run_rules(cfg, checks.RULES, "seed.yaml") == []


def test_existing_run_is_not_overwritten_without_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "resolved_config.yaml").write_text("run_name: mine\n")
    rc = main(["--outputs", str(out), "--validate", "--set", "run_name=mine"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "run_name:" in err and "already holds a run" in err and "resume_from_checkpoint=auto" in err
    assert (out / "mine" / "resolved_config.yaml").read_text() == "run_name: mine\n"


def test_vllm_section_belongs_to_the_transformers_backend():
    raw = base_raw()
    raw["model"].update(backend="unsloth", vllm={"mode": "server"})
    msg = messages(checks.check_backend(model(raw), "c.yaml"))
    assert msg == ["c.yaml: model.vllm: the unsloth backend always uses its own vLLM; `model.vllm` applies to "
                   "backend: transformers"]
