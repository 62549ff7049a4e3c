"""Exceptions the reward stack raises to the trainer."""


class CircuitBreakerOpen(RuntimeError):
    """Too many reward calls of one batch failed after retries (e.g. an LLM judge is down).

    The trainer saves a checkpoint and stops the run with this message instead of training on fallback scores.
    """


class RewardFunctionError(RuntimeError):
    """A reward function raised; the message names the dataset and the function."""
