"""Budgets: judge tokens priced from the providers' usage, machine hours, caps that stop a run with exit 3 and a
checkpoint, a resume with a raised cap that ends where an uncapped run ends, and a projection of the spend."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pipelines.common.budget import BudgetSection, CostMeter, check_budget, last_cost_record
from pipelines.common.guards import GuardStop
from pipelines.common.io import read_jsonl
from tests.grpo.training_runs import REPO, outputs, run_node, tiny_cache, write_super  # noqa: F401
from tests.judge_server import JudgeServer, Reply

ALL_TAGS = "<think>fine</think><helpfulness>8</helpfulness><correct>1</correct><accuracy>4</accuracy><score>6</score>"
PRICES = {"judge-model": {"input_usd_per_mtok": 2000.0, "output_usd_per_mtok": 8000.0}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_meter_prices_judge_tokens_and_machine_hours():
    clock = Clock()
    budget = BudgetSection(gpu_usd_per_hour=3.0, judge_prices=PRICES)
    meter = CostMeter(budget, {"qa/helpful": "judge-model", "qa/free": "unpriced"}, clock=clock)
    clock.now += 1800                                  # half an hour
    totals = meter.observe({"rewards/qa/helpful/judge/helpful/prompt_tokens": 1000.0,
                            "rewards/qa/helpful/judge/helpful/completion_tokens": 100.0,
                            "rewards/qa/free/judge/free/prompt_tokens": 5.0,
                            "rewards/qa/helpful/mean": 0.5})
    assert totals["cost/judge_usd"] == pytest.approx(1000 * 2000 / 1e6 + 100 * 8000 / 1e6)   # 2.8
    assert totals["cost/gpu_hours"] == pytest.approx(0.5) and totals["cost/gpu_usd"] == pytest.approx(1.5)
    assert totals["cost/total_usd"] == pytest.approx(4.3)
    assert totals["cost/judge_prompt_tokens"] == 1005.0          # the unpriced judge's tokens are counted


def test_caps_raise_a_guard_stop_naming_the_cap_and_a_higher_value():
    clock = Clock()
    meter = CostMeter(BudgetSection(judge_prices=PRICES, max_judge_usd=2.0, max_gpu_hours=1.0),
                      {"qa/j": "judge-model"}, clock=clock)
    meter.observe({"rewards/qa/j/judge/j/prompt_tokens": 500.0})     # 1.0 USD
    meter.enforce(1)
    meter.observe({"rewards/qa/j/judge/j/prompt_tokens": 600.0})     # 2.2 USD
    with pytest.raises(GuardStop) as caught:
        meter.enforce(2)
    assert caught.value.kind == "budget.max_judge_usd" and caught.value.step == 2
    assert "2.2 USD of judge spend passed budget.max_judge_usd = 2" in str(caught.value)
    assert "--set budget.max_judge_usd=5" in str(caught.value)
    relaxed = CostMeter(BudgetSection(max_gpu_hours=1.0), {}, clock=clock)
    clock.now += 3601
    assert relaxed.crossed()[0] == "max_gpu_hours"


def test_a_resumed_meter_continues_the_earlier_totals():
    records = [{"step": 1, "cost/total_usd": 1.0, "cost/judge_usd": 1.0, "cost/gpu_hours": 0.1},
               {"step": 2, "cost/total_usd": 2.0, "cost/judge_usd": 2.0, "cost/gpu_hours": 0.2},
               {"step": 3, "cost/total_usd": 3.0, "cost/judge_usd": 3.0, "cost/gpu_hours": 0.3}]
    assert last_cost_record(records, 2)["step"] == 2
    clock = Clock()
    meter = CostMeter(BudgetSection(judge_prices=PRICES), {}, clock=clock)
    meter.restore(last_cost_record(records, 2))
    clock.now += 360
    assert meter.totals()["cost/judge_usd"] == 2.0 and meter.totals()["cost/gpu_hours"] == pytest.approx(0.3)


def test_caps_that_could_never_trip_are_config_errors():
    budget = BudgetSection(max_judge_usd=1.0, judge_prices={"other": PRICES["judge-model"]})
    problems = check_budget(budget, ["judge-model"], "c.yaml")
    assert [p.key for p in problems] == ["budget.max_judge_usd", "budget.judge_prices.other"]
    assert "'judge-model' have no price" in problems[0].message
    assert "no judge of this node uses model 'other'" in problems[1].message
    assert [p.key for p in check_budget(BudgetSection(max_judge_usd=1.0), [], "c.yaml")] == ["budget.max_judge_usd"]
    assert [p.key for p in check_budget(BudgetSection(max_usd=1.0), [], "c.yaml")] == ["budget.max_usd"]
    assert check_budget(BudgetSection(max_usd=1.0, gpu_usd_per_hour=2.0), [], "c.yaml") == []


def judged_config(base_url: str, run_name: str, max_steps: int = 4) -> dict:
    """The shipped rubric-judge config on the tiny model, both judges at ``base_url``, priced."""
    cfg = yaml.safe_load((REPO / "pipelines/grpo/configs/rubric_judge.yaml").read_text())
    cfg["run_name"] = run_name
    cfg["model"].update(base_model_name="builtin:tiny", max_seq_length=512)
    cfg["training_parameters"].update(per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                      num_generations=4, max_prompt_length=256, max_completion_length=24,
                                      max_steps=max_steps, save_steps=100, learning_rate=2e-2)
    cfg["logging"]["log_completions_every"] = 0
    for entry in cfg["datasets"][0]["reward_funcs"]:
        if entry["name"] == "llm_judge":
            entry.update(eval_llm_name="judge-model", eval_llm_base_url=base_url, cache="off", max_retries=1)
    cfg["budget"] = {"judge_prices": PRICES, "gpu_usd_per_hour": 1.0}
    return cfg


def spent(run: Path) -> float:
    return json.loads((run / "summary.json").read_text())["cost"]["cost/judge_usd"]


@pytest.mark.slow
def test_projection_cap_stop_and_resume_to_the_uncapped_state(outputs, tmp_path, capsys):  # noqa: F811
    import torch
    from safetensors.torch import load_file

    with JudgeServer(lambda req: Reply(content=ALL_TAGS)) as server:
        # The projection, measured at --check-judges with one request sized like a training call per judge.
        sc = write_super(tmp_path / "full", judged_config(server.base_url, "full"))
        assert run_node(outputs, sc, extra=["--validate", "--check-judges"]) == 0
        out = capsys.readouterr().out
        projected = float(re.search(r"spend: judges in all ~([0-9.]+) USD \((\d+) calls\)", out).group(1))
        assert "measured at --check-judges" in out and "32 calls" in out     # 4 steps x 4 completions x 2 judges

        assert run_node(outputs, sc) == 0                                      # the uncapped reference
        full = outputs / "full"
        actual = spent(full)
        assert server.count("") >= 32
        assert abs(projected - actual) / actual <= 0.15, (projected, actual)
        steps = [r for r in read_jsonl(full / "metrics.jsonl") if "cost/judge_usd" in r]
        assert [r["step"] for r in steps] == [1, 2, 3, 4]
        assert all(a["cost/judge_usd"] < b["cost/judge_usd"] for a, b in zip(steps, steps[1:]))

        # A cap between steps 2 and 3: the run stops after step 3 (the first step over it) with a checkpoint.
        cap = (steps[1]["cost/judge_usd"] + steps[2]["cost/judge_usd"]) / 2
        capped_cfg = judged_config(server.base_url, "capped")
        capped_cfg["budget"]["max_judge_usd"] = round(cap, 6)
        sc = write_super(tmp_path / "capped", capped_cfg)
        assert run_node(outputs, sc) == 3
        err = capsys.readouterr().err
        assert "stopped by a guard (budget.max_judge_usd) at step 3" in err and "Traceback" not in err
        capped = outputs / "capped"
        assert json.loads((capped / "manifest.json").read_text())["status"] == "stopped"
        assert (capped / "checkpoint-3" / "COMPLETE").is_file() and not (capped / "final_adapter").exists()

        # Raise the cap and resume: the run ends at step 4 with the uncapped run's weights and spend.
        assert run_node(outputs, sc, "budget.max_judge_usd=100",
                        "training_parameters.resume_from_checkpoint=auto") == 0
    name = "adapter_model.safetensors"
    ref, got = load_file(full / "final_adapter" / name), load_file(capped / "final_adapter" / name)
    assert ref.keys() == got.keys() and all(torch.allclose(ref[k], got[k]) for k in ref)
    assert spent(capped) == pytest.approx(actual, rel=1e-6)
    cost = json.loads((capped / "summary.json").read_text())["cost"]
    assert cost["cost/gpu_hours"] > 0 and cost["cost/gpu_usd"] == pytest.approx(cost["cost/gpu_hours"] * 1.0, rel=1e-3)


def test_validate_reports_an_unpriced_judge_under_a_cap_and_projects_the_spend(outputs, tmp_path, capsys):  # noqa: F811
    cfg = judged_config("http://127.0.0.1:9/v1", "v")
    cfg["budget"] = {"max_judge_usd": 5.0}
    assert run_node(outputs, write_super(tmp_path / "a", cfg), extra=["--validate"]) == 2
    err = capsys.readouterr().err
    assert "node.yaml: budget.max_judge_usd: judge model(s) 'judge-model' have no price" in err
    cfg["budget"] = {"judge_prices": PRICES, "max_judge_usd": 5.0}
    assert run_node(outputs, write_super(tmp_path / "b", cfg), extra=["--validate"]) == 0   # no request sent
    out = capsys.readouterr().out
    assert "spend: judge 'helpfulness' (judge-model): 16 calls x ~" in out and "(estimated; --check-judges" in out
    assert "caps: max_judge_usd 5" in out


def test_preflight_prices_the_projected_machine_time():
    from pipelines.grpo.config import GRPOConfigFile
    from pipelines.grpo.preflight import machine_cost_lines

    cfg = judged_config("http://127.0.0.1:9/v1", "p")
    cfg["budget"] = {"judge_prices": PRICES, "gpu_usd_per_hour": 4.0, "max_gpu_hours": 1.0}
    line, = machine_cost_lines(GRPOConfigFile.model_validate(cfg), 7200.0)
    assert "2.000 machine hours projected x 4 USD/hour = 8.00 USD" in line
    assert "WARNING: this passes budget max_gpu_hours 1, so the run will stop early (exit 3)" in line
    cfg["budget"] = None
    assert machine_cost_lines(GRPOConfigFile.model_validate(cfg), 7200.0) == []
