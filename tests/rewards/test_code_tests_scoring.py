"""score_completions with the code_tests reward, end to end: the shipped code dataset's first row, a correct and a
wrong solution, and hostile completions. Each hostile one defines a correct ``add`` only when its attack worked,
so a score of 0.0 shows that the attack failed; the test also checks that nothing outside changed."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import yaml

from cli_utils.score_completions import main
from pipelines.common import sandbox
from tests.common.test_sandbox import sandbox_processes

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "inputs" / "code_tests.jsonl"
KEY = "sk-test-fake-openai-key-7f3e"
WALL_S = 3
HOST_TMP = Path("/tmp") / f"code-tests-escape-{os.getpid()}"
needs_bwrap = pytest.mark.skipif(sandbox.probe() is not None, reason=f"bwrap cannot start here: {sandbox.probe()}")


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


def attack(setup: str) -> str:
    """A solution that is correct only when ``setup`` set ``ok`` (the attack worked)."""
    return fenced(f"ok = False\n{setup}\ndef add(a, b):\n    return a + b if ok else None")


def hostile_completions(tmp_path: Path, port: int) -> dict[str, str]:
    outside = tmp_path / "escaped.txt"
    return {
        "write_outside": attack(f"open({str(HOST_TMP)!r}, 'w').write('only in the private /tmp')\n"
                                f"try:\n    open({str(outside)!r}, 'w').write('escaped')\n    ok = True\n"
                                "except OSError:\n    pass"),
        "socket": attack(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)"
                         ".sendall(b'escaped')\n    ok = True\nexcept OSError:\n    pass"),
        "fork_bomb": fenced("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
                            "def add(a, b):\n    return a + b"),
        "endless_loop": fenced("def add(a, b):\n    return a + b\nwhile True:\n    pass"),
        "allocate_10_gb": attack("try:\n    block = bytearray(10 * 1024 ** 3)\n    ok = True\nexcept MemoryError:\n"
                                 "    pass"),
        "print_100_mb": fenced("import sys\nsys.stdout.write('x' * (100 * 1024 ** 2))\n"
                               "def add(a, b):\n    return a + b"),
        "env_key": attack("import os\nok = bool(os.environ.get('OPENAI_API_KEY'))"),
        "proc_environ": attack("import glob\nfor path in glob.glob('/proc/*/environ') + "
                               f"['/proc/{os.getpid()}/environ']:\n    try:\n"
                               "        ok = ok or b'OPENAI_API_KEY' in open(path, 'rb').read()\n"
                               "    except OSError:\n        pass"),
    }


def write_config(tmp_path: Path) -> Path:
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"},
           "datasets": [{"path": str(DATA), "percentage": 1.0,
                         "reward_funcs": [{"name": "code_tests",
                                           "sandbox": {"wall_s": WALL_S, "cpu_s": 2, "memory_mb": 512}}]}],
           "dataset_settings": {"total_rows": 12}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@needs_bwrap
def test_correct_wrong_and_hostile_completions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    row = json.loads(DATA.read_text().splitlines()[0])          # add(a, b) with three asserts
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        hostile = hostile_completions(tmp_path, listener.getsockname()[1])
        lines = {"correct": fenced("def add(a, b):\n    return a + b"),
                 "wrong": fenced("def add(a, b):\n    return a - b"), **hostile}
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps({**row, "completion": c, "case": name}) + "\n" for name, c in lines.items()))
        start = time.monotonic()
        assert main(["--config", str(write_config(tmp_path)), "--input", str(src),
                     "--output", str(tmp_path / "out.jsonl")]) == 0
        elapsed = time.monotonic() - start
        with pytest.raises(socket.timeout):
            listener.accept()                                   # nothing connected
    out = {r["case"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    scores = {case: r["rewards"]["code_tests/code_tests"] for case, r in out.items()}
    assert scores == {"correct": 1.0, **{case: 0.0 for case in lines if case != "correct"}}
    assert not any("errors" in r for r in out.values())
    assert not (tmp_path / "escaped.txt").exists() and not HOST_TMP.exists()
    deadline = time.monotonic() + 10                            # the fork bomb's processes die with its sandbox
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes() == []
    # each sandbox is stopped by its limits: the whole file takes well under one wall limit per line
    assert elapsed < len(lines) * WALL_S
    printed = capsys.readouterr().out
    assert KEY not in (tmp_path / "out.jsonl").read_text() and KEY not in printed
    assert "reward counters:" in printed and "code_tests/code_tests/zero/output_limit: 1" in printed


def test_a_sandbox_that_cannot_start_is_a_config_error(tmp_path, monkeypatch, capsys):
    sandbox.probe.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))                  # no bwrap on PATH
    try:
        code = main(["--config", str(write_config(tmp_path)), "--sample", "1"])
    finally:
        sandbox.probe.cache_clear()
    err = capsys.readouterr().err
    assert code == 2
    assert "reward_funcs" in err and "bubblewrap" in err and "apt-get install bubblewrap" in err
    assert "unsafe_subprocess" in err


@pytest.mark.parametrize("mode, expected", [("bwrap", 2), ("unsafe_subprocess", 0)])
def test_validate_refuses_model_code_without_bwrap_unless_the_weaker_mode_is_set(tmp_path, monkeypatch, capsys,
                                                                                mode, expected):
    from pipelines.runner import main as runner_main

    cfg = yaml.safe_load(write_config(tmp_path).read_text())
    cfg["datasets"][0]["reward_funcs"][0]["sandbox"]["mode"] = mode
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    super_config = tmp_path / "super.yaml"
    super_config.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": "cfg.yaml"}]}))
    sandbox.probe.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))                  # no bwrap on PATH
    try:
        code = runner_main(["--super-config", str(super_config), "--outputs", str(tmp_path / "out"), "--validate"])
    finally:
        sandbox.probe.cache_clear()
    out = capsys.readouterr()
    assert code == expected
    if expected:
        assert "datasets[0].reward_funcs[0]" in out.err + out.out and "apt-get install bubblewrap" in out.err + out.out


@needs_bwrap
def test_every_reference_solution_of_the_shipped_dataset_passes(tmp_path):
    rows = DATA.read_text().splitlines()
    assert main(["--config", str(write_config(tmp_path)), "--sample", str(len(rows)),
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == len(rows) and all(r["reward"] == 1.0 for r in out), [r.get("errors") for r in out]
