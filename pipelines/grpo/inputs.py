"""What a GRPO-family node (``grpo``, ``grpo_hpo``) reads before any model weights load: the data layer's view
of its config, the tokenizer, and the sampled prompt rows. A data mistake therefore costs seconds, not a model
load."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.common.node import NodeContext
from pipelines.data.sampling import DataSpec, SampleResult, held_out_rows
from pipelines.grpo.config import GRPOConfigFile


def data_spec(cfg: GRPOConfigFile) -> DataSpec:
    """The data sections of a GRPO config, with its prompt budget, seed and held-out row count, and the reward
    catalog's column lookup (``--validate`` checks each reward's needed columns on the rows drawn)."""
    from pipelines.rewards.catalog import required_columns

    ev, tp = cfg.evaluation, cfg.training_parameters
    eval_rows = held_out_rows(ev.rows, ev.fraction, cfg.dataset_settings.total_rows) if ev is not None else 0
    return DataSpec(datasets=cfg.datasets, settings=cfg.dataset_settings, seed=cfg.seed,
                    max_prompt_length=tp.max_prompt_length, eval_rows=eval_rows,
                    model_name=cfg.model.base_model_name, chat_template=tp.chat_template,
                    chat_template_key="training_parameters.chat_template", required_columns=required_columns)


@dataclass
class Inputs:
    """The resolved model path (``builtin:tiny`` built), its tokenizer, and the sampled rows."""

    model_path: str
    tokenizer: Any
    sample: SampleResult


def load_inputs(cfg: GRPOConfigFile, ctx: NodeContext) -> Inputs:
    """Resolve the model, load its tokenizer with the config's chat template, sample the rows."""
    from pipelines.common.tiny_model import resolve_model_name
    from pipelines.data.sampling import sample_with_tokenizer
    from pipelines.grpo.model import load_tokenizer

    model_path = resolve_model_name(cfg.model.base_model_name, cache_root=Path(ctx.outputs_root) / ".cache")
    if Path(model_path).is_dir():
        # A local folder is recorded absolute (adapter_config.json's base_model_name_or_path), so the adapter
        # loads from any working directory.
        model_path = str(Path(model_path).resolve())
    tokenizer = load_tokenizer(model_path, cfg.training_parameters.chat_template)
    sample = sample_with_tokenizer(data_spec(cfg), tokenizer, ctx.config_file)
    return Inputs(model_path, tokenizer, sample)
