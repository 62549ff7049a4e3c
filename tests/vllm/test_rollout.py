"""The rollout node with ``generation.backend: vllm`` on CPU (vLLM's CPU build): the shipped super-config from
the command line, and greedy decoding through vLLM against the transformers backend, for the base model and for a
LoRA adapter (the colocate run's), with ``model.max_seq_length`` left at 2048 so vLLM gets the capped
``max_model_len`` (512, the model's positions; vLLM refuses more)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vllm.vllm_runs import REPO, ROLLOUT_CONFIG, check, run_cli, write_super_config

pytestmark = pytest.mark.vllm
SHIPPED = REPO / "pipelines/rollout/configs/vllm_cpu/super_config.yaml"


def _completions(run: Path) -> dict[str, list[str]]:
    """Row id -> its prompt (as JSON) and completion texts in order, from the node's scored records."""
    import pandas as pd

    frame = pd.read_parquet(run / "scored.parquet").sort_values(["row_id", "completion_index"])
    out: dict[str, list[str]] = {}
    for row in frame.to_dict("records"):
        out.setdefault(row["row_id"], [json.dumps(list(row["prompt"]), default=str)]).append(row["completion"])
    return out


def test_shipped_vllm_rollout_runs_from_the_command_line(tmp_path):
    out = tmp_path / "out"
    proc = check(run_cli("run", "--super-config", str(SHIPPED), "--outputs", str(out)))
    run = out / "vllm-cpu-rollout"
    for name in ("sft.jsonl", "preferences.jsonl", "scored.parquet", "summary.json", "manifest.json"):
        assert (run / name).is_file(), (name, proc.stdout[-2000:])
    assert (run / "sft.jsonl").read_text().strip() and (run / "preferences.jsonl").read_text().strip()
    log = (run / "run.log").read_text()
    assert "vllm 0.30.0+cpu" in log
    assert "model.max_seq_length 2048 exceeds the 512 positions" in log    # the cap vLLM needs
    groups = _completions(run)
    assert len(groups) == 16 and all(len(texts) == 1 + 4 for texts in groups.values())


@pytest.fixture(scope="module")
def greedy_runs(grpo_runs, tmp_path_factory) -> dict[str, Path]:
    """Greedy rollouts of the same prompts on both backends, base model and the colocate run's adapter, in one
    process. dtype fp32 on both (vLLM's `auto` would run the float32 checkpoint in bf16)."""
    root = tmp_path_factory.mktemp("rollout_vllm")
    adapter = str(grpo_runs["vllm"] / "final_adapter")
    common = {"generation.temperature": 0.0, "generation.num_completions": 2, "generation.max_new_tokens": 24,
              "model.dtype": "fp32", "dataset_settings.total_rows": 12}
    entries = []
    for backend in ("transformers", "vllm"):
        for kind, adapter_path in (("base", None), ("adapter", adapter)):
            entries.append({"node": "rollout", "name": f"{backend}-{kind}", "config": str(ROLLOUT_CONFIG),
                            "overrides": {"run_name": f"{backend}-{kind}", "generation.backend": backend,
                                          "model.adapter": adapter_path, **common}})
    sc = write_super_config(root / "super.yaml", entries)
    check(run_cli("run", "--super-config", str(sc), "--outputs", str(root / "out")))
    return {e["overrides"]["run_name"]: root / "out" / e["overrides"]["run_name"] for e in entries}


@pytest.mark.parametrize("kind", ["base", "adapter"])
def test_greedy_vllm_matches_transformers(greedy_runs, kind):
    """Same prompts, greedy, fp32: vLLM's completions are the transformers backend's, word for word."""
    ours, theirs = _completions(greedy_runs[f"vllm-{kind}"]), _completions(greedy_runs[f"transformers-{kind}"])
    assert ours.keys() == theirs.keys() and len(ours) == 12
    assert ours == theirs


def test_the_adapter_changes_the_greedy_completions(greedy_runs):
    """The LoRA request reaches vLLM: with the adapter, greedy completions differ from the base model's."""
    assert _completions(greedy_runs["vllm-adapter"]) != _completions(greedy_runs["vllm-base"])
    log = (greedy_runs["vllm-adapter"] / "run.log").read_text()
    assert "model.max_seq_length 2048 exceeds the 512 positions" in log
