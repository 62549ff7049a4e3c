"""Registration of the GRPO node: its schema, rules, run-dir check, --validate summary, judge probe and run
function. The functions here are public: the ``grpo_hpo`` node (a GRPO config plus ``hpo``) builds on them."""
from __future__ import annotations

from typing import Any

from pipelines.common.node import NodeContext, NodeSpec
from pipelines.common.problems import Problem
from pipelines.common.rundir import check_run_dir_free
from pipelines.grpo.checks import RULES
from pipelines.grpo.compat import normalise
from pipelines.grpo.config import RESUME_HINT, GRPOConfigFile
from pipelines.grpo.calibration import calibrate_judges
from pipelines.rewards.checks import check_judges


def check_run_dir(cfg: GRPOConfigFile, ctx: NodeContext) -> list[Problem]:
    """A run dir that already holds a run is refused unless the config resumes it; a resume path must be a
    complete checkpoint."""
    if ctx.launched or ctx.preflight:  # a launched rank runs in the folder its parent just opened; a preflight
        return []                      # writes nothing there, so it may try new settings for a resume
    from pipelines.grpo.checkpoints import latest_checkpoint, resume_path_problems, stopped_before_first_checkpoint

    resume = resume_path_problems(cfg.training_parameters.resume_from_checkpoint, ctx.config_file)
    if stopped_before_first_checkpoint(ctx.run_dir):   # nothing to resume: running it again restarts it
        return resume
    hint = RESUME_HINT
    if ctx.run_dir.is_dir() and latest_checkpoint(ctx.run_dir) is None:
        hint += " (it has no checkpoint yet: that starts it again from step 0, keeping its run.log)"
    return check_run_dir_free(ctx.run_dir, cfg.training_parameters.resuming, ctx.config_file, hint) + resume


def inspect(cfg: GRPOConfigFile, ctx: NodeContext, with_steps: bool = True) -> list[str]:
    """The --validate summary: every dataset's counts and an example prompt (rubric placeholders checked against
    its columns), the steps the run will train (``with_steps``; grpo_hpo sets its own), the effective values."""
    from pipelines.common.problems import ConfigError
    from pipelines.data.summary import inspect_datasets
    from pipelines.grpo.inputs import data_spec
    from pipelines.rewards.checks import check_rubric_columns, reward_lines

    columns: dict[int, set[str]] = {}
    totals: dict[str, int] = {}
    examples: dict[int, dict[str, Any]] = {}
    lines = inspect_datasets(data_spec(cfg), ctx.config_file, columns, totals, full_scan=ctx.full_scan,
                             examples=examples)
    lines += reward_lines(cfg.datasets)
    problems = check_rubric_columns(cfg.datasets, columns, ctx.config_file)
    if problems:
        raise ConfigError(problems, lines)
    if with_steps:
        lines.append(steps_line(cfg, totals.get("train_rows", 0)))
        # with a budget, --check-judges also sends each judge one request sized like a training call, to measure
        lines += budget_lines(cfg, totals.get("train_rows", 0), examples,
                              measure=ctx.check_judges and cfg.budget is not None)
    from pipelines.grpo.tools import tool_lines

    return lines + effective_lines(cfg) + tool_lines(cfg)


def budget_lines(cfg: GRPOConfigFile, rows: int, examples: dict[int, dict[str, Any]], measure: bool) -> list[str]:
    """The projected judge spend over the planned steps (``measure``: one sized request per judge), and the
    caps in force."""
    from pipelines.grpo.budget import spend_lines
    from pipelines.grpo.checks import planned_steps

    lines = spend_lines(cfg, planned_steps(cfg, rows), examples, measure)
    b = cfg.budget
    if b is not None:
        caps = [f"{k} {getattr(b, k):g}" for k in ("max_usd", "max_judge_usd", "max_gpu_hours")
                if getattr(b, k) is not None]
        rate = f"machine {b.gpu_usd_per_hour:g} USD/hour" if b.gpu_usd_per_hour is not None else "machine unpriced"
        lines.append(f"budget: {rate}; caps: {', '.join(caps) or 'none'} (a crossed cap stops the run, exit 3); "
                     "--preflight adds the machine time")
    return lines


def steps_line(cfg: GRPOConfigFile, rows: int) -> str:
    """How many steps the run trains and why (max_steps, or num_train_epochs over ``rows`` training rows)."""
    from pipelines.grpo.checks import planned_steps, steps_per_epoch

    tp = cfg.training_parameters
    if tp.max_steps is not None:
        return f"steps: {tp.max_steps} (max_steps; num_train_epochs is not used)"
    return (f"steps: {planned_steps(cfg, rows)} (num_train_epochs {tp.num_train_epochs:g} x "
            f"{steps_per_epoch(cfg, rows)} steps per pass over {rows} training rows)")


def effective_lines(cfg: GRPOConfigFile) -> list[str]:
    """The values a run uses where a config may leave them implicit or have them translated (compat)."""
    tp, reward = cfg.training_parameters, cfg.reward
    return [f"effective: compat {cfg.compat}; per_device_train_batch_size {tp.per_device_train_batch_size}, "
            f"num_generations {tp.num_generations}, gradient_accumulation_steps {tp.gradient_accumulation_steps}; "
            f"max_prompt_length {tp.max_prompt_length} + max_completion_length {tp.max_completion_length}, "
            f"max_seq_length {cfg.model.max_seq_length}; optim {tp.optim}",
            f"effective: percentages {', '.join(f'{d.percentage:.4g}' for d in cfg.datasets)} of total_rows "
            f"{cfg.dataset_settings.total_rows} (shortfall: {cfg.dataset_settings.shortfall}); combination "
            f"{_name(reward.combination_function)}, scaling {_name(reward.scaling_function)}"] + sampling_lines(cfg)


def sampling_lines(cfg: GRPOConfigFile) -> list[str]:
    """Dynamic sampling and difficulty weighting, when configured."""
    settings, lines = cfg.dataset_settings, []
    if settings.dynamic_sampling.enabled:
        lines.append(f"effective: dynamic sampling on: zero-spread groups replaced by fresh rows, up to "
                     f"{settings.dynamic_sampling.max_extra_batches} extra generation batch(es) per step")
    difficulty = settings.difficulty
    if difficulty.band is not None:
        lines.append(f"effective: difficulty band {list(difficulty.band)} of solved rates (solved: combined reward "
                     f">= {difficulty.solved_at:g}) from {difficulty.from_}; weight {difficulty.weight_outside:g} "
                     "outside it")
    return lines


def _name(function: Any) -> str:
    """A post-processor given as a name or as {name, kwargs}."""
    return function if isinstance(function, str) else function.name


NODE = NodeSpec(name="grpo", config_model=GRPOConfigFile, run="pipelines.grpo.node:run", rules=RULES,
                normalize=normalise,
                check=check_run_dir, check_needs=("training_parameters",), inspect=inspect,
                check_judges=check_judges, calibrate_judges=calibrate_judges, resume_hint=RESUME_HINT,
                preflight="pipelines.grpo.preflight:run_preflight",
                outputs=("final_adapter", "metrics", "reward_curve", "high_scores", "difficulty"))
