"""score_completions never destroys its input (F2), says clearly what is wrong with a path (F21), writes its
output whole or not at all, and scores every line even when the judge fails (issue 15): real files, and a real
judge over HTTP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_utils.score_completions import main
from tests.judge_server import JudgeServer, Reply
from tests.rewards.judge.judge_helpers import FAST, SCORE, write_rubric

REPO = Path(__file__).resolve().parents[1]
LINE = {"conversations": [{"from": "human", "value": "Hi"}], "completion": "Joy!"}


def slow_on_second():
    """A reward that takes a minute on the completion "slow" (the test kills the tool meanwhile)."""
    import time

    def reward(prompts, completions, **kw):
        if any("slow" in c[0]["content"] for c in completions):
            time.sleep(60)
        return [1.0] * len(completions)
    return reward


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.jsonl").write_text(json.dumps({"conversations": [
        {"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Joy: hi."}]}) + "\n")
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": 1},
           "datasets": [{"path": "data.jsonl", "percentage": 1.0, "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}]}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(LINE) + "\n")
    return tmp_path, tmp_path / "cfg.yaml", src


def _run(cfg: Path, src: Path, out: Path | str, *extra: str) -> int:
    return main(["--config", str(cfg), "--input", str(src), "--output", str(out), *extra])


@pytest.mark.parametrize("target", ["in.jsonl", "cfg.yaml", "data.jsonl", "./sub/../in.jsonl"])
def test_output_that_is_an_input_is_refused_and_the_input_kept(setup, capsys, target):
    """F2: --input X --output X truncated X to 0 bytes and exited 0."""
    tmp, cfg, src = setup
    before = {p.name: p.read_bytes() for p in tmp.iterdir() if p.is_file()}
    (tmp / "sub").mkdir()
    for flags in ((), ("--overwrite",)):
        assert _run(cfg, src, tmp / target, *flags) == 2
        assert "would destroy the" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp.iterdir() if p.is_file()} == before


def test_existing_output_needs_overwrite_and_overwrite_replaces_only_an_earlier_output(setup, capsys):
    tmp, cfg, src = setup
    notes = tmp / "notes.jsonl"
    notes.write_text('{"my": "data"}\n')
    assert _run(cfg, src, notes) == 2 and "add --overwrite" in capsys.readouterr().err
    assert _run(cfg, src, notes, "--overwrite") == 2 and "not an output of score_completions" in capsys.readouterr().err
    assert notes.read_text() == '{"my": "data"}\n'
    out = tmp / "scored.jsonl"
    assert _run(cfg, src, out) == 0
    assert _run(cfg, src, out) == 2
    assert _run(cfg, src, out, "--overwrite") == 0 and json.loads(out.read_text())["reward"] == 1.0


def test_output_is_written_whole_or_not_at_all(setup):
    """Killed half-way, an --overwrite run leaves the earlier output as it was (it writes a temp file and
    renames it at the end)."""
    tmp, cfg, src = setup
    out = tmp / "scored.jsonl"
    assert _run(cfg, src, out) == 0
    earlier = out.read_text()
    stops = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": 1},
             "datasets": [{"path": "data.jsonl", "percentage": 1.0,
                           "reward_funcs": [{"name": f"{__name__}:slow_on_second"}]}]}
    (tmp / "stops.yaml").write_text(yaml.safe_dump(stops))
    src.write_text(json.dumps(LINE) + "\n" + json.dumps({**LINE, "completion": "slow"}) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "cli_utils.score_completions", "--config", "stops.yaml",
                             "--input", "in.jsonl", "--output", "scored.jsonl", "--overwrite", "--batch-size", "1"],
                            cwd=tmp, env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in tmp.glob(".scored.jsonl.*.tmp")):   # line 1 is written
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert out.read_text() == earlier
    finally:
        proc.kill()
        proc.wait()
    assert out.read_text() == earlier


def test_output_folder_is_refused(setup, capsys):
    tmp, cfg, src = setup
    (tmp / "folder").mkdir()
    assert _run(cfg, src, tmp / "folder") == 2 and "is a folder" in capsys.readouterr().err


def test_missing_input_and_folder_input_are_clear_errors(setup, capsys):
    """F21: both were tracebacks."""
    tmp, cfg, _ = setup
    assert _run(cfg, tmp / "nope.jsonl", tmp / "o.jsonl") == 2
    assert "--input" in (err := capsys.readouterr().err) and "file not found" in err and "Traceback" not in err
    assert _run(cfg, tmp, tmp / "o2.jsonl") == 2 and "is a folder" in capsys.readouterr().err
    assert not (tmp / "o.jsonl").exists() and not (tmp / "o2.jsonl").exists()


def test_non_utf8_path_and_content(setup):
    """F21: a file name that is not UTF-8 crashed writing the output; a non-UTF-8 line is that line's error."""
    tmp, cfg, _ = setup
    raw = bytes(tmp) + b"/in\xff.jsonl"
    Path(raw.decode("utf-8", "surrogateescape")).write_bytes(
        json.dumps(LINE).encode() + b"\n" + b'{"completion": "\xff"}\n')
    src = raw.decode("utf-8", "surrogateescape")
    out = (bytes(tmp) + b"/out\xff.jsonl").decode("utf-8", "surrogateescape")
    assert _run(cfg, Path(src), Path(out)) == 0
    records = [json.loads(x) for x in Path(out).read_text(encoding="utf-8", errors="replace").splitlines()]
    assert records[0]["reward"] == 1.0
    assert "not valid UTF-8" in records[1]["errors"][0] and "in\ufffd.jsonl:2" in records[1]["errors"][0]


