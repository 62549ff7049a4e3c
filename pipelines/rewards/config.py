"""Config sections of the reward layer: a dataset's ``reward_funcs`` entries and the ``reward`` section
(combination, scaling and the high-scoring export). Shared by every node that scores completions."""
from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, Union

from pydantic import ConfigDict, Field

from pipelines.common.schema import StrictModel

DEFAULT_SYNC_TIMEOUT_S = 300.0


# A label names metrics (`rewards/<dataset>/<reward>/mean`): letters, digits, `_`, `.` and `-` only.
LABEL_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class NamedFunction(StrictModel):
    name: str = Field(description="Registered function name (post_processors.py).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")


class RewardSection(StrictModel):
    high_scoring_save_path: Optional[str] = Field("high_scoring_examples.jsonl",
                                                  description="JSONL file for completions scoring at least "
                                                  "score_save_threshold: one file name inside the run dir (no "
                                                  "`/` or `..`), not a name the run writes itself "
                                                  "(metrics.jsonl, final_adapter, checkpoint-N, ...).")
    score_save_threshold: Optional[float] = Field(None, description="Combined reward (before scaling) at or above "
                                                  "which a completion is saved; null saves none.")
    combination_function: Union[str, NamedFunction] = Field(
        "sum", description="Combines one completion's reward scores: sum, mean, weighted_sum, min, product, or "
                           "a function registered in post_processors.py; a name or {name, kwargs}.")
    sync_timeout_s: Optional[float] = Field(
        DEFAULT_SYNC_TIMEOUT_S, gt=0, allow_inf_nan=False,
        description="Seconds one call of a synchronous (plain `def`) reward function may take before it is a "
                    "reward error naming the function (the run stops; a checkpoint is saved). null: no limit. "
                    "Rewards registered main_thread (TRL's math-verify rewards) bound themselves instead.")
    scaling_function: Union[str, NamedFunction] = Field(
        "identity", description="Scales the batch of combined rewards: identity (alias none), zscore, minmax, "
                                "rank, clip, or a registered function; a name or {name, kwargs}.")


class RewardFuncEntry(StrictModel):
    """One reward function for a dataset: `name` plus keyword arguments for its factory (or for a plain reward
    function's own parameters)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="Name registered with @register_reward_function, or `package.module:function`: a "
                                  "factory or a plain reward function (TRL's contract), told apart by signature.")
    label: Optional[str] = Field(None, pattern=LABEL_PATTERN, description="Names this reward in metrics and "
                                 "score records (`rewards/<dataset label>/<label>/mean`); default: the function "
                                 "name (`_2`, `_3` for repeats). Unique within a dataset. An LLM judge also names "
                                 "its own metrics by it.")
    weight: float = Field(1.0, description="Weight used by weighted_sum.")
    gate: bool = Field(False, description="If true, a score of 0 from this function zeroes the combined reward.")

    text_completions: Optional[bool] = Field(
        None, description="true: the function gets each completion as plain text instead of TRL's message list "
                          "(for rewards written as `len(completion)`); null: as the function was registered.")

    @property
    def kwargs(self) -> dict[str, Any]:
        """Factory keyword arguments: every key but name, label, weight, gate and text_completions
        (``catalog.entry_kwargs`` adds ``label`` for a factory that takes one)."""
        return dict(self.model_extra or {})


class RewardedDataset(Protocol):
    """What the reward layer reads of a dataset: its ``path``, its ``label`` and its ``reward_funcs`` entries.
    The data layer's ``DatasetEntry`` is one; the reward layer imports nothing of the data layer."""

    @property
    def path(self) -> str: ...

    @property
    def label(self) -> Optional[str]: ...

    @property
    def reward_funcs(self) -> Sequence[RewardFuncEntry]: ...
