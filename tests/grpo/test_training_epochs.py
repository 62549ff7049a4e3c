"""Epoch-based training: without max_steps (or with -1) num_train_epochs decides; --validate prints the steps,
and the run trains exactly that many passes over its rows. Plus the per-row length cap that a compat length budget
uses on HF generate."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from pipelines.common.io import read_jsonl
from pipelines.common.schema import validate_model
from pipelines.grpo.checks import planned_steps, steps_per_epoch
from pipelines.grpo.config import GRPOConfigFile, TrainingParameters
from tests.grpo.training_runs import (outputs, quickstart_config, run_node, step_records,  # noqa: F401
                                      tiny_cache, write_super)

ROWS = 8        # 2 prompts x 4 generations per step: 4 steps per pass


def epoch_config(data=None, **training):
    cfg = quickstart_config(**training)
    del cfg["training_parameters"]["max_steps"]
    if data is not None:              # a file of exactly ROWS rows: every row is drawn
        cfg["datasets"][0]["path"] = str(data)
    cfg["dataset_settings"]["total_rows"] = ROWS
    cfg["reward"]["score_save_threshold"] = -1.0        # every completion is exported, with its prompt and step
    return cfg


@pytest.mark.slow
def test_two_epochs_train_exactly_two_passes_over_the_rows(outputs, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "distinct.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Describe thing number {i}."}) + "\n" for i in range(ROWS)),
                    encoding="utf-8")
    cfg = epoch_config(data, num_train_epochs=2, save_steps=100)
    cfg["run_name"] = "epochs"
    sup = write_super(tmp_path, cfg)
    assert run_node(outputs, sup, extra=["--validate"]) == 0
    assert "steps: 8 (num_train_epochs 2 x 4 steps per pass over 8 training rows)" in capsys.readouterr().out
    assert run_node(outputs, sup) == 0
    run = outputs / "epochs"
    assert [r["step"] for r in step_records(run)] == list(range(1, 9))
    exported = list(read_jsonl(run / "high_scoring_examples.jsonl"))
    by_pass = [Counter(r["row_id"] for r in exported if (r["step"] - 1) // 4 == p) for p in (0, 1)]
    for seen in by_pass:          # each pass: every one of the 8 rows, each with its 4 generations
        assert len(seen) == ROWS and set(seen.values()) == {4}
    assert by_pass[0] == by_pass[1]


def test_steps_formula_and_max_steps_values():
    cfg = GRPOConfigFile.model_validate(epoch_config(num_train_epochs=2.5))
    assert steps_per_epoch(cfg, 8) == 4 and planned_steps(cfg, 8) == 10
    assert steps_per_epoch(cfg, 9) == 4                       # the ninth row waits for the next pass
    cfg.training_parameters.gradient_accumulation_steps = 2   # 8 per device x 2 = 16 completions = 4 prompts
    assert steps_per_epoch(cfg, 8) == 2
    assert TrainingParameters(max_steps=-1).max_steps is None and TrainingParameters().max_steps is None
    assert planned_steps(GRPOConfigFile.model_validate(quickstart_config(max_steps=7)), 8) == 7
    _, problems = validate_model(TrainingParameters, {"max_steps": 0}, "c.yaml")
    assert problems and problems[0].key == "max_steps"
    _, problems = validate_model(TrainingParameters, {"num_train_epochs": 0}, "c.yaml")
    assert problems and problems[0].key == "num_train_epochs"


def test_grpo_config_gets_epochs_when_max_steps_is_absent(tmp_path):
    from pipelines.grpo.trainer import grpo_config_kwargs

    cfg = GRPOConfigFile.model_validate(epoch_config(num_train_epochs=3))
    kwargs = grpo_config_kwargs(cfg, tmp_path, {}, train_rows=ROWS)
    assert kwargs["max_steps"] == -1 and kwargs["num_train_epochs"] == 3
    cfg.training_parameters.warmup_ratio = 1.0
    assert grpo_config_kwargs(cfg, tmp_path, {}, train_rows=ROWS)["warmup_steps"] == 12


def test_total_length_cap_stops_each_row_at_its_own_budget(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from pipelines.common.hf import load_tokenizer
    from pipelines.common.stops import stopping_generate

    tok = load_tokenizer(str(tiny_model_dir), None, "chat_template")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    batch = tok(["a b", "a b c d e f g h i j k l"], return_tensors="pt", padding=True)
    short, long_ = (int(n) for n in batch["attention_mask"].sum(-1))
    limit = long_ + 3
    torch.manual_seed(0)
    with stopping_generate(model, tok, (), max_total_tokens=limit):
        out = model.generate(**batch, max_new_tokens=20, do_sample=True, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    assert new.shape[1] == limit - short                       # the short prompt ran to its own budget
    assert bool((new[1, 3:] == tok.pad_token_id).all())        # the long one stopped after 3 new tokens
    assert "generate" not in vars(model)                       # the instance is restored
