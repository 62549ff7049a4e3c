"""Run dirs stay inside the outputs folder (F1), and config paths into a run dir stay inside it (F18)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.common.rundir import RESERVED_NAMES, name_problem, run_file_problem
from pipelines.rewards.checks import check_export_path
from pipelines.rewards.config import RewardSection
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]
ESCAPES = ["..", ".", "../x", "/tmp/abs-run", "a/b", "a\\b", ""]


def _record_pipeline(tmp_path: Path, **config) -> Path:
    (tmp_path / "rec.yaml").write_text(yaml.safe_dump({"log": str(tmp_path / "log.jsonl"), **config}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:record", "config": "rec.yaml"}]}))
    return sc


@pytest.mark.parametrize("name", ESCAPES)
def test_run_name_that_is_not_one_name_is_refused_at_validate(tmp_path, capsys, name):
    sc = _record_pipeline(tmp_path)
    code = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--validate",
                 "--set", f"run_name={name!r}" if name == "" else f"run_name={name}"])
    err = capsys.readouterr().err
    assert code == 2 and "rec.yaml: run_name:" in err


@pytest.mark.parametrize("name", ["..", ".", "../escaped"])
def test_run_name_escape_writes_nothing_anywhere(tmp_path, name):
    """F1: with run_name=.. the run dir was the outputs folder's parent; now nothing is written at all."""
    work = tmp_path / "work"
    work.mkdir()
    sc = _record_pipeline(work)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["--super-config", str(sc), "--outputs", str(work / "out"), "--set", f"run_name={name}"]) == 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_quickstart_run_name_dotdot_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = main(["--super-config", str(REPO / "super_config.yaml"), "--outputs", str(tmp_path / "out"),
                 "--set", "run_name=.."])
    assert code == 2 and "quickstart.yaml: run_name:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "manifest.json").exists()


def test_plain_names_pass():
    for name in ("grpo-20260101-120000", "my run", "countdown_v2", "ü"):
        assert name_problem(name) is None


@pytest.mark.parametrize("explicit", [".", "..", "OUT"])
def test_output_dir_that_is_the_working_folder_or_outputs_is_refused(tmp_path, capsys, monkeypatch, explicit):
    monkeypatch.chdir(tmp_path)
    sc = _record_pipeline(tmp_path, training_parameters={"output_dir": str(tmp_path / "out") if explicit == "OUT"
                                                         else explicit})
    assert main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--validate"]) == 2
    assert "training_parameters.output_dir:" in capsys.readouterr().err


def test_output_dir_that_is_someone_elses_folder_is_refused(tmp_path, capsys):
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    sc = _record_pipeline(tmp_path, training_parameters={"output_dir": str(other)})
    assert main(["--super-config", str(sc), "--outputs", str(tmp_path / "out")]) == 2
    assert "holds no run" in capsys.readouterr().err and (other / "notes.md").read_text() == "mine"


@pytest.mark.parametrize("path", ["../escape.jsonl", "/tmp/abs.jsonl", "sub/x.jsonl", ".", "..",
                                  "metrics.jsonl", "run.log", "final_adapter", "checkpoint-2", "manifest.json"])
def test_high_scoring_save_path_stays_a_file_of_its_own_in_the_run_dir(path):
    """F18: the export could escape the run dir, or overwrite metrics.jsonl or a folder."""
    problems = check_export_path(RewardSection(high_scoring_save_path=path), "c.yaml")
    assert [p.key for p in problems] == ["reward.high_scoring_save_path"]


def test_high_scoring_save_path_plain_names_pass():
    for path in ("high_scoring_examples.jsonl", "./best.jsonl", "high.json"):
        assert run_file_problem(path) is None


def test_high_scoring_save_path_is_checked_by_validate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = main(["--super-config", str(REPO / "super_config.yaml"), "--outputs", str(tmp_path / "out"),
                 "--validate", "--set", "reward.high_scoring_save_path=../../escape.jsonl"])
    assert code == 2 and "reward.high_scoring_save_path" in capsys.readouterr().err


def test_reserved_names_cover_every_node_artifact():
    from pipelines.grpo import artifacts
    from pipelines.grpo.hpo import node as hpo_node, population
    from pipelines.rollout import node as rollout_node, outputs, resume

    names = {artifacts.METRICS_FILE, artifacts.SUMMARY_FILE, artifacts.REWARD_CURVE, artifacts.FINAL_ADAPTER,
             hpo_node.FITNESS_PLOT, hpo_node.ELITE_ADAPTER, population.HPO_DIR, population.HISTORY_FILE,
             rollout_node.SCORED, outputs.SCORED_PARQUET, outputs.SFT, outputs.PREFERENCES, outputs.SUMMARY,
             resume.STATE}
    assert names <= RESERVED_NAMES


def test_default_run_names_of_two_runs_started_in_the_same_second_differ():
    import datetime as dt
    import subprocess
    import sys

    from pipelines.common.rundir import default_run_name

    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    assert default_run_name("grpo", now, pid=41) == "grpo-20260101-120000-41"
    code = ("import datetime as dt; from pipelines.common.rundir import default_run_name; "
            "print(default_run_name('grpo', dt.datetime(2026, 1, 1, 12, 0, 0)))")
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout for _ in range(2)}
    assert len(names) == 2 and all(n.startswith("grpo-20260101-120000-") for n in names)
