"""Config sections of the data layer: ``datasets`` entries and ``dataset_settings``. Shared by every node that
samples prompts; a dataset entry also carries the reward functions that score completions of its prompts."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from pipelines.common.schema import StrictModel
from pipelines.rewards.config import LABEL_PATTERN, RewardFuncEntry


class DatasetEntry(StrictModel):
    path: str = Field(description="A .json, .jsonl or .parquet file, or a glob of them; relative to the working "
                                  "directory.")
    label: Optional[str] = Field(None, pattern=LABEL_PATTERN, description="Names this dataset in reward metrics "
                                 "(`rewards/<label>/<reward>/mean`); default: the file name without extension "
                                 "(`_2`, `_3` when two datasets share it). Unique across datasets.")
    percentage: float = Field(ge=0, le=1, description="Fraction of dataset_settings.total_rows drawn from here.")
    system_prompt: Optional[str] = Field(None, description="System prompt for this dataset's prompts.")
    system_prompt_mode: Literal["prepend", "insert", "replace"] = Field(
        "prepend", description="With an existing system message: `prepend` puts system_prompt before it, "
                               "`insert` adds a separate system message first, `replace` discards it.")
    single_turn_ratio: float = Field(1.0, ge=0, le=1, description="Probability that a row is cut at its first "
                                     "assistant turn; otherwise at a later assistant turn chosen by the seed.")
    force_single_turn: bool = Field(False, description="Always cut at the first assistant turn.")
    reward_funcs: list[RewardFuncEntry] = Field(min_length=1, description="Reward functions for completions "
                                                "of this dataset's prompts.")


class DatasetSettings(StrictModel):
    total_rows: int = Field(ge=1, description="Rows sampled across all datasets.")
    shortfall: Literal["error", "take_all"] = Field(
        "error", description="When a dataset has fewer valid rows than asked: `error` (exit 2) or `take_all` "
                             "(use them all, with a warning).")
