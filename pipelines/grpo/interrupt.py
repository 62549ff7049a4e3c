"""Ctrl-C (or SIGTERM, see pipelines.common.termination) during training: save a checkpoint when the weights
are consistent, then let the run exit (130; 143 for SIGTERM).

A KeyboardInterrupt lands wherever the main thread is. Outside an optimizer update (generation, rewards,
forward, backward) the model and optimizer are exactly as the last completed step left them, so a checkpoint
of that step is a clean resume point. Between ``on_pre_optimizer_step`` and ``on_step_end`` they may be half
updated, and nothing is saved. A multi-process run saves nothing either: the other ranks may be anywhere, and
saving is a collective step that could wait for ever. Reward threads are daemon threads, so whatever they are
doing does not keep the process alive.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from pipelines.common.termination import interrupt_word

log = logging.getLogger(__name__)


def update_guard() -> Any:
    """A TrainerCallback whose ``updating`` is True while an optimizer update is under way."""
    from transformers import TrainerCallback

    class UpdateGuard(TrainerCallback):
        updating = False

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.updating = True

        def on_step_end(self, args, state, control, **kwargs):
            self.updating = False

    return UpdateGuard()


def checkpoint_on_interrupt(trainer: Any, run_dir: Path, guard: Any,
                            save: Callable[[Any, Path], Optional[Path]]) -> Optional[Path]:
    """After Ctrl-C or SIGTERM: ``save(trainer, run_dir)`` if that is safe (see the module docstring); log what
    was done. Called from the ``except KeyboardInterrupt`` block, whose exception names the cause in the log."""
    what = interrupt_word(sys.exc_info()[1] or KeyboardInterrupt())
    step = trainer.state.global_step
    if getattr(trainer.accelerator, "num_processes", 1) > 1:
        log.warning("%s at step %d; a multi-process run saves no checkpoint on an interrupt (resume from the "
                    "last saved one)", what, step)
        return None
    if guard is not None and guard.updating:
        log.warning("%s during the optimizer update of step %d: no checkpoint saved (the weights may be "
                    "half updated); resume from the last saved one", what, step + 1)
        return None
    try:
        saved = save(trainer, run_dir)
    except KeyboardInterrupt:
        log.warning("%s again while saving checkpoint-%d: it is left incomplete and a resume skips it",
                    what, step)
        raise
    if saved is not None:
        log.warning("%s at step %d: checkpoint saved to %s", what, step, saved)
    else:
        log.warning("%s at step %d: no new checkpoint was needed", what, step)
    return saved
