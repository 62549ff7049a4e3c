"""Resuming a killed rollout: the settings a run started with (so a resume that would draw other prompts is
refused), and the prompts ``scored.jsonl`` already holds complete (so they are not generated again)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipelines.common.io import atomic_write_text, read_jsonl
from pipelines.common.problems import Problem
from pipelines.rollout.config import RolloutConfigFile
from pipelines.rollout.selection import complete_row_ids, group_by_prompt

log = logging.getLogger(__name__)

STATE = "rollout_state.json"


def fingerprint(cfg: RolloutConfigFile) -> dict[str, Any]:
    """What must not change between a run and its resume: which prompts are drawn and how many completions."""
    # reward_funcs are left out: they do not change which prompts are drawn, and may hold API keys
    return {"seed": cfg.seed, "datasets": [d.model_dump(exclude={"reward_funcs"}) for d in cfg.datasets],
            "dataset_settings": cfg.dataset_settings.model_dump(exclude={"dynamic_sampling", "difficulty"}),
            "num_completions": cfg.generation.num_completions,
            "max_prompt_length": cfg.generation.max_prompt_length,
            "chat_template": cfg.generation.chat_template}


def resume_problems(cfg: RolloutConfigFile, run_dir: Path, file: str) -> list[Problem]:
    """A problem when ``run_dir`` was started with settings that would draw other prompts than ``cfg``."""
    state_path = run_dir / STATE
    if not state_path.exists():
        return []
    try:
        saved = json.loads(state_path.read_text(encoding="utf-8")).get("fingerprint", {})
    except ValueError:
        return [Problem(file, "resume", f"{state_path} is damaged; choose a new run_name")]
    current = json.loads(json.dumps(fingerprint(cfg), default=str))
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        return [Problem(file, "resume", f"{run_dir} was started with different {', '.join(changed)}; resume with "
                                        "the same settings, or choose a new run_name")]
    return []


def record_state(cfg: RolloutConfigFile, run_dir: Path) -> None:
    """Remember the settings a fresh run starts with, so a resume can be checked against them."""
    if not (run_dir / STATE).exists():
        atomic_write_text(run_dir / STATE, json.dumps({"fingerprint": fingerprint(cfg)}, indent=2, default=str)
                          + "\n")


def load_finished(scored_path: Path, num_completions: int) -> set[str]:
    """Row ids already complete in scored.jsonl; drops the records of a prompt a kill left half-written."""
    if not scored_path.exists():
        return set()
    records = list(read_jsonl(scored_path))
    groups = group_by_prompt(records)
    done = complete_row_ids(groups, num_completions)
    keep = [r for r in records if str(r["row_id"]) in done]
    if len(keep) != len(records):
        log.info("resume: dropping %d record(s) of %d unfinished prompt(s)", len(records) - len(keep),
                 len(groups) - len(done))
        atomic_write_text(scored_path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                               for r in keep))
    return done
