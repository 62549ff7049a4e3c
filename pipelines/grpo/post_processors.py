"""USER-EDITABLE: combination and scaling functions.

Name them in the config: ``reward.combination_function`` and ``reward.scaling_function``, either as a name
(``sum``) or as ``{name: clip, kwargs: {low: -1, high: 1}}``. The kwargs are checked against the function's
signature at ``--validate`` time.

Combination functions — one completion's scores -> one number
-------------------------------------------------------------
``fn(scores: list[Score], **kwargs) -> float | None``. Each ``Score`` is a ``float`` (so ``sum(scores)`` and
``min(scores)`` just work) that also carries ``.name`` (the component, e.g. ``quickstart/keyword``), ``.weight`` and
``.gate`` from its ``reward_funcs`` entry. Before your function runs, the engine has already:

* left out every reward that returned ``None`` (if all did, the combined reward is ``None`` and TRL ignores
  the sample; your function is not called);
* applied gates: if an entry with ``gate: true`` scored 0, the combined reward is 0.0 (not called either).

Scaling functions — the batch of combined rewards -> the rewards TRL trains on
-----------------------------------------------------------------------------
``fn(values: list[float], **kwargs) -> list[float]``, same length and order. ``None`` rewards are taken out
before the call and put back after it. The batch is every completion of one reward call on one process (all
groups of a generation batch), so batch-level scalings mix prompts; TRL then normalises advantages per group.

The built-ins (``sum``, ``mean``, ``weighted_sum``, ``min``, ``product``; ``identity``, ``zscore``, ``minmax``,
``rank``, ``clip``) live in ``pipelines/rewards/builtin_post_processors.py`` and are always registered: editing or
trimming this file never removes them. A name registered here that a built-in already has is refused.

Worked example (register it, then ``combination_function: {name: soft_and, kwargs: {floor: 0.1}}``)::

    @register_combination_function("soft_and")
    def soft_and(scores, floor: float = 0.0):
        return max(floor, math.prod(scores))
"""
from __future__ import annotations

import math  # noqa: F401  (for functions like the worked example above)

from pipelines.rewards.registry import register_combination_function, register_scaling_function  # noqa: F401


# Register your own functions below.
