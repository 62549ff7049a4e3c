"""Augmentoolkit's GRPO configs, read unchanged with Augmentoolkit's meaning (``compat: augmentoolkit``).

Everything Augmentoolkit-specific lives in this one module; the shared layers know only the notice type it
reports with (:mod:`pipelines.common.notices`). A config is read this way when it says ``compat: augmentoolkit``,
or when it carries Augmentoolkit's top-level ``pipeline:`` key and says no ``compat``. :func:`normalise` then
translates it into this node's own shape before the schema sees it, and reports each translation as a notice
(logged once, printed by ``--validate``); it works on the raw dicts and never prints a key's value:

- ``pipeline: grpo-rl`` and ``no_flatten`` are accepted and ignored (the super-config names the node; sections
  are never flattened here);
- ``post_processors`` decides the combination and scaling functions: Augmentoolkit's pipeline function takes
  ``reward_combination_function`` and ``reward_scaling_function`` from it, and the ``reward`` section's
  ``combination_function`` / ``scaling_function`` reach it only as ignored keyword arguments, so a different
  value under ``reward`` is reported as ignored;
- ``datasets``: ``reward_funcs`` may be a single mapping (the one reward of that dataset); ``percentage`` may be
  missing (1.0), and the percentages are divided by their sum, as Augmentoolkit's ``MultiDataset`` does,
  whenever they do not sum to 1; ``eval_llm_name`` / ``eval_llm_base_url`` / ``eval_llm_api_key`` /
  ``eval_llm_mode`` may sit on the dataset, and each reward of that dataset whose factory takes the key and does
  not set it inherits it; a dataset with fewer rows than asked gives all of them
  (``dataset_settings.shortfall: take_all``), as Augmentoolkit's sampler does, unless the config says otherwise;
- a batch that ``num_generations`` does not divide is raised to ``num_generations``, as Unsloth does;
- a prompt + completion budget over ``model.max_seq_length`` is kept, and each completion is cut where prompt +
  completion reach ``max_seq_length``, as vLLM's ``max_model_len`` does in Augmentoolkit's Unsloth stack;
- an 8-bit optimizer on a machine without CUDA or bitsandbytes becomes ``adamw_torch``;
- ``output_dir: outputs`` (the folder of all runs) gives the run its own folder ``outputs/<run_name>``.

``compat: strict`` (the default for configs without ``pipeline:``) refuses each of these with a config error.
"""
from __future__ import annotations

import copy
import inspect
import math
from pathlib import Path
from typing import Any, Optional

from pipelines.common.devices import visible_gpu_count
from pipelines.common.notices import Notice, info, warning
from pipelines.common.problems import Problem, did_you_mean

AUGMENTOOLKIT_PIPELINE = "grpo-rl"
AUGMENTOOLKIT_ONLY = ("pipeline", "no_flatten", "post_processors")    # top-level keys only its configs have
JUDGE_KEYS = ("eval_llm_name", "eval_llm_base_url", "eval_llm_api_key", "eval_llm_mode")
POST_PROCESSOR_KEYS = {"reward_combination_function": "combination_function",
                       "reward_scaling_function": "scaling_function"}


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
    from pipelines.grpo.checks import package_installed

    launch = raw.get("launch") if isinstance(raw.get("launch"), dict) else {}
    on_cpu = launch.get("device") == "cpu" or visible_gpu_count() == 0
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

MODES = ("strict", "augmentoolkit")


def compat_mode(raw: dict[str, Any]) -> str:
    """The mode a raw config asks for: its ``compat`` key, else ``augmentoolkit`` when it carries
    Augmentoolkit's ``pipeline:`` key, else ``strict``. An unknown value is left to the schema to refuse."""
    explicit = raw.get("compat")
    if explicit is not None:
        return str(explicit)
    return "augmentoolkit" if "pipeline" in raw else "strict"


# -- post_processors -------------------------------------------------------------------------------------------

def _canonical(name: Any) -> Any:
    return "identity" if name == "none" else name      # "none" is registered as identity's alias


