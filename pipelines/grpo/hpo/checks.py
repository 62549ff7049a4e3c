"""Rules of a ``grpo_hpo`` config on top of the grpo node's (no torch/transformers/trl imports)."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pipelines.common.node import Rule
from pipelines.common.problems import Problem, did_you_mean
from pipelines.grpo.checks import NODE_OWNED_KEYS, generation_batch
from pipelines.grpo.config import TrainingParameters
from pipelines.grpo.hpo.config import GRPOHPOConfigFile
from pipelines.grpo.hpo.evolution import valid_group_sizes

# Fields a search must not vary: set by the node, fixed for the whole search (data, schedule length, batch
# shape, checkpointing), or not numbers.
NOT_SEARCHABLE = NODE_OWNED_KEYS | {
    "max_steps", "save_steps", "save_total_limit", "save_strategy", "logging_steps", "max_prompt_length",
    "chat_template", "model_stop_sequences", "per_device_train_batch_size", "gradient_accumulation_steps",
    "steps_per_generation", "generation_batch_size", "seed", "data_seed", "optim", "lr_scheduler_type",
    "num_train_epochs", "gradient_checkpointing", "use_vllm"}


def search_seed(cfg: GRPOHPOConfigFile) -> int:
    return cfg.hpo.seed if cfg.hpo.seed is not None else cfg.seed


def check_search_space(cfg: GRPOHPOConfigFile, file: str) -> list[Problem]:
    from pipelines.grpo.trl_fields import grpo_config_fields

    known = grpo_config_fields()
    own = set(TrainingParameters.model_fields)
    problems = []
    for name, space in cfg.hpo.search_space.items():
        key = f"hpo.search_space.{name}"
        if name in NOT_SEARCHABLE:
            problems.append(Problem(file, key, "cannot be searched: the search fixes it for every member (set it "
                                               "under training_parameters instead)"))
            continue
        if name not in own and known is not None and name not in known:
            hint = did_you_mean(name, (set(known) | own) - NOT_SEARCHABLE)
            problems.append(Problem(file, key, f"unknown key: not a field of the installed TRL GRPOConfig{hint}"))
            continue
        if name in own:
            problems += _bounds_fit_field(name, space, key, file)
    return problems


def _bounds_fit_field(name: str, space: Any, key: str, file: str) -> list[Problem]:
    """Both bounds must be valid values of the TrainingParameters field (e.g. learning_rate > 0, int types)."""
    annotation = TrainingParameters.model_fields[name].annotation
    if annotation is int and space.type != "int":
        return [Problem(file, key, f"{name} is an integer: add `type: int`")]
    problems = []
    for bound in ("min", "max"):
        value = getattr(space, bound)
        value = int(round(value)) if space.type == "int" else value
        try:
            TrainingParameters.model_validate({name: value})
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            problems.append(Problem(file, f"{key}.{bound}", f"{value!r} is not a valid {name}: {msg}"))
    return problems


def check_group_size_bounds(cfg: GRPOHPOConfigFile, file: str) -> list[Problem]:
    space = cfg.hpo.search_space.get("num_generations")
    if space is None:
        return []
    batch = generation_batch(cfg)
    lo, hi = int(round(space.min)), int(round(space.max))
    if not valid_group_sizes(lo, hi, batch):
        divisors = valid_group_sizes(2, batch, batch)
        return [Problem(file, "hpo.search_space.num_generations",
                        f"no value in [{lo}, {hi}] divides the generation batch ({batch} completions per step: "
                        f"per_device_train_batch_size x processes x steps_per_generation), so TRL would refuse "
                        f"every member; widen the bounds to include one of {divisors}")]
    return []


def check_single_process(cfg: GRPOHPOConfigFile, file: str) -> list[Problem]:
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    if procs > 1:
        return [Problem(file, "launch.num_processes", f"grpo_hpo trains its members one after another on one base "
                                                      f"model in one process; set num_processes and num_machines to "
                                                      f"1 (got {procs} processes)")]
    return []


def check_no_sampling_features(cfg: GRPOHPOConfigFile, file: str) -> list[Problem]:
    """Dynamic sampling and difficulty weighting are the grpo node's; members train with plain draws."""
    settings, problems = cfg.dataset_settings, []
    if settings.dynamic_sampling.enabled:
        problems.append(Problem(file, "dataset_settings.dynamic_sampling.enabled", "grpo_hpo members do not "
                                "replace zero-spread groups; set it false here (the grpo node does)"))
    if settings.difficulty.band is not None:
        problems.append(Problem(file, "dataset_settings.difficulty.band", "grpo_hpo members draw without "
                                "difficulty weights; remove band here (the grpo node uses it)"))
    return problems


def check_no_vllm_section(cfg: GRPOHPOConfigFile, file: str) -> list[Problem]:
    if getattr(cfg.model, "vllm", None) is not None:
        return [Problem(file, "model.vllm", "grpo_hpo builds a new trainer per member and generation, and TRL would "
                                            "start (colocate) or re-attach (server) a vLLM engine each time; remove "
                                            "model.vllm (members generate with transformers, or with Unsloth's own "
                                            "engine on backend: unsloth)")]
    return []


def check_resume_setting(cfg: GRPOHPOConfigFile, file: str) -> list[Problem]:
    value = cfg.training_parameters.resume_from_checkpoint
    if value in (False, None, "false", "auto"):
        return []
    return [Problem(file, "training_parameters.resume_from_checkpoint",
                    f"grpo_hpo resumes a whole search (at its last completed generation), not a checkpoint folder; "
                    f"use `auto` or false (got {value!r})")]


RULES: tuple[Rule, ...] = (
    Rule(check_search_space, ("hpo",)),
    Rule(check_group_size_bounds, ("hpo", "training_parameters", "launch")),
    Rule(check_single_process, ("launch",)),
    Rule(check_no_vllm_section, ("model",)),
    Rule(check_no_sampling_features, ("dataset_settings",)),
    Rule(check_resume_setting, ("training_parameters",)),
)
