"""cli_utils/score_completions.py end to end: real config files, real data files, real output files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_utils.score_completions import main

REPO = Path(__file__).resolve().parents[1]


def picky():
    """A reward that raises on one completion (for the errors field)."""
    def picky(prompts, completions, **kw):
        if any("explode" in c[0]["content"] for c in completions):
            raise RuntimeError("cannot score this one")
        return [0.5] * len(completions)
    return picky


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "joy.jsonl").write_text("".join(json.dumps({"conversations": [
        {"from": "human", "value": f"Tell me about thing {i}."}, {"from": "gpt", "value": f"Joy: thing {i}."}]}) + "\n"
        for i in range(6)))
    (tmp_path / "count.jsonl").write_text("".join(json.dumps({
        "messages": [{"role": "user", "content": f"Make {t} from {nums}"},
                     {"role": "assistant", "content": f"<answer>{eq}</answer>"}], "target": t, "nums": nums}) + "\n"
        for t, nums, eq in [(3, [1, 2], "1 + 2"), (4, [2, 2], "2 * 2"), (0, [5, 5], "5 - 5")]))
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"},
           "datasets": [
               {"path": "joy.jsonl", "percentage": 0.5, "system_prompt": "Be cheerful.",
                "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]},
                                 {"name": f"{__name__}:picky"}]},
               {"path": "count.jsonl", "percentage": 0.5,
                "reward_funcs": [{"name": "countdown_equation"}, {"name": "cot_format", "require_answer": False,
                                                                   "cot_start": "<answer>", "cot_end": "</answer>"}]}],
           "dataset_settings": {"total_rows": 6}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return tmp_path, path


def test_scores_input_lines(setup, capsys):
    tmp, cfg = setup
    lines = [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "ref"}],
         "completion": "Joy!", "dataset": 0},
        {"messages": [{"role": "user", "content": "Make 3 from [1, 2]"}], "target": 3, "nums": [1, 2],
         "completion": "<answer>2 + 1</answer>", "dataset": "count.jsonl"},
        {"messages": [{"role": "user", "content": "Make 3"}], "target": 3, "nums": [1, 2],
         "completion": "<answer>9**9**9</answer>", "dataset": "1"},
        {"conversations": [{"from": "human", "value": "Hi"}], "completion": "please explode", "dataset": 0},
        {"conversations": [{"from": "human", "value": "Hi"}], "completion": "x", "dataset": 5},
    ]
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["--config", str(cfg), "--input", str(src), "--output", str(tmp / "out.jsonl")]) == 0
    out = [json.loads(x) for x in (tmp / "out.jsonl").read_text().splitlines()]
    assert len(out) == 5
    for given, got in zip(lines, out):
        assert {k: got[k] for k in given} == given  # the input line is kept as it was
    assert out[0]["rewards"] == {"joy/keyword": 1.0, "joy/picky": 0.5} and out[0]["reward"] == 1.5
    assert "errors" not in out[0]
    assert out[1]["rewards"] == {"count/countdown_equation": 1.0, "count/cot_format": 1.0} and out[1]["reward"] == 2.0
    assert out[2]["rewards"]["count/countdown_equation"] == 0.0
    assert out[3]["rewards"] == {"joy/keyword": 0.0, "joy/picky": None}
    assert "picky" in out[3]["errors"][0] and "cannot score" in out[3]["errors"][0]
    assert out[4]["reward"] is None and "out of range" in out[4]["errors"][0]
    table = capsys.readouterr().out
    assert "joy/keyword" in table and "count/countdown_equation" in table and "5 line(s) scored, 2 with errors" in table


def test_default_dataset_option(setup):
    tmp, cfg = setup
    src = tmp / "in.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}], "target": 2, "nums": [1, 1],
                               "completion": "<answer>1+1</answer>"}) + "\n")
    assert main(["--config", str(cfg), "--input", str(src), "--output", str(tmp / "o.jsonl"),
                 "--dataset", "count.jsonl"]) == 0
    assert json.loads((tmp / "o.jsonl").read_text())["reward"] == 2.0
    # without it, two datasets cannot be told apart
    assert main(["--config", str(cfg), "--input", str(src), "--output", str(tmp / "o.jsonl"), "--overwrite"]) == 0
    assert "no `dataset` field" in json.loads((tmp / "o.jsonl").read_text())["errors"][0]


def test_sample_scores_reference_answers(setup, capsys):
    tmp, cfg = setup
    assert main(["--config", str(cfg), "--sample", "6", "--output", str(tmp / "s.jsonl")]) == 0
    out = [json.loads(x) for x in (tmp / "s.jsonl").read_text().splitlines()]
    assert len(out) == 6 and {o["dataset_index"] for o in out} == {0, 1}
    for o in out:
        assert o["completion"] == o["answer"]
        if o["dataset_index"] == 0:
            assert o["prompt"][0] == {"role": "system", "content": "Be cheerful."}
            assert o["rewards"]["joy/keyword"] == 1.0
        else:
            assert o["rewards"] == {"count/countdown_equation": 1.0, "count/cot_format": 1.0}
    assert "6 line(s) scored" in capsys.readouterr().out


def test_config_problems_exit_2(setup, capsys):
    tmp, cfg = setup
    assert main(["--config", str(cfg), "--sample", "2", "--set", "datasets.0.reward_funcs.0.keywordz=[a]"]) == 2
    err = capsys.readouterr().err
    assert "keywordz" in err and '"keywords"' in err
    assert main(["--config", str(cfg), "--sample", "2", "--dataset", "nope.jsonl"]) == 2


def test_help_runs_as_a_script():
    done = subprocess.run([sys.executable, "cli_utils/score_completions.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--sample" in done.stdout and "--config" in done.stdout


def test_sample_of_prompt_only_rows_says_there_is_no_reference_answer(tmp_path, monkeypatch, capsys):
    """Prompt-only rows (issue 13) have no answer to score: each is reported, not scored as an empty string."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": f"Say Joy {i}"}) + "\n" for i in range(3)))
    cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": 3},
           "datasets": [{"path": "p.jsonl", "percentage": 1.0, "reward_funcs": [{"name": "keyword",
                                                                                  "keywords": ["Joy"]}]}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    main(["--config", str(tmp_path / "c.yaml"), "--sample", "3", "--output", str(tmp_path / "s.jsonl")])
    records = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all("no reference answer to score" in json.dumps(r) for r in records), records


def test_augmentoolkit_config_scores_as_training_reads_it(setup):
    """An Augmentoolkit-shaped config (pipeline: grpo-rl, one reward_funcs mapping, no percentage,
    post_processors) is read as the training run reads it, not refused."""
    tmp, _ = setup
    atk = {"pipeline": "grpo-rl", "no_flatten": ["datasets"], "model": {"base_model_name": "builtin:tiny"},
           "datasets": [{"path": "joy.jsonl", "reward_funcs": {"name": "keyword", "keywords": ["Joy"]}}],
           "dataset_settings": {"total_rows": 4},
           "post_processors": {"reward_combination_function": "sum", "reward_scaling_function": "identity"}}
    path = tmp / "atk.yaml"
    path.write_text(yaml.safe_dump(atk))
    src = tmp / "in.jsonl"
    src.write_text(json.dumps({"conversations": [{"from": "human", "value": "Hi"}], "completion": "Joy!"}) + "\n")
    assert main(["--config", str(path), "--input", str(src), "--output", str(tmp / "atk_out.jsonl")]) == 0
    (record,) = [json.loads(x) for x in (tmp / "atk_out.jsonl").read_text().splitlines()]
    assert record["reward"] == 1.0
