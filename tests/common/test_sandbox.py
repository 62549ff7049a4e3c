"""pipelines/common/sandbox.py and the python_exec tool: real bwrap runs of real snippets, hostile ones included."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest

from pipelines.common import sandbox
from pipelines.common.builtin_tools import BUILTIN_TOOLS, format_result, make_python_exec
from pipelines.common.sandbox import (SandboxResult, SandboxSettings, SandboxUnavailable, run_python,
                                      sandbox_problems)

needs_bwrap = pytest.mark.skipif(sandbox.probe() is not None, reason=f"bwrap cannot start here: {sandbox.probe()}")
FAST = SandboxSettings(wall_s=3, cpu_s=2, memory_mb=512, processes=16, output_bytes=64_000)
UNSAFE = FAST.model_copy(update={"mode": "unsafe_subprocess"})
KEY = "sk-test-not-a-real-key-4242"


def sandbox_processes() -> list[str]:
    """Processes running under a per-call sandbox user id (the fork bomb's leftovers, if any)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and sandbox.UID_BASE <= entry.stat().st_uid < sandbox.UID_BASE + sandbox.UID_SPAN:
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.fixture()
def fresh_probe():
    sandbox.probe.cache_clear()
    yield
    sandbox.probe.cache_clear()


@needs_bwrap
@pytest.mark.parametrize("settings", [FAST, UNSAFE], ids=["bwrap", "unsafe"])
def test_runs_a_snippet_with_an_empty_environment(settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    result = run_python("import os, sys\nprint(sorted(os.environ))\nprint('to stderr', file=sys.stderr)\n"
                        "raise SystemExit(3)", settings)
    assert result.exit_code == 3 and result.killed is None and not result.truncated and not result.ok
    assert "OPENAI_API_KEY" not in result.stdout and "to stderr" in result.stderr
    assert result.mode == settings.mode and 0 < result.wall_s < settings.wall_s


@needs_bwrap
@pytest.mark.parametrize("settings", [FAST, UNSAFE], ids=["bwrap", "unsafe"])
def test_the_parents_environ_cannot_be_read_through_proc(settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code = ("import glob\nfound = []\n"
            f"for path in glob.glob('/proc/*/environ') + ['/proc/{os.getpid()}/environ']:\n"
            "    try:\n        found.append(open(path, 'rb').read())\n    except OSError:\n        pass\n"
            f"print('FOUND' if any({KEY!r}.encode() in f for f in found) else 'clean')")
    result = run_python(code, settings)
    assert result.stdout.strip() == "clean", result.stderr


@needs_bwrap
def test_no_network_not_even_to_a_local_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        result = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                            "print('connected')", FAST)
        assert result.exit_code == 1 and "connected" not in result.stdout
        assert "ConnectionRefusedError" in result.stderr or "unreachable" in result.stderr
        with pytest.raises(socket.timeout):
            listener.accept()


@needs_bwrap
def test_the_system_is_read_only_and_tmp_is_private(tmp_path):
    host_tmp = Path("/tmp") / f"sandbox-escape-{os.getpid()}"
    code = (f"open('/tmp/{host_tmp.name}', 'w').write('inside')\nprint(open('/tmp/{host_tmp.name}').read())\n"
            f"import os\nfor path in ['/usr/escaped', {str(tmp_path / 'escaped')!r}]:\n"
            "    try:\n        open(path, 'w').write('x')\n        print('WROTE', path)\n"
            "    except OSError as exc:\n        print(type(exc).__name__)\n"
            "print(sorted(os.listdir('/')))")
    result = run_python(code, FAST)
    assert result.exit_code == 0, result.stderr
    assert "inside" in result.stdout and "WROTE" not in result.stdout
    assert not host_tmp.exists() and not (tmp_path / "escaped").exists() and not Path("/usr/escaped").exists()
    assert "'work'" not in result.stdout and "'root'" not in result.stdout and "'home'" not in result.stdout


@needs_bwrap
def test_wall_time_kills_the_whole_sandbox():
    result = run_python("import time\ntime.sleep(60)", FAST.model_copy(update={"wall_s": 1.0}))
    assert result.timed_out and result.killed == "wall_time" and result.exit_code is None
    assert result.wall_s < 3.0


@needs_bwrap
@pytest.mark.parametrize("settings", [FAST, UNSAFE], ids=["bwrap", "unsafe"])
def test_cpu_limit_ends_an_endless_loop(settings):
    result = run_python("while True:\n    pass", settings.model_copy(update={"cpu_s": 1, "wall_s": 20}))
    assert result.killed in ("cpu_time", "signal:SIGKILL") and not result.timed_out


@needs_bwrap
@pytest.mark.parametrize("settings", [FAST, UNSAFE], ids=["bwrap", "unsafe"])
def test_memory_limit_refuses_10_gb(settings):
    result = run_python("x = bytearray(10 * 1024 ** 3)\nprint('allocated')", settings)
    assert "MemoryError" in result.stderr and "allocated" not in result.stdout and result.exit_code == 1


@needs_bwrap
@pytest.mark.parametrize("settings", [FAST, UNSAFE], ids=["bwrap", "unsafe"])
def test_printing_100_mb_is_cut_and_killed(settings):
    start = time.monotonic()
    result = run_python("import sys\nsys.stdout.write('x' * (100 * 1024 ** 2))", settings)
    assert result.truncated and result.killed == "output_limit" and result.exit_code is None
    assert len(result.stdout) == settings.output_bytes and time.monotonic() - start < settings.wall_s


@needs_bwrap
def test_file_size_limit():
    result = run_python("open('/tmp/big', 'wb').write(b'x' * (2 * 1024 * 1024))",
                        FAST.model_copy(update={"file_size_mb": 1}))
    assert result.exit_code != 0 and "File too large" in result.stderr


@needs_bwrap
def test_a_fork_bomb_is_contained_and_leaves_nothing_behind():
    counted = run_python("import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
                         "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
                         "        os._exit(0)\n    n += 1\nprint(n)", FAST)
    assert counted.exit_code == 0 and 0 < int(counted.stdout) < FAST.processes
    bomb = run_python("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", FAST)
    assert bomb.killed in ("wall_time", "cpu_time", "signal:SIGKILL")
    deadline = time.monotonic() + 10
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes() == []


def test_bwrap_missing_is_refused_with_the_fix(fresh_probe, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    problems = sandbox_problems(SandboxSettings())
    assert len(problems) == 1 and "not installed" in problems[0] and "apt-get install bubblewrap" in problems[0]
    assert "unsafe_subprocess" in problems[0]
    with pytest.raises(SandboxUnavailable, match="--privileged"):
        run_python("print(1)")
    assert sandbox_problems(SandboxSettings(mode="unsafe_subprocess")) == []


def test_bwrap_that_cannot_start_is_reported(fresh_probe, monkeypatch):
    folder = Path(tempfile.mkdtemp())   # the sandbox user must reach it: not under pytest's private tmp
    folder.chmod(0o755)
    fake = folder / "bwrap"   # what bwrap prints in a container that forbids namespaces
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    try:
        problems = sandbox_problems(SandboxSettings())
    finally:
        shutil.rmtree(folder)
    assert len(problems) == 1 and "No permissions to creating new namespace" in problems[0]


def test_a_missing_interpreter_is_a_problem():
    assert "does not exist" in sandbox_problems(SandboxSettings(python="/nonexistent/python3"))[0]


@needs_bwrap
def test_unsafe_mode_warns_and_cleans_its_folder(caplog, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tmp_path.chmod(0o755)   # the sandbox user's folder is made inside it
    monkeypatch.setattr(tempfile, "tempdir", None)   # re-read TMPDIR
    with caplog.at_level(logging.WARNING, logger="pipelines.common.sandbox"):
        result = run_python("import os\nprint(os.getcwd())", UNSAFE)
    assert "WITHOUT isolation" in caplog.text
    assert result.stdout.strip().startswith(str(tmp_path)) and list(tmp_path.iterdir()) == []


@needs_bwrap
def test_python_exec_tool():
    tool = BUILTIN_TOOLS["python_exec"]
    assert tool.__name__ == "python_exec" and "Args:" in tool.__doc__
    text = tool("print(6 * 7)")
    assert text.startswith("exit status 0") and "--- stdout ---\n42" in text
    cut = make_python_exec(FAST)("print('y' * 10000)")
    assert "more characters cut" in cut and len(cut) < 5000


def test_format_result_names_the_kill():
    killed = SandboxResult("", "", None, True, "wall_time", False, 3.0, "bwrap")
    assert format_result(killed).startswith("killed: wall-time limit reached")


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="per-call user ids need root")
def test_unsafe_mode_kills_what_left_the_session():
    result = run_python("import os, sys, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(60)\n"
                        "    os._exit(0)\nprint(pid)", UNSAFE)
    pid = int(result.stdout)
    assert result.exit_code == 0
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}").stat().st_uid != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}").stat().st_uid == 0   # gone (or pid reused)


@needs_bwrap
def test_limits_apply_without_prlimit_too(monkeypatch):
    folder = Path(tempfile.mkdtemp())   # bwrap alone on PATH: the limits are set by a preexec_fn instead
    folder.chmod(0o755)
    (folder / "bwrap").symlink_to(shutil.which("bwrap"))
    monkeypatch.setenv("PATH", str(folder))
    try:
        assert shutil.which("prlimit") is None
        memory = run_python("x = bytearray(10 * 1024 ** 3)", FAST)
        forks = run_python("import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
                           "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
                           "        os._exit(0)\n    n += 1\nprint(n)", FAST)
    finally:
        shutil.rmtree(folder)
    assert "MemoryError" in memory.stderr
    assert forks.exit_code == 0 and 0 < int(forks.stdout) < FAST.processes


@needs_bwrap
def test_sandbox_stats_of_a_tool():
    tool = make_python_exec(FAST.model_copy(update={"wall_s": 1.0}))
    tool("print(1)")
    tool("import time\ntime.sleep(5)")
    stats = tool.sandbox_stats.pop()
    assert stats["runs"] == 2 and stats["killed/wall_time"] == 1
    assert 0 < stats["latency_p50_s"] <= stats["latency_p95_s"] < 3
    assert tool.sandbox_stats.pop() == {}


@needs_bwrap
def test_the_private_tmp_is_capped():
    result = run_python("for i in range(8):\n    open(f'/tmp/f{i}', 'wb').write(b'x' * 1024 * 1024)",
                        FAST.model_copy(update={"tmp_mb": 4}))
    assert result.exit_code == 1 and "No space left on device" in result.stderr


def test_an_old_bwrap_without_size_or_clearenv_still_gets_a_command(monkeypatch, caplog):
    from pipelines.common import bwrap

    folder = Path(tempfile.mkdtemp())
    old = folder / "bwrap"   # bubblewrap 0.4.0's help has neither --size nor --clearenv
    old.write_text("#!/bin/sh\necho 'usage: bwrap [OPTIONS...] [--] COMMAND [ARGS...]'\n"
                   "echo '    --unshare-all                Unshare every namespace'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    try:
        with caplog.at_level(logging.WARNING, logger="pipelines.common.bwrap"):
            cmd = bwrap.bwrap_command("/usr/bin/python3", 1024, {"PATH": "/usr/bin"})
    finally:
        shutil.rmtree(folder)
    assert cmd[0] == str(old) and "--size" not in cmd and "--clearenv" not in cmd and "--unshare-all" in cmd
    assert "not capped" in caplog.text
    assert cmd[cmd.index("--tmpfs") - 1] != "--size"


def test_tool_sandbox_problems(fresh_probe, monkeypatch, tmp_path):
    from pipelines.common.builtin_tools import tool_sandbox_problems

    monkeypatch.setenv("PATH", str(tmp_path))                 # no bwrap
    assert "apt-get install bubblewrap" in tool_sandbox_problems(BUILTIN_TOOLS["python_exec"])[0]
    assert tool_sandbox_problems(make_python_exec(SandboxSettings(mode="unsafe_subprocess"))) == []
    assert tool_sandbox_problems(len) == []
