"""Cross-field and environment checks for a validated GRPO config.

Each rule is a small function returning a list of :class:`Problem`; :func:`check_config` runs them all so a
user sees every mistake at once. None of them imports torch, transformers or trl.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable

from pipelines.common.problems import Problem, did_you_mean
from pipelines.grpo.config import GRPOConfigFile, NamedFunction

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".parquet")
# GRPOConfig keys the node sets itself; giving them under training_parameters would be ignored or conflict.
NODE_OWNED_KEYS = {"output_dir", "run_name", "report_to", "bf16", "fp16", "use_cpu", "resume_from_checkpoint"}


def resolve_input_paths(pattern: str) -> list[Path]:
    """Files matched by a dataset path (a file or a glob), relative to the working directory, sorted."""
    expanded = os.path.expanduser(pattern)
    if glob.has_magic(expanded):
        return sorted(Path(p) for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
    path = Path(expanded)
    return [path] if path.is_file() else []


def check_percentages(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    total = sum(d.percentage for d in cfg.datasets)
    if total > 1 + 1e-9:
        return [Problem(file, "datasets", f"percentages sum to {total:g}, which is more than 1; lower them so "
                                          "that they add up to at most 1")]
    if total <= 0:
        return [Problem(file, "datasets", "every percentage is 0: no rows would be sampled")]
    return []


def generation_batch(cfg: GRPOConfigFile) -> int:
    """Completions generated per optimizer step, as TRL counts them (what num_generations must divide)."""
    tp = cfg.training_parameters
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    extra = tp.model_extra or {}
    steps = extra.get("steps_per_generation") or tp.gradient_accumulation_steps
    return int(extra.get("generation_batch_size") or tp.per_device_train_batch_size * procs * steps)


def check_batch_sizes(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    tp = cfg.training_parameters
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    steps_per_gen = (tp.model_extra or {}).get("steps_per_generation") or tp.gradient_accumulation_steps
    gen_batch = generation_batch(cfg)
    if gen_batch % tp.num_generations:
        return [Problem(file, "training_parameters.num_generations",
                        f"TRL needs the generation batch (per_device_train_batch_size {tp.per_device_train_batch_size}"
                        f" x processes {procs} x steps_per_generation {steps_per_gen} = {gen_batch}) to be divisible"
                        f" by num_generations ({tp.num_generations}); e.g. set per_device_train_batch_size to "
                        f"{tp.num_generations}")]
    return []


def check_lengths(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    tp = cfg.training_parameters
    if tp.max_prompt_length + tp.max_completion_length > cfg.model.max_seq_length:
        return [Problem(file, "model.max_seq_length",
                        f"max_prompt_length ({tp.max_prompt_length}) + max_completion_length "
                        f"({tp.max_completion_length}) = {tp.max_prompt_length + tp.max_completion_length} exceeds "
                        f"max_seq_length ({cfg.model.max_seq_length}); raise max_seq_length or lower the others")]
    return []


def check_input_paths(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """Every dataset path matches a supported file (an ``@node.output`` reference is checked by the runner)."""
    from pipelines.common.refs import is_reference
    problems = []
    for i, ds in enumerate(cfg.datasets):
        if is_reference(ds.path):
            continue
        files = resolve_input_paths(ds.path)
        if not files:
            problems.append(Problem(file, f"datasets[{i}].path", f"no file matches {ds.path!r} (relative paths are "
                                                                  f"resolved from {os.getcwd()})"))
        for f in files:
            if f.suffix.lower() not in SUPPORTED_SUFFIXES:
                problems.append(Problem(file, f"datasets[{i}].path", f"{f}: unsupported file type {f.suffix!r}; "
                                                                      f"use one of {', '.join(SUPPORTED_SUFFIXES)}"))
    return problems


def check_rewards(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    from pipelines.grpo.rewards.registry import check_reward_kwargs
    problems = []
    for i, ds in enumerate(cfg.datasets):
        for j, entry in enumerate(ds.reward_funcs):
            for msg in check_reward_kwargs(entry.name, entry.kwargs):
                problems.append(Problem(file, f"datasets[{i}].reward_funcs[{j}]", msg))
    return problems


def check_post_processors(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    from pipelines.grpo.rewards.registry import COMBINATION_REGISTRY, SCALING_REGISTRY, check_function_kwargs
    problems = []
    for key, registry in (("combination_function", COMBINATION_REGISTRY), ("scaling_function", SCALING_REGISTRY)):
        spec = getattr(cfg.reward, key)
        named = spec if isinstance(spec, NamedFunction) else NamedFunction(name=spec)
        for msg in check_function_kwargs(registry, named.name, named.kwargs):
            problems.append(Problem(file, f"reward.{key}", msg))
    return problems


def check_grpo_extras(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    from pipelines.grpo.trl_fields import grpo_config_fields
    extras = cfg.training_parameters.model_extra or {}
    known = grpo_config_fields()
    problems = []
    for key in extras:
        if key in NODE_OWNED_KEYS:
            problems.append(Problem(file, f"training_parameters.{key}", "is set by the node; remove it (see the "
                                                                        "config reference for the key to use)"))
        elif known is not None and key not in known:
            hint = did_you_mean(key, set(known) | set(type(cfg.training_parameters).model_fields))
            problems.append(Problem(file, f"training_parameters.{key}", f"unknown key: not a field of the installed "
                                                                        f"TRL GRPOConfig{hint}"))
    return problems


def check_backend(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    if cfg.model.backend == "unsloth" and procs > 1:
        return [Problem(file, "model.backend", "the unsloth backend runs in a single process only (its multi-GPU "
                                               "GRPO is reported to hang); use backend: transformers with launch."
                                               "num_processes > 1, or set num_processes to 1")]
    if cfg.model.vllm is not None and cfg.model.backend == "unsloth":
        return [Problem(file, "model.vllm", "the unsloth backend always uses its own vLLM; `model.vllm` applies "
                                            "to backend: transformers")]
    return []


def check_launch(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    launch = cfg.launch
    problems = []
    if launch.accelerate_config and not Path(launch.accelerate_config).is_file():
        problems.append(Problem(file, "launch.accelerate_config", f"file not found: {launch.accelerate_config} "
                                "(shipped: pipelines/grpo/accelerate/{ddp,zero2,zero3,fsdp}.yaml)"))
    if launch.num_machines > 1 and not launch.main_process_ip:
        problems.append(Problem(file, "launch.main_process_ip", "required when num_machines > 1: the address of "
                                                                "the machine with machine_rank 0"))
    if launch.machine_rank >= launch.num_machines:
        problems.append(Problem(file, "launch.machine_rank", f"must be below num_machines ({launch.num_machines})"))
    if cfg.evaluation is not None and launch.accelerate_config and Path(launch.accelerate_config).is_file():
        if _shards_parameters(Path(launch.accelerate_config)):
            problems.append(Problem(file, "evaluation", f"{launch.accelerate_config} shards the model's parameters "
                                    "(ZeRO-3 or FSDP), but held-out evaluation generates on the main process "
                                    "alone and would hang; evaluate with ddp.yaml or zero2.yaml, or remove "
                                    "`evaluation`"))
    return problems


def _shards_parameters(accelerate_config: Path) -> bool:
    """True for an accelerate config using DeepSpeed ZeRO stage 3 or FSDP."""
    import yaml

    try:
        data = yaml.safe_load(accelerate_config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    kind = str(data.get("distributed_type", "")).upper()
    stage = (data.get("deepspeed_config") or {}).get("zero_stage")
    return kind == "FSDP" or (kind == "DEEPSPEED" and stage == 3)


def check_evaluation(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    ev = cfg.evaluation
    if ev is None:
        return []
    held = ev.rows if ev.rows is not None else round(ev.fraction * cfg.dataset_settings.total_rows)
    if held >= cfg.dataset_settings.total_rows:
        return [Problem(file, "evaluation", f"held-out rows ({held}) must be fewer than dataset_settings.total_rows "
                                            f"({cfg.dataset_settings.total_rows})")]
    return []


RULES: list[Callable[[GRPOConfigFile, str], list[Problem]]] = [
    check_percentages, check_batch_sizes, check_lengths, check_input_paths, check_rewards,
    check_post_processors, check_grpo_extras, check_backend, check_launch, check_evaluation,
]


def check_config(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """Run every rule; return all problems."""
    problems: list[Problem] = []
    for rule in RULES:
        problems.extend(rule(cfg, file))
    return problems


def check_partial(raw: dict, file: str) -> list[Problem]:
    """Rules that still apply when the schema rejected the config: each runs on the sections that validated.

    A rule whose sections did not all validate is skipped (their schema errors are already reported).
    """
    from types import SimpleNamespace

    from pydantic import ValidationError

    from pipelines.grpo import config as C

    def section(model, value):
        value = value if value is not None else {}
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            # A section whose only fault is unknown keys still has usable values for the other rules.
            extra = [e["loc"][0] for e in exc.errors() if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
            if isinstance(value, dict) and len(extra) == len(exc.errors()):
                return section(model, {k: v for k, v in value.items() if k not in extra})
            return None

    datasets = [section(C.DatasetEntry, d) for d in raw.get("datasets") or []] if isinstance(
        raw.get("datasets"), list) else []
    ns = SimpleNamespace(
        model=section(C.ModelSection, raw.get("model")),
        training_parameters=section(C.TrainingParameters, raw.get("training_parameters")),
        reward=section(C.RewardSection, raw.get("reward")),
        datasets=datasets if datasets and all(d is not None for d in datasets) else None,
        dataset_settings=section(C.DatasetSettings, raw.get("dataset_settings")),
        evaluation=section(C.EvaluationSection, raw.get("evaluation")) if raw.get("evaluation") else None,
        launch=section(C.LaunchSection, raw.get("launch")),
    )
    problems: list[Problem] = []
    for rule in RULES:
        try:
            problems.extend(rule(ns, file))
        except (AttributeError, TypeError):
            continue  # a section this rule needs did not validate
    if ns.datasets is None:  # paths of the entries that did not validate as a whole
        for i, d in enumerate(raw.get("datasets") or []):
            if isinstance(d, dict) and isinstance(d.get("path"), str) and datasets[i] is None:
                if not resolve_input_paths(d["path"]):
                    problems.append(Problem(file, f"datasets[{i}].path", f"no file matches {d['path']!r} (relative "
                                                                          f"paths are resolved from {os.getcwd()})"))
    return problems
