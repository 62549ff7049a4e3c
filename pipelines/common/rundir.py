"""Run directories: one folder per node run holding everything it writes.

A run dir starts with ``resolved_config.yaml`` (overrides applied, secrets redacted) and ``run.log``, and
ends with ``manifest.json``, which later nodes read to refer to this run's outputs (``@grpo.final_adapter``).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.common.config_history import keep_earlier_config
from pipelines.common.config_io import dump_yaml
from pipelines.common.io import atomic_write_text
from pipelines.common.problems import Problem
from pipelines.common.redaction import RedactingFilter, redact_config
from pipelines.common.runlock import LOCK_FILE, lock_file_problem

RESOLVED_CONFIG = "resolved_config.yaml"
MANIFEST = "manifest.json"
RUN_LOG = "run.log"
RUN_LOCK = LOCK_FILE
# Every name a node of this project writes at the top of a run dir (TRL adds its model card, README.md). A
# config path into the run dir (reward.high_scoring_save_path) may not take one: it would overwrite an artifact.
RESERVED_NAMES = frozenset({
    RESOLVED_CONFIG, MANIFEST, RUN_LOG, RUN_LOCK, "rank_errors", "README.md", "tensorboard",
    "metrics.jsonl", "summary.json", "reward_curve.png", "final_adapter",                       # grpo
    "hpo", "hpo_history.jsonl", "hpo_fitness.png", "elite_adapter",                             # grpo_hpo
    "scored.jsonl", "scored.parquet", "sft.jsonl", "preferences.jsonl", "rollout_state.json",   # rollout
})
# File systems allow 255 bytes per name; a run name also appears inside longer names (temp files, checkpoints of
# the hub repo, ``.latest`` records), so it keeps a margin.
MAX_NAME_BYTES = 200
_RESERVED_RE = re.compile(r"^(checkpoint-\d+|run\.rank\d+\.log|resolved_config\.\d+\.yaml)$")


def default_run_name(node: str, now: _dt.datetime | None = None, pid: int | None = None) -> str:
    """``<node>-<YYYYmmdd-HHMMSS>-<process id>``: two runs started in the same second get different names."""
    return f"{node}-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}-{pid or os.getpid()}"


def name_problem(value: object, inside: str = "the outputs folder") -> str | None:
    """Why ``value`` is not one plain folder or file name (None when it is): no separators, ``.``, ``..``,
    absolute paths or leading dots (``outputs/.latest`` and ``outputs/.cache`` are the tool's own)."""
    text = str(value)
    if not text.strip():
        return "is empty"
    if "\x00" in text:
        return "contains a NUL character"
    if "/" in text or "\\" in text or os.sep in text:
        return f"{text!r} must be one name, without / or \\ (a path may not leave or nest inside {inside})"
    if text.startswith("."):
        return f"{text!r} must not start with '.' ('.', '..' and dot-names are kept for the tool's own files)"
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long ({text[:40]!r}...); a name may be at most {MAX_NAME_BYTES} bytes"
    return None


def run_file_problem(value: str) -> str | None:
    """Why ``value`` cannot name a file of its own inside a run dir (None when it can): one name, not one of
    the artifacts a run writes there (metrics.jsonl, final_adapter, checkpoint-N, ...)."""
    parts = PurePosixPath(str(value)).parts  # "./x.jsonl" -> ("x.jsonl",)
    name = parts[0] if len(parts) == 1 and parts[0] != "/" else str(value)
    problem = name_problem(name, inside="the run dir")
    if problem:
        return problem
    if name in RESERVED_NAMES or _RESERVED_RE.match(name):
        return f"{name!r} is a file or folder the run itself writes; choose another name (e.g. high_scores.jsonl)"
    return None


def check_run_location(raw: dict[str, Any], node: str, outputs_root: Path, file: str) -> list[Problem]:
    """The run dir a config asks for stays where it belongs: ``run_name`` is one name (at most
    :data:`MAX_NAME_BYTES` bytes) inside ``outputs_root``; an explicit ``training_parameters.output_dir`` is not
    the working folder (or above it) nor someone else's non-empty folder; its ``run.lock``, if any, is a regular
    file."""
    problems = outputs_root_problems(outputs_root)
    if raw.get("run_name") is not None:
        problem = name_problem(raw["run_name"])
        if problem:
            problems.append(Problem(file, "run_name", f"{problem}; a run dir is always {outputs_root}/<run_name>"))
    explicit = (raw.get("training_parameters") or {}).get("output_dir") if isinstance(
        raw.get("training_parameters"), dict) else None
    if explicit:
        target = Path(str(explicit)).expanduser().resolve()
        cwd = Path.cwd().resolve()
        key = "training_parameters.output_dir"
        if target == cwd or target in cwd.parents or target == outputs_root.resolve():
            problems.append(Problem(file, key, f"{explicit!r} is the working folder, one above it, or the outputs "
                                               f"folder itself; give the run a folder of its own"))
        elif any(len(os.fsencode(part)) > 255 for part in target.parts):
            problems.append(Problem(file, key, f"{str(explicit)[:60]!r}...: a folder name in it is longer than the "
                                               f"255 bytes a file system allows"))
        elif target.is_file() or (target.is_dir() and any(target.iterdir()) and not holds_a_run(target)):
            problems.append(Problem(file, key, f"{explicit!r} already exists and holds no run of this tool; a run "
                                               f"dir is created by the run (choose a new or empty folder)"))
    if not problems:   # a run.lock or run.log that is a symlink would make the run write elsewhere
        run_dir = run_dir_for(raw, node, outputs_root)
        key = "training_parameters.output_dir" if explicit else "run_name"
        problems += [Problem(file, key, p) for p in [lock_file_problem(run_dir), *_appended_file_problems(run_dir)]
                     if p]
    return problems


def _appended_file_problems(run_dir: Path) -> list[str]:
    """Files a run opens and appends to in place (not replaced by a rename) must be regular files if present:
    a symlink there would make the run write through it, outside the run dir."""
    problems = []
    for name in (RUN_LOG, "metrics.jsonl"):
        path = run_dir / name
        if os.path.islink(path) or (os.path.lexists(path) and not path.is_file()):
            problems.append(f"{path} is a symbolic link or not a regular file; a run appends to it in place, so "
                            "it is refused (nothing was written). Remove it")
    return problems


def outputs_root_problems(outputs_root: Path) -> list[Problem]:
    """The outputs folder (``--outputs``) must be a folder or creatable as one: not a file, nor below one."""
    for path in (outputs_root, *outputs_root.parents):
        if path.is_dir():
            return []
        if os.path.lexists(path):
            what = "is" if path == outputs_root else f"lies inside {path}, which is"
            return [Problem("command line", "--outputs", f"{outputs_root} {what} a file, not a folder; name a folder for the "
                                             "run dirs (default: outputs)")]
    return []


def run_dir_for(config: dict[str, Any], node: str, outputs_root: Path) -> Path:
    """The run dir a node config asks for: training_parameters.output_dir, else outputs/<run_name>."""
    # A malformed section (a list or a string) is the schema's to report; here it just names no output_dir.
    section = config.get("training_parameters") if isinstance(config, dict) else None
    explicit = section.get("output_dir") if isinstance(section, dict) else None
    if explicit and isinstance(explicit, (str, Path)):
        return Path(explicit)
    return outputs_root / str(config.get("run_name") or node)


def holds_a_run(run_dir: Path) -> bool:
    return (run_dir / RESOLVED_CONFIG).exists() or (run_dir / MANIFEST).exists()


def check_run_dir_free(run_dir: Path, resume: bool, file: str, resume_hint: str,
                       key: str = "run_name") -> list[Problem]:
    """Refuse to reuse a folder that holds a run unless the config resumes it (``resume_hint`` says how).
    (A folder another run is using right now is refused by the runner for every node, see common.runlock.)"""
    if holds_a_run(run_dir) and not resume:
        return [Problem(file, key, f"{run_dir} already holds a run; choose another run_name (e.g. --set "
                                   f"run_name=NEW) or resume it with {resume_hint}. Existing results are never "
                                   f"overwritten")]
    return []


def open_run_dir(run_dir: Path, resolved_config: dict[str, Any], secrets: set[str],
                 secret_fields: dict[str, set[str]] | None = None) -> logging.Handler:
    """Create the folder, write the redacted config and attach a ``run.log`` handler to the root logger. A
    resume whose config differs keeps the earlier one (``resolved_config.N.yaml``) and warns with the changes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shown = redact_config(resolved_config, secrets, secret_fields)
    kept, changes = keep_earlier_config(run_dir / RESOLVED_CONFIG, shown)
    atomic_write_text(run_dir / RESOLVED_CONFIG, dump_yaml(shown))
    handler = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logging.getLogger().addHandler(handler)
    if kept is not None:
        logging.getLogger(__name__).warning(
            "this run dir's config changed since its earlier part (which is kept as %s); the run continues with "
            "the new values:\n  %s", kept.name, "\n  ".join(changes))
    return handler


def write_manifest(run_dir: Path, node: str, status: str, outputs: dict[str, Any]) -> None:
    data = {"node": node, "run_dir": str(run_dir), "status": status,
            "finished": _dt.datetime.now().isoformat(timespec="seconds"),
            "outputs": {k: str(v) for k, v in outputs.items()}}
    atomic_write_text(run_dir / MANIFEST, json.dumps(data, indent=2) + "\n")


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
