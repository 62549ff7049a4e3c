"""Benchmark: how long `run_pipeline.py --validate` takes to answer, against a bare interpreter that imports the
libraries any config check needs (yaml, pydantic), side by side in the same run.

    .venv/bin/python bench/bench_validate.py              # 5 repeats each, the quickstart config
    .venv/bin/python bench/bench_validate.py --repeats 10

The test suite only bounds this time generously (a timed unit test is not a benchmark; issue 26). Each measurement
is a whole subprocess (interpreter start and imports included), as a user meets it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = ["-c", "import yaml, pydantic"]


def _seconds(args: list[str], expect: int) -> float:
    started = time.perf_counter()
    code = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True).returncode
    elapsed = time.perf_counter() - started
    if code != expect:
        raise SystemExit(f"{args} exited {code}, expected {expect}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        validate = ["run_pipeline.py", "--validate", "--outputs", out]
        bad = validate + ["--set", "training_parameters.loss_type=foo"]
        rows = {"baseline (import yaml, pydantic)": [], "--validate, quickstart (exit 0)": [],
                "--validate, a bad key (exit 2)": []}
        for _ in range(args.repeats):     # interleaved: load changes hit every case alike
            rows["baseline (import yaml, pydantic)"].append(_seconds(BASELINE, 0))
            rows["--validate, quickstart (exit 0)"].append(_seconds(validate, 0))
            rows["--validate, a bad key (exit 2)"].append(_seconds(bad, 2))
    base = statistics.median(rows["baseline (import yaml, pydantic)"])
    print(f"{'case':36} {'median s':>9} {'min s':>7} {'max s':>7} {'x baseline':>11}")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:36} {med:9.2f} {min(values):7.2f} {max(values):7.2f} {med / base:11.1f}")


if __name__ == "__main__":
    main()
