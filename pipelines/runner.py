"""The workflow runner: load the super-config, validate every selected node, then run them in order.

Exit codes: 0 success; 2 invalid configuration or input (every problem printed at once); 1 a node failed at
run time (later nodes do not run; the failing node and its error are printed last).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional, Sequence

from pipelines.common.guards import EXIT_GUARD, GuardStop
from pipelines.common.http_logs import quiet_http_clients
from pipelines.common.io import make_readable
from pipelines.common.node import validate_node_config
from pipelines.common.notices import log_notices
from pipelines.common.pins import version_warning
from pipelines.common.problems import ConfigError, Problem
from pipelines.common.redaction import RedactingFilter, redact_handlers, redact_text
from pipelines.common.refs import record_latest, substitute_refs
from pipelines.common.rundir import MANIFEST, RESOLVED_CONFIG, RUN_LOG, open_run_dir, read_manifest, write_manifest
from pipelines.common.runlock import LOCK_FILE, RunDirBusy, RunLock, RunLockRefused, check_launched_rank
from pipelines.common.devices import current_rank
from pipelines.common.stack import log_stack
from pipelines.common.termination import (EXIT_TERMINATED, Terminated, interrupt_word,
                                          sigterm_as_interrupt)
from pipelines.launch import requested_processes, run_launched, write_rank_error
from pipelines.planning import PlannedNode, plan, secondary_machine
from pipelines.validation import report_problems, validate_summary

log = logging.getLogger(__name__)
EXIT_OK, EXIT_NODE_FAILED, EXIT_CONFIG = 0, 1, 2


def build_parser(prog: str = "run_pipeline.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run the pipeline nodes listed in a super-config (default ./super_config.yaml), in order. "
                    "Every node config is validated before anything runs.",
        epilog="Exit codes: 0 success, 1 a node failed at run time, 2 invalid configuration or input, 3 stopped by "
               "a guard, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM; a checkpoint is saved as on Ctrl-C).")
    p.add_argument("--super-config", default="super_config.yaml", metavar="PATH",
                   help="super-config listing the nodes (default: %(default)s)")
    p.add_argument("--only", metavar="NAME_OR_INDEX", help="run only this entry (its node name or 0-based index)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override for each selected node's config, applied after the super-config's "
                        "overrides; VALUE is parsed as YAML (repeatable)")
    p.add_argument("--validate", action="store_true",
                   help="load and check everything (configs, files, rewards, data), print a summary, load no model")
    p.add_argument("--full-scan", action="store_true",
                   help="with --validate: read and classify every row of every data file (default: count rows "
                        "and check only the rows that would be drawn)")
    p.add_argument("--check-judges", action="store_true",
                   help="with --validate: send one tiny request to each LLM-judge endpoint")
    p.add_argument("--calibrate-judges", action="store_true",
                   help="with --validate: score reference answers, degraded copies and golden examples with each "
                        "LLM judge; exit 2 when a rubric fails its calibration floors (separation, length bias, "
                        "saturation, test-retest, agreement). Prints the calls it sends first")
    p.add_argument("--preflight", action="store_true",
                   help="for each training node: load the model, run three optimizer steps (one warm-up, two "
                        "timed) on the longest prompts with full-length completions, call each judge, save and "
                        "reload a checkpoint; print peak memory, step time, tokens/s and the projected wall time. "
                        "Writes nothing to the run dirs (a run dir that holds a run is fine: preflight a resume)")
    p.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="train with N processes (accelerate launch); overrides launch.num_processes")
    p.add_argument("--outputs", default="outputs", metavar="DIR", help="folder for run dirs (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--launched-rank", action="store_true", help=argparse.SUPPRESS)  # set by pipelines.worker
    return p


def _resolve_refs(node: PlannedNode) -> list[Any]:
    """Substitute @label.output references now that earlier nodes have run, then re-validate; returns what
    each reference resolved to (the caller logs it into run.log)."""
    ctx = node.ctx
    found: list[Any] = []
    resolved = substitute_refs(ctx.raw_config, ctx.manifests, ctx.outputs_root, ctx.ref_scope, found)
    if resolved == ctx.raw_config:
        return found
    ctx.raw_config = resolved
    cfg, problems = validate_node_config(node.spec, resolved, ctx)
    if problems:
        raise ConfigError(problems)
    node.cfg = cfg
    return found


def _remove_if_only_bookkeeping(run_dir: Path) -> None:
    bookkeeping = {RESOLVED_CONFIG, RUN_LOG, MANIFEST, LOCK_FILE}
    if run_dir.is_dir() and all(p.name in bookkeeping for p in run_dir.iterdir()):
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()


def _worker_args(node: PlannedNode, args: argparse.Namespace) -> list[str]:
    """Runner arguments that make one rank re-plan exactly this entry with the same run dir."""
    out = ["--super-config", args.super_config, "--only", str(node.ctx.index), "--outputs", args.outputs]
    for item in args.sets:
        out += ["--set", item]
    tp = node.ctx.raw_config.get("training_parameters")
    # The run name (a default one too) names the ranks' run dir, unless an output_dir does (a --set run_name
    # would make the ranks drop it: see planning._command_line_run_name).
    if node.ctx.raw_config.get("run_name") and not (isinstance(tp, dict) and tp.get("output_dir")):
        out += ["--set", f"run_name={node.ctx.raw_config['run_name']}"]
    if args.num_processes is not None:
        out += ["--set", f"launch.num_processes={args.num_processes}"]
    return out + (["--verbose"] if args.verbose else [])


def _execute(node: PlannedNode, args: argparse.Namespace, lock: RunLock) -> dict[str, Any]:
    """Run the node in this process, or under a multi-process launcher; return its outputs."""
    ctx = node.ctx
    processes = requested_processes(ctx.raw_config, ctx.num_processes)
    if ctx.launched or processes <= 1:
        return node.spec.run_function()(node.cfg, ctx) or {}
    log.info("node %s: launching %d processes", node.label, processes)
    # The launcher inherits the locked file and the ranks the lock's token: the lock outlives this process
    # while any of them runs, and a rank refuses to run in a folder another run holds.
    run_launched(ctx.raw_config, ctx.run_dir, processes, _worker_args(node, args), keep_fds=(lock.fd,),
                 extra_env=lock.launch_env())
    return (read_manifest(ctx.run_dir) or {}).get("outputs", {})


def run_launched_rank(node: PlannedNode) -> int:
    """One rank of a launched node: log to run.log (rank 0) or run.rank<N>.log; rank 0 writes the manifest."""
    ctx, rank = node.ctx, current_rank()
    refused = None if secondary_machine(ctx.raw_config) else check_launched_rank(ctx.run_dir)
    if refused:
        report_problems([Problem(ctx.config_file, "run_name", refused)])
        return EXIT_CONFIG
    refs = _resolve_refs(node)
    handler = logging.FileHandler(ctx.run_dir / (RUN_LOG if rank == 0 else f"run.rank{rank}.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(ctx.secrets))
    logging.getLogger().addHandler(handler)
    try:
        for ref in refs:
            log.info("reference %s", ref)
        outputs = node.spec.run_function()(node.cfg, ctx) or {}
        if rank == 0:
            write_manifest(ctx.run_dir, node.spec.name, "completed", outputs)
        return EXIT_OK
    except BaseException:
        write_rank_error(ctx.run_dir, traceback.format_exc())
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def run_planned(node: PlannedNode, args: argparse.Namespace) -> dict[str, Any]:
    """Run one node in its run dir, holding the run dir's lock from before the first write to the end."""
    ctx = node.ctx
    refs = _resolve_refs(node)
    lock = RunLock(ctx.run_dir)
    if secondary_machine(ctx.raw_config):   # machine_rank > 0 joins the run whose lock machine 0 holds
        return _run_in_run_dir(node, args, lock, refs)
    try:
        lock.acquire()
    except RunLockRefused as exc:   # another run started there since validation, or a bad run.lock: touch nothing
        kind = "busy" if isinstance(exc, RunDirBusy) else "config"
        raise ConfigError([Problem(ctx.config_file, "run_name", str(exc), kind=kind)]) from None
    try:
        return _run_in_run_dir(node, args, lock, refs)
    finally:
        lock.release()


