"""Porting an Augmentoolkit setup as a new user would: its super-config line `config: grpo-rl-folder:<file>`, a
config without its `pipeline:` line, an explicit --set run_name beside its output_dir, compat notes shown once."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.grpo.compat import normalise
from pipelines.runner import main
from tests.grpo.test_augmentoolkit_configs import shape_emotional_alignment, workspace  # noqa: F401
from tests.grpo.training_runs import REPO, tiny_cache  # noqa: F401

CONFIGS = REPO / "pipelines/grpo/configs"


def test_the_folder_alias_of_augmentoolkits_super_config_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    sc = tmp_path / "super_config.yaml"
    sc.write_text("pipeline_order:\n  - node: grpo-rl-pipeline\n    config: grpo-rl-folder:quickstart.yaml\n")
    assert main(["--super-config", str(sc), "--validate", "--outputs", str(tmp_path / "out")]) == 0
    assert "[0] grpo-rl-pipeline: pipelines/grpo/configs/quickstart.yaml" in capsys.readouterr().out
    sc.write_text("pipeline_order:\n  - node: grpo-rl-pipeline\n    config: grpo-rl-folder:grpo_config.yaml\n")
    assert main(["--super-config", str(sc), "--validate", "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("pipeline_order[0].config: 'grpo-rl-folder:grpo_config.yaml': grpo-rl-folder: is Augmentoolkit's name "
            "for the GRPO configs folder, read here as pipelines/grpo/configs/, and it holds no 'grpo_config.yaml'"
            in err)
    assert "<root>: file not found" not in err


def test_an_augmentoolkit_config_without_its_pipeline_line_gets_one_message_saying_how_to_read_it(
        workspace, capsys):  # noqa: F811
    text = shape_emotional_alignment("http://127.0.0.1:9/v1").replace("pipeline: grpo-rl \n", "", 1)
    (workspace / "grpo.yaml").write_text(text, encoding="utf-8")
    assert main(["--validate"]) == 2
    err = capsys.readouterr().err
    assert "grpo.yaml: compat: this looks like an Augmentoolkit GRPO config (no_flatten, post_processors, " in err
    assert "Add `compat: augmentoolkit` (or `pipeline: grpo-rl`) at the top" in err
    assert "1 problem" in err and "Augmentoolkit's key, refused" not in err
    (workspace / "grpo.yaml").write_text("compat: augmentoolkit\n" + text, encoding="utf-8")
    assert main(["--validate"]) == 0, capsys.readouterr().err


def test_strict_configs_without_augmentoolkit_keys_are_untouched():
    raw = {"model": {"base_model_name": "x"}, "datasets": [{"path": "p", "reward_funcs": [{"name": "keyword"}]}]}
    assert normalise(raw, "c.yaml") == (raw, [], [])


def test_an_explicit_run_name_wins_over_the_configs_output_dir(workspace, capsys):  # noqa: F811
    (workspace / "grpo.yaml").write_text(shape_emotional_alignment("http://127.0.0.1:9/v1"), encoding="utf-8")
    assert main(["--validate", "--set", "run_name=mine"]) == 0
    out = capsys.readouterr().out
    assert "run dir: outputs/mine" in out
    assert ("warning: training_parameters.output_dir: 'outputs/grpo_alignment' (from the config file) gives way to "
            "--set run_name=mine") in out
    assert out.count("gives way to") == 1 and out.count("divided by their sum") == 1      # notes printed once
    assert main(["--validate", "--set", "run_name=mine", "--set", "training_parameters.output_dir=outputs/x"]) == 2
    assert "--set: run_name: --set run_name=mine and --set training_parameters.output_dir=outputs/x both name the " \
           "run dir" in capsys.readouterr().err
    assert main(["--validate"]) == 0
    assert "run dir: outputs/grpo_alignment" in capsys.readouterr().out    # without --set: the config's folder


def test_compat_notes_are_printed_once_by_validate(workspace):  # noqa: F811
    import os
    import subprocess
    import sys

    (workspace / "grpo.yaml").write_text(shape_emotional_alignment("http://127.0.0.1:9/v1"), encoding="utf-8")
    out = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--validate"], cwd=workspace,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (out.stdout + out.stderr).count("divided by their sum as Augmentoolkit does") == 1
