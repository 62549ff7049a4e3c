"""Run directories: one folder per node run holding everything it writes.

A run dir starts with ``resolved_config.yaml`` (overrides applied, secrets redacted) and ``run.log``, and
ends with ``manifest.json``, which later nodes read to refer to this run's outputs (``@grpo.final_adapter``).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from pipelines.common.config_io import REDACTED, dump_yaml, redact
from pipelines.common.io import atomic_write_text
from pipelines.common.problems import Problem

RESOLVED_CONFIG = "resolved_config.yaml"
MANIFEST = "manifest.json"
RUN_LOG = "run.log"


def default_run_name(node: str, now: _dt.datetime | None = None) -> str:
    return f"{node}-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


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
    """Refuse to reuse a folder that holds a run unless the config resumes it (``resume_hint`` says how)."""
    if holds_a_run(run_dir) and not resume:
        return [Problem(file, key, f"{run_dir} already holds a run; choose another run_name (e.g. --set "
                                   f"run_name=NEW) or resume it with {resume_hint}. Existing results are never "
                                   f"overwritten")]
    return []


class RedactingFilter(logging.Filter):
    """Replaces known secret values in every log record with ***."""

    def __init__(self, secrets: set[str]):
        super().__init__()
        self.secrets = {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for s in self.secrets:
                message = message.replace(s, REDACTED)
            record.msg, record.args = message, None
        return True


def open_run_dir(run_dir: Path, resolved_config: dict[str, Any], secrets: set[str]) -> logging.Handler:
    """Create the folder, write the redacted config and attach a ``run.log`` handler to the root logger."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RESOLVED_CONFIG, dump_yaml(redact(resolved_config, secrets)))
    handler = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logging.getLogger().addHandler(handler)
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
