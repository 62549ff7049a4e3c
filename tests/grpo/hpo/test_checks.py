"""grpo_hpo config checks, through the runner (--validate, exit 2 with every problem)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipelines.common.config_io import load_yaml
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart_hpo.yaml"


@pytest.fixture
def base(tiny_model_dir) -> dict:
    raw = load_yaml(QUICKSTART)
    raw["model"]["base_model_name"] = str(tiny_model_dir)
    raw["datasets"][0]["path"] = str(REPO / "inputs" / "quickstart.jsonl")
    return raw


def validate(tmp_path: Path, raw: dict, capsys, *extra: str) -> tuple[int, str, str]:
    cfg = tmp_path / "hpo.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo_hpo", "config": "hpo.yaml"}]}), encoding="utf-8")
    code = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--validate", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quickstart_validates_with_a_search_summary(base, tmp_path, capsys):
    code, out, err = validate(tmp_path, base, capsys)
    assert code == 0, err
    assert "hpo: 3 members x 2 generations x 10 steps (60 member-steps)" in out
    assert "learning_rate [0.002, 0.05] log" in out and "num_generations [2, 8] int" in out
    assert "tournaments of 2 drawn with replacement" in out
    assert ("hpo: mutation: multiplicative x0.8 / x1.2 (50/50, clipped to the bounds); a clone keeps its parent's "
            "values with probability 0.143") in out
    assert "optimizer reset on a learning_rate mutation: on" in out
    assert "warning" not in out   # the shipped quickstart sets nothing that goes unused


def test_elitism_false_is_refused_at_validate_with_why(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    raw["hpo"]["elitism"] = False
    raw["hpo"]["shrink_factor"] = 1.5          # reported in the same pass
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2
    assert "hpo.yaml: hpo.elitism: " in err and "elitism: false is refused for LLM populations" in err
    assert "the fittest adapter" in err and "hpo.yaml: hpo.shrink_factor: Input should be less than 1" in err


def test_settings_without_effect_are_shown_with_the_effective_rule(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    raw["hpo"]["mutation_sd"] = 0.3
    raw["hpo"]["search_space"]["beta"] = {"min": 0.0, "max": 0.04}
    code, out, err = validate(tmp_path, raw, capsys)
    assert code == 0, err
    assert "hpo: warning: hpo.mutation_sd (0.3) is unused: the multiplicative operator" in out
    assert "hpo: warning: hpo.search_space.beta: a value at 0 stays at 0" in out
    raw["hpo"].update(mutation_operator="gaussian", reset_optimizer_on_lr_mutation=False)
    code, out, err = validate(tmp_path, raw, capsys)
    assert code == 0, err
    assert "hpo: mutation: gaussian, sd 0.3 x range width" in out and "learning_rate mutation: off" in out
    assert "hpo: warning: hpo.shrink_factor, hpo.grow_factor unused: mutation_operator is gaussian" in out


def test_missing_evaluation_is_a_config_error(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    del raw["evaluation"]
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2
    assert "hpo.yaml: evaluation: an `evaluation` section is required for hyperparameter search" in err


def test_missing_hpo_section(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    del raw["hpo"]
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2 and "hpo: Field required" in err


def test_search_space_keys_must_be_tunable_grpo_fields(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    raw["hpo"]["search_space"] = {"learnin_rate": {"min": 1e-4, "max": 1e-2},          # typo
                                  "max_steps": {"min": 5, "max": 10, "type": "int"},     # fixed by the search
                                  "epsilon": {"min": 0.1, "max": 0.3},                  # a GRPOConfig field: fine
                                  "max_completion_length": {"min": 8, "max": 16},       # an int without type: int
                                  "weight_decay": {"min": -1, "max": 0.1}}             # below the field's bound
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2
    assert 'hpo.search_space.learnin_rate: unknown key: not a field of the installed TRL GRPOConfig (did you mean ' \
           '"learning_rate"?)' in err
    assert "hpo.search_space.max_steps: cannot be searched" in err
    assert "hpo.search_space.max_completion_length: max_completion_length is an integer: add `type: int`" in err
    assert "hpo.search_space.weight_decay.min: -1.0 is not a valid weight_decay" in err
    assert "epsilon" not in err
    assert "4 problems" in err


def test_group_size_bounds_need_a_divisor_of_the_generation_batch(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    raw["hpo"]["search_space"]["num_generations"] = {"min": 5, "max": 7, "type": "int"}
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2
    assert "hpo.search_space.num_generations: no value in [5, 7] divides the generation batch (8" in err
    assert "[2, 4, 8]" in err


def test_single_process_no_vllm_and_resume_value(base, tmp_path, capsys):
    code, _, err = validate(tmp_path, base, capsys, "--num-processes", "2",
                            "--set", "training_parameters.resume_from_checkpoint=some/checkpoint-5",
                            "--set", "model.vllm={mode: server}")
    assert code == 2
    assert "model.vllm: grpo_hpo builds a new trainer per member" in err
    assert "launch.num_processes: grpo_hpo trains its members one after another" in err
    assert "training_parameters.resume_from_checkpoint: grpo_hpo resumes a whole search" in err


def test_partial_checks_still_report_hpo_problems(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    del raw["evaluation"]
    raw["hpo"]["search_space"]["save_steps"] = {"min": 1, "max": 3, "type": "int"}
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2
    assert "an `evaluation` section is required" in err and "hpo.search_space.save_steps: cannot be searched" in err


def test_a_run_dir_holding_a_run_needs_resume(base, tmp_path, capsys):
    raw = copy.deepcopy(base)
    raw["run_name"] = "taken"
    run_dir = tmp_path / "out" / "taken"
    run_dir.mkdir(parents=True)
    (run_dir / "resolved_config.yaml").write_text("{}\n")
    code, _, err = validate(tmp_path, raw, capsys)
    assert code == 2 and "already holds a run" in err
    code, _, err = validate(tmp_path, raw, capsys, "--set", "training_parameters.resume_from_checkpoint=auto")
    assert code == 0, err
