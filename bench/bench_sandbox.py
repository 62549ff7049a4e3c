"""Benchmark: the code sandbox's cost per call against a bare subprocess running the same snippet.

    .venv/bin/python bench/bench_sandbox.py              # about 10 s on 2 cores
    .venv/bin/python bench/bench_sandbox.py --runs 50 --snippet both

For each snippet, one round runs the same program three ways, in turn, so that a drift of the machine's speed hits
all three alike: a bare ``python3 -I -S -`` subprocess (the baseline: no isolation, no limits), the sandbox in
``bwrap`` mode, and the sandbox in ``unsafe_subprocess`` mode (the same interpreter with rlimits, an empty
environment and a per-call user id, no namespaces). Each call's wall time is taken around the whole call, start
to reaped; the ratio to the baseline is taken round by round and the median printed with its min-max spread.

Snippets: ``hello`` (``print('hello')``: pure start-up cost) and ``work`` (a loop of about 50 ms: how much of a
real test run the start-up is). Where bwrap cannot start, its column says why.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time

from pipelines.common.sandbox import SandboxSettings, default_python, probe, run_python

SNIPPETS = {"hello": "print('hello')",
            "work": "total = 0\nfor i in range(300_000):\n    total += i * i\nprint(total)"}


def bare(code: str, python: str) -> str:
    return subprocess.run([python, "-I", "-S", "-X", "utf8", "-"], input=code, capture_output=True, text=True,
                          check=True).stdout


def timed(fn) -> tuple[float, str]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(code: str, runs: int, modes: list[str]) -> dict[str, list[float]]:
    python = default_python()
    settings = {m: SandboxSettings(mode=m, wall_s=60, cpu_s=60) for m in modes}
    calls = {"bare": lambda: bare(code, python),
             **{m: (lambda m=m: run_python(code, settings[m]).stdout) for m in modes}}
    for fn in calls.values():   # warm-up: page cache, first fork of each path
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    expected = calls["bare"]()
    for _ in range(runs):
        for name, fn in calls.items():
            seconds, out = timed(fn)
            if out != expected:
                raise SystemExit(f"{name} printed {out[:80]!r}, not {expected[:80]!r}")
            times[name].append(seconds)
    return times


def report(name: str, times: dict[str, list[float]]) -> None:
    base = times["bare"]
    print(f"\n{name}: {len(base)} rounds; median ms per call [min-max], ratio to bare per round: median [min-max]")
    for mode, values in times.items():
        ratios = [v / b for v, b in zip(values, base)]
        extra = statistics.median(v - b for v, b in zip(values, base)) * 1000
        print(f"  {mode:18s} {statistics.median(values) * 1000:7.1f} ms [{min(values) * 1000:.1f}-"
              f"{max(values) * 1000:.1f}]  {statistics.median(ratios):5.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
              f"  +{extra:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds per snippet (default 30)")
    parser.add_argument("--snippet", choices=[*SNIPPETS, "both"], default="both")
    args = parser.parse_args(argv)
    reason = probe()
    modes = ["unsafe_subprocess"] if reason else ["bwrap", "unsafe_subprocess"]
    if reason:
        print(f"bwrap mode skipped: {reason}")
    print(f"interpreter in the sandbox: {default_python()}; Python {sys.version.split()[0]} runs the bench")
    for name in (SNIPPETS if args.snippet == "both" else [args.snippet]):
        report(name, measure(SNIPPETS[name], args.runs, modes))
    return 0


if __name__ == "__main__":
    logging.getLogger("pipelines.common.sandbox").setLevel(logging.ERROR)   # the unsafe mode's warning per call
    sys.exit(main())
