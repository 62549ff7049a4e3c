"""Augmentoolkit's GRPO configs, read unchanged with Augmentoolkit's meaning (``compat: augmentoolkit``).

A config is read this way when it says ``compat: augmentoolkit``, or when it carries Augmentoolkit's top-level
``pipeline:`` key and says no ``compat``. :func:`normalise` then translates it into this node's own shape
before the schema sees it, and reports each translation as a notice (logged once, printed by ``--validate``):

- ``pipeline: grpo-rl`` and ``no_flatten`` are accepted and ignored (the super-config names the node; sections
  are never flattened here);
- ``post_processors`` decides the combination and scaling functions (:mod:`pipelines.rewards.compat`);
- ``datasets``: a single ``reward_funcs`` mapping, a missing ``percentage``, percentages that do not sum to 1,
  judge settings on the dataset, shortfalls (:mod:`pipelines.data.compat`);
- a batch that ``num_generations`` does not divide is raised to ``num_generations``, as Unsloth does;
- a prompt + completion budget over ``model.max_seq_length`` is kept, and each completion is cut where prompt +
  completion reach ``max_seq_length``, as vLLM's ``max_model_len`` does in Augmentoolkit's Unsloth stack;
- an 8-bit optimizer on a machine without CUDA or bitsandbytes becomes ``adamw_torch``;
- ``output_dir: outputs`` (the folder of all runs) gives the run its own folder ``outputs/<run_name>``.

``compat: strict`` (the default for configs without ``pipeline:``) refuses each of these with a config error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pipelines.common.compat import Notice, compat_mode, info, warning
from pipelines.common.problems import Problem
from pipelines.data.compat import normalise_datasets
from pipelines.rewards.compat import normalise_post_processors

AUGMENTOOLKIT_PIPELINE = "grpo-rl"
AUGMENTOOLKIT_ONLY = ("pipeline", "no_flatten", "post_processors")    # top-level keys only its configs have


def _int(section: dict[str, Any], key: str, default: int) -> Optional[int]:
    value = section.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _defaults() -> dict[str, Any]:
    from pipelines.grpo.config import ModelSection, TrainingParameters

    fields = {**TrainingParameters.model_fields, **ModelSection.model_fields}
    return {k: f.default for k, f in fields.items()}


def _raise_batch(raw: dict[str, Any], tp: dict[str, Any], notices: list[Notice]) -> None:
    """Unsloth's rule: a generation batch that num_generations does not divide gets batch = num_generations."""
    if "steps_per_generation" in tp or "generation_batch_size" in tp:
        return
    d = _defaults()
    launch = raw.get("launch") if isinstance(raw.get("launch"), dict) else {}
    bs, ga = _int(tp, "per_device_train_batch_size", d["per_device_train_batch_size"]), \
        _int(tp, "gradient_accumulation_steps", d["gradient_accumulation_steps"])
    ng = _int(tp, "num_generations", d["num_generations"])
    procs = (_int(launch, "num_processes", 1) or 1) * (_int(launch, "num_machines", 1) or 1)
    if None in (bs, ga, ng) or ng < 1 or (ga * procs * bs) % ng == 0:
        return
    tp["per_device_train_batch_size"] = ng
    notices.append(warning("training_parameters.per_device_train_batch_size",
                           f"{bs} x gradient_accumulation_steps {ga} x processes {procs} is not a multiple of "
                           f"num_generations {ng}: raised to {ng}, as Unsloth does (each step: {ng * ga * procs} "
                           f"completions, {ga * procs} prompt(s) x {ng} generations)"))


def _length_budget(raw: dict[str, Any], tp: dict[str, Any], notices: list[Notice]) -> None:
    d = _defaults()
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    p, c = _int(tp, "max_prompt_length", d["max_prompt_length"]), _int(tp, "max_completion_length",
                                                                        d["max_completion_length"])
    limit = _int(model, "max_seq_length", d["max_seq_length"])
    if None in (p, c, limit) or p + c <= limit or p >= limit:
        return      # fits, or a prompt alone fills the model: the length check reports it
    notices.append(warning("model.max_seq_length",
                           f"max_prompt_length {p} + max_completion_length {c} = {p + c} exceeds max_seq_length "
                           f"{limit}: kept, and each completion stops where prompt + completion reach {limit} "
                           f"tokens, as vLLM's max_model_len does in Augmentoolkit's Unsloth stack (a {p}-token "
                           f"prompt gets at most {limit - p} completion tokens; a prompt of {limit - c} tokens "
                           f"or fewer gets all {c})"))


