"""The rollout config schema and its checks: references are accepted unchecked, everything else is checked
before any model loads."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipelines.common import availability
from pipelines.common.node import NodeContext, validate_node_config
from pipelines.registry import get_node
from pipelines.rollout.config import RolloutConfigFile

FILE = "rollout.yaml"


def raw(**over) -> dict:
    cfg = {"model": {"base_model_name": "builtin:tiny", "adapter": "@grpo.final_adapter"},
           "datasets": [{"path": "inputs/quickstart.jsonl", "percentage": 1.0,
                         "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}],
           "dataset_settings": {"total_rows": 8}}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


def problems_of(data: dict, run_dir: Path | None = None) -> list[str]:
    """Every problem the runner would report for this config: schema, rules and run-dir check."""
    ctx = NodeContext(label="rollout", index=0, config_file=FILE, raw_config=data, secrets=set(),
                      run_dir=run_dir or Path("/nonexistent/run"), outputs_root=Path("/nonexistent"))
    _, problems = validate_node_config(get_node("rollout"), data, ctx)
    return [str(p) for p in problems]


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "pipelines/rollout/configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_validate_and_declare_outputs(path):
    from pipelines.common.config_io import EnvResolver, load_yaml
    problems: list = []
    data = EnvResolver({}).resolve(load_yaml(path), str(path), problems)
    assert problems == [] and problems_of(data) == []
    assert get_node("rollout").outputs == ("scored_jsonl", "scored_parquet", "sft", "preferences", "summary")


def test_every_field_has_a_description():
    from pydantic import BaseModel

    def walk(model: type[BaseModel]):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
            ann = field.annotation
            for sub in (ann, *getattr(ann, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel) and sub.__module__.endswith("rollout.config"):
                    walk(sub)
    walk(RolloutConfigFile)


def test_references_are_not_checked_as_paths():
    assert problems_of(raw(model={"base_model_name": "@merge.merged_model", "adapter": None})) == []
    assert problems_of(raw(datasets=[{"path": "@gen.dataset", "percentage": 1.0,
                                      "reward_funcs": [{"name": "keyword", "keywords": ["x"]}]}])) == []


def test_unknown_keys_and_bad_values_are_reported_together():
    found = problems_of(raw(generation={"num_completion": 4, "temperature": -1}, selection={"sft_min": 1}))
    text = "\n".join(found)
    assert 'generation.num_completion: unknown key (did you mean "num_completions"?)' in text
    assert "generation.temperature" in text and 'selection.sft_min: unknown key (did you mean "sft_min_score"?)' in text


def test_local_paths_rewards_and_lengths_are_checked(tmp_path):
    found = problems_of(raw(model={"adapter": str(tmp_path), "base_model_name": "./no/such/model"},
                            generation={"max_prompt_length": 100, "max_new_tokens": 60},
                            datasets=[{"path": "inputs/missing*.jsonl", "percentage": 1.0,
                                       "reward_funcs": [{"name": "keyword", "keyword": ["x"]}]}]),
                        )
    text = "\n".join(found)
    assert "model.adapter" in text and "adapter_config.json" in text
    assert "model.base_model_name: folder './no/such/model' does not exist" in text
    assert "datasets[0].path: no file matches" in text
    assert "datasets[0].reward_funcs[0]" in text and "keyword" in text
    assert problems_of(raw(model={"max_seq_length": 100},
                           generation={"max_prompt_length": 64, "max_new_tokens": 64}))[0].startswith(
        f"{FILE}: model.max_seq_length")


def test_empty_stop_sequence_is_refused():
    assert any("stop_sequences" in p for p in problems_of(raw(generation={"stop_sequences": [""]})))


def test_vllm_backend_needs_vllm():
    if availability.is_available("vllm"):
        pytest.skip("vllm is installed here")
    assert any("generation.backend" in p and "vllm" in p for p in problems_of(raw(generation={"backend": "vllm"})))


def test_run_dir_holding_a_run_needs_resume(tmp_path):
    (tmp_path / "resolved_config.yaml").write_text("x: 1\n")
    refused = problems_of(raw(), run_dir=tmp_path)
    assert len(refused) == 1 and "--set resume=true" in refused[0]
    assert problems_of(raw(resume=True), run_dir=tmp_path) == []


def test_data_spec_takes_the_shared_sections_and_the_generation_budget():
    """The data layer gets the rollout's own sections: no GRPO config is built, nothing is raised or forced."""
    cfg = RolloutConfigFile.model_validate(raw(generation={"max_prompt_length": 99, "chat_template": "{{ x }}"}))
    spec = cfg.data_spec()
    assert spec.datasets == cfg.datasets and spec.settings == cfg.dataset_settings and spec.seed == cfg.seed
    assert spec.datasets[0].reward_funcs[0].kwargs == {"keywords": ["Joy"]}
    assert spec.max_prompt_length == 99 and spec.eval_rows == 0
    assert spec.chat_template == "{{ x }}" and spec.chat_template_key == "generation.chat_template"


def test_validate_imports_no_torch(repo_root, tmp_path):
    """`--validate` of a rollout (schema, checks, reward kwargs, data summary) loads no torch/transformers."""
    import subprocess
    sc = tmp_path / "super.yaml"
    sc.write_text(f"pipeline_order:\n  - node: rollout\n    config: {repo_root}/pipelines/rollout/configs/quickstart.yaml\n"
                  "    overrides: {model.adapter: null}\n")
    code = ("import sys; from pipelines.runner import main;"
            f"rc = main(['--super-config', {str(sc)!r}, '--outputs', {str(tmp_path / 'out')!r}, '--validate']);"
            "print(rc, any(m.split('.')[0] in ('torch', 'transformers', 'trl', 'vllm') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False"
    assert "drawn: 24 rows read for 24" in out.stdout


def test_schema_errors_and_data_problems_are_reported_together(tmp_path, capsys):
    """A config the schema rejects still gets its dataset and reward checks (every mistake at once)."""
    import yaml

    from pipelines.runner import main
    data = raw(model={"adapterr": "x"},
               datasets=[{"path": "inputs/nope.jsonl", "percentage": 1.0,
                          "reward_funcs": [{"name": "keywrd", "keywords": ["x"]}]}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"pipeline_order": [{"node": "rollout", "config": "r.yaml"}]}))
    assert main(["--super-config", str(tmp_path / "s.yaml"), "--outputs", str(tmp_path / "o"), "--validate"]) == 2
    err = capsys.readouterr().err
    assert 'model.adapterr: unknown key (did you mean "adapter"?)' in err
    assert "datasets[0].path: no file matches 'inputs/nope.jsonl'" in err
    assert "datasets[0].reward_funcs[0]" in err and "keywrd" in err
