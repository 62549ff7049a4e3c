"""Issue 26 G1 and G8: ``score_completions --overwrite`` replaces only a regular, non-symlink file this tool wrote
(a device node, a FIFO, a symlink and an empty file survive), and ``--show-judge`` prints judge replies with every
secret masked, the Basic-header form of a URL password included. Real files, a real judge over HTTP."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from cli_utils.score_completions import main
from tests.judge_server import JudgeServer, Reply
from tests.rewards.judge.judge_helpers import FAST, SCORE, write_rubric

LINE = {"conversations": [{"from": "human", "value": "Hi"}], "completion": "Joy!"}


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.jsonl").write_text(json.dumps({"conversations": [
        {"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Joy: hi."}]}) + "\n")
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": 1},
           "datasets": [{"path": "data.jsonl", "percentage": 1.0,
                         "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}]}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "in.jsonl").write_text(json.dumps(LINE) + "\n")
    return tmp_path


def _run(tmp: Path, out: Path | str, *extra: str, cfg: str = "cfg.yaml") -> int:
    return main(["--config", str(tmp / cfg), "--input", str(tmp / "in.jsonl"), "--output", str(out), *extra])


def test_a_device_node_is_never_replaced(setup, capsys):
    """G1: run as root, ``--output /dev/null --overwrite`` replaced the system's /dev/null with a regular file.
    The test makes its own null device in tmp_path, so a regression can never touch the real one."""
    node = setup / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert _run(setup, node, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and "Traceback" not in err
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert not [p for p in setup.iterdir() if p.name.startswith(".null.")]   # no temp file left beside it


def test_dev_null_itself_is_refused(setup, capsys):
    """The reproduction as written; it is refused before anything is opened for writing."""
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert _run(setup, "/dev/null", "--overwrite") == 2
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_refused_without_blocking(setup, capsys):
    fifo = setup / "pipe"
    os.mkfifo(fifo)
    assert _run(setup, fifo, "--overwrite") == 2      # reading a FIFO to check it would block for ever
    assert "not a regular file" in capsys.readouterr().err and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_an_empty_foreign_file_survives(setup, capsys):
    empty = setup / "mine.jsonl"
    empty.write_text("")
    assert _run(setup, empty, "--overwrite") == 2
    assert "is empty" in capsys.readouterr().err
    assert empty.exists() and empty.read_text() == ""


def test_a_symlink_to_an_earlier_output_is_not_followed_or_replaced(setup, capsys):
    real = setup / "scored.jsonl"
    assert _run(setup, real) == 0
    earlier = real.read_text()
    link = setup / "link.jsonl"
    link.symlink_to(real)
    assert _run(setup, link, "--overwrite") == 2
    assert "symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and real.read_text() == earlier
    dangling = setup / "dangling.jsonl"
    dangling.symlink_to(setup / "nowhere.jsonl")
    assert _run(setup, dangling) == 2 and "exists" in capsys.readouterr().err
    assert dangling.is_symlink() and not (setup / "nowhere.jsonl").exists()


def test_a_foreign_file_with_a_rewards_word_is_not_taken_for_an_output(setup, capsys):
    notes = setup / "notes.jsonl"
    notes.write_text('{"rewards": "my notes"}\n')
    assert _run(setup, notes, "--overwrite") == 2
    assert "not an output of score_completions" in capsys.readouterr().err
    assert notes.read_text() == '{"rewards": "my notes"}\n'
    out = setup / "scored.jsonl"           # and an earlier output is still replaced
    assert _run(setup, out) == 0 and _run(setup, out, "--overwrite") == 0


def test_show_judge_masks_a_key_and_basic_credentials_the_judge_echoes(setup, capsys, monkeypatch):
    """G8: a judge that echoes its request headers showed the key (and a URL password's Basic header form)."""
    key = "sk-echo-secret-0123456789"
    monkeypatch.setenv("JUDGE_API_KEY", key)

    def echo(req):
        return Reply(content=f"headers {json.dumps(req.headers)} key {key} <score>7</score>")

    with JudgeServer(echo) as server:
        url = server.base_url.replace("://", "://judgeuser:pa55word-xyz@")
        cfg = yaml.safe_load((setup / "cfg.yaml").read_text())
        cfg["datasets"][0]["reward_funcs"].append(
            {"name": "llm_judge", "label": "grader", "eval_llm_name": "test-judge", "eval_llm_base_url": url,
             "eval_llm_api_key": "${JUDGE_API_KEY}", "system_prompt_path": write_rubric(setup),
             "score_types": SCORE, "max_retries": 1, "timeout_s": 10, **FAST})
        (setup / "judged.yaml").write_text(yaml.safe_dump(cfg))
        assert _run(setup, setup / "o.jsonl", "--show-judge", cfg="judged.yaml") == 0
    out = capsys.readouterr().out
    assert "judge 'grader'" in out and "***" in out
    basic = base64.b64encode(b"judgeuser:pa55word-xyz").decode()
    for secret in (key, "pa55word-xyz", basic):
        assert secret not in out