def _optimizer(tp: dict[str, Any], raw: dict[str, Any], notices: list[Notice]) -> None:
    optim = tp.get("optim")
    if not isinstance(optim, str) or not ("8bit" in optim or optim.startswith("paged_")):
        return
    from pipelines import launch as launcher
    from pipelines.grpo.checks import package_installed

    launch = raw.get("launch") if isinstance(raw.get("launch"), dict) else {}
    on_cpu = launch.get("device") == "cpu" or launcher.visible_gpu_count() == 0
    if on_cpu or not package_installed("bitsandbytes"):
        why = "no CUDA GPU is visible" if on_cpu else "bitsandbytes is not installed"
        tp["optim"] = "adamw_torch"
        notices.append(warning("training_parameters.optim", f"{optim!r} needs bitsandbytes on a CUDA GPU and {why}"
                                                            f" here: adamw_torch is used instead"))


def _output_dir(tp: dict[str, Any], notices: list[Notice]) -> None:
    value = tp.get("output_dir")
    if isinstance(value, str) and Path(value).expanduser().parts in (("outputs",),):
        del tp["output_dir"]
        notices.append(warning("training_parameters.output_dir", f"{value!r} is the folder of all runs: this run "
                                                                 "writes to its own folder outputs/<run_name>"))


def _top_level(raw: dict[str, Any], file: str, notices: list[Notice]) -> list[Problem]:
    problems = []
    if "pipeline" in raw:
        value = raw.pop("pipeline")
        if str(value).strip() != AUGMENTOOLKIT_PIPELINE:
            problems.append(Problem(file, "pipeline", f"{value!r}: only Augmentoolkit's {AUGMENTOOLKIT_PIPELINE!r} "
                                                      "pipeline is read by this node"))
        else:
            notices.append(info("pipeline", f"{AUGMENTOOLKIT_PIPELINE}: accepted and ignored (the super-config "
                                            "names the node)"))
    if "no_flatten" in raw:
        raw.pop("no_flatten")
        notices.append(info("no_flatten", "ignored: config sections are never flattened here"))
    return problems


def _strict(raw: dict[str, Any], file: str) -> tuple[dict[str, Any], list[Notice], list[Problem]]:
    """A strict config with Augmentoolkit's top-level keys: one problem each that says how to read it instead."""
    found = [k for k in AUGMENTOOLKIT_ONLY if k in raw]
    if not found:
        return raw, [], []
    problems = [Problem(file, k, "Augmentoolkit's key, refused with compat: strict: remove it (README: Augmentoolkit "
                                 "configs), or set compat: augmentoolkit to read the config with Augmentoolkit's "
                                 "meaning") for k in found]
    return {k: v for k, v in raw.items() if k not in found}, [], problems


def normalise(raw: dict[str, Any], file: str) -> tuple[dict[str, Any], list[Notice], list[Problem]]:
    """The config in this node's shape, the notices, and the problems found translating it. A strict config
    is returned as it is."""
    mode = compat_mode(raw)
    if mode == "strict":
        return _strict(raw, file)
    if mode != "augmentoolkit":
        return raw, [], []      # the schema refuses the value of `compat`
    import copy

    raw = copy.deepcopy(raw)
    raw["compat"] = "augmentoolkit"
    notices: list[Notice] = []
    problems = _top_level(raw, file, notices)
    problems += normalise_post_processors(raw, file, notices)
    normalise_datasets(raw, notices)
    tp = raw.get("training_parameters")
    if isinstance(tp, dict):
        _raise_batch(raw, tp, notices)
        _length_budget(raw, tp, notices)
        _optimizer(tp, raw, notices)
        _output_dir(tp, notices)
    return raw, notices, problems
