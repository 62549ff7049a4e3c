"""SFT and preference selection rules (pure functions over scored records)."""
from __future__ import annotations

from pipelines.rollout.selection import (best_of, complete_row_ids, group_by_prompt, select_preferences,
                                         select_sft, to_sharegpt, worst_of)

PROMPT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]


def rec(row_id, index, reward, completion=None):
    return {"row_id": row_id, "completion_index": index, "prompt": PROMPT, "reward": reward,
            "completion": completion if completion is not None else f"{row_id}-{index}"}


def test_group_by_prompt_keeps_first_seen_order_and_sorts_completions():
    groups = group_by_prompt([rec("b", 1, 0.0), rec("a", 0, 1.0), rec("b", 0, 0.5)])
    assert list(groups) == ["b", "a"]
    assert [r["completion_index"] for r in groups["b"]] == [0, 1]


def test_best_and_worst_break_ties_and_skip_unscored():
    group = [rec("a", 0, None), rec("a", 1, 1.0), rec("a", 2, 1.0), rec("a", 3, 0.0), rec("a", 4, 0.0)]
    assert best_of(group)["completion_index"] == 1      # first of the tied best
    assert worst_of(group)["completion_index"] == 4     # last of the tied worst
    assert best_of([rec("a", 0, None)]) is None


def test_sharegpt_roles():
    assert to_sharegpt(PROMPT, "Hello!") == [{"from": "system", "value": "Be kind."},
                                             {"from": "human", "value": "Hi"},
                                             {"from": "gpt", "value": "Hello!"}]


def test_sft_takes_best_at_or_above_threshold():
    groups = group_by_prompt([rec("a", 0, 0.2), rec("a", 1, 0.9, "best a"),
                              rec("b", 0, 0.4), rec("b", 1, 0.3),
                              rec("c", 0, 0.5, "exactly"), rec("c", 1, None),
                              rec("d", 0, None)])
    sft = select_sft(groups, min_score=0.5)
    assert [s["row_id"] for s in sft] == ["a", "c"]          # b is below, d is unscored
    assert sft[0]["conversations"][-1] == {"from": "gpt", "value": "best a"}
    assert sft[0]["score"] == 0.9
    assert sft[1]["conversations"][-1]["value"] == "exactly"  # at the threshold counts
    assert [s["row_id"] for s in select_sft(groups, None)] == ["a", "b", "c"]


def test_preferences_best_vs_worst_with_margin():
    groups = group_by_prompt([rec("a", 0, 0.0, "bad"), rec("a", 1, 1.0, "good"), rec("a", 2, 0.5, "mid"),
                              rec("b", 0, 0.6), rec("b", 1, 0.3),            # margin 0.3 < 0.5
                              rec("c", 0, 1.0), rec("c", 1, 1.0),            # no margin
                              rec("d", 0, 0.5, "lo"), rec("d", 1, 1.0, "hi")])
    prefs = select_preferences(groups, min_margin=0.5)
    assert [p["row_id"] for p in prefs] == ["a", "d"]        # d's margin is exactly 0.5
    first = prefs[0]
    assert first["prompt"] == PROMPT
    assert first["chosen"] == [{"role": "assistant", "content": "good"}]
    assert first["rejected"] == [{"role": "assistant", "content": "bad"}]
    assert (first["chosen_score"], first["rejected_score"], first["margin"]) == (1.0, 0.0, 1.0)


def test_preferences_floor_identical_texts_and_single_completion():
    groups = group_by_prompt([rec("a", 0, 0.0), rec("a", 1, 0.6),
                              rec("b", 0, 0.0, "same"), rec("b", 1, 1.0, "same"),
                              rec("c", 0, 1.0)])
    assert [p["row_id"] for p in select_preferences(groups, 0.1)] == ["a"]
    assert select_preferences(groups, 0.1, min_chosen_score=0.7) == []


def test_preferences_are_trl_conversational_preference_rows(tiny_model_dir):
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    groups = group_by_prompt([rec("a", 0, 0.0, "bad"), rec("a", 1, 1.0, "good")])
    pair = select_preferences(groups, 0.5)[0]
    assert is_conversational(pair)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = maybe_apply_chat_template({k: pair[k] for k in ("prompt", "chosen", "rejected")}, tok)
    assert text["prompt"].endswith("<|im_start|>assistant\n")
    assert text["chosen"].startswith("good") and text["rejected"].startswith("bad")


def test_complete_row_ids_needs_every_index():
    groups = group_by_prompt([rec("a", 0, 1.0), rec("a", 1, 1.0), rec("b", 0, 1.0)])
    assert complete_row_ids(groups, 2) == {"a"}


def test_tool_transcripts_are_kept_in_sft_preferences_and_parquet(tmp_path):
    """A multi-turn completion (``completion_messages``: a tool call, its result, the answer) stays whole in
    sft.jsonl (function_call / observation turns), in preferences.jsonl (chosen and rejected transcripts) and in
    scored.parquet (a JSON column); a single-turn one is written as before."""
    import json

    import pyarrow.parquet as pq

    from pipelines.rollout.outputs import write_parquet

    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "6 * 7"}}}
    turns = [{"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "name": "calculator", "content": "42"},
             {"role": "assistant", "content": "<answer>6 * 7</answer>"}]
    prompt = [{"role": "user", "content": "Make 42"}]
    good = {"row_id": "r", "completion_index": 0, "prompt": prompt, "completion": "42<answer>6 * 7</answer>",
            "completion_messages": turns, "reward": 1.0}
    bad = {"row_id": "r", "completion_index": 1, "prompt": prompt, "completion": "no", "reward": 0.0}
    groups = group_by_prompt([good, bad])
    (sft,) = select_sft(groups, None)
    assert [t["from"] for t in sft["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(sft["conversations"][1]["value"]) == call["function"]
    (pair,) = select_preferences(groups, 0.5)
    assert pair["chosen"] == turns and pair["rejected"] == [{"role": "assistant", "content": "no"}]
    write_parquet([good, bad], tmp_path / "s.parquet")
    column = pq.read_table(tmp_path / "s.parquet").column("completion_messages").to_pylist()
    assert json.loads(column[0]) == turns and column[1] is None
