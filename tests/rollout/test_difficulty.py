"""The rollout node's difficulty table and curriculum, and a GRPO run that starts from that table: difficulty
weights with weight_outside 0 draw only rows inside the band, and the run's table continues the rollout's."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.common.io import read_jsonl
from pipelines.runner import main
from tests.grpo.training_runs import (REPO, high_scores, outputs, quickstart_config, run_node,  # noqa: F401
                                      tiny_cache, write_super)

K = 4
REWARD = {"name": "tests.grpo.test_dynamic_sampling:half_dead"}   # half the rows never solved, the rest ~half


def rollout(outputs: Path, tmp_path: Path, band) -> Path:  # noqa: F811
    cfg = yaml.safe_load((REPO / "pipelines/rollout/configs/quickstart.yaml").read_text(encoding="utf-8"))
    cfg.update(run_name="roll", seed=42)
    cfg["model"] = {"base_model_name": "builtin:tiny", "max_seq_length": 128}
    cfg["generation"].update(backend="transformers", num_completions=K, max_new_tokens=12)
    cfg["datasets"][0]["reward_funcs"] = [REWARD]
    cfg["selection"]["difficulty_band"] = band
    node = tmp_path / "rollout.yaml"
    node.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    sc = tmp_path / "roll.super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "rollout", "config": str(node)}]}), encoding="utf-8")
    assert main(["--super-config", str(sc), "--outputs", str(outputs)]) == 0
    return outputs / "roll"


@pytest.mark.slow
def test_rollout_table_curriculum_and_a_grpo_run_weighted_by_it(outputs, tmp_path):  # noqa: F811
    band = [0.25, 1.0]
    run = rollout(outputs, tmp_path, band)
    table = pq.read_table(run / "difficulty.parquet").to_pylist()
    scored = list(read_jsonl(run / "scored.jsonl"))
    assert len(table) == 24 and all(r["attempts"] == K for r in table)
    for row in table:
        rewards = [s["reward"] for s in scored if s["row_id"] == row["row_id"]]
        assert row["dataset"] == "quickstart"
        assert row["solved_rate"] == sum(r >= 1.0 for r in rewards) / K
        assert row["mean_reward"] == pytest.approx(sum(rewards) / K)
    in_band = {r["row_id"] for r in table if band[0] <= r["solved_rate"] <= band[1]}
    assert 0 < len(in_band) < 24
    curriculum = list(read_jsonl(run / "curriculum.jsonl"))
    assert len(curriculum) == len(in_band)
    assert all(c["prompt"][-1]["role"] == "user" and "answer" in c for c in curriculum)

    cfg = quickstart_config(max_steps=2, save_steps=100)
    cfg.update(run_name="weighted")
    cfg["datasets"][0]["reward_funcs"] = [REWARD]
    cfg["reward"]["score_save_threshold"] = 0.0            # every completion exported: which rows trained shows
    cfg["dataset_settings"] = {"total_rows": 24, "difficulty": {"band": band, "weight_outside": 0.0,
                                                                "from": str(run)}}
    assert run_node(outputs, write_super(tmp_path / "grpo", cfg)) == 0
    trained = Counter(r["row_id"] for r in high_scores(outputs / "weighted"))
    assert trained and set(trained) <= in_band
    # the run's table continued the rollout's: its attempts are the rollout's plus the completions generated
    ours = {r["row_id"]: r for r in pq.read_table(outputs / "weighted" / "difficulty.parquet").to_pylist()}
    assert sum(r["attempts"] for r in ours.values()) == 24 * K + sum(trained.values())
    assert all(ours[row_id]["attempts"] == K + n for row_id, n in trained.items())
    manifest = json.loads((outputs / "weighted" / "manifest.json").read_text())
    assert Path(manifest["outputs"]["difficulty"]).is_file()
