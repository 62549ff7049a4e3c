"""``run_pipeline.py --preflight`` on the quickstart (CPU, tiny model): one real worst-case step, the report,
nothing written to the run dir; and the out-of-memory message that names the keys to change."""
from __future__ import annotations

import re

import pytest

from pipelines.grpo.preflight import PreflightOOM, longest_rows, oom_guard, preflight_config
from tests.grpo.test_model_seams import QUICKSTART, config
from tests.grpo.training_runs import outputs, run_node, tiny_cache  # noqa: F401


@pytest.mark.slow
def test_preflight_on_the_quickstart(outputs, capsys):  # noqa: F811
    rc = run_node(outputs, None, "run_name=pf", extra=["--preflight"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "[0] grpo: preflight" in out and "OK: preflight passed for 1 node(s)" in out
    assert re.search(r"peak memory: \d+\.\d\d GiB \(peak RSS of this process \(CPU run\)\)", out), out
    step = re.search(r"step time: (\d+\.\d\d)s per optimizer step \((\d+) new tokens, (\d+) tokens/s\)", out)
    assert step, out
    # quickstart: 8 completions (2 prompts x 4 generations) forced to max_completion_length 16
    assert int(step.group(2)) == 8 * 16 and float(step.group(1)) > 0
    assert "completions forced to 16 tokens" in out and "2 prompt(s) x 4 generations" in out
    assert re.search(r"projected wall time for 30 steps: \dh\d\dm\d\ds", out), out
    assert "checkpoint: saved and reloaded" in out
    assert not (outputs / "pf").exists()     # the run dir of the real run stays untouched


def test_preflight_batch_is_the_longest_prompts(tiny_model_dir):
    from pipelines.grpo.model import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), None)
    rows = [{"prompt": [{"role": "user", "content": "x " * n}], "n": n} for n in (3, 40, 7, 25, 1)]
    picked, longest = longest_rows(rows, tok, 2)
    assert [r["n"] for r in picked] == [40, 25]
    text = tok.apply_chat_template(rows[1]["prompt"], tokenize=False, add_generation_prompt=True)
    assert longest == len(tok(text, add_special_tokens=False)["input_ids"]) > 40
    assert [r["n"] for r in longest_rows(rows[:1], tok, 3)[0]] == [3, 3, 3]   # fewer rows than the batch


def test_preflight_config_forces_full_length_and_one_step():
    cfg = config(QUICKSTART, training_parameters={"model_stop_sequences": ["</answer>"],
                                                  "generation_kwargs": {"top_k": 5}})
    hf = preflight_config(cfg, vllm=False).training_parameters
    assert (hf.max_steps, hf.save_strategy, hf.model_stop_sequences) == (3, "no", [])   # warm-up + 2 timed (issue 26)
    assert hf.model_extra["generation_kwargs"] == {"top_k": 5, "min_new_tokens": 16}
    assert preflight_config(cfg, vllm=True).training_parameters.model_extra["generation_kwargs"]["min_tokens"] == 16


def test_out_of_memory_names_the_keys_that_lower_memory():
    import torch

    cfg = config(QUICKSTART)
    with pytest.raises(PreflightOOM) as info:
        with oom_guard(cfg, "the training step"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    text = str(info.value)
    assert text.startswith("out of memory during the training step: CUDA out of memory. Tried to allocate 2.00 GiB")
    for key in ("per_device_train_batch_size (8)", "num_generations (4)", "max_completion_length (16)",
                "max_prompt_length (64)", "model.gpu_memory_utilization (0.6)", "model.load_in_4bit (false)",
                "gradient_checkpointing"):
        assert key in text, key
    with pytest.raises(ValueError):   # anything else passes through unchanged
        with oom_guard(cfg, "x"):
            raise ValueError("not memory")


@pytest.mark.slow
def test_preflight_of_a_search_projects_every_member_step(outputs, capsys):  # noqa: F811
    from pathlib import Path

    hpo = Path(__file__).resolve().parents[2] / "pipelines" / "grpo" / "configs" / "super_config_hpo.yaml"
    rc = run_node(outputs, hpo, "run_name=pfh", extra=["--preflight"])
    out = capsys.readouterr().out
    assert rc == 0, out
    # quickstart_hpo: 3 members x 2 generations x 10 steps
    assert "one population member; the projection covers all 60 member-steps" in out
    assert re.search(r"projected wall time for 60 steps: ", out) and "backend transformers" in out
    assert not (outputs / "pfh").exists()
