"""Exceptions the reward stack raises to the trainer."""


class CircuitBreakerOpen(RuntimeError):
    """Too many reward calls of one batch failed after retries (e.g. an LLM judge is down).

    The trainer saves a checkpoint and stops the run with this message instead of training on fallback scores.
    ``resumable``: the run can be continued once the cause is fixed; the runner then prints the node's own
    resume hint.
    """

    resumable = True


class RewardFunctionError(RuntimeError):
    """A reward function raised; the message names the dataset and the function."""


class RewardTimeout(RewardFunctionError):
    """A synchronous reward function did not return within ``reward.sync_timeout_s``.

    The trainer saves a checkpoint (the step had not updated anything) and stops; the run resumes once the
    reward is fixed or the limit raised.
    """

    resumable = True
