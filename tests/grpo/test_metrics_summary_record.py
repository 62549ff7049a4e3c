"""The last line of metrics.jsonl, TRL's end-of-train totals, says it is not a step."""
from __future__ import annotations

from transformers import TrainerControl, TrainerState, TrainingArguments

from pipelines.common.io import read_jsonl
from pipelines.grpo.callbacks import TRAIN_SUMMARY, metrics_callback, reward_windows


def test_the_end_of_train_record_is_marked_and_reward_windows_ignore_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    cb = metrics_callback(path, tmp_path / "curve.png")
    state, args, control = TrainerState(), TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    for step in (1, 2):
        state.global_step = step
        cb.on_log(args, state, control, logs={"loss": 0.1, "rewards/combined/mean": step / 2})
    cb.on_log(args, state, control, logs={"train_runtime": 3.2, "train_loss": 0.1, "train_samples_per_second": 5.0})
    cb.close()
    records = list(read_jsonl(path))
    assert [r.get("record") for r in records] == [None, None, TRAIN_SUMMARY]
    assert records[-1]["step"] == 2 and records[-1]["train_runtime"] == 3.2
    assert reward_windows(path)["steps_logged"] == 2.0
