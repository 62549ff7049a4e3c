"""Stop strings in text and in token ids: one implementation for training, evaluation and rollouts."""
from __future__ import annotations

from pipelines.common.hf import load_tokenizer
from pipelines.common.stops import cut_completions, cut_ids_at_stop, cut_text_at_stop, stop_end, trim_completions


def test_text_helpers_cut_after_the_earliest_ending_stop():
    assert stop_end("abc</a>def</b>", ["</b>", "</a>"]) == 7
    assert stop_end("no stop here", ["</a>"]) is None
    assert cut_text_at_stop("x</answer> tail</answer>", ["</answer>"]) == ("x</answer>", True)
    assert cut_text_at_stop("unchanged", []) == ("unchanged", False)
    conv = [{"role": "assistant", "content": "a STOP b"}]
    assert trim_completions(["a STOP b", conv, None], ["STOP"]) == ["a STOP", [{"role": "assistant",
                                                                              "content": "a STOP"}], None]
    assert conv[0]["content"] == "a STOP b"     # the caller's completion is not mutated


def test_cut_ids_at_stop_keeps_the_token_that_completes_a_stop_spanning_tokens(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir), None, "chat_template")
    eos = tok.eos_token_id
    ids = tok.encode("Joy: the </answer> sea.", add_special_tokens=False)
    cut, stopped = cut_ids_at_stop(ids, tok.decode, ["</answer>"], eos)
    assert stopped and cut[-1] == eos
    assert tok.decode(cut[:-1]) == "Joy: the </answer>"
    assert cut_ids_at_stop(ids, tok.decode, ["<never>"], eos) == (ids, False)
    batch, hits = cut_completions([ids, tok.encode("Joy", add_special_tokens=False)], tok, ["</answer>"], eos)
    assert hits == 1 and batch[0] == cut and tok.decode(batch[1]) == "Joy"


def test_text_cut_takes_the_earliest_stop_and_keeps_it():
    # the stop is kept, as the GRPO node's rewards see it in training (think_answer_format needs "</answer>")
    assert cut_text_at_stop("abc</answer>def<end>", ["<end>", "</answer>"]) == ("abc</answer>", True)
    assert cut_text_at_stop("abc", ["x"]) == ("abc", False)
    assert cut_text_at_stop("xabc", ["x"]) == ("x", True)
