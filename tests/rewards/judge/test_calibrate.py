"""``--validate --calibrate-judges`` against a real HTTP judge that scores by containment of the reference."""
from __future__ import annotations

import json

import pytest
import yaml

from pipelines.rewards.judge import degrade
from pipelines.rewards.judge.calibration import CalibrationSettings, Sample, failures, measure, settings_problems
from pipelines.runner import main as runner_main
from tests.containment_judge import BROKEN_RUBRIC, SCORE_1_10, SOUND_RUBRIC, script
from tests.judge_server import JudgeServer, Reply

TOPICS = ["rivers", "volcanoes", "bees", "glaciers", "comets", "forests", "deserts", "coral reefs", "storms",
          "tides", "caves", "wetlands"]


WORDS = ("amber basin cedar delta ember fjord granite harbor island jungle kelp lagoon meadow nectar orchard "
         "pebble quartz ridge savanna thicket upland valley willow yarrow zephyr breeze canyon dune estuary frost "
         "grove hollow inlet marsh oasis plateau reef shoal tundra vale").split()


def write_data(folder, n=12):
    """Rows whose reference answers are three sentences of seeded random words (different lengths)."""
    import random

    lines = []
    for i, topic in enumerate(TOPICS[:n]):
        rng = random.Random(i)
        answer = " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."
                          for _ in range(3))
        lines.append(json.dumps({"conversations": [{"from": "human", "value": f"Tell me about {topic}."},
                                                   {"from": "gpt", "value": answer}]}))
    path = folder / "facts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(repo_root, folder, base_url, rubric_text, calibration=None, second=None):
    rubric = folder / "rubric.yaml"
    rubric.write_text(rubric_text)
    cfg = yaml.safe_load((repo_root / "pipelines/grpo/configs/quickstart.yaml").read_text())
    cfg["dataset_settings"]["total_rows"] = 12
    judge = dict(name="llm_judge", label="containment", eval_llm_name="j", eval_llm_base_url=base_url,
                 eval_llm_api_key="sk-calibrate-secret", system_prompt_path=str(rubric), score_types=SCORE_1_10,
                 temperature=0.0, max_tokens=64, calibration=calibration or {"rows": 8, "retest_rows": 3})
    funcs = [judge] + ([second] if second else [])
    cfg["datasets"] = [{"path": str(write_data(folder)), "percentage": 1.0, "reward_funcs": funcs}]
    (folder / "node.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "super.yaml").write_text("pipeline_order:\n  - node: grpo\n    config: node.yaml\n")
    return folder / "super.yaml"


def calibrate(super_config, folder):
    return runner_main(["--super-config", str(super_config), "--validate", "--calibrate-judges",
                        "--outputs", str(folder / "out")])


def test_sound_rubric_passes_with_auc_at_least_0_9(repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    with JudgeServer(script) as srv:
        code = calibrate(write_config(repo_root, tmp_path, srv.base_url, SOUND_RUBRIC), tmp_path)
        calls = len(srv.requests)
    out = capsys.readouterr()
    assert code == 0, out.err
    auc = float(out.out.split("separation (ROC-AUC)")[1].split()[0])
    assert auc >= 0.9
    planned = int(out.out.split("calibration sends ")[1].split()[0])
    assert planned == calls > 8           # printed before sending, and what was sent
    assert out.out.index("calibration sends") < out.out.index("separation (ROC-AUC)")
    assert "test-retest (Spearman)       1.00" in out.out
    assert "sk-calibrate-secret" not in out.out + out.err


def test_broken_rubric_exits_2_naming_the_rubric_and_the_measure(repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    with JudgeServer(script) as srv:
        code = calibrate(write_config(repo_root, tmp_path, srv.base_url, BROKEN_RUBRIC), tmp_path)
        assert len(srv.requests) > 0      # it was measured, not only refused statically
    err = capsys.readouterr().err
    assert code == 2
    line = next(ln for ln in err.splitlines() if "separation (ROC-AUC good vs degraded)" in ln)
    assert "rubric.yaml" in line and "below min_auc 0.8" in line and "reward_funcs[0].calibration" in line
    assert "saturation" in err and "above max_saturation" in err


def test_golden_examples_and_a_second_judge(repo_root, tmp_path, monkeypatch, capsys):
    """Golden examples join the separation; compare_with measures the agreement of two judges; an always-8
    judge agrees with nothing and fails min_agreement."""
    monkeypatch.chdir(repo_root)
    examples = tmp_path / "golden.jsonl"
    examples.write_text(json.dumps({"output": "Nothing useful here.", "expect": "low"}) + "\n")
    with JudgeServer(lambda req: Reply("<score>8</score>") if "FLAT" in req.text else script(req)) as srv:
        flat = dict(name="llm_judge", label="flat", eval_llm_name="j", eval_llm_base_url=srv.base_url,
                    system_prompt_path=str(tmp_path / "flat.yaml"), score_types=SCORE_1_10)
        (tmp_path / "flat.yaml").write_text(SOUND_RUBRIC.replace("Score how", "FLAT. Score how"))
        cal = {"rows": 6, "retest_rows": 0, "compare_with": "flat", "examples_file": str(examples),
               "examples": [{"output": "Amber basin cedar delta.", "expect": "high",
                             "prompt": "Tell me about rivers.", "answer": "Amber basin cedar delta."}]}
        code = calibrate(write_config(repo_root, tmp_path, srv.base_url, SOUND_RUBRIC, cal, flat), tmp_path)
    out = capsys.readouterr()
    assert code == 2
    assert "golden_high 10" in out.out and "golden_low 1" in out.out
    assert "agreement with compare_with (Spearman) not measured below min_agreement 0.5" in out.err
    assert "judge 'flat'" in out.err and "separation" in out.err    # the flat judge fails on its own too


def test_calibration_settings_are_validated():
    assert settings_problems({"rows": 1}) == ["calibration.rows: Input should be greater than or equal to 2"]
    assert settings_problems({"min_auk": 0.9})[0].startswith("calibration.min_auk: Extra inputs")
    assert "more than rows" in settings_problems({"rows": 3, "retest_rows": 4})[0]
    assert "file not found" in settings_problems({"examples_file": "/nope.jsonl"})[0]


def test_measures_on_known_scores():
    good = [Sample("reference", k, "a" * (10 + k), score=9.0, retest=9.0) for k in range(4)]
    bad = [Sample("truncated", k, "a", score=3.0 + k * 0.1, retest=3.0 + k * 0.1) for k in range(4)]
    longer = [Sample("padded", k, "a" * 100, score=10.0, retest=10.0) for k in range(4)]
    report = measure(good + bad + longer, (1.0, 10.0))
    assert report.auc == 1.0 and report.retest == 1.0
    assert report.length_bias > 0.8          # padding always scores higher: length bias
    assert report.at_max == pytest.approx(4 / 12)
    found = failures(report, CalibrationSettings(), compared=False)
    assert len(found) == 1 and found[0].startswith("length bias")


def test_degradations_change_the_answer():
    text = "One two three. Four five six! Seven eight nine?"
    made = degrade.variants(text, ["Other answer entirely."], "Q?", seed=1, cot_start="<think>", cot_end="</think>")
    assert set(made) == set(degrade.ALL)
    assert made["truncated"] == "One two three. Four"
    assert sorted(degrade.sentences(made["shuffled"])) == sorted(degrade.sentences(text)) != \
        degrade.sentences(made["shuffled"])
    assert made["swapped"] == "Other answer entirely." and made["empty"] == ""
    assert made["padded"].startswith(text) and len(made["padded"]) >= 2 * len(text)
    assert made["reasoning_only"].startswith("<think>") and made["reasoning_only"].endswith("</think>")
    assert "shuffled" not in degrade.variants("Only one sentence here.", [], "Q", seed=0)


def test_projection_hooks(tmp_path):
    """What a budget calls: calls per training batch by mode, and a priced projection."""
    from pipelines.rewards.judge.projection import Projection, training_calls, training_projection
    from tests.containment_judge import GROUP_RUBRIC
    from tests.rewards.judge.judge_helpers import make_judge, write_rubric

    assert training_calls(64, 8) == 64 and training_calls(64, 8, "group") == 8
    assert training_calls(64, 8, "group", cache_hit_rate=0.5) == 4
    assert Projection(2, 1_000_000, 500_000).cost_usd(0.5, 2.0) == pytest.approx(1.5)
    group = make_judge("http://127.0.0.1:9/v1", write_rubric(tmp_path, SOUND_RUBRIC), score_types=SCORE_1_10,
                       mode="group", group_prompt_path=write_rubric(tmp_path, GROUP_RUBRIC, "g.yaml"), max_tokens=4096)
    projection = training_projection(group.judge, completions=64, num_generations=8)
    assert projection.calls == 8 and projection.completion_tokens == 8 * 384 and projection.prompt_tokens > 8 * 20
    with_text = training_projection(group.judge, completions=64, num_generations=8, policy_tokens=100)
    assert with_text.prompt_tokens == projection.prompt_tokens + 8 * 8 * 100     # 8 candidates shown per call
    measured = training_projection(group.judge, 64, 8, prompt_tokens_per_call=900, completion_tokens_per_call=100)
    assert (measured.prompt_tokens, measured.completion_tokens) == (7200, 800)


def test_calibrate_needs_validate(capsys):
    with pytest.raises(SystemExit):
        runner_main(["--calibrate-judges"])
    assert "--calibrate-judges only applies with --validate" in capsys.readouterr().err


def test_an_augmentoolkit_judge_calibrates(repo_root, tmp_path, monkeypatch, capsys):
    """generic_llm_reward (Augmentoolkit's scoring) is calibrated with its own reading of replies."""
    monkeypatch.chdir(repo_root)
    with JudgeServer(script) as srv:
        sup = write_config(repo_root, tmp_path, srv.base_url, SOUND_RUBRIC)
        node = yaml.safe_load((tmp_path / "node.yaml").read_text())
        entry = node["datasets"][0]["reward_funcs"][0]
        entry["name"] = "generic_llm_reward"
        del entry["temperature"]                                         # Augmentoolkit's defaults
        (tmp_path / "node.yaml").write_text(yaml.safe_dump(node))
        code = calibrate(sup, tmp_path)
        calls = len(srv.requests)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "empty 0," in out.out.split("mean score:")[1].split("\n")[0]     # scored 0.0 without a call
    assert calls == int(out.out.split("calibration sends ")[1].split()[0]) == (8 + 3) * 6   # 6 of 7 asked
    assert float(out.out.split("separation (ROC-AUC)")[1].split()[0]) >= 0.9


def test_the_rollout_node_calibrates_its_judges(tiny_model_dir, tmp_path, capsys):
    """The rollout node has the same hook: its judges are calibrated on rows of their own dataset."""
    from tests.rollout.test_node import rollout_config, run_rollout

    data = write_data(tmp_path)
    (tmp_path / "rubric.yaml").write_text(SOUND_RUBRIC)
    with JudgeServer(script) as srv:
        cfg = rollout_config(tmp_path, tiny_model_dir)
        cfg["datasets"].append({"path": str(data), "percentage": 0.5, "reward_funcs": [
            dict(name="llm_judge", label="containment", eval_llm_name="j", eval_llm_base_url=srv.base_url,
                 system_prompt_path=str(tmp_path / "rubric.yaml"), score_types=SCORE_1_10,
                 calibration={"rows": 6, "retest_rows": 0})]})
        cfg["datasets"][0]["percentage"] = cfg["datasets"][1]["percentage"] = 0.25
        code = run_rollout(tmp_path, cfg, "--validate", "--calibrate-judges")
        calls = len(srv.requests)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert calls == 6 * 7 and "calibration of judge 'containment'" in out.out
    assert float(out.out.split("separation (ROC-AUC)")[1].split()[0]) >= 0.9


def test_a_group_judge_is_calibrated_in_group_mode(repo_root, tmp_path, monkeypatch, capsys):
    """Each row's reference and degradations are one group: one call per row (twice for the re-test rows)."""
    from tests.containment_judge import GROUP_RUBRIC

    monkeypatch.chdir(repo_root)
    (tmp_path / "group.yaml").write_text(GROUP_RUBRIC)
    with JudgeServer(script) as srv:
        sup = write_config(repo_root, tmp_path, srv.base_url, SOUND_RUBRIC)
        node = yaml.safe_load((tmp_path / "node.yaml").read_text())
        node["datasets"][0]["reward_funcs"][0].update(mode="group", group_prompt_path=str(tmp_path / "group.yaml"))
        (tmp_path / "node.yaml").write_text(yaml.safe_dump(node))
        code = calibrate(sup, tmp_path)
        requests = list(srv.requests)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert len(requests) == 8 + 3 == int(out.out.split("calibration sends ")[1].split()[0])
    assert all('<candidate id="7">' in r.text for r in requests)
    assert float(out.out.split("separation (ROC-AUC)")[1].split()[0]) >= 0.9


def test_a_length_loving_and_a_random_judge_fail_their_measures(repo_root, tmp_path, monkeypatch, capsys):
    """A judge that scores length fails length bias; a judge that answers at random fails test-retest."""
    import random
    import re

    rng = random.Random(0)

    def judges(req):
        shown = re.search(r"<candidate>(.*?)</candidate>", req.text, re.S)
        words = len(shown.group(1).split()) if shown else 0
        if "LONG" in req.text:
            return Reply(f"<score>{min(10, 1 + words // 4)}</score>")
        return Reply(f"<score>{rng.randint(1, 10)}</score>")

    monkeypatch.chdir(repo_root)
    (tmp_path / "random.yaml").write_text(SOUND_RUBRIC.replace("Score how", "RANDOM. Score how"))
    with JudgeServer(judges) as srv:
        second = dict(name="llm_judge", label="random", eval_llm_name="j", eval_llm_base_url=srv.base_url,
                      system_prompt_path=str(tmp_path / "random.yaml"), score_types=SCORE_1_10,
                      calibration={"rows": 8, "retest_rows": 8})
        code = calibrate(write_config(repo_root, tmp_path, srv.base_url, SOUND_RUBRIC.replace("Score how",
                                                                                                "LONG. Score how"),
                                      None, second), tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    long_lines = [ln for ln in err.splitlines() if "judge 'containment'" in ln]
    random_lines = [ln for ln in err.splitlines() if "judge 'random'" in ln]
    assert any("length bias" in ln and "above max_length_bias 0.3" in ln for ln in long_lines)
    assert any("test-retest (Spearman)" in ln and "below min_retest 0.7" in ln for ln in random_lines)


def test_calibration_prints_its_cost_at_the_budget_prices(repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    super_config = write_config(repo_root, tmp_path, "http://127.0.0.1:9/v1", SOUND_RUBRIC)
    node = tmp_path / "node.yaml"
    cfg = yaml.safe_load(node.read_text())
    cfg["budget"] = {"judge_prices": {"j": {"input_usd_per_mtok": 1000.0, "output_usd_per_mtok": 1000.0}}}
    node.write_text(yaml.safe_dump(cfg))
    with JudgeServer(script) as srv:
        cfg["datasets"][0]["reward_funcs"][0]["eval_llm_base_url"] = srv.base_url
        node.write_text(yaml.safe_dump(cfg))
        assert calibrate(super_config, tmp_path) == 0
    out = capsys.readouterr().out
    line = out.split("calibration sends ")[1].splitlines()[0]
    tokens = int(line.split("~")[1].split()[0])
    usd = float(line.split("~")[2].split()[0])
    assert usd == pytest.approx(tokens * 1000.0 / 1e6, rel=1e-3) and "USD at budget.judge_prices" in line
