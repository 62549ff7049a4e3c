"""Chaining: a rollout names an earlier node's adapter as "@label.final_adapter"; bad references are
validation errors (exit 2) before anything runs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from pipelines.runner import main
from tests.rollout.test_node import rollout_config, write_yaml

REPO = Path(__file__).resolve().parents[2]


def run(sc: Path, tmp_path: Path, *extra: str) -> int:
    return main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), *extra])


def chain(tmp_path: Path, tiny_model_dir: Path, adapter_ref: str, order=("trainer", "rollout")) -> Path:
    cfg = rollout_config(tmp_path, tiny_model_dir, run_name="roll", dataset_settings={"total_rows": 4})
    cfg["model"]["adapter"] = adapter_ref
    write_yaml(tmp_path / "rollout.yaml", cfg)
    write_yaml(tmp_path / "trainer.yaml", {"base": str(tiny_model_dir), "run_name": "trainer"})
    entries = {"trainer": {"node": "tests.rollout.nodes_for_tests:make_adapter", "name": "trainer",
                           "config": "trainer.yaml"},
               "rollout": {"node": "rollout", "config": "rollout.yaml"}}
    return write_yaml(tmp_path / "super.yaml", {"pipeline_order": [entries[e] for e in order]})


def test_rollout_of_an_earlier_nodes_adapter(tiny_model_dir, tmp_path):
    sc = chain(tmp_path, tiny_model_dir, "@trainer.final_adapter")
    assert run(sc, tmp_path) == 0
    adapter = tmp_path / "out" / "trainer" / "final_adapter"
    resolved = yaml.safe_load((tmp_path / "out" / "roll" / "resolved_config.yaml").read_text())
    assert resolved["model"]["adapter"] == str(adapter)
    assert (adapter / "adapter_config.json").is_file()
    manifest = json.loads((tmp_path / "out" / "roll" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and Path(manifest["outputs"]["sft"]).is_file()
    # alone (--only), the reference resolves to the latest completed run of that label
    assert run(sc, tmp_path, "--only", "rollout", "--set", "run_name=roll2") == 0
    resolved = yaml.safe_load((tmp_path / "out" / "roll2" / "resolved_config.yaml").read_text())
    assert resolved["model"]["adapter"] == str(adapter)


def test_reference_to_a_node_that_has_not_run(tiny_model_dir, tmp_path, capsys):
    sc = chain(tmp_path, tiny_model_dir, "@grpo.final_adapter", order=("rollout",))
    assert run(sc, tmp_path, "--validate") == 2
    err = capsys.readouterr().err
    assert "model.adapter: refers to node 'grpo', which has not run" in err
    assert not (tmp_path / "out" / "roll").exists()


def test_reference_to_a_later_node(tiny_model_dir, tmp_path, capsys):
    sc = chain(tmp_path, tiny_model_dir, "@trainer.final_adapter", order=("rollout", "trainer"))
    assert run(sc, tmp_path) == 2
    assert "it comes later in the pipeline" in capsys.readouterr().err
    assert not (tmp_path / "out" / "trainer").exists()        # nothing ran


def test_reference_to_a_missing_output(tiny_model_dir, tmp_path, capsys):
    sc = chain(tmp_path, tiny_model_dir, "@trainer.final_adaptr")
    assert run(sc, tmp_path, "--validate") == 2
    assert "node 'trainer' has no output 'final_adaptr' (did you mean \"final_adapter\"?)" in capsys.readouterr().err


def test_shipped_chain_validates(tmp_path, capsys):
    rc = main(["--super-config", str(REPO / "super_config_chain.yaml"), "--outputs", str(tmp_path / "out"),
               "--validate"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "builtin:tiny + adapter @grpo.final_adapter" in out.out


@pytest.mark.slow
def test_grpo_then_rollout_of_its_adapter(tmp_path):
    """The shipped chain (quickstart GRPO, then a rollout of its final_adapter), shortened to stay fast."""
    shipped = yaml.safe_load((REPO / "super_config_chain.yaml").read_text())["pipeline_order"]
    grpo, rollout = (dict(e) for e in shipped)
    grpo["config"], rollout["config"] = str(REPO / grpo["config"]), str(REPO / rollout["config"])
    grpo["overrides"] = {**grpo["overrides"], "training_parameters.max_steps": 2,
                         "training_parameters.save_steps": 2, "dataset_settings.total_rows": 16}
    rollout["overrides"] = {**rollout["overrides"], "dataset_settings.total_rows": 8}
    sc = write_yaml(tmp_path / "super.yaml", {"pipeline_order": [grpo, rollout]})
    assert run(sc, tmp_path) == 0
    adapter = tmp_path / "out" / "chain-grpo" / "final_adapter"
    roll = tmp_path / "out" / "chain-rollout"
    assert yaml.safe_load((roll / "resolved_config.yaml").read_text())["model"]["adapter"] == str(adapter)
    summary = json.loads((roll / "summary.json").read_text())
    assert (summary["prompts"], summary["completions"]) == (8, 32)
    assert summary["components"].keys() == {"quickstart/keyword"}
    for name in ("scored.jsonl", "scored.parquet", "sft.jsonl", "preferences.jsonl"):
        assert (roll / name).is_file()


def test_adapter_that_does_not_fit_is_a_config_error_leaving_no_run(tiny_model_dir, tmp_path, capsys):
    """Found only when the model loads: exit 2 naming model.adapter, and the run dir is not left blocking."""
    sc = chain(tmp_path, tiny_model_dir, "@trainer.final_adapter")
    assert run(sc, tmp_path, "--only", "trainer") == 0
    adapter_cfg = tmp_path / "out" / "trainer" / "final_adapter" / "adapter_config.json"
    data = json.loads(adapter_cfg.read_text())
    adapter_cfg.write_text(json.dumps({**data, "r": 8}))        # weights saved with r=2
    assert run(sc, tmp_path, "--only", "rollout") == 2
    err = capsys.readouterr().err
    assert "model.adapter: adapter" in err and "does not fit model" in err
    assert not (tmp_path / "out" / "roll").exists()


def test_references_are_scoped_to_their_super_config(tiny_model_dir, tmp_path, capsys, caplog):
    """Before: --only rollout of one super-config took the newest `trainer` run of any super-config, and
    run.log never said which adapter it used."""
    caplog.set_level(logging.INFO)   # under pytest the root logger would drop INFO before run.log sees it
    sc = chain(tmp_path, tiny_model_dir, "@trainer.final_adapter")
    assert run(sc, tmp_path) == 0
    adapter = tmp_path / "out" / "trainer" / "final_adapter"
    log_text = (tmp_path / "out" / "roll" / "run.log").read_text()
    assert f"reference model.adapter: @trainer.final_adapter -> {adapter} (entry 'trainer' of this invocation)" \
        in log_text
    # --validate of --only rollout says where the reference resolves
    capsys.readouterr()
    assert run(sc, tmp_path, "--only", "rollout", "--set", "run_name=roll2", "--validate") == 0
    out = capsys.readouterr().out
    assert f"reference model.adapter: @trainer.final_adapter -> {adapter} (latest completed run of entry " \
           "'trainer' of this super-config" in out
    # another super-config with an entry of the same label never sees that run
    other = tmp_path / "other"
    other.mkdir()
    sc_other = other / "super.yaml"
    sc_other.write_text(sc.read_text().replace("config: trainer.yaml", f"config: {tmp_path / 'trainer.yaml'}")
                        .replace("config: rollout.yaml", f"config: {tmp_path / 'rollout.yaml'}"))
    assert run(sc_other, tmp_path, "--only", "rollout", "--set", "run_name=roll3", "--validate") == 2
    err = capsys.readouterr().err
    assert "model.adapter: refers to node 'trainer', which has not run" in err
    assert "runs of other super-configs are not used" in err
