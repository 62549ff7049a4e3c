"""Hugging Face datasets as dataset paths: ``hf:org/name`` (the Hub), ``hf:<folder>`` (a local folder in the Hub
layout, or one written by ``Dataset.save_to_disk``).

A split whose data files are local files of a registered format (Parquet, JSON(L): :mod:`pipelines.data.formats`)
is read in place: nothing is converted or copied, and only the drawn rows are decoded. Anything else (a Hub
dataset, CSV, a loading script) goes through ``datasets.load_dataset``, which downloads the files into the local
cache once and memory-maps them as Arrow; its rows are then read by index through the ``hf`` format
(:mod:`pipelines.data.formats.hf_dataset`), so memory stays bounded.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from pipelines.data.formats import supported_suffixes
from pipelines.data.scan import DataFileError

logger = logging.getLogger(__name__)
OFFLINE_HINT = ("if this machine has no internet access, download the dataset where there is (it lands in the "
                "Hugging Face cache, ~/.cache/huggingface or $HF_HOME), copy the cache here and set "
                "HF_HUB_OFFLINE=1; or point path at a local folder (hf:/path/to/folder)")


def hf_name(path: str) -> str:
    """``hf:org/name`` -> ``org/name``."""
    return path[len("hf:"):].strip()


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def folder_problem(path: str) -> str:
    """What to write for a plain ``path:`` naming a folder: ``hf:<folder>`` for a Hugging Face dataset folder
    (Hub layout or ``save_to_disk``), else a glob of its files."""
    folder = Path(path).expanduser()
    suffixes = supported_suffixes()
    hub_layout = any(f.suffix.lower() in suffixes for f in folder.rglob("*") if f.is_file())
    if is_saved_dataset(folder) or hub_layout:
        kind = "written by save_to_disk" if is_saved_dataset(folder) else "in the Hub layout"
        return (f"{path!r} is a folder holding a Hugging Face dataset ({kind}): write `path: hf:{path}` to read "
                f"it (with `split`, default train), or name its files, e.g. `{path.rstrip('/')}/**/*.parquet`")
    return f"{path!r} is a folder, and no file of it is a supported data file ({', '.join(sorted(suffixes))})"


def no_files_problem(path: str) -> str:
    """The message for a plain dataset ``path`` that matches no file (a folder gets :func:`folder_problem`)."""
    if os.path.isdir(os.path.expanduser(path)):
        return folder_problem(path)
    return f"no file matches {path!r} (relative paths are resolved from {os.getcwd()})"


def _unreachable(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(k in text for k in ("connection", "offline", "timed out", "timeout", "resolve", "network",
                                   "couldn't reach", "max retries", "name or service"))


def load_error(name: str, exc: BaseException) -> DataFileError:
    """The error for a dataset that failed to load; an unreachable or offline Hub is named as such."""
    if _unreachable(exc) or os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE", "yes"):
        mode = "HF_HUB_OFFLINE is set and it is not in the local cache" if os.environ.get("HF_HUB_OFFLINE") \
            else "the Hugging Face Hub could not be reached"
        return DataFileError(f"hf:{name}: cannot load the dataset: {mode} ({type(exc).__name__}: "
                             f"{str(exc)[:300]}); {OFFLINE_HINT}")
    return DataFileError(f"hf:{name}: cannot load the dataset ({type(exc).__name__}: {str(exc)[:500]})")


LOCAL_SCAN_LIMIT = 10_000      # entries of a local hf: folder looked at before handing it to `datasets`
_HF_DATA_SUFFIXES = {".csv", ".tsv", ".txt", ".arrow", ".parquet", ".json", ".jsonl", ".zip", ".gz"}


def is_local_name(name: str) -> bool:
    """Whether an ``hf:`` name means a folder on this machine: an absolute, home or ``./`` path, or an existing
    path (``org/name`` that is no folder here is a Hub id)."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def local_folder_problem(folder: Path) -> Optional[str]:
    """What is wrong with a local ``hf:`` folder before ``datasets`` is asked to load it (None when nothing is
    seen): missing, not a folder, holding no data files, or too large to be one dataset's folder."""
    if not folder.exists():
        return f"no such folder {str(folder)!r} (relative paths are resolved from {os.getcwd()})"
    if not folder.is_dir():
        return (f"{str(folder)!r} is a file, not a folder; hf: reads a folder (a save_to_disk dataset or files in "
                "the Hub layout); a single data file is read with path: <file>")
    if is_saved_dataset(folder):
        return None
    seen = 0
    for root, dirs, files in os.walk(folder):
        seen += len(dirs) + len(files)
        if seen > LOCAL_SCAN_LIMIT:
            return (f"{str(folder)!r} holds more than {LOCAL_SCAN_LIMIT} files and folders; point hf: at the "
                    "dataset's own folder")
        if any(Path(f).suffix.lower() in _HF_DATA_SUFFIXES and os.path.isfile(os.path.join(root, f))
               for f in files):
            return None
    return (f"{str(folder)!r} holds no dataset: no state.json or dataset_dict.json (Dataset.save_to_disk) and no "
            f"data files ({', '.join(sorted(_HF_DATA_SUFFIXES))})")


