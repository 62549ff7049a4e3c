"""Checkpoints: which one to resume from, and a marker that says a checkpoint was written completely.

transformers writes ``checkpoint-N/`` in place, file by file. A kill during a save leaves a half-written
folder, so every finished checkpoint gets a ``COMPLETE`` marker, written atomically after everything else
(and removed first when a save overwrites an existing folder); ``resume_from_checkpoint: auto`` only picks
marked checkpoints. Only an explicit path may name an unmarked one (e.g. written by plain transformers): it
is accepted when its ``trainer_state.json`` (written last) parses and its weights and optimizer are there.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional, Union

from pipelines.common.io import atomic_write_text
from pipelines.common.problems import ConfigError, Problem

log = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(checkpoint_dir: Path, step: int) -> None:
    atomic_write_text(Path(checkpoint_dir) / COMPLETE_MARKER, json.dumps({"global_step": step}) + "\n")


def clear_marker(checkpoint_dir: Path) -> None:
    """Remove the marker before a save writes into an existing folder: a kill during that save must not leave
    a folder that claims to be complete while holding half-new files."""
    (Path(checkpoint_dir) / COMPLETE_MARKER).unlink(missing_ok=True)


def checkpoint_step(checkpoint_dir: Path, require_marker: bool = False) -> Optional[int]:
    """The global step a complete checkpoint was saved at, or None when it is incomplete or unreadable.
    With ``require_marker`` only checkpoints carrying this node's completeness marker count."""
    checkpoint_dir = Path(checkpoint_dir)
    state = checkpoint_dir / "trainer_state.json"
    try:
        step = int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    marker = checkpoint_dir / COMPLETE_MARKER
    if marker.exists():
        return step
    if require_marker:
        return None
    # A checkpoint from an earlier save that our marker did not cover (e.g. written by plain transformers):
    # trainer_state.json is written last, so a parsable one means the rest is there.
    has_weights = any((checkpoint_dir / n).exists() for n in
                      ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin"))
    return step if has_weights and any(checkpoint_dir.glob("optimizer.*")) else None


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete (marked) checkpoints in ``run_dir`` as (step, path), oldest first."""
    out = []
    if not Path(run_dir).is_dir():
        return out
    for child in Path(run_dir).iterdir():
        if child.is_dir() and _CHECKPOINT_RE.match(child.name):
            step = checkpoint_step(child, require_marker=True)
            if step is None:
                log.warning("ignoring incomplete checkpoint %s (interrupted while saving)", child)
            else:
                out.append((step, child))
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def stopped_before_first_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only an attempt that failed before its first complete checkpoint: its manifest
    says ``failed`` (an error, Ctrl-C or SIGTERM), and there is no checkpoint to resume from, no final adapter and
    no search state (``hpo/``). Such a run dir does not block its own name: running it again restarts from step
    0. (A run killed with -9 leaves no manifest: its folder is refused with a hint, as a live run's could be.)"""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or latest_checkpoint(run_dir) is not None:
        return False
    if (run_dir / "final_adapter").exists() or (run_dir / "hpo").exists():
        return False
    try:
        status = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    return status == "failed"


def resolve_resume(setting: Union[str, bool, None], run_dir: Path, config_file: str) -> Optional[Path]:
    """``auto`` -> the latest complete checkpoint in the run dir (None if there is none yet); a path -> that
    checkpoint (ConfigError when it is missing or incomplete); false -> None."""
    if setting in (False, None, "false", "False", ""):
        return None
    if setting in ("auto", True):
        found = latest_checkpoint(run_dir)
        if found is None:
            log.warning("resume_from_checkpoint: auto found no complete checkpoint in %s; starting from step 0",
                        run_dir)
        else:
            log.info("resuming from %s", found)
        return found
    problems = resume_path_problems(setting, config_file)
    if problems:
        raise ConfigError(problems)
    return Path(str(setting))


def resume_path_problems(setting: Union[str, bool, None], config_file: str) -> list[Problem]:
    """A ``resume_from_checkpoint`` path that is no complete checkpoint folder (checked by --validate too);
    ``auto`` and false are always fine."""
    if setting in (False, None, True, "false", "False", "", "auto"):
        return []
    key = "training_parameters.resume_from_checkpoint"
    path = Path(str(setting))
    if not path.is_dir():
        return [Problem(config_file, key, f"checkpoint folder {path} does not exist; give a checkpoint-N folder "
                                          "of this run, or `auto`")]
    if checkpoint_step(path) is None:
        return [Problem(config_file, key, f"{path} is not a complete checkpoint (no readable trainer_state.json); "
                                          "pick an earlier one or use `auto`")]
    return []
