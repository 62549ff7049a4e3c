"""Reward components: one (dataset, reward function) pair each, built once per run, and their names.

Component names are ``<dataset label>/<reward label>`` (``quickstart/keyword``): the dataset's ``label`` (default:
its file name without extension) and the reward's ``label`` (default: the function name). A default used twice
gets ``_2``, ``_3``... (``quickstart/keyword_2``).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pipelines.rewards import catalog
from pipelines.rewards.config import RewardedDataset
from pipelines.rewards.errors import RewardFunctionError
from pipelines.rewards.forms import is_async_callable, text_completions


@dataclass
class Component:
    """One (dataset, reward function) pair, built once per run."""

    name: str            # quickstart/keyword (<dataset label>/<reward label>)
    func_name: str       # the entry's name
    dataset_index: int
    dataset_path: str
    fn: Callable[..., Any]
    weight: float = 1.0
    gate: bool = False
    main_thread: bool = False   # a sync reward that must run on the main thread (math-verify's signal timeouts)

    @property
    def label(self) -> str:
        return f"reward {self.func_name!r} of datasets[{self.dataset_index}] ({self.dataset_path})"


def _numbered(bases: Sequence[str]) -> list[str]:
    """``a, a, b`` -> ``a, a_2, b``."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for base in bases:
        seen[base] += 1
        out.append(base + (f"_{seen[base]}" if seen[base] > 1 else ""))
    return out


def _safe(text: str, fallback: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_") or fallback


def dataset_labels(datasets: Sequence[Any]) -> list[str]:
    """Each dataset's label: its ``label``, else its file name without extension (numbered when repeated)."""
    bases = []
    for i, ds in enumerate(datasets):
        label = getattr(ds, "label", None)
        bases.append(label or _safe(Path(str(ds.path)).name.split(".")[0], f"dataset{i}"))
    return _numbered(bases)


def reward_label(entry: Any) -> str:
    """A reward entry's label: its ``label``, else its function name (``module:fn`` -> ``fn``)."""
    return entry.label or _safe(entry.name.rsplit(":", 1)[-1], "reward")


def component_names(datasets: Sequence[RewardedDataset]) -> list[list[str]]:
    """Component names per dataset, in reward_funcs order (see the module docstring for the scheme)."""
    return [[f"{ds_label}/{name}" for name in _numbered([reward_label(e) for e in ds.reward_funcs])]
            for ds_label, ds in zip(dataset_labels(datasets), datasets)]


def build_components(datasets: Sequence[RewardedDataset]) -> list[list[Component]]:
    """Call every factory once (a plain reward function is used as it is); RewardFunctionError names the entry
    whose factory failed. An entry's ``text_completions`` overrides the registered default."""
    names = component_names(datasets)
    out: list[list[Component]] = []
    for i, ds in enumerate(datasets):
        comps = []
        for j, entry in enumerate(ds.reward_funcs):
            where = f"datasets[{i}].reward_funcs[{j}] ({entry.name!r}, dataset {ds.path})"
            try:
                fn, resolved = catalog.build_reward(entry.name, catalog.entry_kwargs(entry))
            except Exception as exc:
                raise RewardFunctionError(f"{where}: building the reward function failed: "
                                          f"{type(exc).__name__}: {exc}") from exc
            as_text = resolved.record.text_completions if entry.text_completions is None else entry.text_completions
            if as_text:
                fn = text_completions(fn)
            main_thread = resolved.record.main_thread and not is_async_callable(fn)
            comps.append(Component(names[i][j], entry.name, i, ds.path, fn, entry.weight, entry.gate, main_thread))
        out.append(comps)
    return out
