"""The shipped code_tests config end to end on the tiny model: its completions are steered (a generation sequence
bias on the real model, TRL's real tool loop) into a python_exec call, which runs in the bubblewrap sandbox; the
call's output comes back as the tool result, the tool and sandbox metrics reach metrics.jsonl, and the
code_tests reward scores every completion (the tiny model writes no function: 0, counted by reason)."""
from __future__ import annotations

import json

import pytest

from pipelines.common.sandbox import probe
from tests.grpo.training_runs import (REPO, forcing_bias, high_scores, outputs, run_node,  # noqa: F401
                                      step_records, tiny_cache)

SHIPPED = REPO / "pipelines/grpo/configs/super_config_code_tests.yaml"
CALL = '<tool_call>\n{"name": "python_exec", "arguments": {"code": "print(6 * 7)"}}\n</tool_call>'

pytestmark = pytest.mark.skipif(probe() is not None, reason=f"the sandbox cannot start here: {probe()}")


TINY = ("model.base_model_name=builtin:tiny", "training_parameters.max_steps=2",
        "training_parameters.per_device_train_batch_size=2", "training_parameters.num_generations=2",
        "training_parameters.gradient_accumulation_steps=1", "dataset_settings.total_rows=4",
        "training_parameters.max_prompt_length=280", "training_parameters.max_completion_length=220",
        "training_parameters.max_tool_calling_iterations=1", "model.max_seq_length=512",
        "reward.score_save_threshold=-1.0", "run_name=code", "datasets.0.system_prompt=Run code.")


@pytest.mark.slow
def test_shipped_code_config_runs_python_exec_in_the_sandbox_and_scores_with_code_tests(outputs, tiny_cache,  # noqa: F811
                                                                                       tmp_path):
    # Short tasks in the shipped data's shape: the tiny model has 512 positions, and the tools block that lists
    # python_exec comes on top of the prompt.
    data = tmp_path / "code_tests.jsonl"        # the shipped file's name: the same metric keys
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Write add{i}(a, b)."}],
                                        "tests": [f"assert add{i}(1, 2) == 3"]}) + "\n" for i in range(4)))
    bias = json.dumps({"sequence_bias": forcing_bias(tiny_cache, CALL)})
    assert run_node(outputs, SHIPPED, *TINY, f"datasets.0.path={data}",
                    f"training_parameters.generation_kwargs={bias}") == 0
    run_dir = outputs / "code"
    steps = step_records(run_dir)
    assert [r["step"] for r in steps] == [1, 2]
    for rec in steps:
        assert rec["tools/python_exec/calls"] == 2.0 and rec["tools/errors"] == 0.0
        assert rec["tools/python_exec/sandbox/runs"] == 2.0
        assert 0 < rec["tools/python_exec/sandbox/latency_p50_s"] <= rec["tools/python_exec/sandbox/latency_p95_s"]
        assert rec["rewards/code_tests/code_tests/mean"] == 0.0      # no ```python block: 0, with its reason
        assert rec["rewards/code_tests/code_tests/zero/no_code"] == 2.0
    messages = high_scores(run_dir)[0]["messages"]
    assert [m["role"] for m in messages][-3:] == ["assistant", "tool", "assistant"], messages
    result = messages[-2]
    assert result["name"] == "python_exec" and "42" in result["content"]      # run in the sandbox, output back
