"""A real run with three API keys, ``x``, ``local`` and a long real-looking one (issue 15 item 4, F5): every
log and file stays readable (short keys never garble text) and the long key appears nowhere."""
from __future__ import annotations

import re

import pytest

from tests.grpo.training_runs import (outputs, quickstart_config, run_node, text_files, tiny_cache,  # noqa: F401
                                      write_super)
from tests.judge_server import JudgeServer, Reply
from tests.rewards.judge.judge_helpers import FAST, SCORE, write_rubric

LONG = "sk-proj-Zt7Qm2Lp9Vx4Rb8Kc1Nw6Hd3"
GARBLED = re.compile(r"[A-Za-z0-9]\*\*\*|\*\*\*[A-Za-z0-9]")     # *** glued to a word: a key masked inside text


@pytest.mark.slow
def test_short_keys_leave_logs_readable_and_the_long_key_never_leaks(outputs, tmp_path, monkeypatch,  # noqa: F811
                                                                     capsys):
    monkeypatch.setenv("JUDGE_API_KEY", LONG)
    monkeypatch.setenv("SHORT_API_KEY", "x")
    monkeypatch.setenv("LOCAL_API_KEY", "local")
    cfg = quickstart_config(max_steps=2, save_steps=2)
    cfg["run_name"] = "keys"
    cfg["logging"]["log_completions_every"] = 1
    cfg["datasets"][0]["system_prompt"] = "You are a cheerful assistant on localhost; mind the max_failure_rate."
    with JudgeServer(lambda req: Reply(content="<score>7</score>")) as server:
        rubric = write_rubric(tmp_path)
        cfg["datasets"][0]["reward_funcs"] = [
            {"name": "llm_judge", "label": label, "eval_llm_name": "test-judge", "eval_llm_base_url": server.base_url,
             "eval_llm_api_key": "${%s}" % env, "system_prompt_path": rubric, "score_types": SCORE,
             "max_failure_rate": 0.5, "timeout_s": 30, **FAST}
            for label, env in (("long", "JUDGE_API_KEY"), ("short", "SHORT_API_KEY"), ("local", "LOCAL_API_KEY"))]
        assert run_node(outputs, write_super(tmp_path, cfg)) == 0
        assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {k}" for k in (LONG, "x", "local")}
    captured = capsys.readouterr()
    run = outputs / "keys"
    resolved = (run / "resolved_config.yaml").read_text()
    log = (run / "run.log").read_text()
    assert resolved.count("eval_llm_api_key: '***'") == 3                    # every key field, at any length
    assert "max_failure_rate: 0.5" in resolved and "localhost" in resolved
    assert "on localhost; mind the max_failure_rate" in log                  # the logged prompt sample, intact
    for name, text in (("run.log", log), ("resolved_config.yaml", resolved), ("console", captured.err)):
        assert not GARBLED.search(text), (name, GARBLED.search(text))
    assert LONG not in text_files(run) + captured.out + captured.err
    for path in run.rglob("*"):
        if path.is_file():
            assert LONG.encode() not in path.read_bytes(), path
