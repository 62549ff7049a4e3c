"""Loading YAML configs: a key given twice is an error with both line numbers, never a silent last-one-wins."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.common.config_io import load_yaml
from pipelines.common.problems import ConfigError
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]


def test_duplicate_keys_at_any_depth_name_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\ntraining_parameters:\n  max_steps: 8\n  max_steps: 500\n"
                    "datasets:\n  - path: a\n    path: b\nseed: 2\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    found = {(p.key, p.message.split(";")[0]) for p in info.value.problems}
    assert found == {("training_parameters.max_steps", "duplicate key: first at line 3, again at line 4"),
                     ("datasets[0].path", "duplicate key: first at line 6, again at line 7"),
                     ("seed", "duplicate key: first at line 1, again at line 8")}


def test_same_key_in_different_mappings_is_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: {x: 1}\nb: {x: 2}\nlist: [{x: 1}, {x: 2}]\n")
    assert load_yaml(path) == {"a": {"x": 1}, "b": {"x": 2}, "list": [{"x": 1}, {"x": 2}]}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) is None


def test_runner_refuses_duplicates_in_node_and_super_configs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    node = tmp_path / "node.yaml"
    text = (REPO / "pipelines/grpo/configs/quickstart.yaml").read_text()
    node.write_text(text.replace("  max_steps: 30\n", "  max_steps: 8\n  max_steps: 500\n"))
    sup = tmp_path / "super.yaml"
    sup.write_text(f"pipeline_order:\n  - node: grpo\n    config: {node}\n    config: {node}\n")
    assert main(["--super-config", str(sup), "--validate", "--outputs", str(tmp_path / "out")]) == 2
    assert "super.yaml: pipeline_order[0].config: duplicate key: first at line 3, again at line 4" in \
        capsys.readouterr().err
    sup.write_text(f"pipeline_order:\n  - node: grpo\n    config: {node}\n")
    assert main(["--super-config", str(sup), "--validate", "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "node.yaml: training_parameters.max_steps: duplicate key: first at line" in err


def test_overrides_take_list_indexes_as_problems_print_them():
    from pipelines.common.config_io import apply_overrides

    cfg = {"datasets": [{"path": "a.jsonl"}, {"path": "b.jsonl", "reward_funcs": [{"name": "k"}]}]}
    assert apply_overrides(cfg, {"datasets[0].path": "x.jsonl", "datasets.1.path": "y.jsonl",
                                 "datasets[1].reward_funcs[0].name": "z"}, "c.yaml", "--set") == []
    assert cfg["datasets"][0]["path"] == "x.jsonl" and cfg["datasets"][1]["path"] == "y.jsonl"
    assert cfg["datasets"][1]["reward_funcs"][0]["name"] == "z"
    problems = apply_overrides(cfg, {"datasets[5].path": "q"}, "c.yaml", "--set")
    assert [p.key for p in problems] == ["datasets[5].path"]
