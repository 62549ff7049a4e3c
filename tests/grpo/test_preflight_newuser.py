"""--preflight as a new user meets it: generic_llm_reward judges are called, a run name that holds a run is
accepted (it writes nothing there), the projection says what it rests on, and a max_seq_length above the model's
positions is flagged."""
from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from pipelines.grpo.preflight import PREFLIGHT_STEPS, TIMED_STEPS, position_warnings
from tests.grpo.test_model_seams import QUICKSTART, config
from tests.grpo.training_runs import REPO, outputs, quickstart_config, run_node, tiny_cache, write_super  # noqa: F401
from tests.judge_server import JudgeServer, Reply
from tests.rewards.judge.judge_helpers import SCORE, write_rubric


def test_help_and_readme_say_how_many_steps_preflight_runs():
    assert (PREFLIGHT_STEPS, TIMED_STEPS) == (3, 2)
    out = subprocess.run([sys.executable, "run_pipeline.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert "run three optimizer steps (one warm-up, two timed)" in " ".join(out.stdout.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "runs three optimizer steps with the real rewards (one warm-up step, then two timed ones)" in readme
    assert "two optimizer steps" not in readme and "one optimizer step with" not in readme


def test_a_max_seq_length_above_the_models_positions_is_flagged():
    cfg = config(QUICKSTART, model={"max_seq_length": 5000})
    [line] = position_warnings(cfg, SimpleNamespace(max_position_embeddings=512))
    assert line.startswith("WARNING: model.max_seq_length 5000 is above the model's position limit 512")
    assert position_warnings(config(QUICKSTART), SimpleNamespace(max_position_embeddings=512)) == []
    assert position_warnings(cfg, None) == []


@pytest.mark.slow
def test_preflight_calls_generic_judges_and_accepts_an_existing_run(outputs, tmp_path, capsys):  # noqa: F811
    rubric = write_rubric(tmp_path)
    with JudgeServer(lambda req: Reply(content="<score>7</score>")) as srv:
        cfg = quickstart_config(max_steps=30)
        cfg["run_name"] = "exists"
        cfg["model"]["max_seq_length"] = 5000
        cfg["datasets"][0]["reward_funcs"].append(
            {"name": "generic_llm_reward", "eval_llm_name": "j", "eval_llm_base_url": srv.base_url,
             "eval_llm_api_key": "sk-x", "system_prompt_path": rubric, "score_types": SCORE})
        run = outputs / "exists"
        run.mkdir(parents=True)
        (run / "resolved_config.yaml").write_text("seed: 1\n")
        (run / "manifest.json").write_text('{"status": "completed"}')
        before = sorted(p.name for p in run.iterdir())
        rc = run_node(outputs, write_super(tmp_path, cfg), extra=["--preflight"])
        calls = len(srv.requests)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert calls >= 1 and "judges: none configured" not in out and "reachable, answer parsed" in out
    assert re.search(r"tokens/s\): the mean of 2 timed steps after the warm-up step \(each \d+\.\d\ds to "
                     r"\d+\.\d\ds\)", out), out
    assert "It rests on 2 timed steps of the longest prompts" in out
    assert "WARNING: model.max_seq_length 5000 is above the model's position limit" in out
    assert sorted(p.name for p in run.iterdir()) == before          # nothing written there
