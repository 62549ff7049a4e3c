"""Benchmark: what the evolutionary search costs on top of the GRPO steps it trains, measured in one run.

Baseline: the grpo node training P x G x S steps on the tiny model with a held-out evaluation every S steps.
Search: the grpo_hpo node with P members x G generations x S steps (the same number of optimizer steps and
evaluations, the same data, rewards and sampling settings). Only the learning rate and the temperature are
searched, so a member's step costs what a baseline step costs; the difference is the evolution itself: a new
trainer per member and generation, its checkpoint saved and loaded, selection and the state file.
Both run in this process (imports warm), alternately, ``--repeats`` times. The fastest run of each is
compared (on a shared machine the others' load only ever adds time); medians are printed too.
Run:  .venv/bin/python bench/bench_hpo.py [--repeats 3] [--population 3 --generations 3 --steps 5]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart_hpo.yaml"


def configs(tmp: Path, tiny: Path, population: int, generations: int, steps: int) -> tuple[Path, Path]:
    from pipelines.common.config_io import load_yaml

    raw = load_yaml(QUICKSTART)
    raw["model"]["base_model_name"] = str(tiny)
    raw["datasets"][0]["path"] = str(REPO / "inputs" / "quickstart.jsonl")
    raw["evaluation"].update(rows=8, interval_steps=steps)
    raw["hpo"].update(population_size=population, generations=generations, steps_per_generation=steps,
                      search_space={"learning_rate": {"min": 0.002, "max": 0.05, "log": True},
                                    "temperature": {"min": 0.8, "max": 1.2}})
    grpo = {k: v for k, v in raw.items() if k != "hpo"}
    grpo["training_parameters"] = dict(grpo["training_parameters"], max_steps=population * generations * steps,
                                       save_steps=steps, save_total_limit=1)
    out = []
    for node, cfg in (("grpo", grpo), ("grpo_hpo", raw)):
        (tmp / f"{node}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        sc = tmp / f"super_{node}.yaml"
        sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": node, "config": f"{node}.yaml"}]}),
                      encoding="utf-8")
        out.append(sc)
    return out[0], out[1]


def timed(sc: Path, outputs: Path, run_name: str) -> float:
    from pipelines.runner import main

    started = time.perf_counter()
    code = main(["--super-config", str(sc), "--outputs", str(outputs), "--set", f"run_name={run_name}"])
    if code != 0:
        raise SystemExit(f"{sc.name} failed with exit code {code}")
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--population", type=int, default=3)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    from pipelines.common.tiny_model import build_tiny_model

    logging.disable(logging.INFO)   # keep the benchmark's own output readable
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        tiny = build_tiny_model(tmp / "tiny", seed=0)
        grpo_sc, hpo_sc = configs(tmp, tiny, args.population, args.generations, args.steps)
        timed(grpo_sc, tmp / "out", "warmup")   # imports, first-use costs
        grpo_t, hpo_t = [], []
        for i in range(args.repeats):
            grpo_t.append(timed(grpo_sc, tmp / "out", f"grpo{i}"))
            hpo_t.append(timed(hpo_sc, tmp / "out", f"hpo{i}"))
    g, h = min(grpo_t), min(hpo_t)
    switches = args.population * args.generations
    steps = switches * args.steps
    print(f"{steps} optimizer steps and {switches} evaluations each "
          f"({args.population} members x {args.generations} generations x {args.steps} steps)")
    print(f"grpo (one trainer):        fastest {g:6.2f} s, median {statistics.median(grpo_t):6.2f} s  "
          f"(runs: {', '.join(f'{t:.2f}' for t in grpo_t)})")
    print(f"grpo_hpo (population):     fastest {h:6.2f} s, median {statistics.median(hpo_t):6.2f} s  "
          f"(runs: {', '.join(f'{t:.2f}' for t in hpo_t)})")
    print(f"ratio search / plain (fastest runs): {h / g:.2f}x")
    print(f"overhead per member-generation (trainer, checkpoint save + load, selection): "
          f"{(h - g) / switches:.2f} s")


if __name__ == "__main__":
    main()
