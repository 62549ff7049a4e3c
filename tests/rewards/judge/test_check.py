"""``--validate --check-judges``: one tiny request per judge, through check_judges and the real runner."""
from __future__ import annotations

import pytest

from pipelines.data.config import DatasetEntry
from pipelines.rewards.judge.check import check_judges
from pipelines.runner import main as runner_main
from tests.rewards.judge.judge_helpers import SCORE, write_rubric
from tests.judge_server import JudgeServer, Reply

ALL_TAGS = "<think>fine</think><helpfulness>8</helpfulness><correct>1</correct><accuracy>4</accuracy><score>6</score>"
FILE = "cfg.yaml"


def config(*reward_lists):
    """The ``datasets`` section the judge probe reads."""
    return [DatasetEntry.model_validate({"path": f"d{i}.jsonl", "percentage": 0.5, "reward_funcs": funcs})
            for i, funcs in enumerate(reward_lists)]


def judge_entry(base_url, rubric, **over):
    entry = dict(name="llm_judge", eval_llm_name="j", eval_llm_base_url=base_url, system_prompt_path=rubric,
                 score_types=SCORE, eval_llm_api_key="sk-check-secret")
    entry.update(over)
    return entry


def test_reachable_judge_prints_and_passes_and_duplicates_are_probed_once(tmp_path, capsys):
    rubric = write_rubric(tmp_path)
    with JudgeServer(lambda req: Reply(content=ALL_TAGS)) as srv:
        cfg = config([judge_entry(srv.base_url, rubric), {"name": "keyword", "keywords": ["x"]}],
                     [judge_entry(srv.base_url, rubric, name="generic_llm_reward")])
        assert check_judges(cfg, FILE) == []
        assert len(srv.requests) == 1
        user = srv.requests[0].body["messages"][1]["content"]
    assert "Q: What is 2 + 2?" in user and "A: 2 + 2 = 4." in user
    out = capsys.readouterr().out
    assert "judge 'grader' (j at http://127.0.0.1:" in out and "reachable, answer parsed (reward 6)" in out


def test_unreachable_and_unparseable_judges_are_problems(tmp_path, capsys):
    rubric = write_rubric(tmp_path)
    with JudgeServer() as dead:
        dead_url = dead.base_url
    with JudgeServer(lambda req: Reply(content="I like it.")) as srv:
        cfg = config([judge_entry(dead_url, rubric), judge_entry(srv.base_url, rubric, label="other")])
        problems = check_judges(cfg, FILE)
    assert [p.key for p in problems] == ["datasets[0].reward_funcs[0]", "datasets[0].reward_funcs[1]"]
    assert "connection error" in problems[0].message and "server is up" in problems[0].message
    assert "could not be parsed: no <score> tag" in problems[1].message
    assert "sk-check-secret" not in " ".join(p.message for p in problems) + capsys.readouterr().out


def test_no_judges(capsys):
    assert check_judges(config([{"name": "keyword", "keywords": ["x"]}]), FILE) == []
    assert "judges: none configured" in capsys.readouterr().out


