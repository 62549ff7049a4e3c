"""pipelines/cli.py: the `grpo-pipelines` command. Each subcommand reaches its module with the rest of the
command line unchanged, answers --help with that module's options, and exits with that module's exit code."""
from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import cli

REPO = Path(__file__).resolve().parents[1]
# One option only that module's parser has: --help reached the right module.
OWN_OPTION = {"run": "--super-config", "validate": "--full-scan", "preflight": "--num-processes",
              "score": "--sample", "merge-lora": "--allow-base-mismatch", "config-reference": "--node", "reward-table": "--write",
              "make-tiny-model": "--output", "make-countdown-data": "--rows"}


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def recording(tmp_path):
    """A super-config with one import-path node that appends its config to log.jsonl when it runs."""
    log = tmp_path / "log.jsonl"
    write(tmp_path / "a.yaml", {"log": str(log), "value": 1, "run_name": "a"})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [{"node": "tests.nodes_for_tests:record",
                                                             "config": "a.yaml"}]})
    return sc, log, ["--super-config", str(sc), "--outputs", str(tmp_path / "out")]


def test_help_lists_every_command_with_its_summary():
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: grpo-pipelines ")
    for command in cli.COMMANDS:
        assert any(line.split()[:1] == [command.name] and command.summary in line
                   for line in done.stdout.splitlines()), command.name
    assert [c.name for c in cli.COMMANDS] == list(OWN_OPTION)


def test_every_cli_utils_tool_is_a_command():
    """A module in cli_utils/ with a main() is a tool; each one has its subcommand (scoring_report has no
    main: it is a part of score_completions)."""
    tools = {f"cli_utils.{p.stem}" for p in (REPO / "cli_utils").glob("*.py")
             if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(p.read_text()).body)}
    targets = {c.target.partition(":")[0] for c in cli.COMMANDS}
    assert tools and tools == {t for t in targets if t.startswith("cli_utils.")}
    assert "cli_utils.scoring_report" not in tools


@pytest.mark.parametrize("name", list(OWN_OPTION))
def test_command_help_is_the_modules_own_help_under_its_new_name(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: grpo-pipelines {name} [-h]")
    assert OWN_OPTION[name] in out


def test_usage_errors_name_the_command_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["make-tiny-model"])
    assert exc.value.code == 2
    assert "grpo-pipelines make-tiny-model: error: the following arguments are required: --output" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["rn", "--help"])
    assert exc.value.code == 2 and 'unknown command \'rn\' (did you mean "run"?)' in capsys.readouterr().err
    assert cli.main([]) == 2 and "make-countdown-data" in capsys.readouterr().err


def test_run_validate_and_preflight_reach_the_runner_in_their_modes(recording, capsys):
    sc, log, args = recording
    assert cli.main(["validate", *args]) == 0
    assert "OK: 1 node(s) valid" in capsys.readouterr().out and not log.exists()
    assert cli.main(["preflight", *args]) == 0
    assert "no preflight: not a training node" in capsys.readouterr().out and not log.exists()
    assert cli.main(["run", *args, "--set", "value=5"]) == 0
    assert [json.loads(line)["config"]["value"] for line in log.read_text().splitlines()] == [5]


def test_a_failing_node_exits_1(tmp_path, capsys):
    write(tmp_path / "f.yaml", {"reason": "on purpose"})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [{"node": "tests.nodes_for_tests:fail",
                                                             "config": "f.yaml"}]})
    assert cli.main(["run", "--super-config", str(sc), "--outputs", str(tmp_path / "out")]) == 1
    assert "deliberate failure: on purpose" in capsys.readouterr().err


def test_validate_of_the_quickstart_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["validate", "--outputs", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "pipelines/grpo/configs/quickstart.yaml" in out and "OK: 1 node(s) valid" in out


def test_a_bad_config_exits_2_through_the_process(tmp_path):
    cfg = yaml.safe_load((REPO / "pipelines/grpo/configs/quickstart.yaml").read_text(encoding="utf-8"))
    cfg["model"]["lora_rnak"] = 8
    write(tmp_path / "bad.yaml", cfg)
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [{"node": "grpo", "config": "bad.yaml"}]})
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "validate", "--super-config", str(sc),
                           "--outputs", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'model.lora_rnak: unknown key (did you mean "lora_rank"?)' in done.stderr


def test_score_samples_reference_answers(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["score", "--config", "pipelines/grpo/configs/quickstart.yaml", "--sample", "2"]) == 0
    assert "2 line(s) scored, 0 with errors" in capsys.readouterr().out
    assert cli.main(["score", "--config", "pipelines/grpo/configs/quickstart.yaml", "--sample", "2",
                     "--set", "datasets.0.reward_funcs.0.keywordz=[a]"]) == 2


def test_merge_lora_refusal_keeps_its_exit_code(tmp_path, capsys):
    assert cli.main(["merge-lora", "--base-model", "builtin:tiny", "--adapter", str(tmp_path / "none"),
                     "--output", str(tmp_path / "merged")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err and not (tmp_path / "merged").exists()


def test_config_reference_writes_the_committed_reference(tmp_path):
    assert cli.main(["config-reference", "--output", str(tmp_path / "ref.md")]) == 0
    assert (tmp_path / "ref.md").read_text(encoding="utf-8") == \
        (REPO / "docs/config_reference.md").read_text(encoding="utf-8")


def test_reward_table_writes_the_readme_table(tmp_path, capsys):
    """The command prints the generated table, and --write puts it between the markers of a file."""
    from pipelines.rewards.table import builtin_reward_table

    assert cli.main(["reward-table"]) == 0
    assert capsys.readouterr().out.strip() == builtin_reward_table().strip()
    target = tmp_path / "doc.md"
    target.write_text("intro\n<!-- builtin-rewards:start -->\nSTALE-ROW\n<!-- builtin-rewards:end -->\nend\n", encoding="utf-8")
    assert cli.main(["reward-table", "--write", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert "STALE-ROW" not in text and builtin_reward_table().strip() in text and text.endswith("end\n")


def test_make_countdown_data_writes_what_the_module_writes(tmp_path):
    from cli_utils.make_countdown_data import main as module_main

    assert cli.main(["make-countdown-data", "--output", str(tmp_path / "a.jsonl"), "--rows", "5", "--seed", "3"]) == 0
    assert module_main(["--output", str(tmp_path / "b.jsonl"), "--rows", "5", "--seed", "3"]) == 0
    text = (tmp_path / "a.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 5 and text == (tmp_path / "b.jsonl").read_text(encoding="utf-8")


def test_pyproject_installs_the_command():
    tomllib = pytest.importorskip("tomllib")   # Python >= 3.11
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, _, attr = scripts["grpo-pipelines"].partition(":")
    assert getattr(importlib.import_module(module), attr) is cli.main


def test_installed_command_lists_the_commands():
    """Present once linux.sh has (re)installed the project with this pyproject.toml."""
    beside = Path(sys.executable).parent / "grpo-pipelines"
    script = str(beside) if beside.is_file() else shutil.which("grpo-pipelines")
    if script is None:
        pytest.skip("grpo-pipelines is not installed in this environment (linux.sh installs it)")
    done = subprocess.run([script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(command.name in done.stdout for command in cli.COMMANDS)
