"""Tool-using rollouts on CPU with the tiny model: its generation config carries a sequence bias that steers it
into a calculator call (the real model, the real tool loop), so the transcript (call, result, next turn) is
scored and kept in scored.jsonl, scored.parquet and sft.jsonl; --validate refuses what cannot run tools."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.common.io import read_jsonl
from tests.rollout.test_node import run_rollout

REPO = Path(__file__).resolve().parents[2]
CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "3 * 4"}}\n</tool_call>'


@pytest.fixture(scope="module")
def steered_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model, copied, whose generation config biases it into writing CALL and ending its turn."""
    from transformers import AutoTokenizer, GenerationConfig

    folder = tmp_path_factory.mktemp("steered") / "model"
    shutil.copytree(tiny_model_dir, folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok(CALL, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    config = GenerationConfig.from_pretrained(str(folder))
    config.sequence_bias = [[ids[:k + 1], 100.0 * (k + 1)] for k in range(len(ids))]
    config.save_pretrained(str(folder))
    return folder


def tool_config(model: Path, **generation) -> dict:
    return {"run_name": "roll", "seed": 1, "model": {"base_model_name": str(model)},
            "generation": {"backend": "transformers", "num_completions": 2, "max_new_tokens": 90,
                           "max_prompt_length": 512, "max_tool_calling_iterations": 1, **generation},
            "datasets": [{"path": str(REPO / "inputs/countdown.jsonl"), "percentage": 1.0,
                          "prompt_template": "Using the numbers {nums}, make {target}.", "tools": ["calculator"],
                          "reward_funcs": [{"name": "keyword", "keywords": ["12"]}]}],
            "dataset_settings": {"total_rows": 2}, "selection": {"sft_min_score": None}}


def test_rollout_runs_tool_calls_and_keeps_the_transcript(tmp_path, steered_model):
    assert run_rollout(tmp_path, tool_config(steered_model)) == 0
    run_dir = tmp_path / "out" / "roll"
    records = list(read_jsonl(run_dir / "scored.jsonl"))
    assert len(records) == 4
    for rec in records:
        roles = [m["role"] for m in rec["completion_messages"]]
        assert roles == ["assistant", "tool", "assistant"]   # call, result, the next turn (not run: 1 round)
        assert rec["completion_messages"][1] == {"role": "tool", "name": "calculator", "content": "12"}
        assert rec["reward"] == 1.0                          # the keyword reward saw the tool result "12"
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["tools"] == {"calls_per_completion": 2.0, "completions_with_calls": 1.0, "error_results": 0}
    sft = list(read_jsonl(run_dir / "sft.jsonl"))
    assert [t["from"] for t in sft[0]["conversations"]] == ["human", "function_call", "observation",
                                                             "function_call"]
    import pyarrow.parquet as pq

    column = pq.read_table(run_dir / "scored.parquet").column("completion_messages").to_pylist()
    assert all(json.loads(c)[1]["content"] == "12" for c in column)


@pytest.mark.parametrize("change, key, message", [
    ({"generation": {"backend": "vllm"}}, "generation.backend", "transformers backend only"),
    ({"tools": ["tests.grpo.tool_fixtures:undocumented"]}, "datasets[0].tools[0]", "has no docstring"),
    ({"generation": {"chat_template": "chatml"}}, "generation.chat_template", "renders no tools block"),
])
def test_validate_refuses_rollout_tools_that_cannot_run(tmp_path, tiny_model_dir, capsys, change, key, message):
    cfg = tool_config(tiny_model_dir)
    cfg["generation"].update(change.get("generation", {}))
    if "tools" in change:
        cfg["datasets"][0]["tools"] = change["tools"]
    assert run_rollout(tmp_path, cfg, "--validate") == 2
    err = capsys.readouterr().err
    assert any(message in ln for ln in err.splitlines() if f": {key}: " in ln), err