@pytest.mark.parametrize("reachable", [True, False])
def test_runner_check_judges_on_the_shipped_config(repo_root, tmp_path, monkeypatch, capsys, reachable):
    monkeypatch.chdir(repo_root)
    super_config = tmp_path / "super.yaml"
    super_config.write_text("pipeline_order:\n  - node: grpo\n    config: "
                            f"{repo_root / 'pipelines/grpo/configs/rubric_judge.yaml'}\n")
    with JudgeServer(lambda req: Reply(content=ALL_TAGS)) as srv:
        url = srv.base_url
        if reachable:
            monkeypatch.setenv("JUDGE_BASE_URL", url)
        else:
            monkeypatch.setenv("JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
        monkeypatch.setenv("JUDGE_API_KEY", "sk-runner-secret")
        code = runner_main(["--super-config", str(super_config), "--validate", "--check-judges",
                            "--outputs", str(tmp_path / "outputs")])
        calls = len(srv.requests)
    captured = capsys.readouterr()
    assert "sk-runner-secret" not in captured.out + captured.err
    if reachable:
        assert code == 0 and calls == 2
        assert "judge 'helpfulness'" in captured.out and "judge 'factual'" in captured.out
        assert "reward 0.777778" in captured.out and "reward 0.8" in captured.out     # normalised 8/10, 4/5
    else:
        assert code == 2 and calls == 0
        assert captured.err.count("connection error") == 2


def test_rubric_placeholder_typo_is_found_against_the_sampled_columns(repo_root, tmp_path, monkeypatch, capsys):
    """Before: {topik} for the column `topic` passed --validate, and every judge call of the run then failed
    with JudgeInputError."""
    import json

    import yaml

    monkeypatch.chdir(repo_root)
    data = tmp_path / "topics.jsonl"
    data.write_text("".join(json.dumps({"topic": t, "conversations": [
        {"from": "human", "value": f"Tell me about {t}."}, {"from": "gpt", "value": f"{t} is great."}]}) + "\n"
        for t in ("rain", "cats", "tea")))
    rubric = write_rubric(tmp_path, "- role: user\n  content: 'Topic {topik}. Q: {input_text} A: {output_text}. "
                                    "End with <score>N</score>.'\n")
    cfg = yaml.safe_load((repo_root / "pipelines/grpo/configs/quickstart.yaml").read_text())
    cfg["dataset_settings"]["total_rows"] = 3
    cfg["datasets"] = [{"path": str(data), "percentage": 1.0, "reward_funcs": [
        judge_entry("http://127.0.0.1:9/v1", rubric), {"name": "keyword", "keywords": ["x"]}]}]
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "super.yaml").write_text("pipeline_order:\n  - node: grpo\n    config: node.yaml\n")
    code = runner_main(["--super-config", str(tmp_path / "super.yaml"), "--validate",
                        "--outputs", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2
    assert ("node.yaml: datasets[0].reward_funcs[0].system_prompt_path: rubric " in captured.err
            and "uses {topik}, but the rows of" in captured.err and '(did you mean "topic"?)' in captured.err)
    assert "columns: answer, topic" in captured.out      # the summary lists what a rubric may use (issue 26: not the internal dataset_path)


def test_check_judges_probes_a_config_whose_run_dir_exists(repo_root, tmp_path, monkeypatch, capsys):
    """Before: an existing run dir stopped --check-judges before any judge was asked."""
    monkeypatch.chdir(repo_root)
    super_config = repo_root / "pipelines/grpo/configs/super_config_rubric_judge.yaml"
    out = tmp_path / "outputs"
    (out / "rubric-judge").mkdir(parents=True)
    (out / "rubric-judge" / "resolved_config.yaml").write_text("seed: 1\n")
    with JudgeServer(lambda req: Reply(content=ALL_TAGS)) as srv:
        monkeypatch.setenv("JUDGE_BASE_URL", srv.base_url)
        code = runner_main(["--super-config", str(super_config), "--validate", "--check-judges",
                            "--outputs", str(out)])
        calls = len(srv.requests)
    captured = capsys.readouterr()
    assert calls == 2 and "judge 'helpfulness'" in captured.out and "judge 'factual'" in captured.out
    assert code == 2 and "already holds a run" in captured.err      # the run itself would still be refused


def test_an_out_of_range_score_is_told_about_the_range_not_the_tags(tmp_path):
    rubric = write_rubric(tmp_path)
    with JudgeServer(lambda req: Reply(content="<score>12</score>")) as srv:
        [problem] = check_judges(config([judge_entry(srv.base_url, rubric)]), FILE)
    assert "<score> 12 is outside [" in problem.message
    assert "score outside the score type's [min, max]" in problem.message
    assert "end with the score tags" not in problem.message
