"""score_completions with a group judge (``mode: group``): consecutive lines of one prompt are judged in one
call, also across --batch-size, and agree with pointwise scoring by the same (containment) judge."""
from __future__ import annotations

import json

import yaml

from cli_utils.score_completions import main
from pipelines.rewards.judge.degrade import variants
from tests.containment_judge import GROUP_RUBRIC, SCORE_1_10, SOUND_RUBRIC, script
from tests.judge_server import JudgeServer

ANSWERS = ["Paris is the capital of France. It lies on the Seine.",
           "Water boils at one hundred degrees. That holds at sea level.",
           "Bees make honey from nectar. They store it in wax combs."]


def write_inputs(tmp_path):
    """Three prompts, each followed by its reference answer and four degradations (5 lines per prompt)."""
    lines = []
    for i, answer in enumerate(ANSWERS):
        made = variants(answer, ANSWERS[:i] + ANSWERS[i + 1:], f"Question {i}?", seed=i)
        for text in [answer, made["truncated"], made["shuffled"], made["swapped"], made["padded"]]:
            lines.append({"conversations": [{"from": "human", "value": f"Question {i}?"},
                                            {"from": "gpt", "value": answer}], "completion": text})
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"conversations": ln["conversations"]}) + "\n"
                                                 for ln in lines[::5]))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))


def write_config(tmp_path, base_url, mode):
    (tmp_path / "point.yaml").write_text(SOUND_RUBRIC)
    (tmp_path / "group.yaml").write_text(GROUP_RUBRIC)
    judge = {"name": "llm_judge", "label": "j", "eval_llm_name": "j", "eval_llm_base_url": base_url,
             "system_prompt_path": "point.yaml", "score_types": SCORE_1_10}
    if mode == "group":
        judge.update(mode="group", group_prompt_path="group.yaml")
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": 3},
           "datasets": [{"path": "data.jsonl", "percentage": 1.0, "reward_funcs": [judge]}]}
    (tmp_path / f"{mode}.cfg.yaml").write_text(yaml.safe_dump(cfg))
    return f"{mode}.cfg.yaml"


def test_group_scores_agree_with_pointwise_in_one_call_per_prompt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    scores, calls = {}, {}
    with JudgeServer(script) as srv:
        for mode in ("pointwise", "group"):
            srv.reset_counters()
            argv = ["--config", write_config(tmp_path, srv.base_url, mode), "--input", "in.jsonl", "--output",
                    f"{mode}.out.jsonl", "--batch-size", "4"]      # 4 < 5 lines of a prompt: kept together
            assert main(argv) == 0
            calls[mode] = len(srv.requests)
            scores[mode] = [json.loads(ln)["rewards"]["data/j"]
                            for ln in (tmp_path / f"{mode}.out.jsonl").read_text().splitlines()]
    assert calls == {"pointwise": 15, "group": 3}
    assert scores["group"] == scores["pointwise"] and len(set(scores["group"])) > 3
