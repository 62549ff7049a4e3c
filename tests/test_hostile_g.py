"""Issue 26, defects G3-G14 as the red team reproduced them on the quickstart config: each bad input is exit 2 with
a message naming the key and the cause, no traceback, nothing written (a fresh interpreter per case, so a
regression that hangs fails on the subprocess timeout instead of stalling the suite). G1, G2, G7, G8 and G10 have
their own files (tests/test_score_completions_hostile.py, tests/common/test_runlock_hostile.py,
tests/common/test_import_probe.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart.yaml"
HANG_GUARD_S = 120      # a hang fails here; the answers themselves come in a few seconds


def validate(tmp_path: Path, *sets: str, super_config: Path | None = None) -> tuple[int, str]:
    """``run_pipeline.py --validate`` on the quickstart (or ``super_config``) with ``--set`` overrides."""
    args = [sys.executable, "run_pipeline.py", "--validate", "--outputs", str(tmp_path / "out")]
    if super_config is not None:
        args += ["--super-config", str(super_config)]
    for item in sets:
        args += ["--set", item]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    return out.returncode, out.stdout + out.stderr


def refused(rc: int, text: str, *needles: str, tmp_path: Path) -> None:
    assert rc == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def node_pipeline(tmp_path: Path, config_text: str) -> Path:
    """A super-config running the grpo node on ``config_text`` (written to tmp_path/node.yaml)."""
    (tmp_path / "node.yaml").write_text(config_text, encoding="utf-8")
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": str(tmp_path / "node.yaml")}]}))
    return sc


# -- G3 and G12: chat templates ------------------------------------------------------------------------------------

@pytest.mark.parametrize("template, needle", [
    ("{{ raise_exception('x') }}", "the template raised an error while rendering: x"),
    ("{% include 'other' %}", "TypeError"),
    ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ("{{ range(10**9)|list }}", "OverflowError"),
    ("{{ 'x' * 1000000000 }}", "passes the bound"),
    ("{{ 'x'|center(1000000000) }}", "memory"),
])
def test_g3_a_chat_template_that_fails_or_explodes_while_rendering_is_exit_2(tmp_path, template, needle):
    rc, text = validate(tmp_path, f"training_parameters.chat_template={json.dumps(template)}")
    refused(rc, text, "training_parameters.chat_template:", needle, tmp_path=tmp_path)


def test_g3_a_template_that_refuses_the_rows_prompts_is_a_chat_template_problem(tmp_path):
    """It renders the probe's conversations without a system turn, then refuses every drawn prompt (the
    quickstart adds a system prompt): the rows' rendering errors are chat_template problems too."""
    picky = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
             "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    rc, text = validate(tmp_path, f"training_parameters.chat_template={json.dumps(picky)}")
    refused(rc, text, "training_parameters.chat_template: datasets[0]:", "no system role", tmp_path=tmp_path)


def test_g12_a_template_that_renders_every_prompt_empty_is_refused(tmp_path):
    rc, text = validate(tmp_path, 'training_parameters.chat_template="{% if false %}{{ messages }}{% endif %}"')
    refused(rc, text, "renders every prompt drawn as empty text", tmp_path=tmp_path)


# -- G4: YAML aliases ------------------------------------------------------------------------------------------------

def test_g4_billion_laughs_in_a_node_config_is_exit_2(tmp_path):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    laughs = QUICKSTART.read_text(encoding="utf-8") + "\n".join(lines) + "\n"
    rc, text = validate(tmp_path, super_config=node_pipeline(tmp_path, laughs))
    refused(rc, text, "expand to more than 100000 values", tmp_path=tmp_path)


# -- G5: non-mapping dataset entries ---------------------------------------------------------------------------------

@pytest.mark.parametrize("override", ["datasets=[null]", "datasets.0=x", "datasets=[1, [2], {path: inputs/x.jsonl}]"])
def test_g5_a_dataset_entry_that_is_not_a_mapping_is_exit_2(tmp_path, override):
    rc, text = validate(tmp_path, override)
    refused(rc, text, "datasets[0]: Input should be a valid dictionary", tmp_path=tmp_path)


# -- G6: lone surrogates --------------------------------------------------------------------------------------------

def test_g6_a_row_with_a_lone_surrogate_is_skipped_and_counted(tmp_path, tiny_model_dir):
    rows = [{"conversations": [{"from": "human", "value": f"Describe river {i}."},
                               {"from": "gpt", "value": "Joy: ok"}]} for i in range(6)]
    rows[2]["conversations"][0]["value"] = "bad \ud800 row"
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")   # json escapes it: \ud800
    rc, text = validate(tmp_path, f"datasets.0.path={data}", "dataset_settings.total_rows=6",
                        "dataset_settings.shortfall=take_all", f"model.base_model_name={tiny_model_dir}")
    assert rc == 0 and "Traceback" not in text, text
    assert "usable: 5, skipped: 1 text with a lone surrogate" in text and "(invalid_unicode)" in text


