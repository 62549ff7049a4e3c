"""Augmentoolkit's ``datasets`` / ``dataset_settings`` shape, read with Augmentoolkit's meaning.

- ``reward_funcs`` may be a single mapping: it is the one reward of that dataset.
- ``percentage`` may be missing (1.0), and the percentages are divided by their sum, as Augmentoolkit's
  ``MultiDataset`` does, whenever they do not sum to 1.
- ``eval_llm_name`` / ``eval_llm_base_url`` / ``eval_llm_api_key`` / ``eval_llm_mode`` may sit on the dataset:
  each reward of that dataset whose factory takes the key and does not set it inherits it.
- A dataset with fewer rows than asked gives all of them (``dataset_settings.shortfall: take_all``), as
  Augmentoolkit's sampler does, unless the config says otherwise.

Works on the raw dicts before the schema; returns notices (:mod:`pipelines.common.compat`) and never prints a
key's value.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

from pipelines.common.compat import Notice, info, warning

JUDGE_KEYS = ("eval_llm_name", "eval_llm_base_url", "eval_llm_api_key", "eval_llm_mode")


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


def normalise_datasets(raw: dict[str, Any], notices: list[Notice]) -> None:
    """Translate ``raw['datasets']`` and ``raw['dataset_settings']`` in place (see the module docstring)."""
    datasets = raw.get("datasets")
    if not isinstance(datasets, list):
        return
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
    _normalise_percentages(raw, datasets, notices)
    settings = raw.get("dataset_settings")
    if isinstance(settings, dict) and "shortfall" not in settings:
        settings["shortfall"] = "take_all"
        notices.append(info("dataset_settings.shortfall", "take_all: a dataset with fewer rows than asked gives "
                                                          "all of them, as in Augmentoolkit"))


def _normalise_percentages(raw: dict[str, Any], datasets: list[Any], notices: list[Notice]) -> None:
    entries = [ds for ds in datasets if isinstance(ds, dict)]
    values = [ds.get("percentage") for ds in entries]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values):
        return   # the schema reports the bad values
    total = float(sum(values))
    if total <= 0 or math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        return
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
