"""Stop sequences on the transformers backend, inside a real GRPOTrainer on the tiny model."""
from __future__ import annotations

import pytest

from pipelines.grpo.stops import cut_at_stop, stop_end, trim_completions, trim_text


def test_stop_end_and_trim():
    assert stop_end("abc</answer> tail", ["</answer>"]) == len("abc</answer>")
    assert stop_end("a.b!c", ["!", "."]) == 2  # the earliest-ending stop wins
    assert stop_end("nothing", ["."]) is None
    assert trim_text("x. y.", ["."]) == "x."
    assert trim_completions([[{"role": "assistant", "content": "Joy. more"}], "a.b"], ["."]) == \
        [[{"role": "assistant", "content": "Joy."}], "a."]


def test_cut_at_stop_keeps_the_token_that_completes_the_stop():
    pieces = ["Jo", "y", ":", " hi", ".", " more", "."]
    ids = list(range(len(pieces)))
    decode = lambda xs: "".join(pieces[i] for i in xs)  # noqa: E731
    new, hit = cut_at_stop(ids, decode, ["."], eos_id=99)
    assert hit and new == [0, 1, 2, 3, 4, 99]
    assert cut_at_stop(ids, decode, ["zz"], eos_id=99) == (ids, False)
    # A stop string spanning two tokens ends at the token that completes it.
    new, _ = cut_at_stop(ids, decode, ["y:"], eos_id=99)
    assert new == [0, 1, 2, 99]


def test_trainer_stops_completions_and_does_not_count_them_truncated(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from pipelines.grpo.trainer import trainer_class

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # Stops that random text of the tiny vocabulary hits often, so most completions stop early.
    stops = ["e", "a"]
    seen: list[str] = []

    def reward(completions, **_):
        seen.extend(c[0]["content"] for c in completions)
        return [0.0] * len(completions)

    rows = [{"prompt": [{"role": "user", "content": f"Tell me about the sea {i}"}]} for i in range(8)]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_steps=2,
                      max_completion_length=24, learning_rate=1e-3, use_cpu=True, bf16=False, report_to=[],
                      save_strategy="no", logging_steps=1, seed=1, gradient_checkpointing=False)
    trainer = trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows), reward_funcs=[reward],
                              processing_class=tok, peft_config=LoraConfig(r=4, target_modules=["q_proj"]),
                              stop_sequences=tuple(stops))
    trainer.train()
    assert trainer.stopped_completions > 0
    stopped = [t for t in seen if stop_end(t, stops) is not None]
    assert stopped, seen
    # Rewards see each completion cut right after its first stop string.
    assert all(stop_end(t, stops) == len(t) for t in stopped)
    clipped = [h["completions/clipped_ratio"] for h in trainer.state.log_history if "completions/clipped_ratio" in h]
    unstopped_share = 1 - len(stopped) / len(seen)
    # Stopped completions end with EOS: at most the unstopped ones can count as truncated (those that ran to
    # max_completion_length without the model's own EOS).
    assert sum(clipped) / len(clipped) <= unstopped_share + 1e-6
    assert unstopped_share < 0.5