def _judge_config(tmp: Path, base_url: str, **judge) -> Path:
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": 1},
           "datasets": [{"path": "data.jsonl", "percentage": 1.0, "reward_funcs": [
               {"name": "keyword", "keywords": ["Joy"]},
               {"name": "llm_judge", "label": "grader", "eval_llm_name": "test-judge", "eval_llm_base_url": base_url,
                "system_prompt_path": write_rubric(tmp), "score_types": SCORE, "max_retries": 1, "timeout_s": 10,
                "format_retries": 1, **FAST, **judge}]}]}
    path = tmp / "judged.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_every_line_is_scored_when_the_judge_is_down(setup, capsys, on_error):
    """Issue 15: the batch aborted at the training circuit breaker and suggested a resume flag."""
    tmp, _, src = setup
    src.write_text("".join(json.dumps({**LINE, "completion": f"Joy {i}"}) + "\n" for i in range(5)))
    with JudgeServer(lambda req: Reply(status=500, error="judge overloaded")) as server:
        cfg = _judge_config(tmp, server.base_url, on_error=on_error)
        assert _run(cfg, src, tmp / "o.jsonl") == 0
    captured = capsys.readouterr()
    records = [json.loads(x) for x in (tmp / "o.jsonl").read_text().splitlines()]
    assert len(records) == 5
    for rec in records:
        assert list(rec["rewards"].values()) == [1.0, None]          # keyword scored, the judge not
        assert len(rec["errors"]) == 1 and "LLM judge 'grader'" in rec["errors"][0] and "HTTP 500" in rec["errors"][0]
    assert "5 line(s) scored, 5 with errors" in captured.out
    assert "resum" not in (captured.out + captured.err + (tmp / "o.jsonl").read_text()).lower()


def test_show_judge_prints_raw_replies_and_their_reading(setup, capsys):
    tmp, _, src = setup
    src.write_text(json.dumps({**LINE, "completion": "good"}) + "\n" + json.dumps({**LINE, "completion": "bad"})
                   + "\n")

    def script(req):
        if "bad" in req.text and "could not be read" not in req.text:
            return Reply(content="I think it deserves eleven")
        return Reply(content="Fine work. <score>8</score>")

    with JudgeServer(script) as server:
        assert _run(_judge_config(tmp, server.base_url), src, tmp / "o.jsonl", "--show-judge") == 0
    out = capsys.readouterr().out
    assert "in.jsonl:1 judge 'grader': reward 8.0" in out
    assert "reply 1: 'Fine work. <score>8</score>'\n    -> score 8.0" in out
    assert "reply 1: 'I think it deserves eleven'\n    -> not read:" in out
    assert "reply 2: 'Fine work. <score>8</score>'" in out        # the re-ask, read