# -- G9: node import paths -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("node, needle", [("os:system", "is a built-in function"),
                                          ("collections:OrderedDict", "is a type"),
                                          ("json:dumps", "of the Python standard library"),
                                          ("tests.nodes_for_tests:record_rank", None)])
def test_g9_an_import_path_node_must_be_a_node_function(tmp_path, node, needle):
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"log": str(tmp_path / "log.jsonl")}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": node, "config": "n.yaml"}]}))
    rc, text = validate(tmp_path, super_config=sc)
    if needle is None:
        assert rc == 0, text
    else:
        refused(rc, text, "pipeline_order[0].node:", needle, "def run(config: dict, ctx)", tmp_path=tmp_path)


# -- G11: local hf:<folder> ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_datasets(tmp_path_factory) -> Path:
    """save_to_disk folders: one good, one with a truncated Arrow shard, one with a corrupt state.json."""
    from datasets import Dataset

    root = tmp_path_factory.mktemp("hf")
    data = Dataset.from_list([{"prompt": "Say hi", "answer": "Joy"}] * 40)
    for name in ("good", "truncated", "bad_state"):
        data.save_to_disk(str(root / name))
    shard = next((root / "truncated").glob("*.arrow"))
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size // 2)
    (root / "bad_state" / "state.json").write_text("{broken", encoding="utf-8")
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize("folder, needle", [
    ("missing", "no such folder"),
    ("truncated", "the data shard data-00000-of-00001.arrow is truncated or corrupt"),
    ("bad_state", "state.json of the saved dataset is corrupt"),
    ("empty", "holds no dataset"),
    ("/dev", "holds no dataset"),
])
def test_g11_local_hf_folder_problems_are_named(tmp_path, saved_datasets, folder, needle):
    path = folder if folder.startswith("/") else str(saved_datasets / folder)
    rc, text = validate(tmp_path, f"datasets.0.path=hf:{path}", "dataset_settings.total_rows=5")
    refused(rc, text, "datasets[0].path:", needle, tmp_path=tmp_path)
    assert "HF_HUB_OFFLINE" not in text


# -- G12: outputs and resume paths -------------------------------------------------------------------------------

def test_g12_outputs_naming_a_file_is_refused(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("keep\n")
    args = [sys.executable, "run_pipeline.py", "--validate", "--outputs", str(target)]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 2 and "--outputs:" in out.stderr and "is a file, not a folder" in out.stderr
    assert target.read_text() == "keep\n"


def test_g12_a_resume_path_that_does_not_exist_is_refused(tmp_path):
    rc, text = validate(tmp_path, f"training_parameters.resume_from_checkpoint={tmp_path / 'checkpoint-9'}")
    refused(rc, text, "training_parameters.resume_from_checkpoint:", "does not exist", tmp_path=tmp_path)


# -- G13: non-finite percentages ---------------------------------------------------------------------------------

def test_g13_augmentoolkit_percentages_with_a_non_finite_sum_are_refused(tmp_path):
    cfg = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    cfg["compat"] = "augmentoolkit"
    cfg["datasets"] = [dict(cfg["datasets"][0], percentage=1e308), dict(cfg["datasets"][0], percentage=1e308)]
    rc, text = validate(tmp_path, super_config=node_pipeline(tmp_path, yaml.safe_dump(cfg)))
    refused(rc, text, "do not sum to a finite number", tmp_path=tmp_path)
    assert "every percentage is 0" not in text


# -- G14: rubric size ------------------------------------------------------------------------------------------

def test_g14_an_oversized_rubric_is_refused_with_a_clear_message(tmp_path):
    rubric = tmp_path / "huge.yaml"
    rubric.write_text("- role: user\n  content: \"" + "grade {output_text} " * 20_000 + "<score>N</score>\"\n")
    cfg = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    cfg["datasets"][0]["reward_funcs"].append({
        "name": "llm_judge", "eval_llm_name": "m", "eval_llm_base_url": "http://127.0.0.1:9/v1",
        "system_prompt_path": str(rubric), "score_types": [{"name": "score", "type": "score", "min": 0, "max": 10}]})
    rc, text = validate(tmp_path, super_config=node_pipeline(tmp_path, yaml.safe_dump(cfg)))
    refused(rc, text, "system_prompt_path", "at most 256 KiB", tmp_path=tmp_path)


def test_g14_a_fifo_rubric_does_not_block(tmp_path):
    fifo = tmp_path / "rubric.yaml"
    os.mkfifo(fifo)
    cfg = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    cfg["datasets"][0]["reward_funcs"].append({
        "name": "llm_judge", "eval_llm_name": "m", "eval_llm_base_url": "http://127.0.0.1:9/v1",
        "system_prompt_path": str(fifo), "score_types": [{"name": "score", "type": "score", "min": 0, "max": 10}]})
    rc, text = validate(tmp_path, super_config=node_pipeline(tmp_path, yaml.safe_dump(cfg)))
    refused(rc, text, "not a regular file", tmp_path=tmp_path)
