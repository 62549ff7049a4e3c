"""USER-EDITABLE: reward functions. Add yours here, then name them in a dataset's ``reward_funcs``.

The contract
============
You register a **factory**: a function that takes the entry's keyword arguments from the config and returns
the **reward function**. The factory runs once per run (so load models, compile regexes or open clients
there, not per row); its keyword arguments are checked against its signature at ``--validate`` time::

    datasets:
      - path: inputs/my_data.jsonl
        reward_funcs:
          - name: mentions_topic          # the name you registered
            topic: "rivers"               # -> mentions_topic(topic="rivers")
            weight: 2.0                   # optional, read by the engine (weighted_sum), not by the factory
            gate: false                   # optional: true = a 0 from this reward zeroes the combined reward

A reward function scores each completion with a float, or ``None`` for "not applicable" (it is then left
out of the combination; if every reward of a completion says ``None``, TRL ignores that sample). A reward
function that raises stops the run with an error naming the dataset and the function: return 0.0 yourself
for completions that merely fail your check. It comes in one of two forms:

* **Batch form** (TRL's own contract), sync or ``async def``::

      fn(prompts, completions, **columns) -> list[float | None]     # one score per completion, in order

  ``prompts[i]`` is the chat prompt (a list of ``{"role", "content"}``); ``completions[i]`` is what TRL
  produced, for chat prompts ``[{"role": "assistant", "content": "..."}]`` (``completion_text()`` gives the
  string). ``columns`` holds a list per data column (``answer``, ``dataset_index``, ``row_id``, your extra
  columns...) plus ``completion_ids`` and ``trainer_state``; always accept ``**kwargs``. ``async def`` rewards
  (HTTP calls, judges) of a batch all run concurrently.

* **Per-sample form**, decorated with ``@per_sample``, sync or ``async def``::

      fn(prompt, completion, **row) -> float | None

  ``completion`` is the completion's text and ``row`` that completion's data columns.

A function can also be named by import path, ``name: my_package.my_module:my_factory``, without registering.
Try a reward without a GPU: ``.venv/bin/python -m cli_utils.score_completions --config CONFIG --sample 20``.
The built-in rewards are in ``pipelines/rewards/builtin.py``: ``keyword``, ``regex_match``,
``answer_match``, ``countdown_equation``, ``think_answer_format``, ``cot_format``, ``length_target``,
``repetition_penalty``; the LLM judges ``llm_judge`` and ``generic_llm_reward`` (Augmentoolkit's scoring) are in
``pipelines/rewards/judge/``. They are always registered: editing or trimming this file never removes them.
"""
from __future__ import annotations

import asyncio

from pipelines.rewards.forms import completion_text, per_sample
from pipelines.rewards.registry import register_reward_function

# ------------------------------------------------------------------ worked example 1: batch form, synchronous


@register_reward_function("example_mentions_topic")
def mentions_topic(topic: str, score: float = 1.0):
    """``score`` when the completion mentions ``topic`` (case-insensitive), else 0.0."""
    needle = topic.lower()  # prepared once per run, in the factory

    def mentions_topic(prompts, completions, **kwargs):
        return [score if needle in completion_text(c).lower() else 0.0 for c in completions]

    return mentions_topic


# ------------------------------------------------------------------- worked example 2: batch form, async def


@register_reward_function("example_async_length")
def async_length(max_chars: int = 200):
    """1.0 for completions of at most ``max_chars`` characters, else 0.0, computed asynchronously.

    A real async reward would await an HTTP API here; all async rewards of a batch run at the same time.
    """

    async def async_length(prompts, completions, **kwargs):
        await asyncio.sleep(0)  # stands in for `await client.post(...)`
        return [1.0 if len(completion_text(c)) <= max_chars else 0.0 for c in completions]

    return async_length


# ---------------------------------------------------------------------- worked example 3: per-sample form


@register_reward_function("example_echoes_answer")
def echoes_answer(min_overlap: float = 0.5):
    """Share of the reference ``answer``'s words found in the completion, if at least ``min_overlap``, else
    0.0; ``None`` (not applicable) for rows without an answer."""

    @per_sample
    def echoes_answer(prompt, completion, answer=None, **row):
        if not answer:
            return None
        words = set(answer.lower().split())
        overlap = len(words & set(completion.lower().split())) / len(words)
        return overlap if overlap >= min_overlap else 0.0

    return echoes_answer
