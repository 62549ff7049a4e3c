"""Where the experiment trackers' files went, said at the end of a run (wandb offline runs need `wandb sync`)."""
from __future__ import annotations

from pathlib import Path


def tracker_lines(report_to: str, wandb_mode: str, run_dir: Path) -> list[str]:
    """Lines for the log: the tensorboard folder and how to view it, or the wandb run folders and, offline, the
    ``wandb sync`` command that uploads each."""
    run_dir = Path(run_dir)
    if report_to == "tensorboard":
        folder = run_dir / "tensorboard"
        return [f"tensorboard logs: {folder} (view them with `tensorboard --logdir {folder}`)"]
    if report_to != "wandb":
        return []
    runs = sorted((run_dir / "wandb").glob("offline-run-*" if wandb_mode == "offline" else "run-*"))
    if wandb_mode != "offline":
        return [f"wandb files: {run_dir / 'wandb'} (the run was synced to the wandb project as it went)"]
    if not runs:
        return [f"wandb ran offline, but no offline run folder is in {run_dir / 'wandb'}"]
    return [f"wandb ran offline: its files are in {runs[-1]}; upload them with `wandb sync {runs[-1]}`"
            + (f" (earlier parts of this run: {len(runs) - 1} more folder(s) beside it, `wandb sync "
               f"{run_dir / 'wandb'}/offline-run-*` uploads all)" if len(runs) > 1 else "")]
