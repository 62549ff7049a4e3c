"""Config sections of the data layer: ``datasets`` entries and ``dataset_settings``. Shared by every node that
samples prompts; a dataset entry also carries the reward functions that score completions of its prompts."""
from __future__ import annotations

import difflib
import string
from typing import Literal, Optional

from pydantic import ConfigDict, Field, field_validator, model_validator

from pipelines.common.problems import did_you_mean
from pipelines.common.schema import StrictModel
from pipelines.rewards.config import LABEL_PATTERN, RewardFuncEntry

DEFAULT_MAX_ROW_BYTES = 4 << 20   # 4 MiB: far above any prompt a model takes, far below what hurts memory
# Row keys the data layer sets, plus the keyword names TRL passes to reward functions itself: a data column with
# one of these names reaches rewards as ``data_<name>``, and ``columns`` cannot map a column onto one.
RESERVED_KEYS = frozenset({"prompt", "answer", "dataset_index", "dataset_path", "row_id", "prompts",
                           "completions", "completion", "completion_ids", "trainer_state"})


def template_fields(template: str) -> list[str]:
    """The column names a ``prompt_template`` reads (``{name}``; ``{{``/``}}`` are literal braces). Raises
    ValueError for a malformed template or a placeholder that is not a plain column name."""
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() and not name.replace("-", "_").replace(" ", "_").isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a column name (write literal braces as {{{{ }}}})")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}}: format specs are not supported; use {{{name}}}")
        if name not in names:
            names.append(name)
    return names


class ColumnMap(StrictModel):
    """Which columns of a row hold its prompt, its reference answer or its conversation; any other key names a
    column a reward reads: ``solution: answer`` passes the row's ``answer`` column to rewards as ``solution``
    (TRL's ``accuracy_reward`` reads ``solution``)."""

    model_config = ConfigDict(extra="allow")

    prompt: Optional[str] = Field(None, description="Column holding the prompt: a string (one user message) or "
                                  "a list of {role, content} messages (TRL's prompt-only format). Default: "
                                  "`prompt`, when a row has no `conversations`/`messages`.")
    answer: Optional[str] = Field(None, description="Column holding the reference answer, passed to rewards as "
                                  "`answer` (as text). Default: `answer` when the row has one; else the assistant "
                                  "turn at the cut; else none (rewards that need one say so at --validate).")
    messages: Optional[str] = Field(None, description="Column holding the conversation: a list of {role, content} "
                                    "or ShareGPT {from, value} messages. Default: `conversations`, then "
                                    "`messages`.")


    @model_validator(mode="after")
    def _reward_columns(self) -> "ColumnMap":
        for key, value in self.reward_columns().items():
            near = difflib.get_close_matches(key, ["prompt", "answer", "messages"], n=1, cutoff=0.75)
            if near:
                raise ValueError(f"unknown key {key!r}{did_you_mean(key, near)} (a key other than prompt, answer "
                                 f"and messages names the argument a reward reads the column {value!r} as)")
            if not key.isidentifier() or key in RESERVED_KEYS:
                raise ValueError(f"{key!r} cannot name a reward argument (it must be a Python name, not one the "
                                 f"data layer or TRL sets itself: {', '.join(sorted(RESERVED_KEYS))})")
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key}: {value!r} must be the name of a column of the rows")
        return self

    def reward_columns(self) -> dict[str, str]:
        """The extra keys: reward argument -> the row column it reads."""
        return dict(self.model_extra or {})


