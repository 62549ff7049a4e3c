"""USER-EDITABLE: reward functions. Add yours here, then name them in a dataset's ``reward_funcs``.

The contract
============
A ``reward_funcs`` entry names one of two things; the registry tells them apart by signature and logs which
it saw (``reward 'x' (registry): a factory, ...``):

1. A **plain reward function**, TRL's own contract: a function with a ``completions`` (or ``prompts`` /
   ``completion_ids``) parameter, called on every batch. Functions written for TRL work unchanged, by import
   path or registered::

       def reward_len(completions, **kwargs):            # from the TRL course notes
           return [-abs(20 - len(completion)) for completion in completions]

       reward_funcs:
         - name: my_rewards:reward_len                   # package.module:function, importable from the run
           text_completions: true                        # completions as strings, not message lists
         - name: trl.rewards:think_format_reward         # TRL's shipped rewards, by path...
         - name: accuracy_reward                         # ...or by their own names (needs math-verify)

   Entry keys other than name/weight/gate/text_completions set the function's own parameters (``bonus: 2``
   for ``def f(completions, bonus=0.0, **kwargs)``).

2. A **factory**: a function without those parameters that takes the entry's keys and returns the reward
   function. It runs once per run (so load models, compile regexes or open clients there, not per row)::

       reward_funcs:
         - name: mentions_topic          # the name you registered
           topic: "rivers"               # -> mentions_topic(topic="rivers")
           weight: 2.0                   # optional, read by the engine (weighted_sum), not by the factory
           gate: false                   # optional: true = a 0 from this reward zeroes the combined reward

Either way the keys are bound to the signature and checked against its type annotations at ``--validate``
(``max_penalty: lots`` for ``max_penalty: float`` is an error naming the key), and
``@register_reward_function("name")`` registers it under a name (``kind="factory"`` / ``"function"`` where the
signature cannot tell).

What a reward function gets and returns
---------------------------------------
It scores each completion with a finite float, or ``None`` for "not applicable" (left out of the combination;
if every reward of a completion says ``None``, TRL ignores that sample). ``inf`` and ``NaN`` are errors. A
reward that raises stops the run with an error naming the dataset and the function: return 0.0 yourself for
completions that merely fail your check. Two calling forms:

* **Batch form** (TRL's), sync or ``async def``::

      fn(prompts, completions, **columns) -> list[float | None]     # one score per completion, in order

  ``prompts[i]`` is the chat prompt (a list of ``{"role", "content"}``); ``completions[i]`` is what TRL
  produced, for chat prompts ``[{"role": "assistant", "content": "..."}]`` (``completion_text()`` gives the
  string, or register with ``text_completions=True`` / set ``text_completions: true`` on the entry to get
  strings). ``columns`` holds a list per data column (``answer``, ``dataset_index``, ``row_id``, your extra
  columns...) plus ``completion_ids`` and ``trainer_state``; always accept ``**kwargs``. ``async def`` rewards
  (HTTP calls, judges) of a batch all run concurrently.

* **Per-sample form**, decorated with ``@per_sample``, sync or ``async def``::

      fn(prompt, completion, **row) -> float | None

  ``completion`` is the completion's text and ``row`` that completion's data columns.

Plain ``def`` rewards run in worker threads, each call bounded by ``reward.sync_timeout_s`` (default 300 s;
past it the run stops with a reward error naming the function and saves a checkpoint). A reward whose own
timeouts need the main thread (``signal.alarm``, as math-verify uses) registers with ``main_thread=True``.

Tools and environments
----------------------
A dataset may also give the model **tools** (``datasets[i].tools``) or an **environment**
(``datasets[i].environment``); TRL then runs the model's tool calls during each rollout and feeds the results
back (multi-turn). A tool is a plain function with a type hint on every parameter and a docstring with an
``Args:`` line for each (TRL shows the model a JSON schema built from them); what it returns is the tool
result, what it raises is shown to the model as an error and counted in ``tools/errors/<reason>``. Name it in a
config by import path (``my_tools:lookup``) or register it here with ``@register_tool("name")`` (worked example
5). An environment is a class: one instance per rollout, ``reset(**row)`` before it (return None, or text to
append to the user message), its public methods are its tools, and an optional ``get_reward()`` adds a score
(worked example 6). The built-in tools are in ``pipelines/rewards/tools.py`` (``calculator``).

Try a reward without a GPU: ``.venv/bin/python -m cli_utils.score_completions --config CONFIG --sample 20``.
The built-in rewards are in ``pipelines/rewards/builtin.py``: ``keyword``, ``regex_match``,
``answer_match``, ``countdown_equation``, ``think_answer_format``, ``cot_format``, ``length_target``,
``repetition_penalty``; the LLM judges ``llm_judge`` and ``generic_llm_reward`` (Augmentoolkit's scoring) are in
``pipelines/rewards/judge/``; TRL's shipped rewards (``think_format_reward``, ``accuracy_reward``,
``reasoning_accuracy_reward``, ``cosine_scaled_reward``, ``soft_overlong_punishment``,
``repetition_penalty_reward``) in ``pipelines/rewards/trl_rewards.py``. They are always registered: editing
or trimming this file never removes them.
"""
from __future__ import annotations

import asyncio

from pipelines.rewards.forms import completion_text, per_sample
from pipelines.rewards.registry import register_reward_function
from pipelines.rewards.tools import register_tool

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


# ---------------------------------------------------------- worked example 3: plain reward function (TRL's form)


@register_reward_function("example_length_penalty", text_completions=True)
def length_penalty(completions, ideal: int = 20, **kwargs):
    """``-|ideal - len(completion)|`` in characters: the TRL course's length reward, registered as it is.

    No factory: the registry sees the ``completions`` parameter. ``text_completions=True`` hands it strings,
    so ``len`` counts characters, not messages. ``ideal`` can be set from the entry (``ideal: 50``).
    """
    return [-float(abs(ideal - len(completion))) for completion in completions]


# ---------------------------------------------------------------------- worked example 4: per-sample form


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


# ------------------------------------------------------------- worked example 5: a tool (datasets[].tools)


@register_tool("example_word_count")
def word_count(text: str) -> int:
    """Count the words of a text.

    Args:
        text: The text whose words are counted.

    Returns:
        The number of words.
    """
    return len(text.split())


# ------------------------------------------------------ worked example 6: an environment (datasets[].environment)


class GuessTheNumber:
    """A guessing game: the model calls ``guess`` until it finds the row's ``answer`` (default 7); the reward
    is 1.0 when it did. Name it as ``environment: pipelines.grpo.reward_functions:GuessTheNumber``."""

    def __init__(self) -> None:
        self.secret, self.solved = 7, False   # built once, reused across rollouts: reset() starts each one

    def reset(self, **row) -> str:
        """Start a rollout for ``row`` (every data column, as keyword arguments)."""
        self.secret = int(row.get("answer") or 7)
        self.solved = False
        return " Find the number with the `guess` tool."   # appended to the last user message

    def guess(self, number: int) -> str:
        """Guess the secret number.

        Args:
            number: The number to try.

        Returns:
            "higher", "lower" or "correct".
        """
        if number == self.secret:
            self.solved = True
            return "correct"
        return "higher" if number < self.secret else "lower"

    def get_reward(self) -> float:
        """1.0 when the secret was found: TRL adds it to the reward with weight 1 (logged as GuessTheNumber)."""
        return 1.0 if self.solved else 0.0