def _run_in_run_dir(node: PlannedNode, args: argparse.Namespace, lock: RunLock, refs: list[Any]) -> dict[str, Any]:
    ctx = node.ctx
    handler = open_run_dir(ctx.run_dir, ctx.raw_config, ctx.secrets, ctx.secret_fields)
    try:
        log_stack()   # what this run ran on, then any package that differs from its pin
        warning = version_warning()
        if warning:
            log.warning(warning)
        log.info("node %s (%s): run dir %s", node.label, node.spec.name, ctx.run_dir)
        log_notices(ctx.notices, ctx.config_file)   # what a compatibility reading translated, once
        for ref in refs:
            log.info("reference %s", ref)
        outputs = _execute(node, args, lock)
        write_manifest(ctx.run_dir, node.spec.name, "completed", outputs)
        manifest = read_manifest(ctx.run_dir) or {}
        ctx.manifests[node.label] = manifest
        record_latest(ctx.outputs_root, node.label, manifest, ctx.ref_scope)
        return outputs
    except ConfigError:
        # Input problems found by the node before it did any work: leave no half-run behind to block a rerun.
        logging.getLogger().removeHandler(handler)
        handler.close()
        _remove_if_only_bookkeeping(ctx.run_dir)
        raise
    except GuardStop as exc:   # stopped on purpose (monitor alert, spending cap): resumable, not failed
        log.warning("%s", exc)
        write_manifest(ctx.run_dir, node.spec.name, "stopped", {"guard": exc.kind})
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):   # Ctrl-C or SIGTERM: say so in run.log, not only on the console
            log.warning("node %s %s; this run dir keeps what was written%s", node.label, interrupt_word(exc),
                        f" (resume with {node.spec.resume_hint})" if node.spec.resume_hint else "")
        write_manifest(ctx.run_dir, node.spec.name, "failed", {})
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        make_readable(ctx.run_dir)   # whatever a library wrote 0600 (safetensors, temp files) reads as 0644


