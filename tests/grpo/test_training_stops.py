"""Stop sequences on the transformers backend: the stopping criterion inside generate, and a training run where completions end at the stop, rewards see the cut text and stopped completions are not
counted as truncated."""
from __future__ import annotations

import pytest

from pipelines.common.stops import stopping_generate
from tests.grpo.training_runs import (high_scores, outputs, quickstart_config, run_node,  # noqa: F401
                                      step_records, tiny_cache, write_super)

STOP = "e"            # a letter the random tiny model writes in most 12-token completions


def text_length(**_):
    """Reward: the length of the completion text the reward stack received."""
    def reward(prompts, completions, **kwargs):
        return [float(len(c[-1]["content"] if isinstance(c, list) else c)) for c in completions]
    return reward


@pytest.fixture(scope="module")
def tok(tiny_cache):  # noqa: F811
    from pipelines.grpo.model import load_tokenizer

    return load_tokenizer(str(next(tiny_cache.glob("tiny-*"))), None)


def test_stopping_generate_ends_sequences_at_the_stop(tok, tiny_cache):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(next(tiny_cache.glob("tiny-*"))))
    enc = tok(["Describe the sea."] * 6, return_tensors="pt")

    def sample(stops):
        torch.manual_seed(0)
        with stopping_generate(model, tok, stops):
            out = model.generate(**enc, max_new_tokens=24, do_sample=True, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        rows = out[:, enc["input_ids"].shape[1]:].tolist()
        return [[t for t in r if t != tok.pad_token_id] for r in rows]

    free, stopped = sample([]), sample([STOP])
    assert "generate" not in vars(model)                           # the instance is restored afterwards
    ended = 0
    for full, short in zip(free, stopped):
        assert short == full[:len(short)]                          # same sampling, only cut short
        if STOP in tok.decode(full):
            # generation stopped at the token completing the first stop
            assert STOP in tok.decode(short) and STOP not in tok.decode(short[:-1])
            ended += len(short) < len(full)
    assert ended >= 2


@pytest.mark.slow
def test_training_with_a_stop_sequence(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=3, save_steps=3, model_stop_sequences=[STOP])
    cfg["run_name"] = "stops"
    cfg["reward"]["score_save_threshold"] = 0.0
    cfg["datasets"][0]["reward_funcs"] = [{"name": "tests.grpo.test_training_stops:text_length"}]
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    run = outputs / "stops"
    records = high_scores(run)
    assert len(records) == 3 * 8
    stopped = [r for r in records if STOP in r["completion"]]
    assert len(stopped) >= 8
    for rec in records:
        text = rec["completion"]
        assert rec["reward"] == len(text)                            # the reward saw exactly this text
        assert STOP not in text[:-1]                                 # cut right after the first stop
    for step in step_records(run):
        in_step = [r for r in records if r["step"] == step["step"]]
        not_stopped = sum(1 for r in in_step if not r["completion"].endswith(STOP))
        # a completion ended by the stop is not truncated: at most the others can be
        assert step["completions/clipped_ratio"] * len(in_step) <= not_stopped + 1e-9
    assert min(s["completions/clipped_ratio"] for s in step_records(run)) < 1.0
