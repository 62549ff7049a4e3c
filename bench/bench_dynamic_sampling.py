"""Benchmark: dynamic sampling on vs off, as held-out reward reached per generated token, measured in one run.

Both sides train the quickstart task (builtin tiny model, keyword reward "Joy", same seed, same steps) with a
held-out evaluation every ``--eval-every`` steps; the only difference is ``dataset_settings.dynamic_sampling``.
Early on most groups are all-zero (no completion says "Joy"), so they teach nothing: dynamic sampling spends extra
generation on fresh rows to replace them. Whether that pays is a question of reward per token, not per step, so
the bench reads, from each run's metrics.jsonl, TRL's cumulative ``num_tokens`` (prompt + completion tokens of
every generated completion, extra batches included) and the held-out ``eval/reward_mean`` at each evaluation,
and prints for each side: the final held-out reward, the tokens spent, held-out reward per million tokens, and
the tokens each side needed to first reach held-out rewards of 0.25, 0.5, 0.75 and the *off* run's final one;
then the on/off ratios. Once the task saturates (every completion solved, so every group is dead again) dynamic
sampling keeps paying for extra batches that find nothing, so the "tokens to reach" ratios are the fairer reading.

Run:  .venv/bin/python bench/bench_dynamic_sampling.py [--steps 20] [--eval-every 5] [--seeds 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart.yaml"
LEVELS = (0.25, 0.5, 0.75)


def config(name: str, seed: int, steps: int, eval_every: int, enabled: bool) -> dict[str, Any]:
    cfg = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    cfg.update(run_name=name, seed=seed)
    cfg["training_parameters"].update(max_steps=steps, save_steps=10_000, max_completion_length=12)
    cfg["evaluation"] = {"rows": 16, "interval_steps": eval_every, "max_reward": 1.0, "num_generations": 2}
    cfg["dataset_settings"]["dynamic_sampling"] = {"enabled": enabled, "max_extra_batches": 2}
    cfg["logging"]["log_completions_every"] = 0
    return cfg


def run(outputs: Path, cfg: dict[str, Any]) -> Path:
    """One training run through the runner (in this process); returns its run dir."""
    from pipelines.runner import main

    folder = outputs / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    node = folder / f"{cfg['run_name']}.yaml"
    node.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    sc = folder / f"{cfg['run_name']}.super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": str(node)}]}), encoding="utf-8")
    code = main(["--super-config", str(sc), "--outputs", str(outputs)])
    if code != 0:
        raise SystemExit(f"run {cfg['run_name']} failed with exit code {code}")
    return outputs / cfg["run_name"]


def curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, cumulative tokens, held-out reward) at each evaluation."""
    tokens: dict[int, float] = {}
    evals: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "num_tokens" in rec:
            tokens[rec["step"]] = rec["num_tokens"]
        if "eval/reward_mean" in rec:
            evals[rec["step"]] = rec["eval/reward_mean"]
    return [(step, tokens.get(step, max(tokens.values())), reward) for step, reward in sorted(evals.items())]


def tokens_to_reach(points: list[tuple[int, float, float]], target: float) -> Optional[float]:
    return next((tok for _, tok, reward in points if reward >= target - 1e-9), None)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1, help="seeds 42, 43, ... (each trains both sides)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        outputs = Path(tmp) / "out"
        for seed in range(42, 42 + args.seeds):
            curves = {mode: curve(run(outputs, config(f"{mode}-{seed}", seed, args.steps, args.eval_every,
                                                        mode == "on")))
                      for mode in ("off", "on")}
            target = curves["off"][-1][2]
            for mode, points in curves.items():
                final_tokens, final_reward = points[-1][1], points[-1][2]
                rows.append({"seed": seed, "mode": mode, "final_eval_reward": final_reward, "tokens": final_tokens,
                             "reward_per_mtok": final_reward / final_tokens * 1e6,
                             "tokens_to_off_final": tokens_to_reach(points, target), "curve": points})
    print(f"{'seed':>4} {'mode':>4} {'held-out reward':>15} {'tokens':>9} {'reward/Mtok':>11} "
          f"{'tokens to off final':>19}")
    for r in rows:
        reach = "-" if r["tokens_to_off_final"] is None else f"{r['tokens_to_off_final']:.0f}"
        print(f"{r['seed']:>4} {r['mode']:>4} {r['final_eval_reward']:>15.3f} {r['tokens']:>9.0f} "
              f"{r['reward_per_mtok']:>11.1f} {reach:>19}")
        print(f"          curve (step, tokens, held-out reward): "
              f"{[(s, int(t), round(v, 3)) for s, t, v in r['curve']]}")
    by = {(r["seed"], r["mode"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    per_tok = [by[s, "on"]["reward_per_mtok"] / by[s, "off"]["reward_per_mtok"] for s in seeds
               if by[s, "off"]["reward_per_mtok"] > 0]
    tokens = [by[s, "on"]["tokens"] / by[s, "off"]["tokens"] for s in seeds]
    print(f"on/off tokens generated: {statistics.median(tokens):.2f}x (median over {len(seeds)} seed(s))")
    for level in LEVELS:
        pairs = [(tokens_to_reach(by[s, "on"]["curve"], level), tokens_to_reach(by[s, "off"]["curve"], level))
                 for s in seeds]
        ratios = [on / off for on, off in pairs if on and off]
        reached = f"on reached it in {sum(1 for on, _ in pairs if on)}/{len(seeds)}, off in " \
                  f"{sum(1 for _, off in pairs if off)}/{len(seeds)}"
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "n/a"
        print(f"on/off tokens to reach held-out reward {level}: {ratio} ({reached})")
    if per_tok:
        print(f"on/off held-out reward per generated token: {statistics.median(per_tok):.2f}x")
    reach = [by[s, "on"]["tokens_to_off_final"] / by[s, "off"]["tokens_to_off_final"] for s in seeds
             if by[s, "on"]["tokens_to_off_final"] and by[s, "off"]["tokens_to_off_final"]]
    if reach:
        print(f"on/off tokens to reach the off run's final held-out reward: {statistics.median(reach):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