def main(argv: Optional[Sequence[str]] = None, prog: str = "run_pipeline.py") -> int:
    """The runner's command line (``prog`` names it in usage and errors); returns the exit code. SIGTERM is
    handled as Ctrl-C is (see :mod:`pipelines.common.termination`) and exits 143."""
    with sigterm_as_interrupt():
        try:
            return _main(argv, prog)
        except Terminated:   # before or between nodes: nothing of a node to save
            print("\nterminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED


def _main(argv: Optional[Sequence[str]], prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.full_scan and not args.validate:
        parser.error("--full-scan only applies with --validate (training reads only the rows it draws)")
    if args.calibrate_judges and not args.validate:
        parser.error("--calibrate-judges only applies with --validate (it loads no model)")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    redact_handlers(logging.getLogger().handlers)   # the console too: secrets are registered while planning
    quiet_http_clients(args.verbose)
    try:
        planned, problems = plan(args)
    except ConfigError as exc:
        planned, problems = [], exc.problems
    if args.validate:   # the data, rubric and judge checks run beside the config problems: one pass
        return validate_summary(planned, args, problems)
    if problems:
        report_problems(problems)
        return EXIT_CONFIG
    if args.preflight:
        return preflight(planned)
    if args.launched_rank:
        return run_launched_rank(planned[0])
    for node in planned:
        started = time.time()
        try:
            run_planned(node, args)
        except ConfigError as exc:
            report_problems(exc.problems)
            return EXIT_CONFIG
        except GuardStop as exc:
            print(redact_text(f"\nnode {node.label!r}: {exc}\nits run dir {node.ctx.run_dir} keeps a checkpoint; "
                              "raise or remove the limit, then resume"
                              + (f" with {node.spec.resume_hint}" if node.spec.resume_hint else "")), file=sys.stderr)
            return EXIT_GUARD
        except KeyboardInterrupt as exc:
            print(f"\nnode {node.label!r} {interrupt_word(exc)}; its run dir {node.ctx.run_dir} keeps what was written"
                  + (f" (resume with {node.spec.resume_hint})" if node.spec.resume_hint else ""), file=sys.stderr)
            return EXIT_TERMINATED if isinstance(exc, Terminated) else 130
        except Exception as exc:  # noqa: BLE001 - any node failure ends the pipeline with exit 1
            log.debug("traceback:\n%s", traceback.format_exc())
            print(redact_text(traceback.format_exc()), file=sys.stderr, end="")
            # An error that leaves the run resumable (e.g. a judge that went down) says how to continue it.
            hint = (f"\nfix the cause, then resume with {node.spec.resume_hint}"
                    if getattr(exc, "resumable", False) and node.spec.resume_hint else "")
            print(redact_text(f"\nnode {node.label!r} (entry {node.ctx.index}) failed after "
                              f"{time.time() - started:.0f}s: {type(exc).__name__}: {exc}{hint}\nlater nodes were "
                              f"not run; see {node.ctx.run_dir / 'run.log'}"), file=sys.stderr)
            return EXIT_NODE_FAILED
    return EXIT_OK


def preflight(planned: list[PlannedNode]) -> int:
    """--preflight: each node's worst-case step (nodes without the hook are listed as skipped)."""
    from pipelines.common.node import import_callable

    for node in planned:
        print(f"[{node.ctx.index}] {node.label}: preflight")
        if node.spec.preflight is None:
            print("    no preflight: not a training node")
            continue
        try:
            lines = import_callable(node.spec.preflight)(node.cfg, node.ctx)
        except ConfigError as exc:
            report_problems(exc.problems)
            return EXIT_CONFIG
        except Exception as exc:  # noqa: BLE001 - an OOM or any failure of the step ends the preflight
            log.debug("traceback:\n%s", traceback.format_exc())
            print(f"\npreflight of {node.label!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_NODE_FAILED
        for line in lines:
            print(f"    {line}")
    print(f"OK: preflight passed for {len(planned)} node(s)")
    return EXIT_OK
