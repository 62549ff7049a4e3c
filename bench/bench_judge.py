"""Benchmark: LLM-judge throughput with bounded concurrency vs. one call at a time, measured in one run.

A local OpenAI-compatible server (tests/judge_server.py, in its own process so its CPU time does not share our
GIL) answers every request after 200 ms +/- 20%. The real ``llm_judge`` reward scores 256 completions with
``max_concurrency`` 64, then the same reward with ``max_concurrency`` 1 (the sequential baseline). The ideal is
ceil(256 / 64) x 200 ms. Targets: concurrent <= 1.25 x ideal, and >= 40 x faster than sequential.

The judge is warmed with one small batch first (training calls it every step, so its connection pool is warm
from step 2 on). Run:  .venv/bin/python bench/bench_judge.py [--sequential-n 64]
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUBRIC = """- role: system
  content: Grade the answer. End with <score>N</score>, N from 0 to 10.
- role: user
  content: "Question: {input_text}\\nAnswer: {output_text}"
"""


def jitter_floor(n: int, concurrency: int, latency: float, jitter: float, trials: int = 200) -> float:
    """Mean makespan of n jobs with latency +/- jitter on `concurrency` slots and zero overhead (simulated):
    what the jitter alone costs above the ideal."""
    total = 0.0
    for seed in range(trials):
        rng = random.Random(seed)
        slots = [0.0] * concurrency
        for _ in range(n):
            start = heapq.heappop(slots)
            heapq.heappush(slots, start + latency * rng.uniform(1 - jitter, 1 + jitter))
        total += max(slots)
    return total / trials


def start_server(latency: float, jitter: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "judge_server.py"), "--latency", str(latency),
                             "--jitter", str(jitter), "--content", "<think>ok</think><score>7</score>"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"judge server did not start: {line!r}")
    return proc, int(line.split()[1])


def server_stats(proc: subprocess.Popen, command: str = "stats") -> dict:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    return json.loads(line) if command == "stats" else {}


def make_judge(port: int, rubric: Path, concurrency: int):
    from pipelines.rewards.judge.reward import llm_judge
    return llm_judge(eval_llm_name="bench-judge", eval_llm_base_url=f"http://127.0.0.1:{port}/v1",
                     eval_llm_api_key="bench", system_prompt_path=str(rubric),
                     score_types=[{"name": "score", "type": "score", "min": 0, "max": 10}],
                     max_concurrency=concurrency, timeout_s=30, max_retries=2)


def batch(n: int, tag: str) -> tuple[list, list]:
    prompts = [[{"role": "user", "content": f"{tag} question {i}"}] for i in range(n)]
    completions = [[{"role": "assistant", "content": f"<think>hm</think>answer {i}"}] for i in range(n)]
    return prompts, completions


async def timed(reward, n: int, tag: str) -> float:
    prompts, completions = batch(n, tag)
    started = time.perf_counter()
    scores = await reward(prompts, completions)
    elapsed = time.perf_counter() - started
    if scores != [7.0] * n:
        raise RuntimeError(f"unexpected scores: {scores[:5]}...")
    return elapsed


async def run(args: argparse.Namespace, port: int, rubric: Path, proc: subprocess.Popen) -> dict:
    concurrent = make_judge(port, rubric, args.concurrency)
    await timed(concurrent, args.concurrency, "warm-up")
    server_stats(proc, "reset")
    runs = [await timed(concurrent, args.n, f"run{r}") for r in range(args.repeats)]
    in_flight = server_stats(proc)["max_in_flight"]
    metrics = concurrent.pop_metrics()
    sequential = make_judge(port, rubric, 1)
    await timed(sequential, 1, "warm-up-seq")
    seq_elapsed = await timed(sequential, args.sequential_n, "seq")
    seq_full = seq_elapsed * args.n / args.sequential_n
    await concurrent.aclose()
    await sequential.aclose()
    ideal = math.ceil(args.n / args.concurrency) * args.latency
    conc = statistics.median(runs)
    return {"n": args.n, "concurrency": args.concurrency, "latency_s": args.latency, "jitter": args.jitter,
            "concurrent_s_runs": [round(r, 3) for r in runs], "concurrent_s": round(conc, 3),
            "ideal_s": round(ideal, 3), "ratio_to_ideal": round(conc / ideal, 3),
            "jitter_floor_s": round(jitter_floor(args.n, args.concurrency, args.latency, args.jitter), 3),
            "sequential_n": args.sequential_n, "sequential_s": round(seq_full, 3),
            "speedup_vs_sequential": round(seq_full / conc, 1), "server_max_in_flight": in_flight,
            "judge_latency_p50_s": round(metrics.get("judge/bench/latency_p50_s", 0.0), 3),
            "judge_latency_p95_s": round(metrics.get("judge/bench/latency_p95_s", 0.0), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="completions per batch (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=64, help="max_concurrency (default %(default)s)")
    p.add_argument("--latency", type=float, default=0.2, help="server latency, s (default %(default)s)")
    p.add_argument("--jitter", type=float, default=0.2, help="+/- fraction of the latency (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="concurrent batches timed; the median is reported")
    p.add_argument("--sequential-n", type=int, default=256,
                   help="completions timed one at a time; fewer is faster and extrapolated to --n (labelled)")
    args = p.parse_args(argv)
    proc, port = start_server(args.latency, args.jitter)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rubric = Path(tmp) / "bench.yaml"
            rubric.write_text(RUBRIC, encoding="utf-8")
            result = asyncio.run(run(args, port, rubric, proc))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    ok_ideal = result["ratio_to_ideal"] <= 1.25
    ok_seq = result["speedup_vs_sequential"] >= 40
    extrapolated = " (extrapolated)" if args.sequential_n != args.n else ""
    print(f"judge benchmark: {args.n} completions, {args.latency * 1000:.0f} ms +/- {args.jitter:.0%}, "
          f"max_concurrency {args.concurrency}")
    print(f"  concurrent  {result['concurrent_s']:.3f} s (median of {args.repeats}: {result['concurrent_s_runs']})")
    print(f"  ideal       {result['ideal_s']:.3f} s  -> {result['ratio_to_ideal']:.2f} x ideal "
          f"(target <= 1.25: {'PASS' if ok_ideal else 'FAIL'})")
    print(f"  jitter floor {result['jitter_floor_s']:.3f} s (simulated makespan with zero overhead: "
          f"{result['jitter_floor_s'] / result['ideal_s']:.2f} x ideal)")
    print(f"  sequential  {result['sequential_s']:.3f} s{extrapolated} -> {result['speedup_vs_sequential']:.1f} x "
          f"faster (target >= 40: {'PASS' if ok_seq else 'FAIL'})")
    print(f"  server max in flight {result['server_max_in_flight']}, request latency p50 "
          f"{result['judge_latency_p50_s']:.3f} s, p95 {result['judge_latency_p95_s']:.3f} s")
    print(json.dumps(result))
    return 0 if ok_ideal and ok_seq else 1


if __name__ == "__main__":
    sys.exit(main())