def normalise_post_processors(raw: dict[str, Any], file: str, notices: list[Notice]) -> list[Problem]:
    """Move ``post_processors`` into the ``reward`` section (in place); problems for unknown keys."""
    if "post_processors" not in raw:
        return []
    section = raw.pop("post_processors")
    if section is None:
        return []
    if not isinstance(section, dict):
        return [Problem(file, "post_processors", "expected a mapping with reward_combination_function and "
                                                 "reward_scaling_function")]
    problems = [Problem(file, f"post_processors.{k}", f"unknown key{did_you_mean(k, POST_PROCESSOR_KEYS)}")
                for k in section if k not in POST_PROCESSOR_KEYS]
    reward = raw.setdefault("reward", {})
    if not isinstance(reward, dict):
        return problems      # the schema reports the reward section
    for key, ours in POST_PROCESSOR_KEYS.items():
        if key not in section:
            continue
        value = section[key]
        if ours in reward and _canonical(reward[ours]) != _canonical(value):
            notices.append(warning(f"reward.{ours}", f"{reward[ours]!r} is ignored: post_processors.{key} "
                                                     f"{value!r} applies, as in Augmentoolkit"))
        reward[ours] = value
        notices.append(info(f"post_processors.{key}", f"{value!r}, used as reward.{ours}"))
    return problems


# -- datasets --------------------------------------------------------------------------------------------------

def _takes(name: Any, key: str) -> bool:
    """Whether the reward factory registered as ``name`` accepts ``key``."""
    from pipelines.rewards.catalog import get_reward_factory

    try:
        params = inspect.signature(get_reward_factory(str(name))).parameters
    except (KeyError, TypeError, ValueError):
        return False
    return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _inherit_judge_settings(ds: dict[str, Any], where: str, notices: list[Notice]) -> None:
    funcs = ds.get("reward_funcs")
    entries = [e for e in funcs if isinstance(e, dict)] if isinstance(funcs, list) else []
    for key in JUDGE_KEYS:
        if key not in ds:
            continue
        value = ds.pop(key)
        takers = [j for j, e in enumerate(entries) if _takes(e.get("name"), key)]
        inherited = [j for j in takers if key not in entries[j]]
        for j in inherited:
            entries[j][key] = value
        if inherited:
            names = ", ".join(f"reward_funcs[{j}] ({entries[j].get('name')})" for j in inherited)
            notices.append(info(f"{where}.{key}", f"inherited by {names}"))
        elif not takers:
            notices.append(info(f"{where}.{key}", "ignored: no reward of this dataset takes it"))


def normalise_datasets(raw: dict[str, Any], notices: list[Notice], file: str = "") -> list[Problem]:
    """Translate ``raw['datasets']`` and ``raw['dataset_settings']`` in place (see the module docstring); the
    problems found (percentages whose sum is not a finite number)."""
    datasets = raw.get("datasets")
    if not isinstance(datasets, list):
        return []
    for i, ds in enumerate(datasets):
        if not isinstance(ds, dict):
            continue
        where = f"datasets[{i}]"
        if isinstance(ds.get("reward_funcs"), dict):
            ds["reward_funcs"] = [ds["reward_funcs"]]
            notices.append(info(f"{where}.reward_funcs", "a single mapping: read as a list of one reward"))
        if "percentage" not in ds:
            ds["percentage"] = 1.0
            notices.append(info(f"{where}.percentage", "missing: 1.0, as in Augmentoolkit"))
        _inherit_judge_settings(ds, where, notices)
    problems = _normalise_percentages(raw, datasets, notices, file)
    settings = raw.get("dataset_settings")
    if isinstance(settings, dict) and "shortfall" not in settings:
        settings["shortfall"] = "take_all"
        notices.append(info("dataset_settings.shortfall", "take_all: a dataset with fewer rows than asked gives "
                                                          "all of them, as in Augmentoolkit"))
    return problems


