"""The rollout's summary.json records the stack it ran on."""
from __future__ import annotations

import json

from pipelines.common.stack import collect_stack
from pipelines.rollout.config import RolloutConfigFile
from pipelines.rollout.outputs import write_outputs


def test_summary_has_the_stack_block(tmp_path):
    cfg = RolloutConfigFile.model_validate({
        "model": {"base_model_name": "builtin:tiny"}, "generation": {"backend": "transformers", "num_completions": 2},
        "datasets": [{"path": "inputs/quickstart.jsonl", "percentage": 1.0,
                      "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}],
        "dataset_settings": {"total_rows": 1}})
    prompt = [{"role": "user", "content": "Hi"}]
    records = [{"row_id": "r0", "prompt": prompt, "completion": text, "completion_index": i, "reward": reward,
                "rewards": {"keyword": reward}, "finish_reason": "stop"}
               for i, (text, reward) in enumerate((("Joy", 1.0), ("no", 0.0)))]
    write_outputs(cfg, tmp_path, records, 1.0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["completions"] == 2
    expected = collect_stack()
    assert summary["stack"]["packages"] == expected["packages"]
    assert summary["stack"]["git_commit"] == expected["git_commit"]
    assert summary["stack"]["python"] == expected["python"]
