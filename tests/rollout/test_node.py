"""The rollout node end to end on CPU with the tiny model, through the runner: outputs exist and parse,
selection rules hold on real scores, rewards route per dataset, and a killed run resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.common.io import read_jsonl
from pipelines.runner import main
from pipelines.rollout.selection import group_by_prompt

REPO = Path(__file__).resolve().parents[2]
K = 4


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make_inputs(tmp_path: Path) -> tuple[Path, Path]:
    topics = ["the city", "the sea", "a river", "the forest", "a garden", "the moon", "a bird", "the rain"]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with open(a, "w") as fh:
        for t in topics * 3:
            fh.write(json.dumps({"conversations": [{"from": "human", "value": f"Tell me about {t}."},
                                                   {"from": "gpt", "value": f"Joy: {t} is lovely."}]}) + "\n")
    with open(b, "w") as fh:
        for i, t in enumerate(topics):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Describe {t}."},
                                              {"role": "assistant", "content": "Nice."}], "bonus": i % 3}) + "\n")
    return a, b


def rollout_config(tmp_path: Path, model: Path, **extra) -> dict:
    a, b = make_inputs(tmp_path)
    cfg = {"run_name": "roll", "seed": 1, "model": {"base_model_name": str(model)},
           "generation": {"backend": "transformers", "num_completions": K, "max_new_tokens": 12, "batch_size": 4,
                          "max_prompt_length": 64},
           "datasets": [{"path": str(a), "percentage": 0.5, "system_prompt": "You are cheerful.",
                         "reward_funcs": [{"name": "keyword", "keywords": ["Joy", "e"]}]},
                        {"path": str(b), "percentage": 0.5,
                         "reward_funcs": [{"name": "tests.rollout.rewards_for_tests:bonus"},
                                          {"name": "length_target", "ideal_length": 20, "normalize": True}]}],
           "dataset_settings": {"total_rows": 12},
           "selection": {"sft_min_score": 1.0, "preference_min_margin": 0.5}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def run_rollout(tmp_path: Path, cfg: dict, *extra: str) -> int:
    write_yaml(tmp_path / "rollout.yaml", cfg)
    sc = write_yaml(tmp_path / "super.yaml", {"pipeline_order": [{"node": "rollout", "config": "rollout.yaml"}]})
    return main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), *extra])


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rollout")
    assert run_rollout(tmp_path, rollout_config(tmp_path, tiny_model_dir)) == 0
    return tmp_path / "out" / "roll"


def test_outputs_exist_parse_and_are_in_the_manifest(finished):
    manifest = json.loads((finished / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    outputs = manifest["outputs"]
    assert set(outputs) == {"scored_jsonl", "scored_parquet", "sft", "preferences", "summary"}
    assert all(Path(p).is_file() for p in outputs.values())
    records = list(read_jsonl(finished / "scored.jsonl"))
    assert len(records) == 12 * K
    groups = group_by_prompt(records)
    assert len(groups) == 12 and all([r["completion_index"] for r in g] == list(range(K)) for g in groups.values())
    for r in records:
        assert r["prompt"][-1]["role"] == "user" and isinstance(r["completion"], str)
        assert r["finish_reason"] in ("stop", "length")
    summary = json.loads((finished / "summary.json").read_text())
    assert (summary["prompts"], summary["completions"]) == (12, 12 * K)


def test_parquet_matches_jsonl(finished):
    import pandas as pd
    records = list(read_jsonl(finished / "scored.jsonl"))
    df = pd.read_parquet(finished / "scored.parquet")
    assert len(df) == len(records)
    assert list(df["completion"]) == [r["completion"] for r in records]
    assert list(df["reward"]) == pytest.approx([r["reward"] for r in records])
    assert df["prompt"].iloc[0][-1]["content"] == records[0]["prompt"][-1]["content"]
    for name in ("a/keyword", "b/bonus", "b/length_target"):
        col = df[f"rewards.{name}"]
        expected = [r["rewards"].get(name) for r in records]
        assert [None if pd.isna(v) else v for v in col] == pytest.approx(expected, nan_ok=True)


def test_rewards_route_per_dataset_and_see_extra_columns(finished):
    records = list(read_jsonl(finished / "scored.jsonl"))
    for r in records:
        if r["dataset_index"] == 0:
            assert set(r["rewards"]) == {"a/keyword"}
            assert r["prompt"][0] == {"role": "system", "content": "You are cheerful."}
            assert r["reward"] == r["rewards"]["a/keyword"] == (1.0 if ("Joy" in r["completion"]
                                                                       or "e" in r["completion"]) else 0.0)
        else:
            assert set(r["rewards"]) == {"b/bonus", "b/length_target"}
            bonus = r["row_columns"]["bonus"]
            assert r["rewards"]["b/bonus"] == bonus + (0.5 if "e" in r["completion"] else 0.0)
            assert r["reward"] == pytest.approx(r["rewards"]["b/bonus"] + r["rewards"]["b/length_target"])
    assert {r["dataset_index"] for r in records} == {0, 1}


def test_sft_and_preference_rules_hold_on_real_scores(finished):
    groups = group_by_prompt(read_jsonl(finished / "scored.jsonl"))
    sft = {s["row_id"]: s for s in read_jsonl(finished / "sft.jsonl")}
    prefs = {p["row_id"]: p for p in read_jsonl(finished / "preferences.jsonl")}
    assert sft and prefs, "the fixture should produce both kinds of data"
    for rid, group in groups.items():
        scores = [r["reward"] for r in group]
        best, worst = max(scores), min(scores)
        if best >= 1.0:
            item = sft[rid]
            assert item["score"] == best
            winner = next(r for r in group if r["reward"] == best)
            assert item["conversations"][-1] == {"from": "gpt", "value": winner["completion"]}
            assert [t["from"] for t in item["conversations"][:-1]] == \
                   [{"system": "system", "user": "human"}[m["role"]] for m in winner["prompt"]]
        else:
            assert rid not in sft
        if best - worst >= 0.5:
            pair = prefs[rid]
            assert (pair["chosen_score"], pair["rejected_score"]) == (best, worst)
            assert pair["chosen"][0]["content"] in [r["completion"] for r in group if r["reward"] == best]
            assert pair["rejected"][0]["content"] in [r["completion"] for r in group if r["reward"] == worst]
            assert pair["prompt"] == group[0]["prompt"]
        else:
            assert rid not in prefs


def test_reward_errors_are_recorded_not_fatal(tiny_model_dir, tmp_path):
    cfg = rollout_config(tmp_path, tiny_model_dir, dataset_settings={"total_rows": 4})
    cfg["datasets"] = [{**cfg["datasets"][0], "percentage": 1.0, "reward_funcs": [
        {"name": "tests.rollout.rewards_for_tests:fails_on", "char": "e"}]}]
    assert run_rollout(tmp_path, cfg) == 0
    records = list(read_jsonl(tmp_path / "out" / "roll" / "scored.jsonl"))
    bad = [r for r in records if "e" in r["completion"]]
    assert bad, "some completion should hold an 'e'"
    for r in records:
        if "e" in r["completion"]:
            assert r["reward"] is None and "cannot score" in r["errors"][0]
        else:
            assert r["reward"] == 1.0 and "errors" not in r


def test_rerun_is_refused_unless_resume(finished, tiny_model_dir, capsys):
    tmp_path = finished.parent.parent
    cfg = yaml.safe_load((tmp_path / "rollout.yaml").read_text())
    assert run_rollout(tmp_path, cfg) == 2
    assert "--set resume=true" in capsys.readouterr().err
    before = (finished / "scored.jsonl").read_bytes()
    assert run_rollout(tmp_path, cfg, "--set", "resume=true") == 0      # nothing left to generate
    assert (finished / "scored.jsonl").read_bytes() == before
    changed = {**cfg, "seed": 2}
    assert run_rollout(tmp_path, changed, "--set", "resume=true") == 2
    assert "different seed" in capsys.readouterr().err
    assert yaml.safe_load((finished / "resolved_config.yaml").read_text())["seed"] == 1   # refused before running


def test_sft_file_reads_back_through_the_data_layer(finished):
    """sft.jsonl is ShareGPT: the GRPO data layer samples it, with the kept completion as the answer."""
    from pipelines.data.config import DatasetEntry, DatasetSettings
    from pipelines.data.sampling import DataSpec, sample_datasets
    sft = list(read_jsonl(finished / "sft.jsonl"))
    entry = DatasetEntry(path=str(finished / "sft.jsonl"), percentage=1.0,
                         reward_funcs=[{"name": "keyword", "keywords": ["x"]}])
    spec = DataSpec(datasets=[entry], settings=DatasetSettings(total_rows=len(sft)), seed=42, max_prompt_length=512)
    rows = sample_datasets(spec).train
    assert sorted(r["answer"] for r in rows) == sorted(s["conversations"][-1]["value"] for s in sft)


@pytest.mark.slow
def test_preferences_train_with_trl_dpo(finished, tiny_model_dir, tmp_path):
    """One real DPOTrainer step on preferences.jsonl: the file is in the form TRL's DPO trainer reads."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    data = load_dataset("json", data_files=str(finished / "preferences.jsonl"), split="train")
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=1, use_cpu=True,
                     bf16=False, report_to=[], save_strategy="no", logging_steps=1, max_length=64)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args,
                         train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))
    result = trainer.train()
    assert result.global_step == 1
    assert any("rewards/chosen" in h or "loss" in h for h in trainer.state.log_history)
