"""Stop sequences: where a completion ends, in text and in token ids, the same for every node and backend.

TRL 1.14 has no stop-string option, and ``generate(stop_strings=...)`` fails inside GRPOTrainer because TRL
passes no tokenizer to ``generate``. So stops are handled in two parts (vLLM/Unsloth take them natively):

- during generation, a ``StopStringCriteria`` (built with our tokenizer) ends each sequence early, which
  saves compute; transformers then pads the finished rows;
- after generation, :func:`cut_ids_at_stop` cuts each completion right after the token that completes the
  earliest stop string and appends EOS, so TRL neither trains on the padding nor counts the completion as
  truncated; :func:`cut_text_at_stop` cuts the decoded text right after the stop string, which is what rewards
  see (the rollout node cuts its generated text with it too).

The stop string itself is kept in the completion (as ``include_stop_str_in_output`` does on vLLM), so that a
reward looking for a closing tag such as ``</answer>`` finds it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Sequence


def stop_end(text: str, stops: Sequence[str]) -> Optional[int]:
    """Index just past the earliest-ending stop string in ``text``, or None."""
    best: Optional[int] = None
    for stop in stops:
        if not stop:
            continue
        pos = text.find(stop)
        if pos >= 0 and (best is None or pos + len(stop) < best):
            best = pos + len(stop)
    return best


def cut_text_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut right after its earliest-ending stop string, which is kept (unchanged when there is none),
    and whether one was found."""
    end = stop_end(text, stops)
    return (text, False) if end is None else (text[:end], True)


def cut_ids_at_stop(ids: list[int], decode: Callable[[list[int]], str], stops: Sequence[str],
                eos_id: int) -> tuple[list[int], bool]:
    """Cut ``ids`` after the token that completes the first stop string and append ``eos_id``.

    Returns ``(ids, stopped)``. A binary search over prefixes finds the shortest one whose text holds a stop
    (a prefix holding a stop keeps holding it as tokens are added), so this decodes O(log n) times.
    """
    if not stops or not ids or stop_end(decode(ids), stops) is None:
        return ids, False
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if stop_end(decode(ids[:mid]), stops) is not None:
            hi = mid
        else:
            lo = mid + 1
    return list(ids[:lo]) + [eos_id], True


def cut_completions(completion_ids: list[list[int]], tokenizer: Any, stops: Sequence[str],
                    eos_id: int) -> tuple[list[list[int]], int]:
    """Apply :func:`cut_ids_at_stop` to a batch; returns the new ids and how many were stopped."""

    def decode(ids: list[int]) -> str:
        # Special tokens are kept so that a stop string spelled like a special token is found too.
        return tokenizer.decode(ids, skip_special_tokens=False)

    out, stopped = [], 0
    for ids in completion_ids:
        new, hit = cut_ids_at_stop(list(ids), decode, stops, eos_id)
        out.append(new)
        stopped += int(hit)
    return out, stopped


def trim_completions(completions: list[Any], stops: Sequence[str]) -> list[Any]:
    """Trim decoded completions (strings, or conversational ``[{"role", "content"}]``) at their stop."""
    out = []
    for completion in completions:
        if isinstance(completion, str):
            out.append(cut_text_at_stop(completion, stops)[0])
        elif isinstance(completion, list) and completion and isinstance(completion[-1], dict):
            last = dict(completion[-1])
            if isinstance(last.get("content"), str):
                last["content"] = cut_text_at_stop(last["content"], stops)[0]
            out.append([*completion[:-1], last])
        else:
            out.append(completion)
    return out


def total_length_criteria(prompt_lengths: Any, padded_width: int, max_total_tokens: int) -> Any:
    """A stopping criterion ending each row once its prompt (unpadded) plus its new tokens reach
    ``max_total_tokens``: vLLM's ``max_model_len`` cap, for HF generate (so a long prompt gets a shorter
    completion, and a row cut this way ends without EOS and counts as truncated, as on vLLM)."""
    from transformers import StoppingCriteria

    class TotalLength(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = input_ids.shape[1] - padded_width
            return (prompt_lengths.to(input_ids.device) + generated) >= max_total_tokens

    return TotalLength()


@contextlib.contextmanager
def stopping_generate(model: Any, tokenizer: Any, stops: Sequence[str],
                      max_total_tokens: Optional[int] = None) -> Iterator[None]:
    """Within the block, ``model.generate`` also stops each sequence at a stop string, and (with
    ``max_total_tokens``) where its prompt plus completion reach that many tokens.

    TRL calls ``unwrapped_model.generate(**inputs, generation_config=...)`` with no way to add a stopping
    criterion, so the bound method is shadowed on this one instance for the duration of the call and restored
    afterwards. (Hand-written because neither TRL nor transformers exposes a hook for it.)
    """
    if not stops and max_total_tokens is None:
        yield
        return
    from transformers import StopStringCriteria, StoppingCriteriaList

    fixed = [StopStringCriteria(tokenizer=tokenizer, stop_strings=list(stops))] if stops else []
    original = model.generate
    had_attr = "generate" in vars(model)

    def generate(*args: Any, **kwargs: Any) -> Any:
        extra = kwargs.pop("stopping_criteria", None) or StoppingCriteriaList()
        criteria = [*extra, *fixed]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if max_total_tokens is not None and ids is not None:
            mask = kwargs.get("attention_mask")
            lengths = mask.sum(dim=-1) if mask is not None else ids.new_full((ids.shape[0],), ids.shape[1])
            criteria.append(total_length_criteria(lengths, ids.shape[1], max_total_tokens))
        return original(*args, stopping_criteria=StoppingCriteriaList(criteria), **kwargs)

    object.__setattr__(model, "generate", generate)
    try:
        yield
    finally:
        if had_attr:
            object.__setattr__(model, "generate", original)
        else:
            object.__delattr__(model, "generate")