def _normalise_percentages(raw: dict[str, Any], datasets: list[Any], notices: list[Notice],
                           file: str) -> list[Problem]:
    entries = [ds for ds in datasets if isinstance(ds, dict)]
    values = [ds.get("percentage") for ds in entries]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values):
        return []   # the schema reports the bad values
    total = float(sum(float(v) for v in values))    # 1e308 + 1e308 is inf: refused below
    if not math.isfinite(total):   # inf, nan, or finite values whose sum overflows: no share can be computed
        return [Problem(file, "datasets", f"the percentages {', '.join(f'{v:g}' for v in values)} do not sum to a "
                                          "finite number, so they cannot be divided by their sum; give each "
                                          "dataset its share (e.g. 0.5 and 0.5, or 1 and 1)")]
    if total <= 0 or math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        return []
    shares = [v / total for v in values]
    for ds, share in zip(entries, shares):
        ds["percentage"] = share
    effective = ", ".join(f"{s:.4g}" for s in shares)
    rows = ""
    settings = raw.get("dataset_settings")
    total_rows = settings.get("total_rows") if isinstance(settings, dict) else None
    if isinstance(total_rows, int) and not isinstance(total_rows, bool):
        rows = " (rows of total_rows " + str(total_rows) + ": " + ", ".join(
            str(int(math.floor(s * total_rows + 0.5 + 1e-9))) for s in shares) + ")"
    notices.append(warning("datasets", f"percentages {', '.join(f'{v:g}' for v in values)} sum to {total:g}; "
                                       f"divided by their sum as Augmentoolkit does: {effective}{rows}"))
    return []


# -- the whole config ------------------------------------------------------------------------------------------

def augmentoolkit_markers(raw: dict[str, Any]) -> list[str]:
    """Keys only an Augmentoolkit GRPO config has (``no_flatten``, ``post_processors``, judge settings on a
    dataset), for a config that lacks its ``pipeline:`` line."""
    found = [k for k in AUGMENTOOLKIT_ONLY if k in raw]
    datasets = raw.get("datasets") if isinstance(raw.get("datasets"), list) else []
    for i, ds in enumerate(datasets):
        found += [f"datasets[{i}].{k}" for k in JUDGE_KEYS if isinstance(ds, dict) and k in ds]
    return found


def _looks_like_augmentoolkit(raw: dict[str, Any], file: str, markers: list[str]
                              ) -> tuple[dict[str, Any], list[Notice], list[Problem]]:
    """One problem that says how to read it, instead of one unrelated-looking error per Augmentoolkit habit: the
    rest of the check reads the config as Augmentoolkit would, so what else it reports is wrong either way."""
    translated, _, problems = _augmentoolkit(raw, file)
    shown = ", ".join(markers[:4]) + (", ..." if len(markers) > 4 else "")
    return translated, [], [Problem(file, "compat", (
        f"this looks like an Augmentoolkit GRPO config ({shown}) without Augmentoolkit's `pipeline: grpo-rl` line, "
        "so nothing says how to read it. Add `compat: augmentoolkit` (or `pipeline: grpo-rl`) at the top to read "
        "it with Augmentoolkit's meaning, as it ran there; or add `compat: strict` to convert it to this tool's "
        "shape (--validate then lists each key to change). Any other problem listed here is one in "
        "Augmentoolkit's reading too"))] + problems


def normalise(raw: dict[str, Any], file: str) -> tuple[dict[str, Any], list[Notice], list[Problem]]:
    """The config in this node's shape, the notices, and the problems found translating it. A strict config
    is returned as it is; one that says no ``compat`` but has Augmentoolkit's keys gets one problem saying so."""
    mode = compat_mode(raw)
    if mode == "strict":
        markers = augmentoolkit_markers(raw) if "compat" not in raw else []
        return _looks_like_augmentoolkit(raw, file, markers) if markers else _strict(raw, file)
    if mode != "augmentoolkit":
        return raw, [], []      # the schema refuses the value of `compat`
    return _augmentoolkit(raw, file)


def _augmentoolkit(raw: dict[str, Any], file: str) -> tuple[dict[str, Any], list[Notice], list[Problem]]:
    raw = copy.deepcopy(raw)
    raw["compat"] = "augmentoolkit"
    notices: list[Notice] = []
    problems = _top_level(raw, file, notices)
    problems += normalise_post_processors(raw, file, notices)
    problems += normalise_datasets(raw, notices, file)
    tp = raw.get("training_parameters")
    if isinstance(tp, dict):
        _raise_batch(raw, tp, notices)
        _length_budget(raw, tp, notices)
        _optimizer(tp, raw, notices)
        _output_dir(tp, notices)
    return raw, notices, problems
