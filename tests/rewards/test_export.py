"""The high-scoring export: record format, threshold, crash safety and resume truncation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipelines.common.io import read_jsonl
from pipelines.rewards.export import HighScoreExport, sharegpt_conversation
from tests.rewards.reward_cfg import make_cfg, row, stack_for

REPO = Path(__file__).resolve().parents[2]


def call(stack, texts, rows, global_step):
    class State:
        pass
    state = State()
    state.global_step = global_step
    cols = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    return stack.reward_func(prompts=[r["prompt"] for r in rows],
                             completions=[[{"role": "assistant", "content": t}] for t in texts],
                             trainer_state=state, **cols)


def test_records_hold_everything_and_only_high_scores(tmp_path):
    cfg = make_cfg([{"name": "keyword", "keywords": ["Joy"]}, {"name": "keyword", "keywords": ["!"]}],
                   reward={"score_save_threshold": 1.0, "high_scoring_save_path": "best/high.jsonl",
                           "scaling_function": "zscore"})
    stack = stack_for(cfg, tmp_path)
    prompt = [{"role": "system", "content": "Be cheerful."}, {"role": "user", "content": "Hello"}]
    rows = [row(0, row_id="a"), row(0, row_id="b"), row(0, row_id="c")]
    for r in rows:
        r["prompt"] = prompt
    call(stack, ["Joy!", "Joy", "meh"], rows, global_step=4)
    stack.close()
    records = list(read_jsonl(tmp_path / "best" / "high.jsonl"))
    assert [r["row_id"] for r in records] == ["a", "b"]  # 2.0 and 1.0 reach the threshold (before scaling)
    first = records[0]
    assert first["step"] == 5  # global_step + 1: the step this batch trains, as TRL logs it
    assert first["reward"] == 2.0 and first["rewards"] == {"ds0/keyword": 1.0, "ds0/keyword_2": 1.0}
    assert first["dataset"] == "inputs/ds0.jsonl" and first["dataset_index"] == 0
    assert first["prompt"] == prompt and first["completion"] == "Joy!"
    assert first["conversations"] == [{"from": "system", "value": "Be cheerful."},
                                      {"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Joy!"}]
    assert set(first) == {"step", "dataset", "dataset_index", "row_id", "reward", "rewards", "prompt",
                          "completion", "conversations", "rank"}
    assert first["rank"] == 0


def test_no_threshold_no_file(tmp_path):
    stack = stack_for(make_cfg([{"name": "keyword", "keywords": ["a"]}]), tmp_path)
    call(stack, ["a"], [row(0)], 0)
    stack.close()
    assert stack.export is None and not list(tmp_path.iterdir())


def test_prefilled_assistant_turn_is_continued():
    prompt = [{"role": "user", "content": "Solve"}, {"role": "assistant", "content": "<think>"}]
    assert sharegpt_conversation(prompt, "x</think>") == [{"from": "human", "value": "Solve"},
                                                          {"from": "gpt", "value": "<think>x</think>"}]


def test_truncate_after_step_and_resume(tmp_path):
    path = tmp_path / "high_scoring_examples.jsonl"
    export = HighScoreExport(path, 0.5)
    for step in (1, 2, 3, 4):
        export.offer({"step": step, "reward": 1.0})
    export.offer({"step": 9, "reward": 0.1})  # below threshold: not written
    export.close()
    with open(path, "a") as fh:
        fh.write('{"step": 5, "rew')  # a torn line from a kill
    assert export.truncate_after_step(2) == 2
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    assert path.read_text().endswith("\n")
    # stack_for(resume_step=...) does the same on start, then appends after the kept records
    cfg = make_cfg([{"name": "keyword", "keywords": ["a"]}], reward={"score_save_threshold": 1.0})
    stack = stack_for(cfg, tmp_path, resume_step=1)
    call(stack, ["a"], [row(0)], global_step=1)
    stack.close()
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]


WRITER = r"""
import sys
from pipelines.rewards.export import HighScoreExport
export = HighScoreExport(sys.argv[1], 0.0)
print("ready", flush=True)
i = 0
while True:
    export.offer({"step": i, "reward": 1.0, "completion": "x" * 50000})
    i += 1
"""


def test_kill_mid_write_leaves_whole_lines(tmp_path):
    path = tmp_path / "high.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.time() + 10
    while (not path.exists() or path.stat().st_size < 2_000_000) and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = list(read_jsonl(path))  # readers never see a torn record
    assert len(records) >= 10
    assert [r["step"] for r in records] == list(range(len(records)))
    # the next run repairs any torn tail, then appends whole lines
    export = HighScoreExport(path, 0.0)
    export.offer({"step": -1, "reward": 1.0})
    export.close()
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and json.loads(lines[-1])["step"] == -1


def test_a_threshold_below_every_reward_seen_warns_once(tmp_path, caplog):
    import logging

    from pipelines.rewards.export import HighScoreExport

    low = HighScoreExport(tmp_path / "h.jsonl", threshold=-5.0)
    with caplog.at_level(logging.WARNING):
        low.observe([0.0, 1.0] * 8)
        assert not caplog.records                     # not enough seen yet
        low.observe([0.0, 1.0] * 8)
        low.observe([0.0, 1.0] * 16)
    [record] = caplog.records
    assert ("reward.score_save_threshold -5 is below every combined reward of the first 32 completions (0 to 1): "
            "every completion is saved to h.jsonl. Raise it (e.g. to 1)") in record.getMessage()
    caplog.clear()
    fine = HighScoreExport(tmp_path / "h2.jsonl", threshold=1.0)
    with caplog.at_level(logging.WARNING):
        fine.observe([0.0, 1.0] * 16)
        HighScoreExport(tmp_path / "h3.jsonl", threshold=0.0).observe([0.0, 1.0] * 16)   # 0 is in the range
    assert not caplog.records


def test_a_tool_using_completion_is_exported_whole():
    """TRL hands rewards a multi-turn completion as messages: the call, the result, the answer. The record
    keeps them all (``messages``), and its ShareGPT turns name the call and the result."""
    from pipelines.rewards.export import high_score_record

    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "6 * 7"}}}
    completion = [{"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
                  {"role": "tool", "name": "calculator", "content": "42"},
                  {"role": "assistant", "content": "<answer>6 * 7</answer>"}]
    prompt = [{"role": "user", "content": "Make 42"}]
    record = high_score_record(prompt=prompt, completion=completion, reward=1.0, rewards={}, dataset="d",
                               dataset_index=0, row_id="d:1", step=3)
    assert record["messages"] == prompt + completion
    assert record["conversations"] == [
        {"from": "human", "value": "Make 42"}, {"from": "gpt", "value": "Let me check."},
        {"from": "function_call", "value": '{"name": "calculator", "arguments": {"expression": "6 * 7"}}'},
        {"from": "observation", "value": "42"}, {"from": "gpt", "value": "<answer>6 * 7</answer>"}]
    single = high_score_record(prompt=prompt, completion=[{"role": "assistant", "content": "x"}], reward=1.0,
                               rewards={}, dataset="d", dataset_index=0, row_id="d:1", step=3)
    assert "messages" not in single and single["conversations"][-1] == {"from": "gpt", "value": "x"}
