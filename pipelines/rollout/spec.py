"""Registration of the rollout node: schema, checks (no heavy imports), --validate summary, run function."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from pipelines.common.problems import Problem
from pipelines.common.rundir import check_run_dir_free
from pipelines.grpo.checks import check_input_paths, check_percentages, check_post_processors, check_rewards
from pipelines.registry import NodeContext, NodeSpec
from pipelines.common.refs import is_reference
from pipelines.rollout.config import RolloutConfigFile

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
    if g.max_prompt_length + g.max_new_tokens > cfg.model.max_seq_length:
        return [Problem(file, "model.max_seq_length",
                        f"generation.max_prompt_length ({g.max_prompt_length}) + max_new_tokens ({g.max_new_tokens}) "
                        f"exceeds max_seq_length ({cfg.model.max_seq_length}); raise it or lower the others")]
    return []


def check_backend(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    if cfg.generation.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        return [Problem(file, "generation.backend", "vllm is not installed here (it is GPU only: pip install "
                                                    "vllm==0.30.0); use backend: auto or transformers")]
    return []


RULES: list[Callable[[Any, str], list[Problem]]] = [
    check_percentages, check_input_paths, check_rewards, check_post_processors, check_model_paths,
    check_lengths, check_backend,
]


def check_config(cfg: RolloutConfigFile, file: str) -> list[Problem]:
    """Run every rule; return all problems."""
    return [p for rule in RULES for p in rule(cfg, file)]


RESUME_HINT = "--set resume=true"


def _check(cfg: RolloutConfigFile, ctx: NodeContext) -> list[Problem]:
    problems = check_config(cfg, ctx.config_file)
    busy = check_run_dir_free(ctx.run_dir, cfg.resume, ctx.config_file, resume_hint=RESUME_HINT)
    if busy:
        problems += busy
    elif cfg.resume and not any(is_reference(d.path) for d in cfg.datasets):
        from pipelines.rollout.node import resume_problems
        problems += resume_problems(cfg, ctx.run_dir, ctx.config_file)
    return problems


def _check_partial(raw: dict, ctx: NodeContext) -> list[Problem]:
    """Dataset and reward rules on the sections that validated, when the config as a whole did not."""
    from pydantic import ValidationError

    from pipelines.grpo.config import DatasetEntry, RewardSection

    def section(model: Any, value: Any) -> Any:
        try:
            return model.model_validate(value if value is not None else {})
        except ValidationError:
            return None

    items = raw.get("datasets") if isinstance(raw.get("datasets"), list) else []
    datasets = [d for d in (section(DatasetEntry, d) for d in items) if d is not None]
    ns = SimpleNamespace(datasets=datasets, reward=section(RewardSection, raw.get("reward")))
    problems = check_input_paths(ns, ctx.config_file) + check_rewards(ns, ctx.config_file)
    if ns.reward is not None:
        problems += check_post_processors(ns, ctx.config_file)
    return problems


def _inspect(cfg: RolloutConfigFile, ctx: NodeContext) -> list[str]:
    m, g = cfg.model, cfg.generation
    lines = [f"model: {m.base_model_name}" + (f" + adapter {m.adapter}" if m.adapter else ""),
             f"generation: backend {g.backend}, {g.num_completions} completion(s) per prompt, up to "
             f"{g.max_new_tokens} new tokens, temperature {g.temperature}"]
    if is_reference(m.base_model_name) or any(is_reference(d.path) for d in cfg.datasets):
        return lines + ["(data not inspected: it refers to an earlier node's outputs)"]
    try:
        from pipelines.grpo.data import inspect_datasets
    except ImportError:
        return lines
    return lines + inspect_datasets(cfg.to_grpo_config(), ctx.config_file)


NODE = NodeSpec(name="rollout", config_model=RolloutConfigFile, run="pipelines.rollout.node:run",
                check=_check, check_partial=_check_partial, inspect=_inspect, outputs=OUTPUTS,
                resume_hint=RESUME_HINT)
