"""The ``--calibrate-judges`` hook of the GRPO-family nodes: draw rows from the datasets whose judges are
calibrated (no tokenizer, no model) and hand them to the reward layer's gate (rewards/judge/calibrate.py)."""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

from pipelines.common.node import NodeContext
from pipelines.common.problems import Problem


def calibrate_judges(cfg: Any, ctx: NodeContext) -> list[Problem]:
    """Rows for each judge's ``calibration.rows``, then the gate; its problems (exit 2 when any).

    Raises:
        ConfigError: the rows cannot be drawn (an unusable dataset).
    """
    from pipelines.data.sampling import sample_datasets
    from pipelines.grpo.inputs import data_spec
    from pipelines.rewards.judge.calibrate import calibrate_judges as gate
    from pipelines.rewards.judge.calibrate import rows_needed

    need = rows_needed(cfg.datasets)
    if not need:
        print("    calibration: no judges configured")
        return []
    spec = data_spec(cfg)
    # Enough total rows that each judged dataset's share (percentage x total) covers what it needs.
    total = max(math.ceil(n / cfg.datasets[i].percentage) for i, n in need.items() if cfg.datasets[i].percentage > 0)
    settings = spec.settings.model_copy(update={"total_rows": total, "shortfall": "take_all"})
    sample = sample_datasets(dataclasses.replace(spec, settings=settings, eval_rows=0), token_counter=None,
                             config_file=ctx.config_file)
    rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in sample.train:
        rows[int(row["dataset_index"])].append(row)
    return gate(cfg.datasets, dict(rows), ctx.config_file, cfg.seed)