def _json_file(path: Path) -> tuple[Any, Optional[str]]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{path.name} of the saved dataset is corrupt or unreadable ({type(exc).__name__}: {exc})"


def saved_dataset_problem(folder: Path, split: str) -> Optional[str]:
    """What is wrong with a ``save_to_disk`` folder, read with pyarrow alone (None when its JSON files parse and
    every Arrow shard of the split reads to its end): a corrupt ``state.json``, a missing or truncated shard."""
    if (folder / "dataset_dict.json").is_file():
        data, problem = _json_file(folder / "dataset_dict.json")
        if problem:
            return problem
        splits = data.get("splits") if isinstance(data, dict) else None
        if not isinstance(splits, list) or split not in splits or not (folder / split).is_dir():
            return None       # the split choice is reported by the loader, with the splits there are
        folder = folder / split
    state, problem = _json_file(folder / "state.json")
    if problem:
        return problem
    shards = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, dict) and isinstance(s.get("filename"), str)
                                               for s in shards):
        return "state.json of the saved dataset does not list its data files (_data_files)"
    import pyarrow as pa

    for shard in shards:
        path = folder / shard["filename"]
        if not path.is_file():
            return f"the data shard {shard['filename']} listed in state.json is missing"
        try:
            with pa.memory_map(str(path)) as source:
                pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowException) as exc:
            return f"the data shard {shard['filename']} is truncated or corrupt ({type(exc).__name__}: {exc})"
    return None


def local_load_error(name: str, exc: BaseException) -> DataFileError:
    """The error for a local folder that ``datasets`` failed to read, naming the likely cause."""
    text = f"{type(exc).__name__}: {str(exc)[:300]}"
    lowered = text.lower()
    if isinstance(exc, ValueError) and "json" in type(exc).__name__.lower() or "jsondecode" in lowered:
        cause = "a JSON file of the saved dataset (state.json, dataset_info.json) is corrupt"
    elif any(k in lowered for k in ("arrow", "read", "bytes", "ipc", "invalid")) and isinstance(exc, (OSError,
                                                                                                      ValueError)):
        cause = "a data shard (an .arrow or .parquet file) is truncated or corrupt"
    else:
        cause = "the folder cannot be read as a dataset"
    return DataFileError(f"hf:{name}: {cause} ({text}); re-save or re-copy the dataset")


class MissingSplit(DataFileError):
    """The dataset has no split of the configured name: the fix is the entry's ``split``, not the data."""


def _pick_split(loaded: Any, name: str, split: str) -> Any:
    from datasets import DatasetDict
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise MissingSplit(f"hf:{name}: no split {split!r}; splits: {', '.join(loaded)}")
        return loaded[split]
    return loaded


def _local_files(name: str, split: str, subset: Optional[str], revision: Optional[str]) -> Optional[list[Path]]:
    """The split's data files when they are local files of registered formats (read in place), else None."""
    from datasets import load_dataset_builder

    builder = load_dataset_builder(name, subset, revision=revision)
    data_files = getattr(builder.config, "data_files", None) or {}
    if split not in data_files:
        if data_files:
            raise MissingSplit(f"hf:{name}: no split {split!r}; splits: {', '.join(data_files)}")
        return None
    files = [Path(str(f)) for f in data_files[split]]
    readable = supported_suffixes()
    if files and all(f.is_file() and f.suffix.lower() in readable for f in files):
        return files
    return None


def open_hf(path: str, split: str = "train", subset: Optional[str] = None,
            revision: Optional[str] = None) -> tuple[Optional[list[Path]], Any]:
    """(local data files to read in place, or None; else a memory-mapped ``datasets.Dataset``)."""
    name = hf_name(path)
    folder = Path(name).expanduser()
    if is_local_name(name):
        problem = local_folder_problem(folder) or (saved_dataset_problem(folder, split)
                                                   if is_saved_dataset(folder) else None)
        if problem:
            raise DataFileError(f"hf:{name}: {problem}")
    try:
        if folder.is_dir() and is_saved_dataset(folder):
            from datasets import load_from_disk
            return None, _pick_split(load_from_disk(str(folder)), name, split)
        files = _local_files(str(folder) if folder.is_dir() else name, split, subset, revision)
        if files is not None:
            return files, None
        from datasets import load_dataset
        return None, load_dataset(str(folder) if folder.is_dir() else name, subset, split=split,
                                  revision=revision)
    except DataFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets and huggingface_hub raise many types for one failure
        if "split" in str(exc).lower() and "unknown" in str(exc).lower():
            raise MissingSplit(f"hf:{name}: {exc}") from None
        if folder.is_dir():   # a local folder: the Hub and HF_HUB_OFFLINE have nothing to do with it
            raise local_load_error(name, exc) from None
        raise load_error(name, exc) from None
