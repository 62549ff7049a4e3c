"""The ``--calibrate-judges`` hook of the GRPO-family nodes: the judge calibration gate
(rewards/judge/calibrate.py) on rows drawn from the datasets as training draws them (no tokenizer, no model)."""
from __future__ import annotations

from typing import Any

from pipelines.common.node import NodeContext
from pipelines.common.problems import Problem


def calibrate_judges(cfg: Any, ctx: NodeContext) -> list[Problem]:
    """The gate's problems for this node's judges (exit 2 when any).

    Raises:
        ConfigError: the rows cannot be drawn (an unusable dataset).
    """
    from pipelines.data.sampling import rows_for
    from pipelines.grpo.inputs import data_spec
    from pipelines.rewards.judge.calibrate import calibrate_with_rows

    return calibrate_with_rows(cfg.datasets, lambda need: rows_for(data_spec(cfg), need, ctx.config_file),
                               ctx.config_file, cfg.seed,
                               cfg.budget.judge_prices if cfg.budget is not None else None)
