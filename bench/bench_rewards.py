"""Benchmark: the reward stack against calling the same reward functions by hand, measured in one run.

    .venv/bin/python bench/bench_rewards.py            # about 10 seconds
    .venv/bin/python bench/bench_rewards.py --quick

1. Overhead: a batch of completions from two datasets scored by ``RewardStack.reward_func`` (routing,
   combination, scaling, metrics) vs a hand-written loop calling the same built-in functions and summing.
2. Concurrency: four async rewards that each wait ``--latency`` seconds (an HTTP judge's round trip), over
   two datasets: the stack (all awaited at once) vs awaiting them one after another.
3. Countdown: the safe ``ast`` evaluator vs the AgileRL tutorial's regex + ``eval`` on the same benign
   equations, and the slowest refusal over hostile inputs (``eval`` of ``9**9**9`` would not finish).
4. Hostile text (issue 16, F9): 1 MB completions built to make lazy or ambiguous regexes backtrack (thousands of
   unclosed ``<answer>`` tags, a judge number padded with spaces and stars), scored by the built-in parsers
   (goal: under 50 ms each). The old regexes are quadratic or worse, so they are timed on a smaller copy of the
   same text (``--old-kb``), next to the new parsers on that copy: the ratio is measured, not extrapolated.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time

from pipelines.data.config import DatasetEntry
from pipelines.rewards.builtin import countdown_score
from pipelines.rewards.judge.parse import last_tag_value, parse_number, strip_judge_reasoning
from pipelines.rewards.catalog import get_reward_factory
from pipelines.rewards.config import RewardSection
from pipelines.rewards.engine import RewardStack
from pipelines.rewards.safe_arith import UnsafeExpression, evaluate


def latency_reward(latency: float = 0.05):
    async def latency_reward(prompts, completions, **kw):
        await asyncio.sleep(latency)
        return [1.0] * len(completions)
    return latency_reward


def stack_for(lists):
    """The reward stack of one dataset per reward list, with the default reward section."""
    datasets = [DatasetEntry.model_validate({"path": f"d{i}.jsonl", "percentage": 0.5, "reward_funcs": f})
                for i, f in enumerate(lists)]
    return RewardStack(RewardSection(), datasets)


def batch(n: int, rng: random.Random):
    words = ["Joy", "sea", "city", "lovely", "river", "rain", "the", "is"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(n)]
    kw = {"dataset_index": [i % 2 for i in range(n)], "answer": ["Joy"] * n, "row_id": [str(i) for i in range(n)]}
    prompts = [[{"role": "user", "content": "q"}]] * n
    return prompts, [[{"role": "assistant", "content": t}] for t in texts], kw


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_overhead(n: int, repeats: int) -> None:
    d0 = [{"name": "keyword", "keywords": ["Joy"]}, {"name": "length_target", "ideal_length": 40}]
    d1 = [{"name": "answer_match"}, {"name": "repetition_penalty"}]
    stack = stack_for([d0, d1])
    prompts, completions, kw = batch(n, random.Random(0))
    fns = [[get_reward_factory(e["name"])(**{k: v for k, v in e.items() if k != "name"}) for e in d] for d in (d0, d1)]

    def by_hand():
        out = [0.0] * n
        for d in (0, 1):
            pos = [i for i in range(n) if kw["dataset_index"][i] == d]
            sub = {k: [v[i] for i in pos] for k, v in kw.items()}
            for fn in fns[d]:
                for i, s in zip(pos, fn([prompts[i] for i in pos], [completions[i] for i in pos], **sub)):
                    out[i] += s
        return out

    def stacked():
        return stack.reward_func(prompts=prompts, completions=completions, **kw)

    assert stacked() == by_hand()
    base, ours = best_of(by_hand, repeats), best_of(stacked, repeats)
    print(f"overhead  ({n} completions, 2 datasets x 2 rewards): by hand {base * 1e3:.2f} ms, "
          f"RewardStack {ours * 1e3:.2f} ms, ratio {ours / base:.2f}x, "
          f"+{(ours - base) / n * 1e6:.1f} us per completion")


def bench_concurrency(latency: float, repeats: int) -> None:
    entry = {"name": "__main__:latency_reward", "latency": latency}
    stack = stack_for([[entry, entry], [entry, entry]])
    prompts, completions, kw = batch(32, random.Random(1))
    fns = [latency_reward(latency) for _ in range(4)]

    async def sequential():
        for fn in fns:
            await fn(prompts, completions, **kw)

    base = best_of(lambda: asyncio.run(sequential()), repeats)
    ours = best_of(lambda: stack.reward_func(prompts=prompts, completions=completions, **kw), repeats)
    print(f"concurrency (4 async rewards, {latency * 1e3:.0f} ms each): one after another {base * 1e3:.0f} ms, "
          f"RewardStack {ours * 1e3:.0f} ms, speed-up {base / ours:.2f}x")


def seed_equation_reward(completion: str, target, nums) -> float:
    """The AgileRL tutorial's equation check (regex + eval), the baseline: trusted input only."""
    tags = re.findall(r"<answer>([\s\S]*?)<\/answer>", completion)
    if len(tags) != 1:
        return 0.0
    equation = tags[0].strip()
    if sorted(int(n) for n in re.findall(r"\d+", equation)) != sorted(nums):
        return 0.0
    if not re.match(r"^[\d+\-*/().\s]+$", equation):
        return 0.0
    try:
        result = eval(equation, {"__builtins__": None}, {})  # noqa: S307 - the baseline being measured
    except Exception:
        return 0.0
    return 1.0 if abs(float(result) - float(target)) < 1e-5 else 0.0


