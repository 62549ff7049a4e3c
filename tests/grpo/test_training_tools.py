"""Tools end to end: the shipped countdown_tools config trains 2 steps on the tiny model, whose completions are
steered (a generation sequence bias, the real model and TRL's real tool loop) into a calculator call, so the
calls are parsed by TRL, run through the node's timed tool, counted in metrics.jsonl and kept, with their
results, in the high-scoring export."""
from __future__ import annotations

import json

import pytest

from tests.grpo.training_runs import (REPO, forcing_bias, high_scores, outputs, run_node, step_records,  # noqa: F401
                                      tiny_cache)

SHIPPED = REPO / "pipelines/grpo/configs/super_config_countdown_tools.yaml"
CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "3 * 4"}}\n</tool_call>'


TINY = ("model.base_model_name=builtin:tiny", "training_parameters.max_steps=2",
        "training_parameters.per_device_train_batch_size=2", "training_parameters.num_generations=2",
        "training_parameters.gradient_accumulation_steps=1", "dataset_settings.total_rows=4",
        "training_parameters.max_completion_length=200", "training_parameters.max_tool_calling_iterations=1",
        "training_parameters.model_stop_sequences=[]", "reward.score_save_threshold=-1.0", "run_name=tools",
        "datasets.0.system_prompt=Use the calculator.")   # short: the tiny model has 512 positions


def test_shipped_tool_config_trains_and_the_calculator_is_called(outputs, tiny_cache):  # noqa: F811
    bias = json.dumps({"sequence_bias": forcing_bias(tiny_cache, CALL)})
    rc = run_node(outputs, SHIPPED, *TINY, f"training_parameters.generation_kwargs={bias}")
    assert rc == 0
    run_dir = outputs / "tools"
    steps = step_records(run_dir)
    assert [r["step"] for r in steps] == [1, 2]
    for rec in steps:
        # Two completions per step. Each writes the call, gets its result (12), and writes the call again, which
        # is not run: max_tool_calling_iterations is 1. So 2 calls written per completion, 2 run per step.
        assert rec["tools/calls_per_completion"] == 2.0 and rec["tools/calls"] == 2.0
        assert rec["tools/calculator/calls"] == 2.0 and rec["tools/errors"] == 0.0
        assert 0 < rec["tools/latency_s/p50"] <= rec["tools/latency_s/p95"]
        assert rec["tools/call_frequency"] == 1.0     # TRL's own count agrees
    records = high_scores(run_dir)
    assert records, "threshold -1 exports every completion"
    messages = records[0]["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call = messages[2]["tool_calls"][0]["function"]
    assert call == {"name": "calculator", "arguments": {"expression": "3 * 4"}}
    assert messages[3] == {"role": "tool", "name": "calculator", "content": "12"}
    turns = records[0]["conversations"]
    assert [t["from"] for t in turns] == ["system", "human", "function_call", "observation", "function_call"]
    assert json.loads(turns[2]["value"]) == call and turns[3]["value"] == "12"


def test_shipped_tool_config_validates_unchanged(outputs, capsys):  # noqa: F811
    from pipelines.runner import main

    assert main(["--super-config", str(SHIPPED), "--outputs", str(outputs), "--validate"]) == 0
    out = capsys.readouterr().out
    assert "effective: tools countdown: calculator (TRL's tools=/environment_factory= as given); " \
           "max_tool_calling_iterations 4" in out


@pytest.mark.parametrize("override, key, message", [
    ("datasets.0.tools=[tests.grpo.tool_fixtures:undocumented]", "datasets[0].tools[0]", "has no docstring"),
    ("datasets.0.tools=[calculater]", "datasets[0].tools[0]", 'did you mean "calculator"'),
    ("datasets.0.tools=[tests.grpo.tool_fixtures:missing]", "datasets[0].tools[0]", "has no attribute 'missing'"),
    ("datasets.0.environment=tests.grpo.tool_fixtures:NoReset", "datasets[0].environment", "no `reset` method"),
    ("training_parameters.chat_template=chatml", "training_parameters.chat_template", "renders no tools block"),
    ("model.backend=unsloth", "model.backend", "backend: unsloth does not run tools"),
])
def test_validate_refuses_what_cannot_run_tools(outputs, capsys, override, key, message):  # noqa: F811
    rc = run_node(outputs, SHIPPED, "model.base_model_name=builtin:tiny", override, extra=["--validate"])
    err = capsys.readouterr().err
    assert rc == 2
    assert any(message in ln for ln in err.splitlines() if f": {key}: " in ln), err


def test_datasets_with_different_tools_each_see_only_their_own(outputs, tiny_cache, tmp_path):  # noqa: F811
    """Two datasets, one with the calculator, one with an environment whose only tool is `bump`: TRL's dict
    form routes each row to its dataset's environment, so the same steered calculator call runs for the first
    dataset's rows and is refused as unknown for the second's."""
    import yaml

    from tests.grpo.training_runs import write_super

    cfg = yaml.safe_load((REPO / "pipelines/grpo/configs/countdown_tools.yaml").read_text(encoding="utf-8"))
    first = cfg["datasets"][0]
    first.update(percentage=0.5, system_prompt="Use the calculator.")
    second = {**first, "label": "counter", "tools": [], "environment": "tests.grpo.tool_fixtures:Counter"}
    cfg["datasets"] = [first, second]
    super_cfg = write_super(tmp_path / "cfg", cfg)
    bias = json.dumps({"sequence_bias": forcing_bias(tiny_cache, CALL)})
    sets = [s for s in TINY if not s.startswith("training_parameters.per_device_train_batch_size")]
    rc = run_node(outputs, super_cfg, *sets, "training_parameters.per_device_train_batch_size=4",
                  f"training_parameters.generation_kwargs={bias}")
    assert rc == 0
    results = {}
    for rec in high_scores(outputs / "tools"):
        tool_turn = rec["messages"][3]
        assert tool_turn["role"] == "tool"
        results.setdefault(rec["dataset_index"], set()).add(tool_turn["content"])
    assert results[0] == {"12"}
    assert len(results[1]) == 1 and "not found" in next(iter(results[1]))
    steps = step_records(outputs / "tools")
    assert sum(r.get("tools/calculator/calls", 0) for r in steps) == 4   # the first dataset's 2 rows x 2
