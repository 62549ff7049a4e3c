"""Registration of the GRPO node: its schema, checks, --validate summary and run function."""
from __future__ import annotations

from pipelines.common.problems import Problem
from pipelines.common.rundir import check_run_dir_free
from pipelines.grpo.checks import check_config, check_partial
from pipelines.grpo.config import GRPOConfigFile
from pipelines.registry import NodeContext, NodeSpec


def _check(cfg: GRPOConfigFile, ctx: NodeContext) -> list[Problem]:
    problems = check_config(cfg, ctx.config_file)
    resume = cfg.training_parameters.resume_from_checkpoint not in (False, None, "false")
    if not ctx.launched:  # a launched rank runs in the folder its parent process just opened
        problems += check_run_dir_free(ctx.run_dir, resume, ctx.config_file)
    return problems


def _inspect(cfg: GRPOConfigFile, ctx: NodeContext) -> list[str]:
    from pipelines.grpo.data import inspect_datasets

    return inspect_datasets(cfg, ctx.config_file)


def _check_partial(raw: dict, ctx: NodeContext) -> list[Problem]:
    return check_partial(raw, ctx.config_file)


NODE = NodeSpec(name="grpo", config_model=GRPOConfigFile, run="pipelines.grpo.node:run",
                check=_check, check_partial=_check_partial, inspect=_inspect,
                outputs=("final_adapter", "metrics", "reward_curve", "high_scores"))