def bench_countdown(n: int) -> None:
    rng = random.Random(2)
    cases = []
    for _ in range(n):
        nums = [rng.randint(1, 99) for _ in range(4)]
        ops = [rng.choice("+-*") for _ in range(3)]
        eq = f"({nums[0]} {ops[0]} {nums[1]}) {ops[1]} {nums[2]} {ops[2]} {nums[3]}"
        cases.append((f"think</think>\n<answer>{eq}</answer>", eval(eq), nums))  # noqa: S307 - building targets
    base = best_of(lambda: [seed_equation_reward(*c) for c in cases], 3)
    ours = best_of(lambda: [countdown_score(*c) for c in cases], 3)
    assert [countdown_score(*c) for c in cases] == [seed_equation_reward(*c) for c in cases]
    hostile = ["9**9**9", "(" * 300 + "1" + ")" * 300, "-" * 500 + "1", "9" * 5000, "1e308*1e308",
               "+".join(["99999"] * 100), "().__class__.__base__"]
    worst = 0.0
    for expr in hostile:
        start = time.perf_counter()
        try:
            evaluate(expr)
        except UnsafeExpression:
            pass
        worst = max(worst, time.perf_counter() - start)
    print(f"countdown ({n} equations): seed regex+eval {base / n * 1e6:.1f} us each, safe ast "
          f"{ours / n * 1e6:.1f} us each, ratio {ours / base:.2f}x; slowest hostile refusal {worst * 1e6:.0f} us "
          f"(seed eval of 9**9**9: does not finish)")


OLD_ANSWER_TAG = re.compile(r"<answer>([\s\S]*?)</answer>")                       # countdown, answer_match
OLD_JUDGE_NUMBER = re.compile(r"^\s*\**\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:/\s*\d+(?:\.\d*)?)?\s*\**\s*$")
OLD_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)   # the judge's reasoning strip


def hostile_cases(old_bytes: int):
    """(name, text maker (size in bytes -> text), new parser, old regex, size for the old regex)."""
    answer_match = get_reward_factory("answer_match")()
    return [
        ("countdown: unclosed <answer> tags", lambda size: "<answer>" * (size // 8),
         lambda t: countdown_score(t, 1, [1]), lambda t: len(OLD_ANSWER_TAG.findall(t)) == 1, old_bytes),
        ("answer_match: unclosed <answer> tags", lambda size: "<answer>" * (size // 8),
         lambda t: answer_match([[]], [t], answer=["x"]), lambda t: OLD_ANSWER_TAG.findall(t)[-1:], old_bytes),
        ("judge: unclosed <score> tags", lambda size: "<score>" * (size // 7),
         lambda t: last_tag_value(t, "score"),
         lambda t: re.findall(r"<score>(.*?)</score>", t, re.DOTALL | re.IGNORECASE)[-1:], old_bytes),
        ("judge: unclosed <think> tags", lambda size: "<think>" * (size // 7),
         strip_judge_reasoning, lambda t: OLD_THINK_BLOCK.sub("", t), old_bytes),
        # cubic in the old form: its copy is smaller still
        ("judge: number padded with spaces and stars", lambda size: "1" + " " * (size // 3) + "*" * (size // 3)
         + " " * (size // 3) + "x", parse_number, OLD_JUDGE_NUMBER.match, max(300, old_bytes // 10)),
    ]


def bench_hostile(size: int, old_bytes: int, repeats: int) -> None:
    print(f"hostile text ({size / 1e6:.1f} MB per completion; old regexes on the smaller copy shown):")
    for name, make, new, old, old_size in hostile_cases(old_bytes):
        text = make(size)
        ours = best_of(lambda: new(text), repeats)
        small = make(old_size)
        base_small = best_of(lambda: old(small), 1)
        ours_small = best_of(lambda: new(small), repeats)
        print(f"  {name}: new {ours * 1e3:.2f} ms at {len(text) / 1e6:.1f} MB "
              f"({'under' if ours < 0.05 else 'OVER'} 50 ms); at {len(small) / 1e3:.1f} KB old {base_small:.3f} s, "
              f"new {ours_small * 1e3:.3f} ms, {base_small / ours_small:,.0f}x faster")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--latency", type=float, default=0.05, help="simulated async reward latency (s)")
    parser.add_argument("--old-kb", type=int, default=16, help="size of the text the old regexes get (KB)")
    parser.add_argument("--hostile-mb", type=float, default=1.0, help="size of each hostile completion (MB)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"python {sys.version.split()[0]}; best of {repeats} runs each")
    bench_overhead(256 if args.quick else 1024, repeats)
    bench_concurrency(args.latency, repeats)
    bench_countdown(2000 if args.quick else 20000)
    bench_hostile(int(args.hostile_mb * 1_000_000), args.old_kb * 1000, repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
