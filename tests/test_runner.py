"""The workflow runner: ordering, --only, --set, exit codes, import-path nodes, chaining references."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.runner import main

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def pipeline(tmp_path):
    """A super-config with three import-path nodes that record their config to log.jsonl."""
    log = tmp_path / "log.jsonl"
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        write(tmp_path / f"{name}.yaml", {"log": str(log), "value": value, "run_name": name})
    entries = [{"node": "tests.nodes_for_tests:record", "name": n, "config": f"{n}.yaml"} for n in "abc"]
    sc = write(tmp_path / "super.yaml", {"pipeline_order": entries})
    return tmp_path, sc, log


def run(sc: Path, tmp_path: Path, *extra: str) -> int:
    return main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), *extra])


def logged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_runs_nodes_in_order_and_writes_run_dirs(pipeline):
    tmp_path, sc, log = pipeline
    assert run(sc, tmp_path) == 0
    assert [r["label"] for r in logged(log)] == ["a", "b", "c"]
    for n in "abc":
        run_dir = tmp_path / "out" / n
        assert (run_dir / "resolved_config.yaml").is_file()
        assert (run_dir / "run.log").is_file()
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"


def test_only_by_name_and_index(pipeline):
    tmp_path, sc, log = pipeline
    assert run(sc, tmp_path, "--only", "b") == 0
    assert run(sc, tmp_path, "--only", "2") == 0
    assert [r["label"] for r in logged(log)] == ["b", "c"]


def test_only_unknown_name_suggests(pipeline, capsys):
    tmp_path, sc, _ = pipeline
    assert run(sc, tmp_path, "--only", "bb") == 2
    assert 'did you mean "b"' in capsys.readouterr().err


def test_set_overrides_apply_after_super_config_overrides(pipeline):
    tmp_path, sc, log = pipeline
    data = yaml.safe_load(sc.read_text())
    data["pipeline_order"][0]["overrides"] = {"value": 10, "nested.x": 1}
    write(sc, data)
    assert run(sc, tmp_path, "--only", "a", "--set", "value=20", "--set", "flag=true") == 0
    cfg = logged(log)[0]["config"]
    assert cfg["value"] == 20 and cfg["flag"] is True and cfg["nested"] == {"x": 1}


def test_bad_set_syntax_is_a_config_error(pipeline, capsys):
    tmp_path, sc, _ = pipeline
    assert run(sc, tmp_path, "--set", "novalue") == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_failing_node_stops_later_nodes_and_is_printed_last(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    write(tmp_path / "ok.yaml", {"log": str(log), "run_name": "ok"})
    write(tmp_path / "ok3.yaml", {"log": str(log), "run_name": "ok3"})
    write(tmp_path / "bad.yaml", {"reason": "kaput", "run_name": "bad"})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [
        {"node": "tests.nodes_for_tests:record", "name": "first", "config": "ok.yaml"},
        {"node": "tests.nodes_for_tests:fail", "name": "second", "config": "bad.yaml"},
        {"node": "tests.nodes_for_tests:record", "name": "third", "config": "ok3.yaml"}]})
    assert run(sc, tmp_path) == 1
    assert [r["label"] for r in logged(log)] == ["first"]
    err = capsys.readouterr().err.strip().splitlines()
    assert any("node 'second'" in line and "deliberate failure: kaput" in line for line in err[-3:])
    assert json.loads((tmp_path / "out" / "bad" / "manifest.json").read_text())["status"] == "failed"


def test_unknown_node_name_suggests(tmp_path, capsys):
    write(tmp_path / "c.yaml", {})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [{"node": "grp", "config": "c.yaml"}]})
    assert run(sc, tmp_path) == 2
    err = capsys.readouterr().err
    assert "pipeline_order[0].node" in err and 'did you mean "grpo"' in err


def test_bad_import_path_node(tmp_path, capsys):
    write(tmp_path / "c.yaml", {})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [
        {"node": "tests.nodes_for_tests:recrod", "config": "c.yaml"},
        {"node": "no_such_module_xyz:fn", "config": "c.yaml"}]})
    assert run(sc, tmp_path) == 2
    err = capsys.readouterr().err
    assert 'did you mean "record"' in err and "cannot import 'no_such_module_xyz'" in err


def test_f14_node_import_paths_that_fail_at_import_are_exit_2_with_the_key_path(tmp_path, capsys):
    """Issue 16 F14: a module that raises or calls sys.exit at import, `:fn` and a relative path."""
    write(tmp_path / "c.yaml", {})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [
        {"node": "tests.rewards.bad_imports.raises_at_import:fn", "config": "c.yaml"},
        {"node": "tests.rewards.bad_imports.exits_at_import:fn", "config": "c.yaml"},
        {"node": ":fn", "config": "c.yaml"},
        {"node": ".relative:fn", "config": "c.yaml"}]})
    assert run(sc, tmp_path) == 2
    err = capsys.readouterr().err
    assert "pipeline_order[0].node: import path 'tests.rewards.bad_imports.raises_at_import:fn': importing" in err
    assert "raised RuntimeError: broken at import" in err
    assert "pipeline_order[1].node" in err and "called sys.exit(3) while being imported" in err
    assert "pipeline_order[2].node" in err and "has no module before ':'" in err
    assert "pipeline_order[3].node" in err and "is relative" in err


def test_super_config_problems_reported_together(tmp_path, capsys):
    sc = write(tmp_path / "super.yaml", {"pipeline_ordr": [], "pipeline_order": [{"nod": "grpo"}]})
    assert run(sc, tmp_path) == 2
    err = capsys.readouterr().err
    assert 'pipeline_ordr: unknown key (did you mean "pipeline_order"?)' in err
    assert "pipeline_order[0].nod" in err and "pipeline_order[0].node" in err and "pipeline_order[0].config" in err


def test_invalid_yaml_names_file_and_line(tmp_path, capsys):
    sc = tmp_path / "super.yaml"
    sc.write_text("pipeline_order:\n  - node: grpo\n   config: [oops\n")
    assert run(sc, tmp_path) == 2
    err = capsys.readouterr().err
    assert "super.yaml" in err and "invalid YAML at line" in err


def test_missing_node_config_file(tmp_path, capsys):
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [{"node": "grpo", "config": "nope.yaml"}]})
    assert run(sc, tmp_path) == 2
    assert "nope.yaml: <root>: file not found" in capsys.readouterr().err


def test_existing_run_dir_is_not_overwritten(pipeline, capsys):
    tmp_path, sc, log = pipeline
    assert run(sc, tmp_path, "--only", "a") == 0
    before = (tmp_path / "out" / "a" / "artifact.txt").read_text()
    # An import-path node has no resume option: the refusal applies to registered nodes (tested in test_config).
    assert before == "1"


def test_chaining_reference_resolves_to_earlier_output(tmp_path):
    log = tmp_path / "log.jsonl"
    write(tmp_path / "up.yaml", {"log": str(log), "value": "x", "run_name": "up"})
    write(tmp_path / "down.yaml", {"log": str(log), "run_name": "down", "input": "@up.artifact"})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [
        {"node": "tests.nodes_for_tests:record", "name": "up", "config": "up.yaml"},
        {"node": "tests.nodes_for_tests:record", "name": "down", "config": "down.yaml"}]})
    assert run(sc, tmp_path) == 0
    down = logged(log)[1]["config"]
    assert down["input"] == str(tmp_path / "out" / "up" / "artifact.txt")
    # --only down later resolves from the recorded latest run of "up"
    write(tmp_path / "down.yaml", {"log": str(log), "run_name": "down2", "input": "@up.artifact"})
    assert run(sc, tmp_path, "--only", "down") == 0
    assert logged(log)[2]["config"]["input"] == down["input"]


def test_chaining_reference_errors(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    write(tmp_path / "down.yaml", {"log": str(log), "input": "@later.artifact", "other": "@nobody.x"})
    write(tmp_path / "up.yaml", {"log": str(log)})
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [
        {"node": "tests.nodes_for_tests:record", "name": "down", "config": "down.yaml"},
        {"node": "tests.nodes_for_tests:record", "name": "later", "config": "up.yaml"}]})
    assert run(sc, tmp_path) == 2
    err = capsys.readouterr().err
    assert "input: refers to node 'later', which has not run: it comes later in the pipeline" in err
    assert "other: refers to node 'nobody'" in err
    assert logged(log) == []


def test_help_lists_flags():
    out = subprocess.run([sys.executable, "run_pipeline.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--super-config", "--only", "--set", "--validate", "--num-processes"):
        assert flag in out.stdout


def test_config_errors_reported_fast_without_heavy_imports(tmp_path):
    """A config with several mistakes exits 2 within 3 s, naming each key path, importing no torch."""
    cfg = yaml.safe_load((REPO / "pipelines/grpo/configs/quickstart.yaml").read_text())
    cfg["model"]["lora_rnak"] = 8
    cfg["training_parameters"]["num_generations"] = 3
    cfg["datasets"][0]["percentage"] = 1.5
    cfg["datasets"][0]["path"] = "inputs/does_not_exist.jsonl"
    cfg["dataset_settings"]["total_rows"] = 0
    write(tmp_path / "bad.yaml", cfg)
    sc = write(tmp_path / "super.yaml", {"pipeline_order": [{"node": "grpo", "config": "bad.yaml"}]})
    code = ("import sys, runpy; sys.argv=['run_pipeline.py','--super-config',%r,'--validate'];\n"
            "try:\n    runpy.run_path('run_pipeline.py', run_name='__main__')\n"
            "except SystemExit as e:\n    heavy=[m for m in ('torch','transformers','trl') if m in sys.modules]\n"
            "    print('HEAVY', heavy, file=sys.stderr); raise\n") % str(sc)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    assert out.returncode == 2, out.stderr
    assert elapsed < 30.0      # a generous bound, not a benchmark: bench/bench_validate.py measures it
    assert "HEAVY []" in out.stderr
    for needle in ('model.lora_rnak: unknown key (did you mean "lora_rank"?)', "datasets[0].percentage",
                   "datasets[0].path", "dataset_settings.total_rows"):
        assert needle in out.stderr, needle


def test_two_entries_sharing_a_run_dir_are_refused_before_anything_runs(pipeline, capsys):
    tmp_path, sc, log = pipeline
    assert run(sc, tmp_path, "--set", "run_name=same") == 2
    err = capsys.readouterr().err
    assert "entries 'a' and 'b' would both write to" in err and "entries 'a' and 'c'" in err
    assert logged(log) == []


def test_check_judges_says_when_a_node_has_no_judge_check(pipeline, capsys):
    """--check-judges goes through each node's hook; a node without one says so instead of staying silent."""
    tmp_path, sc, log = pipeline
    assert run(sc, tmp_path, "--validate", "--check-judges", "--only", "a") == 0
    out = capsys.readouterr().out
    assert "judges: not checked (this node declares no LLM judges)" in out and not log.exists()


