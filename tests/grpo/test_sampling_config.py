"""--validate on the dynamic sampling and difficulty keys: each mistake is a Problem with its key path."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.grpo import checks
from pipelines.runner import main
from tests.grpo.test_config import base_raw, model

REPO = Path(__file__).resolve().parents[2]


def validate(tmp_path: Path, cfg: dict, monkeypatch, capsys, entries: tuple[tuple[str, str], ...] = ()) -> tuple[int, str]:
    """``--validate`` of a super-config running ``cfg`` (after ``entries``: (name, node) pairs of the quickstart)."""
    monkeypatch.chdir(REPO)
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    order = [{"node": node, "name": name, "config": str(REPO / "pipelines/grpo/configs/quickstart.yaml")}
             for name, node in entries]
    order.append({"node": "grpo", "name": "this", "config": str(tmp_path / "node.yaml")})
    (tmp_path / "super.yaml").write_text(yaml.safe_dump({"pipeline_order": order}), encoding="utf-8")
    code = main(["--super-config", str(tmp_path / "super.yaml"), "--outputs", str(tmp_path / "out"), "--validate"])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_band_and_budget_ranges_are_problems_with_key_paths(tmp_path, monkeypatch, capsys):
    raw = base_raw()
    raw["dataset_settings"]["dynamic_sampling"] = {"enabled": True, "max_extra_batches": -1}
    raw["dataset_settings"]["difficulty"] = {"band": [0.8, 0.2], "from": "x"}
    code, err = validate(tmp_path, raw, monkeypatch, capsys)
    assert code == 2
    assert "dataset_settings.dynamic_sampling.max_extra_batches:" in err
    assert "dataset_settings.difficulty.band: band [0.8, 0.2]: lo must not exceed hi" in err
    raw["dataset_settings"]["difficulty"] = {"band": [-0.1, 1.2], "from": "x"}
    raw["dataset_settings"]["dynamic_sampling"] = {"enabled": True}
    code, err = validate(tmp_path, raw, monkeypatch, capsys)
    assert code == 2 and "dataset_settings.difficulty.band: band [-0.1, 1.2]: both ends are solved rates" in err


def test_from_must_name_a_table_or_a_node_that_runs_first(tmp_path, monkeypatch, capsys):
    raw = base_raw()
    raw["dataset_settings"]["difficulty"] = {"band": [0.2, 0.8], "from": str(tmp_path / "missing")}
    code, err = validate(tmp_path, raw, monkeypatch, capsys)
    assert code == 2 and "dataset_settings.difficulty.from: " in err and "difficulty.parquet" in err
    raw["dataset_settings"]["difficulty"] = {"band": [0.2, 0.8], "from": "@nobody.difficulty"}
    code, err = validate(tmp_path, raw, monkeypatch, capsys)
    assert code == 2 and "dataset_settings.difficulty.from: refers to node 'nobody'" in err
    raw["dataset_settings"]["difficulty"] = {"band": [0.2, 0.8]}
    code, err = validate(tmp_path, raw, monkeypatch, capsys)
    assert code == 2 and "dataset_settings.difficulty.band: band weights rows by the solved rates" in err
    # an earlier grpo entry's table, by chain reference: valid
    raw["run_name"] = "second"
    raw["dataset_settings"]["difficulty"] = {"band": [0.2, 0.8], "from": "@first.difficulty"}
    raw["dataset_settings"]["dynamic_sampling"] = {"enabled": True, "max_extra_batches": 3}
    code, err = validate(tmp_path, raw, monkeypatch, capsys, entries=(("first", "grpo"),))
    assert code == 0, err
    assert "dynamic sampling on: zero-spread groups replaced by fresh rows, up to 3 extra" in err
    assert "difficulty band [0.2, 0.8] of solved rates" in err


def test_dynamic_sampling_needs_whole_groups_per_process():
    raw = base_raw()
    raw["dataset_settings"]["dynamic_sampling"] = {"enabled": True}
    raw["launch"] = {"num_processes": 2}
    raw["training_parameters"].update(per_device_train_batch_size=2, num_generations=4)
    problems = checks.check_dynamic_sampling(model(raw), "c.yaml")
    assert [p.key for p in problems] == ["dataset_settings.dynamic_sampling.enabled"]
    raw["training_parameters"].update(per_device_train_batch_size=4)
    assert checks.check_dynamic_sampling(model(raw), "c.yaml") == []


def test_unknown_keys_suggest_the_yaml_names():
    from pipelines.common.schema import validate_model
    from pipelines.data.config import DatasetSettings

    _, problems = validate_model(DatasetSettings, {"total_rows": 3, "difficulty": {"form": "x"},
                                                   "dynamic_sampling": {"max_extra_batch": 1}}, "c.yaml")
    assert sorted(str(p) for p in problems) == [
        'c.yaml: difficulty.form: unknown key (did you mean "from"?)',
        'c.yaml: dynamic_sampling.max_extra_batch: unknown key (did you mean "max_extra_batches"?)']
