"""Multi-process launching: a node asking for more than one process runs under ``accelerate launch``.

The runner validates and opens the run dir in the parent process, then starts one subprocess per node run:
``accelerate launch ... -m pipelines.worker <runner args>`` on GPU machines, or ``torch.distributed.run``
(torchrun) on CPU-only machines, where accelerate's launcher has no multi-process mode without MPI. Each rank
re-plans its single entry (configs are cheap to load), runs the node, and on failure writes its traceback to
``<run_dir>/rank_errors/rank<N>.txt`` so the parent can name the failing rank and its error.

``launch.device: cpu`` runs the processes on the CPU even on a GPU machine: torchrun, with the GPUs hidden
from the ranks (``CUDA_VISIBLE_DEVICES=""``). On CUDA one process per GPU is the rule, checked at --validate
against :func:`pipelines.common.devices.visible_gpu_count` (two ranks on one GPU fail in NCCL with "Duplicate GPU detected").
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from pipelines.common.devices import current_rank, visible_gpu_count
from pipelines.common.redaction import redact_text

RANK_ERRORS = "rank_errors"
log = logging.getLogger(__name__)


def requested_processes(raw_config: dict[str, Any], cli_value: Optional[int]) -> int:
    """--num-processes wins over the config's launch.num_processes (default 1)."""
    if cli_value is not None:
        return cli_value
    launch = raw_config.get("launch") if isinstance(raw_config, dict) else None
    return int((launch or {}).get("num_processes") or 1)


def uses_cpu(raw_config: dict[str, Any]) -> bool:
    """``launch.device: cpu``: the node's processes run on the CPU even where GPUs are visible."""
    launch = raw_config.get("launch") if isinstance(raw_config, dict) else None
    return isinstance(launch, dict) and launch.get("device") == "cpu"


def _has_gpu() -> bool:
    return visible_gpu_count() > 0


def build_command(raw_config: dict[str, Any], num_processes: int, worker_args: list[str],
                  use_accelerate: Optional[bool] = None) -> list[str]:
    """The launcher command line for one node run."""
    launch = dict(raw_config.get("launch") or {})
    machines = int(launch.get("num_machines") or 1)
    if use_accelerate is None:
        use_accelerate = not uses_cpu(raw_config) and _has_gpu()
    if use_accelerate:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes * machines),
               "--num_machines", str(machines), "--machine_rank", str(launch.get("machine_rank") or 0)]
        if launch.get("accelerate_config"):
            cmd += ["--config_file", str(launch["accelerate_config"])]
        elif num_processes * machines > 1:
            cmd += ["--multi_gpu"]
        if launch.get("main_process_ip"):
            cmd += ["--main_process_ip", str(launch["main_process_ip"])]
        if launch.get("main_process_port"):
            cmd += ["--main_process_port", str(launch["main_process_port"])]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(num_processes),
               "--nnodes", str(machines), "--node_rank", str(launch.get("machine_rank") or 0)]
        if machines > 1 or launch.get("main_process_ip"):
            cmd += ["--master_addr", str(launch.get("main_process_ip") or "127.0.0.1"),
                    "--master_port", str(launch.get("main_process_port") or 29500)]
        else:
            cmd += ["--standalone"]
    return cmd + ["-m", "pipelines.worker", *worker_args]


def launch_env(raw_config: dict[str, Any], extra_env: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The ranks' environment: one OpenMP thread each unless set, ``extra_env``, and no visible GPU with
    ``launch.device: cpu`` (torch, TRL and the node then take their CPU paths)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), **(extra_env or {}))
    if uses_cpu(raw_config):
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_launched(raw_config: dict[str, Any], run_dir: Path, num_processes: int, worker_args: list[str],
                 keep_fds: tuple[int, ...] = (), extra_env: Optional[dict[str, str]] = None) -> None:
    """Start the ranks and wait; raise RuntimeError naming the failing rank and its error. ``keep_fds`` stay
    open in the launcher (the run dir's lock), ``extra_env`` is added to every rank's environment."""
    errors_dir = run_dir / RANK_ERRORS
    if errors_dir.exists():
        shutil.rmtree(errors_dir)
    cmd = build_command(raw_config, num_processes, worker_args)
    env = launch_env(raw_config, extra_env)
    launcher = subprocess.Popen(cmd, env=env, pass_fds=tuple(fd for fd in keep_fds if fd is not None))
    code = wait_for_launcher(launcher, num_processes)
    if code != 0:
        raise RuntimeError(f"{num_processes} processes launched, exit code {code}: {first_rank_error(errors_dir)}")


def wait_for_launcher(launcher: subprocess.Popen, num_processes: int, grace_s: float = 60.0) -> int:
    """Wait for the launcher's exit code. Interrupted meanwhile: Ctrl-C reached every process of the terminal's
    group, ranks included, so the launcher gets a moment to end; SIGTERM (``kill PID``) reached only this process,
    so it is passed on to the launcher, which passes it to the ranks (torchrun and accelerate both do). Each rank
    then stops as a Ctrl-C stops it: a multi-process run saves no checkpoint on an interrupt (its ranks may be
    anywhere, and saving is a collective step), so a resume starts from the last saved one. A launcher still
    running after ``grace_s`` seconds is killed."""
    from pipelines.common.termination import Terminated, interrupt_word

    try:
        return launcher.wait()
    except KeyboardInterrupt as exc:
        log.warning("%s: %s the %d ranks; a multi-process run saves no checkpoint on an interrupt, resume from the "
                    "last saved one", interrupt_word(exc),
                    "passing SIGTERM on to" if isinstance(exc, Terminated) else "waiting for", num_processes)
        if isinstance(exc, Terminated):
            launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        raise


def first_rank_error(errors_dir: Path) -> str:
    files = sorted(errors_dir.glob("rank*.txt")) if errors_dir.is_dir() else []
    if not files:
        return "no rank reported an error (see the output above)"
    text = files[0].read_text(encoding="utf-8").strip().splitlines()
    return f"{files[0].stem}: {text[-1] if text else '?'} (traceback in {files[0]})"


def write_rank_error(run_dir: Path, text: str) -> None:
    errors_dir = run_dir / RANK_ERRORS
    errors_dir.mkdir(parents=True, exist_ok=True)
    (errors_dir / f"rank{current_rank()}.txt").write_text(redact_text(text), encoding="utf-8")