def test_shipped_nodes_declare_their_hooks():
    """Every registered node has its resume hint and judge probe; the runner imports no reward code itself."""
    from pipelines.registry import NODE_FACTORIES, get_node

    hints = {name: get_node(name).resume_hint for name in NODE_FACTORIES}
    assert hints == {"grpo": "--set training_parameters.resume_from_checkpoint=auto",
                     "grpo_hpo": "--set training_parameters.resume_from_checkpoint=auto",
                     "rollout": "--set resume=true"}
    assert all(get_node(name).check_judges is not None for name in NODE_FACTORIES)
    runner_source = (REPO / "pipelines" / "runner.py").read_text(encoding="utf-8")
    assert "pipelines.rewards" not in runner_source and "pipelines.grpo" not in runner_source


@pytest.mark.parametrize("super_config", ["super_config.yaml", "super_config_chain.yaml",
                                          "pipelines/grpo/configs/super_config_hpo.yaml"])
def test_validate_of_every_shipped_pipeline_imports_no_torch_and_is_fast(super_config, tmp_path):
    """The whole --validate (schema, rules, reward catalog, data summary) of each shipped super-config, in a
    fresh interpreter: no torch, transformers or trl, and well under 3 s."""
    code = ("import sys, runpy; sys.argv=['run_pipeline.py','--super-config',%r,'--validate','--outputs',%r]\n"
            "try:\n    runpy.run_path('run_pipeline.py', run_name='__main__')\n"
            "except SystemExit as e:\n    heavy=[m for m in ('torch','transformers','trl') if m in sys.modules]\n"
            "    print('HEAVY', heavy, file=sys.stderr); raise\n") % (super_config, str(tmp_path / "out"))
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEAVY []" in out.stderr and elapsed < 3.0


def test_a_guard_stop_exits_3_keeps_the_run_dir_and_stops_later_nodes(tmp_path, capsys):
    for name in ("ok.yaml", "g.yaml"):
        write(tmp_path / name, {"log": str(tmp_path / "log.jsonl"), "run_name": name[0]})
    sc = write(tmp_path / "sc.yaml", {"pipeline_order": [
        {"node": "tests.nodes_for_tests:guard", "name": "guarded", "config": "g.yaml"},
        {"node": "tests.nodes_for_tests:record", "name": "after", "config": "ok.yaml"}]})
    assert run(sc, tmp_path) == 3
    err = capsys.readouterr().err
    assert "stopped by a guard (max_usd) at step 4: spent 1.20 USD of a 1.00 USD cap" in err
    assert "resume" in err and "Traceback" not in err
    run_dir = tmp_path / "out" / "g"
    assert (run_dir / "partial.txt").read_text() == "kept"
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "stopped"
    assert not (tmp_path / "log.jsonl").exists()   # the later node did not run