class DatasetEntry(StrictModel):
    path: str = Field(description="A .json, .jsonl or .parquet file or a glob of them (relative to the working "
                                  "directory); or `hf:<org/name>` for a Hugging Face dataset, `hf:<folder>` for a "
                                  "local folder in the Hub layout or made by `save_to_disk`.")
    label: Optional[str] = Field(None, pattern=LABEL_PATTERN, description="Names this dataset in reward metrics "
                                 "(`rewards/<label>/<reward>/mean`); default: the file name without extension "
                                 "(`_2`, `_3` when two datasets share it). Unique across datasets.")
    percentage: float = Field(ge=0, le=1, description="Fraction of dataset_settings.total_rows drawn from here.")
    split: str = Field("train", description="`hf:` datasets only: the split to read.")
    subset: Optional[str] = Field(None, description="`hf:` datasets only: the subset (configuration) name.")
    revision: Optional[str] = Field(None, description="`hf:` datasets only: a branch, tag or commit of the "
                                                      "dataset repository.")
    columns: ColumnMap = Field(default_factory=ColumnMap, description="Map your column names to prompt, answer "
                               "and messages, e.g. {prompt: problem, answer: solution}; any other key passes a "
                               "column to rewards under that name, e.g. {solution: answer} for a reward with a "
                               "`solution` parameter (TRL's accuracy_reward) on GSM8K-style rows.")
    prompt_template: Optional[str] = Field(None, description="Build the user message from row columns, e.g. "
                                           "\"Using the numbers {nums}, make {target}.\" (`{{`/`}}` for literal "
                                           "braces; lists and numbers are written as JSON). Replaces any "
                                           "conversation or prompt column.")
    system_prompt: Optional[str] = Field(None, description="System prompt for this dataset's prompts.")
    system_prompt_mode: Literal["prepend", "insert", "replace"] = Field(
        "prepend", description="With an existing system message: `prepend` puts system_prompt before it, "
                               "`insert` adds a separate system message first, `replace` discards it.")
    single_turn_ratio: float = Field(1.0, ge=0, le=1, description="Probability that a row is cut at its first "
                                     "assistant turn; otherwise at a later assistant turn, or at the end of a "
                                     "conversation whose last turn is the user's, chosen by the seed.")
    force_single_turn: bool = Field(False, description="Always cut at the first assistant turn (or the end of a "
                                                       "conversation without one).")
    reward_funcs: list[RewardFuncEntry] = Field(min_length=1, description="Reward functions for completions "
                                                "of this dataset's prompts.")

    @field_validator("prompt_template")
    @classmethod
    def _template_parses(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            if not template_fields(value):
                raise ValueError("prompt_template names no column; write e.g. \"Solve {question}\"")
        return value

    @model_validator(mode="after")
    def _one_prompt_source(self) -> "DatasetEntry":
        given = [k for k, v in (("columns.prompt", self.columns.prompt), ("columns.messages", self.columns.messages),
                                ("prompt_template", self.prompt_template)) if v]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} both say where the prompt comes from; keep one")
        return self


class DynamicSampling(StrictModel):
    """DAPO-style dynamic sampling (training only): a group of completions whose reward has zero spread teaches
    nothing, so it is dropped and replaced by a group of a freshly drawn row (README: Dynamic sampling)."""

    enabled: bool = Field(False, description="Replace zero-spread groups (every completion of a prompt scored "
                                             "the same) with groups of freshly drawn rows before each step.")
    max_extra_batches: int = Field(2, ge=0, description="Extra generation rounds allowed per step to find live "
                                   "groups. When they are spent, the slots still empty keep their zero-spread "
                                   "groups (0: count zero-spread groups only, replace none).")


class DifficultySettings(StrictModel):
    """The per-row difficulty pool (``difficulty.parquet``): a row's *solved rate* is the share of its completions
    whose combined reward (before scaling) is at least ``solved_at`` (README: Difficulty pool)."""

    model_config = ConfigDict(populate_by_name=True)

    solved_at: float = Field(1.0, description="A completion counts as solved when its combined reward (before "
                                              "scaling) is at least this.")
    band: Optional[tuple[float, float]] = Field(None, description="[lo, hi]: rows whose solved rate in the "
                                                "`from` table lies outside this band are drawn with weight "
                                                "`weight_outside` instead of 1 (training only; rows the table "
                                                "does not hold keep 1). Needs `from`. Null: no weighting.")
    weight_outside: float = Field(0.1, ge=0, le=1, description="Sampling weight of rows outside `band` (0: never "
                                                               "drawn).")
    from_: Optional[str] = Field(None, alias="from", description="Start from an earlier run's table: a "
                                 "difficulty.parquet file, a run dir holding one, or a chain reference such as "
                                 "`@grpo.difficulty` / `@rollout.run_dir`. The run's own table starts as a copy "
                                 "of it, and `band` reads it.")

    @field_validator("band")
    @classmethod
    def _band_in_range(cls, value: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if value is not None:
            lo, hi = value
            if not (0 <= lo <= 1 and 0 <= hi <= 1):
                raise ValueError(f"band {list(value)}: both ends are solved rates, between 0 and 1")
            if lo > hi:
                raise ValueError(f"band {list(value)}: lo must not exceed hi")
        return value


class DatasetSettings(StrictModel):
    total_rows: int = Field(ge=1, description="Rows sampled across all datasets.")
    shortfall: Literal["error", "take_all"] = Field(
        "error", description="When a dataset has fewer valid rows than asked: `error` (exit 2) or `take_all` "
                             "(use them all, with a warning).")
    max_row_bytes: int = Field(DEFAULT_MAX_ROW_BYTES, ge=1024, description="A row larger than this many bytes "
                               "(a JSONL line; a Parquet or Arrow row's data) is skipped unparsed and counted as "
                               "`too_large`. Default 4 MiB.")
    dynamic_sampling: DynamicSampling = Field(default_factory=DynamicSampling, description="Replace groups that "
                                              "teach nothing (zero reward spread) with fresh rows; GRPO training "
                                              "only.")
    difficulty: DifficultySettings = Field(default_factory=DifficultySettings, description="The per-row "
                                           "difficulty table (difficulty.parquet) and sampling by difficulty.")
