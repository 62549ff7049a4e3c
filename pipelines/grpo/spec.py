"""Registration of the GRPO node: its schema, rules, run-dir check, --validate summary, judge probe and run
function. The functions here are public: the ``grpo_hpo`` node (a GRPO config plus ``hpo``) builds on them."""
from __future__ import annotations

from pipelines.common.node import NodeContext, NodeSpec
from pipelines.common.problems import Problem
from pipelines.common.rundir import check_run_dir_free
from pipelines.grpo.checks import RULES
from pipelines.grpo.config import RESUME_HINT, GRPOConfigFile
from pipelines.rewards.checks import check_judges


def check_run_dir(cfg: GRPOConfigFile, ctx: NodeContext) -> list[Problem]:
    """A run dir that already holds a run is refused unless the config resumes it."""
    if ctx.launched:  # a launched rank runs in the folder its parent process just opened
        return []
    return check_run_dir_free(ctx.run_dir, cfg.training_parameters.resuming, ctx.config_file, RESUME_HINT)


def inspect(cfg: GRPOConfigFile, ctx: NodeContext) -> list[str]:
    """The --validate summary: every dataset's counts and an example prompt."""
    from pipelines.common.problems import ConfigError
    from pipelines.data.summary import inspect_datasets
    from pipelines.grpo.inputs import data_spec
    from pipelines.rewards.checks import check_rubric_columns

    columns: dict[int, set[str]] = {}
    lines = inspect_datasets(data_spec(cfg), ctx.config_file, columns)
    problems = check_rubric_columns(cfg.datasets, columns, ctx.config_file)
    if problems:
        raise ConfigError(problems, lines)
    return lines


NODE = NodeSpec(name="grpo", config_model=GRPOConfigFile, run="pipelines.grpo.node:run", rules=RULES,
                check=check_run_dir, check_needs=("training_parameters",), inspect=inspect,
                check_judges=check_judges, resume_hint=RESUME_HINT,
                preflight="pipelines.grpo.preflight:run_preflight",
                outputs=("final_adapter", "metrics", "reward_curve", "high_scores"))
