"""Crash-safe files: atomic replace, whole-line JSONL appends from several processes, torn-line repair."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.common.io import JsonlAppender, atomic_write_text, read_jsonl, truncate_partial_last_line


_APPEND = ("import sys\n"
           "from pipelines.common.io import JsonlAppender\n"
           "who = int(sys.argv[2])\n"
           "for chunk in range(20):  # reopen often: opening repairs a torn last line, racing other writers\n"
           "    with JsonlAppender(sys.argv[1]) as out:\n"
           "        for i in range(chunk * 10, chunk * 10 + 10):\n"
           "            out.write({'who': who, 'i': i, 'blob': 'x' * (20000 + who)})\n")


def test_concurrent_appenders_never_interleave(tmp_path):
    """Three processes append records larger than any stdio buffer to one file at the same time, reopening it
    as they go; no record is lost, cut or interleaved."""
    path = tmp_path / "shared.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _APPEND, str(path), str(w)]) for w in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    records = [json.loads(line) for line in path.read_text().splitlines()]  # every line is one whole record
    assert len(records) == 600
    for w in range(3):
        assert sorted(r["i"] for r in records if r["who"] == w) == list(range(200))


def test_torn_last_line_is_cut_on_open_and_skipped_on_read(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "tor')
    assert [r["a"] for r in read_jsonl(path)] == [1, 2]
    with JsonlAppender(path) as out:
        out.write({"a": 4})
    assert [r["a"] for r in read_jsonl(path)] == [1, 2, 4]
    only_partial = tmp_path / "b.jsonl"
    only_partial.write_text('{"a"')
    truncate_partial_last_line(only_partial)
    assert only_partial.read_text() == ""


def test_killed_writer_leaves_whole_lines(tmp_path):
    path = tmp_path / "k.jsonl"
    code = ("from pipelines.common.io import JsonlAppender\n"
            "out = JsonlAppender(%r)\n"
            "i = 0\n"
            "while True:\n    out.write({'i': i, 'pad': 'y' * 5000}); i += 1\n") % (str(path),)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 20
    while (not path.exists() or path.stat().st_size < 2_000_000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    records = list(read_jsonl(path))
    assert len(records) > 100
    assert [r["i"] for r in records] == list(range(len(records)))


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "c.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]  # no temp files left behind


def test_replace_dir_swaps_whole_folders(tmp_path):
    from pipelines.common.io import replace_dir
    final, tmp = tmp_path / "final", tmp_path / ".final.tmp"
    tmp.mkdir()
    (tmp / "a.txt").write_text("v1")
    replace_dir(tmp, final)
    assert (final / "a.txt").read_text() == "v1" and not tmp.exists()
    tmp.mkdir()
    (tmp / "b.txt").write_text("v2")
    replace_dir(tmp, final)
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]          # the old content is gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]       # no .old or temp folder left


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_written_files_follow_the_umask_not_the_temp_file_mode(tmp_path, umask, file_mode, dir_mode):
    """Before: atomic writes (and safetensors, and mkdtemp folders) left 0600 files and 0700 folders."""
    import os
    import tempfile

    from pipelines.common.io import atomic_write_text, make_readable, replace_dir

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "summary.json", "{}\n")
        assert (tmp_path / "summary.json").stat().st_mode & 0o777 == file_mode
        tmp = Path(tempfile.mkdtemp(dir=tmp_path))
        (tmp / "sub").mkdir()
        weights = tmp / "sub" / "adapter_model.safetensors"
        weights.write_bytes(b"x")
        weights.chmod(0o600)
        replace_dir(tmp, tmp_path / "final_adapter")
        final = tmp_path / "final_adapter"
        assert final.stat().st_mode & 0o777 == dir_mode
        assert (final / "sub" / "adapter_model.safetensors").stat().st_mode & 0o777 == file_mode
        script = tmp_path / "run.sh"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o700)
        make_readable(script)
        assert script.stat().st_mode & 0o777 == 0o700 | (file_mode & 0o444)   # bits only added
    finally:
        os.umask(old)
