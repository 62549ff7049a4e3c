"""Benchmark: the group judge (``mode: group``) against pointwise judging of the same completions, in one run.

A local OpenAI-compatible server (tests/judge_server.py, real HTTP through the real ``openai`` client) scores by
how much of the reference a candidate contains (tests/containment_judge.py), plus seeded Gaussian noise (sd
``--noise`` on the 1..10 scale, drawn per candidate per request) in both modes, and in group mode a bonus of
``--position-bias`` points for whichever candidate is listed first (what the fresh random order is for). It
answers each request after ``--latency`` seconds.

The data: every row of inputs/rubric_judge.jsonl, each with K=8 candidates (the reference and its degradations
from pipelines/rewards/judge/degrade.py, topped up with other rows' answers). cli_utils/score_completions.py
scores the lines twice, once with ``llm_judge`` pointwise and once with ``mode: group``. Printed: calls and tokens
counted at the server, wall time, and how far the two modes agree: Spearman's rho (scipy) over all completions
and the mean rho within prompt groups (the ranking GRPO uses).

Run:  .venv/bin/python bench/bench_group_judge.py [--noise 0.8] [--position-bias 1.0] [--latency 0.05]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
K = 8


def candidates(answers: list[str], prompts: list[str]) -> list[tuple[str, str, str]]:
    """(prompt, reference, candidate) lines: K per row, grouped by prompt."""
    from pipelines.rewards.judge.degrade import variants

    out = []
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        others = answers[:i] + answers[i + 1:]
        texts = [answer, *variants(answer, others, prompt, seed=i).values()]
        rng = random.Random(i)
        while len(texts) < K:
            texts.append(rng.choice(others))
        out += [(prompt, answer, t) for t in texts[:K]]
    return out


def noisy_script(noise: float, position_bias: float, latency: float):
    """The containment judge with noise and, for groups, a bonus for the first listed candidate."""
    from tests.containment_judge import containment, scripted

    rng, lock = random.Random(0), threading.Lock()

    def score(reference: str, text: str, bonus: float) -> int:
        with lock:
            jitter = rng.gauss(0, noise)
        return int(min(10, max(1, round(1 + 9 * containment(reference, text) + jitter + bonus))))

    return scripted(lambda reference, text, cid: score(reference, text, position_bias if cid == "1" else 0.0),
                    think="", delay_s=latency)


def write_files(folder: Path, base_url: str) -> list[tuple[str, str, str]]:
    import yaml

    from tests.containment_judge import GROUP_RUBRIC, SCORE_1_10, SOUND_RUBRIC

    rows = [json.loads(line) for line in (REPO / "inputs/rubric_judge.jsonl").read_text().splitlines() if line]
    prompts = [r["conversations"][0]["value"] for r in rows]
    answers = [r["conversations"][1]["value"] for r in rows]
    lines = candidates(answers, prompts)
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "in.jsonl").write_text("".join(json.dumps({"conversations": [
        {"from": "human", "value": p}, {"from": "gpt", "value": a}], "completion": c}) + "\n" for p, a, c in lines))
    (folder / "point.yaml").write_text(SOUND_RUBRIC)
    (folder / "group.yaml").write_text(GROUP_RUBRIC)
    for mode in ("pointwise", "group"):
        judge = {"name": "llm_judge", "label": "j", "eval_llm_name": "j", "eval_llm_base_url": base_url,
                 "system_prompt_path": str(folder / "point.yaml"), "score_types": SCORE_1_10,
                 "max_concurrency": 16, **({"mode": "group", "group_prompt_path": str(folder / "group.yaml")}
                                           if mode == "group" else {})}
        cfg = {"seed": 1, "model": {"base_model_name": "builtin:tiny"}, "dataset_settings": {"total_rows": len(rows)},
               "datasets": [{"path": str(folder / "data.jsonl"), "percentage": 1.0, "reward_funcs": [judge]}]}
        (folder / f"{mode}.cfg.yaml").write_text(yaml.safe_dump(cfg))
    return lines


def run_mode(folder: Path, server, mode: str) -> dict:
    from cli_utils.score_completions import main

    server.reset_counters()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["--config", str(folder / f"{mode}.cfg.yaml"), "--input", str(folder / "in.jsonl"), "--output",
                     str(folder / f"{mode}.out.jsonl"), "--overwrite", "--batch-size", "64"])
    wall = time.perf_counter() - started
    assert code == 0, f"score_completions exited {code}"
    scores = [json.loads(ln)["rewards"]["data/j"] for ln in (folder / f"{mode}.out.jsonl").read_text().splitlines()]
    words = sum(len(m.get("content", "").split()) for r in server.requests for m in r.messages)
    return {"calls": len(server.requests), "prompt_words": words, "wall_s": wall, "scores": scores}


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import spearmanr

    from tests.judge_server import JudgeServer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--noise", type=float, default=0.8)
    p.add_argument("--position-bias", type=float, default=1.0)
    p.add_argument("--latency", type=float, default=0.05)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, JudgeServer(noisy_script(args.noise, args.position_bias,
                                                                        args.latency)) as server:
        folder = Path(tmp)
        lines = write_files(folder, server.base_url)
        point = run_mode(folder, server, "pointwise")
        group = run_mode(folder, server, "group")
    a, b = point["scores"], group["scores"]
    rho = spearmanr(a, b).statistic
    within = [spearmanr(a[i:i + K], b[i:i + K]).statistic for i in range(0, len(a), K)]
    within = [r for r in within if r == r]
    print(f"{len(lines)} completions, {len(lines) // K} prompts x K={K}; noise sd {args.noise}, position bias "
          f"{args.position_bias}, latency {args.latency}s per request")
    print(f"{'mode':<10}{'calls':>7}{'prompt words':>14}{'wall s':>9}")
    for name, r in (("pointwise", point), ("group", group)):
        print(f"{name:<10}{r['calls']:>7}{r['prompt_words']:>14}{r['wall_s']:>9.2f}")
    print(f"group / pointwise: calls {group['calls'] / point['calls']:.3f}x, prompt words "
          f"{group['prompt_words'] / point['prompt_words']:.3f}x, wall {group['wall_s'] / point['wall_s']:.2f}x")
    print(f"agreement: Spearman rho over all completions {rho:.3f}; mean within-group rho "
          f"{statistics.mean(within):.3f} (min {min(within):.3f}, {len(within)} groups)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
