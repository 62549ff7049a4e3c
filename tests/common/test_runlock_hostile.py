"""Issue 26 G2 and G10: a ``run.lock`` that is a symlink, a folder or a FIFO is refused (exit 2, clear message) and
nothing is written through it; a run_name too long for a file system is a config problem naming run_name."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipelines.common.runlock import LOCK_FILE, BadRunLock, RunLock, busy_holder, lock_file_problem
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]


def _record_pipeline(tmp_path: Path, run_name: str = "victim") -> Path:
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"run_name": run_name, "log": str(tmp_path / "log.jsonl")}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:record", "config": "n.yaml"}]}))
    return sc


def _make(kind: str, lock: Path, target: Path) -> None:
    if kind == "symlink":
        lock.symlink_to(target)
    elif kind == "dangling symlink":
        lock.symlink_to(target.parent / "not-there")
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)


KINDS = {"symlink": "symbolic link", "dangling symlink": "symbolic link", "folder": "is a folder", "fifo": "FIFO"}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("validate", [False, True])
def test_a_lock_that_is_not_a_regular_file_is_refused_and_nothing_is_written(tmp_path, capsys, kind, validate):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    run_dir = tmp_path / "out" / "victim"
    run_dir.mkdir(parents=True)
    _make(kind, run_dir / LOCK_FILE, target)
    rc = main(["--super-config", str(_record_pipeline(tmp_path)), "--outputs", str(tmp_path / "out")]
              + (["--validate"] if validate else []))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert KINDS[kind] in err and "run_name" in err and "Traceback" not in err
    assert target.read_text() == "keep me\n" and not (tmp_path / "not-there").exists()
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]        # no run.log, no config written
    assert not (tmp_path / "log.jsonl").exists()


def test_acquire_refuses_a_symlinked_lock_created_after_validation(tmp_path):
    """The runtime lock itself (not only the planning check) opens with O_NOFOLLOW."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).symlink_to(target)
    with pytest.raises(BadRunLock, match="symbolic link"):
        RunLock(run_dir).acquire()
    assert target.read_text() == "keep me\n"
    assert busy_holder(run_dir) is None and "symbolic link" in lock_file_problem(run_dir)
    (run_dir / LOCK_FILE).unlink()
    with RunLock(run_dir):                       # a regular lock file works as before
        assert lock_file_problem(run_dir) is None


@pytest.mark.parametrize("validate", [False, True])
def test_a_300_character_run_name_is_a_config_problem(tmp_path, capsys, validate):
    rc = main(["--super-config", str(_record_pipeline(tmp_path, "a" * 300)), "--outputs", str(tmp_path / "out")]
              + (["--validate"] if validate else []))
    err = capsys.readouterr().err
    assert rc == 2 and "run_name: is 300 bytes long" in err and "at most 200 bytes" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_the_quickstart_with_a_300_character_run_name_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc = main(["--validate", "--outputs", str(tmp_path / "out"), "--set", "run_name=" + "b" * 300])
    assert rc == 2 and "run_name: is 300 bytes long" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["run.log", "metrics.jsonl"])
def test_a_symlinked_file_the_run_appends_to_is_refused(tmp_path, capsys, name):
    """The same hole as a symlinked run.lock: run.log and metrics.jsonl are appended in place."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    run_dir = tmp_path / "out" / "victim"
    run_dir.mkdir(parents=True)
    (run_dir / name).symlink_to(target)
    assert main(["--super-config", str(_record_pipeline(tmp_path)), "--outputs", str(tmp_path / "out")]) == 2
    assert f"{name} is a symbolic link" in capsys.readouterr().err
    assert target.read_text() == "keep me\n" and not (tmp_path / "log.jsonl").exists()
