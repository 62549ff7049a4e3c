"""GRPO training end to end on CPU through the runner: the shipped quickstart learns, every artifact is written,
the adapter loads onto the tiny base, and the saved tokenizer carries the chat template actually used."""
from __future__ import annotations

import json

import pytest
import yaml

from pipelines.common.io import read_jsonl
from tests.grpo.training_runs import (outputs, quickstart_config, run_node, step_records,  # noqa: F401
                                      tiny_cache, trainer_state, write_super)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CUSTOM_TEMPLATE = ("{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                   "{% if add_generation_prompt %}### assistant:{% endif %}")


def learning_steps() -> int:
    """Steps in which the quickstart must show it learns. 12 on a CPU, where seed 42's trajectory was measured.
    On CUDA the same seed samples other completions (CUDA's generator, bf16, gradient checkpointing), and 12 steps
    were not enough on an H100 (0.417 < 0.508); the quickstart as shipped runs 30 steps, and on an H100 those took
    the reward from 0.271 to 1.000 in 34 s. The threshold below is the same on both."""
    import torch

    return 30 if torch.cuda.is_available() else 12


@pytest.mark.slow
def test_quickstart_learns_and_writes_every_artifact(outputs):  # noqa: F811
    steps = learning_steps()
    half = steps // 2
    rc = run_node(outputs, None, "run_name=qs", f"training_parameters.max_steps={steps}",
                  f"training_parameters.save_steps={half}")
    assert rc == 0
    run = outputs / "qs"
    for name in ("resolved_config.yaml", "run.log", "metrics.jsonl", "reward_curve.png", "manifest.json",
                 "summary.json", "high_scoring_examples.jsonl", "final_adapter/adapter_config.json",
                 "final_adapter/adapter_model.safetensors", f"checkpoint-{half}/COMPLETE",
                 f"checkpoint-{steps}/COMPLETE"):
        assert (run / name).is_file(), name
    assert (run / "reward_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert yaml.safe_load((run / "resolved_config.yaml").read_text())["training_parameters"]["max_steps"] == steps
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    assert trainer_state(run / f"checkpoint-{steps}")["global_step"] == steps

    records = step_records(run)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for rec in records:   # per-component and combined reward on every step
        assert 0.0 <= rec["rewards/quickstart/keyword/mean"] <= 1.0
        assert rec["rewards/combined/mean"] == pytest.approx(rec["rewards/quickstart/keyword/mean"])
    rewards = [r["rewards/combined/mean"] for r in records]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last >= first + 0.3, rewards                       # the keyword reward clearly rises (seed 42)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps and summary["resumed_from"] is None
    assert summary["reward"]["last"] > summary["reward"]["first"]
    assert set(summary["outputs"]) >= {"final_adapter", "metrics", "reward_curve", "high_scores"}
    log_text = (run / "run.log").read_text()
    assert f"GRPO run finished: {steps} steps" in log_text and "reward (combined, mean): first" in log_text

    saved = list(read_jsonl(run / "high_scoring_examples.jsonl"))
    assert saved and all(r["reward"] >= 1.0 and "Joy" in r["completion"] for r in saved)
    assert all(1 <= r["step"] <= steps for r in saved)


@pytest.mark.slow
def test_final_adapter_loads_with_peft_and_keeps_the_chat_template(outputs, tmp_path):  # noqa: F811
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = quickstart_config(max_steps=2, save_steps=2, chat_template=CUSTOM_TEMPLATE)
    cfg["logging"]["log_completions_every"] = 1
    cfg["run_name"] = "tmpl"
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    run = outputs / "tmpl"
    # the template was used in training: the logged sample prompt is rendered with it
    assert "### user: " in (run / "run.log").read_text()

    final = run / "final_adapter"
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.chat_template == CUSTOM_TEMPLATE
    base_dir = next((outputs / ".cache").glob("tiny-*"))
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    ids = tok("### user: hello\n### assistant:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base_logits = base(ids).logits
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), final)
    with torch.no_grad():
        tuned_logits = model(ids).logits
    assert tuned_logits.shape == base_logits.shape
    assert not torch.allclose(tuned_logits, base_logits)      # the trained LoRA weights are in the adapter


def test_unsloth_backend_without_cuda_is_a_config_error(outputs, tmp_path, capsys):  # noqa: F811
    """On a machine without CUDA (or without unsloth) the run stops with exit 2 before any model loads."""
    from pipelines.grpo.model import cuda_available
    if cuda_available():
        pytest.skip("CUDA is present: the unsloth backend may legitimately run")
    cfg = quickstart_config(max_steps=1, save_steps=1)
    cfg.update(run_name="needs-gpu")
    cfg["model"]["backend"] = "unsloth"
    assert run_node(outputs, write_super(tmp_path, cfg)) == 2
    err = capsys.readouterr().err
    assert "model.backend" in err and "backend: transformers" in err
    assert not (outputs / "needs-gpu").exists()   # nothing half-run is left to block a rerun
