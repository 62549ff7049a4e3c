"""The grpo_hpo node end to end on CPU with the tiny model: outputs, the elite, a real kill and a resume."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipelines.common.io import read_jsonl
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart_hpo.yaml"
POPULATION, GENERATIONS, STEPS = 3, 2, 3

pytestmark = pytest.mark.slow


def _super_config(tmp: Path, tiny_model_dir: Path) -> Path:
    overrides = {"model.base_model_name": str(tiny_model_dir), "hpo.steps_per_generation": STEPS,
                 "hpo.population_size": POPULATION, "hpo.generations": GENERATIONS,
                 "dataset_settings.total_rows": 48, "evaluation.rows": 8,
                 "datasets.0.path": str(REPO / "inputs" / "quickstart.jsonl")}
    sc = tmp / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo_hpo", "config": str(QUICKSTART),
                                                      "overrides": overrides}]}), encoding="utf-8")
    return sc


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hpo_e2e")
    return tmp, _super_config(tmp, tiny_model_dir)


@pytest.fixture(scope="module")
def full_run(setup) -> Path:
    tmp, sc = setup
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)   # under pytest the root logger may filter INFO before run.log sees it
    try:
        assert main(["--super-config", str(sc), "--outputs", str(tmp / "out"), "--set", "run_name=full"]) == 0
    finally:
        root.setLevel(level)
    return tmp / "out" / "full"


def history(run_dir: Path) -> list[dict]:
    return list(read_jsonl(run_dir / "hpo_history.jsonl"))


def test_history_has_one_line_per_generation_and_member(full_run):
    records = history(full_run)
    assert len(records) == POPULATION * GENERATIONS
    # generations count from 1, in the file as in the log, the plot and the folders
    assert [(r["generation"], r["member"], r["id"]) for r in records] == \
        [(g, m, f"g{g}m{m}") for g in range(1, GENERATIONS + 1) for m in range(POPULATION)]
    first = {r["id"] for r in records if r["generation"] == 1}
    for r in records:
        assert set(r["hparams"]) == {"learning_rate", "beta", "temperature", "num_generations"}
        assert isinstance(r["fitness"], float) and 0.0 <= r["fitness"] <= 1.0
        assert r["steps"] == r["generation"] * STEPS
        assert r["checkpoint"].startswith(f"hpo/gen-{r['generation']:04d}/{r['id']}/")
        assert r["optimizer_reset"] == r["mutation"].startswith("learning_rate:")
        if r["generation"] == 1:
            assert (r["parent"], r["mutation"]) == (None, "init")
        else:
            assert r["parent"] in first and r["mutation"]
    # member 0 starts from the config's values (TRL's defaults for beta and temperature, which it leaves unset),
    # clipped into the search range (beta's min is 0.001: a multiplied 0 would never move)
    assert records[0]["hparams"] == {"learning_rate": 0.02, "beta": 0.001, "temperature": 1.0, "num_generations": 4}
    assert len({json.dumps(r["hparams"], sort_keys=True) for r in records if r["generation"] == 1}) == POPULATION
    second = [r for r in records if r["generation"] == 2]
    best_first = max((r for r in records if r["generation"] == 1), key=lambda r: r["fitness"])
    assert (second[0]["mutation"], second[0]["parent"]) == ("elite", best_first["id"])   # elitism
    assert second[0]["hparams"] == best_first["hparams"]


def test_elite_is_the_best_of_the_last_generation_and_loads(full_run, tiny_model_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    last = [r for r in history(full_run) if r["generation"] == GENERATIONS]
    best = max(last, key=lambda r: r["fitness"])
    elite_dir = full_run / "elite_adapter"
    elite = json.loads((elite_dir / "hpo_elite.json").read_text())
    assert elite["fitness"] == max(r["fitness"] for r in last) and elite["best"]
    assert elite["id"] == next(r for r in last if r["best"])["id"]
    assert best["fitness"] == elite["fitness"]
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["elite"]["id"] == elite["id"] and summary["elite"]["hparams"] == elite["hparams"]
    assert summary["elite"]["generation"] == GENERATIONS == summary["generations"]

    weights = load_file(str(elite_dir / "adapter_model.safetensors"))
    source = load_file(str(full_run / elite["checkpoint"] / "adapter_model.safetensors"))
    assert weights.keys() == source.keys() and all(torch.equal(weights[k], source[k]) for k in weights)
    tok = AutoTokenizer.from_pretrained(elite_dir)
    assert tok.chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), elite_dir)
    lora = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert lora and any(p.abs().sum() > 0 for p in lora.values())   # trained (LoRA B starts at zero)
    ids = tok.apply_chat_template([{"role": "user", "content": "Describe the sea."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_outputs_metrics_and_manifest(full_run):
    manifest = json.loads((full_run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["node"] == "grpo_hpo"
    for key in ("elite_adapter", "hpo_history", "hpo_fitness"):
        assert Path(manifest["outputs"][key]).exists()
    assert (full_run / "hpo_fitness.png").read_bytes()[:4] == b"\x89PNG"
    records = list(read_jsonl(full_run / "metrics.jsonl"))
    lrs = {r["id"]: r["hparams"]["learning_rate"] for r in history(full_run)}
    for member, lr in lrs.items():
        steps = [r for r in records if r.get("member") == member and "loss" in r]
        generation = int(member[1:].split("m")[0])
        assert [r["step"] for r in steps] == list(range((generation - 1) * STEPS + 1, generation * STEPS + 1))
        assert {r["generation"] for r in steps} == {generation}
        assert all(r["learning_rate"] == pytest.approx(lr) for r in steps)   # constant schedule: the member's lr
        assert any(r.get("member") == member and "eval/reward_mean" in r for r in records)
    # only the last generation's checkpoints are kept (the elite's among them)
    kept = sorted(p.relative_to(full_run / "hpo").as_posix() for p in (full_run / "hpo").glob("gen-*/*"))
    assert kept == sorted(f"gen-{GENERATIONS:04d}/{r['id']}" for r in history(full_run)
                          if r["generation"] == GENERATIONS)
    log = (full_run / "run.log").read_text()
    assert "elite: member" in log and "learning_rate" in log and "lineage:" in log
    elite = json.loads((full_run / "elite_adapter" / "hpo_elite.json").read_text())
    assert f"elite: member {elite['id']} of generation {GENERATIONS}," in log
    assert f"generation {GENERATIONS} done: best" in log and "generation 0" not in log


def test_a_later_node_rolls_out_the_elite_adapter(setup, full_run, tiny_model_dir):
    tmp, sc = setup
    original = sc.read_text()
    entries = yaml.safe_load(original)["pipeline_order"]
    entries.append({"node": "rollout", "config": str(REPO / "pipelines" / "rollout" / "configs" / "quickstart.yaml"),
                    "overrides": {"run_name": "elite-rollout", "model.base_model_name": str(tiny_model_dir),
                                  "model.adapter": "@grpo_hpo.elite_adapter", "dataset_settings.total_rows": 4,
                                  "datasets.0.path": str(REPO / "inputs" / "quickstart.jsonl")}})
    # references are scoped to one super-config: the user adds the rollout entry to the file that ran the search
    sc.write_text(yaml.safe_dump({"pipeline_order": entries}), encoding="utf-8")
    try:
        # --only the rollout: @grpo_hpo.elite_adapter resolves to this super-config's latest grpo_hpo run
        assert main(["--super-config", str(sc), "--outputs", str(tmp / "out"), "--only", "rollout"]) == 0
    finally:
        sc.write_text(original, encoding="utf-8")
    resolved = yaml.safe_load((tmp / "out" / "elite-rollout" / "resolved_config.yaml").read_text())
    assert Path(resolved["model"]["adapter"]).resolve() == (full_run / "elite_adapter").resolve()
    assert len(list(read_jsonl(tmp / "out" / "elite-rollout" / "scored.jsonl"))) == 4 * 4   # rows x completions


def test_a_killed_search_resumes_at_its_last_completed_generation(setup, full_run):
    tmp, sc = setup
    run_dir = tmp / "out" / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "run_pipeline.py", "--super-config", str(sc), "--outputs",
                             str(tmp / "out"), "--set", "run_name=killed"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        # kill once generation 1 is saved and generation 2 has started training (a member folder exists)
        while time.time() < deadline and proc.poll() is None:
            if any((run_dir / "hpo" / "gen-0002").glob("*/")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = json.loads((run_dir / "hpo" / "state.json").read_text())
    assert state["generation"] == 1
    manifest = run_dir / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["status"] != "completed"
    assert len(history(run_dir)) == POPULATION

    # without the resume switch the run dir is refused; with it, the search goes on from generation 2
    assert main(["--super-config", str(sc), "--outputs", str(tmp / "out"), "--set", "run_name=killed"]) == 2
    assert main(["--super-config", str(sc), "--outputs", str(tmp / "out"), "--set", "run_name=killed",
                 "--set", "training_parameters.resume_from_checkpoint=auto"]) == 0
    resumed, reference = history(run_dir), history(full_run)
    assert len(resumed) == POPULATION * GENERATIONS
    same = ("generation", "member", "id", "parent", "mutation", "hparams", "fitness", "best", "checkpoint")
    assert [{k: r[k] for k in same} for r in resumed] == [{k: r[k] for k in same} for r in reference]
    losses = [(r["member"], r["step"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert len(losses) == len(set(losses)) == POPULATION * GENERATIONS * STEPS   # the redone steps, once
    assert json.loads((run_dir / "summary.json").read_text())["resumed"] is True
    assert (run_dir / "elite_adapter" / "adapter_model.safetensors").is_file()

    # resuming a finished search trains nothing and exports the same elite again
    metrics_before = (run_dir / "metrics.jsonl").read_text()
    assert main(["--super-config", str(sc), "--outputs", str(tmp / "out"), "--set", "run_name=killed",
                 "--set", "training_parameters.resume_from_checkpoint=auto"]) == 0
    assert history(run_dir) == resumed and (run_dir / "metrics.jsonl").read_text() == metrics_before
    assert json.loads((run_dir / "elite_adapter" / "hpo_elite.json").read_text())["best"]

    # a finished search is extended by raising hpo.generations and resuming
    assert main(["--super-config", str(sc), "--outputs", str(tmp / "out"), "--set", "run_name=killed",
                 "--set", "training_parameters.resume_from_checkpoint=auto",
                 "--set", f"hpo.generations={GENERATIONS + 1}"]) == 0
    extended = history(run_dir)
    assert extended[:len(resumed)] == resumed and len(extended) == POPULATION * (GENERATIONS + 1)
    last_ids = {r["id"] for r in resumed if r["generation"] == GENERATIONS}
    assert all(r["parent"] in last_ids for r in extended[len(resumed):])
    elite = json.loads((run_dir / "elite_adapter" / "hpo_elite.json").read_text())
    assert elite["generation"] == GENERATIONS + 1 and elite["steps"] == (GENERATIONS + 1) * STEPS


def test_summary_records_the_stack(full_run):
    """The grpo_hpo summary carries the same ``stack`` block as grpo's (issue 21): versions and the commit."""
    stack = json.loads((full_run / "summary.json").read_text())["stack"]
    import trl

    assert stack["packages"]["trl"] == trl.__version__ and stack["packages"]["torch"] == torch.__version__
    assert stack["python"].count(".") == 2 and "git_commit" in stack and stack["cuda"]["available"] in (True, False)


def test_a_machine_hours_cap_stops_the_search_with_exit_3_and_keeps_its_spend(setup, capsys):
    tmp, sc = setup
    out = tmp / "out"
    args = ["--super-config", str(sc), "--outputs", str(out), "--set", "run_name=capped",
            "--set", "budget={gpu_usd_per_hour: 2.0, max_gpu_hours: 0.000001}"]
    assert main(args) == 3                      # the first member's first logged step is past the cap
    err = capsys.readouterr().err
    assert "stopped by a guard (budget.max_gpu_hours)" in err and "Traceback" not in err
    run = out / "capped"
    assert json.loads((run / "manifest.json").read_text())["status"] == "stopped"
    cost = json.loads((run / "cost.json").read_text())
    assert cost["cost/gpu_hours"] > 0.000001 and cost["cost/gpu_usd"] == pytest.approx(2 * cost["cost/gpu_hours"], abs=2e-6)
