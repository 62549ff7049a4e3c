"""Benchmark: the GRPO node's train-step time against a bare TRL GRPOTrainer script, measured in one run.

Both sides train the quickstart task: the builtin tiny model (built once by ``build_tiny_model``), the same
prompts in the same order (the node's sampled rows, handed to the bare script as a ``datasets.Dataset``), the
same keyword reward ("Joy"; a plain function on the bare side, the node's reward stack on the other), the same
GRPOConfig values, seed and steps, and a PEFT ``LoraConfig`` of the same shape.

* (a) node: ``pipelines.runner.main`` on the quickstart config (data layer, reward stack, NodeGRPOTrainer and its
  callbacks: metrics.jsonl, reward_curve.png, completion samples, checkpoint markers), with ``monitor`` on (warn):
  the share of the step spent on signal metrics and sentinels is printed.
* (b) bare: ``trl.GRPOTrainer`` with nothing else.

The same ``TrainerCallback`` times both: ``step`` is on_step_begin -> on_step_end (generation, rewards, loss,
backward, optimizer); ``cycle`` is on_step_end -> the next on_step_end (adds batch fetch, logging, callbacks and
checkpoint saves). The first ``--warmup`` steps are dropped. Each run is its own subprocess, alternating
A B A B ... ``--repeats`` times; the medians of the per-run means are compared. The GRPOConfig of both sides is
dumped and diffed, so a fair comparison is checked, not assumed.

Run:  .venv/bin/python bench/bench_step_overhead.py [--repeats 4] [--steps 30] [--warmup 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart.yaml"
TARGET = 1.05
# GRPOConfig fields expected to differ between the two sides (paths and names only).
IGNORED_ARGS = {"output_dir", "run_name", "logging_dir"}


def timing_callback(sink: dict):
    """The one callback both sides use: per-step (begin->end) and per-cycle (end->end) wall times."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.begin = None
            self.last_end = None
            self.probe = None      # node side: cumulative CPU seconds of signal metrics + monitor

        def on_step_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()
            self.begin_cpu = time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            sink.setdefault("step", []).append(now - self.begin)
            # CPU seconds of the whole process (all threads): barely moved by other jobs on a shared box.
            sink.setdefault("step_cpu", []).append(time.process_time() - self.begin_cpu)
            if self.last_end is not None:
                sink.setdefault("cycle", []).append(now - self.last_end)
                sink.setdefault("cycle_cpu", []).append(time.process_time() - self.last_end_cpu)
                # This cycle ran the log/save of the previous step: remember whether that one saved.
                sink.setdefault("after_save", []).append((state.global_step - 1) % args.save_steps == 0)
            self.last_end = now
            self.last_end_cpu = time.process_time()
            if self.probe is not None:
                sink.setdefault("monitor_cum", []).append(self.probe())

    return StepTimer()


def node_config(tiny: Path, steps: int) -> dict:
    from pipelines.common.config_io import load_yaml

    raw = load_yaml(QUICKSTART)
    raw["model"]["base_model_name"] = str(tiny)
    raw["datasets"][0]["path"] = str(REPO / "inputs" / "quickstart.jsonl")
    raw["training_parameters"]["max_steps"] = steps
    # The monitor watches the node's side (warn only): its cost is measured, not left out.
    raw["monitor"] = {"on_alert": "warn", "window": min(10, steps)}
    return raw


# ----------------------------------------------------------------------------------------------- workers
def run_node(work: Path, tiny: Path, steps: int, tag: str) -> dict:
    import yaml

    from pipelines.grpo.trainer import trainer_class
    from pipelines.runner import main

    sink: dict = {}
    cls = trainer_class()
    original_init = cls.__init__

    def init_with_timer(self, *args, callbacks=None, **kwargs):
        timer = timing_callback(sink)
        original_init(self, *args, callbacks=[*(callbacks or []), timer], **kwargs)
        sink["args"] = self.args.to_dict()
        timer.probe = lambda: monitor_seconds(self)
    cls.__init__ = init_with_timer   # bench-only hook: the node builds its own callback list
    (work / "node.yaml").write_text(yaml.safe_dump(node_config(tiny, steps), sort_keys=False))
    (work / "super.yaml").write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": "node.yaml"}]}))
    code = main(["--super-config", str(work / "super.yaml"), "--outputs", str(work / "out"),
                 "--set", f"run_name=node-{tag}"])
    if code != 0:
        raise SystemExit(f"node run failed with exit code {code}")
    return sink


def monitor_seconds(trainer) -> float:
    """Seconds the signal metrics (in the reward call) and the monitor's sentinels (on_step_end) took."""
    watchers = [cb for cb in trainer.callback_handler.callbacks if hasattr(cb, "monitor")]
    return trainer.reward_stack.signal.seconds + sum(cb.seconds for cb in watchers)


def dump_prompts(work: Path, tiny: Path, steps: int) -> Path:
    """The node's sampled training prompts (same rows, same order), for the bare script."""
    from pipelines.data.sampling import sample_with_tokenizer
    from pipelines.grpo.config import GRPOConfigFile
    from pipelines.grpo.inputs import data_spec
    from pipelines.grpo.model import load_tokenizer

    cfg = GRPOConfigFile.model_validate(node_config(tiny, steps))
    tok = load_tokenizer(str(tiny), cfg.training_parameters.chat_template)
    rows = sample_with_tokenizer(data_spec(cfg), tok, "bench").train
    path = work / "prompts.json"
    path.write_text(json.dumps([r["prompt"] for r in rows]))
    return path


def run_bare(work: Path, tiny: Path, steps: int, tag: str) -> dict:
    """A plain TRL script: no node code at all beyond the shared timing callback."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    sink: dict = {}
    prompts = json.loads((work / "prompts.json").read_text())

    def keyword_reward(completions, **kwargs):
        return [1.0 if "Joy" in c[0]["content"] else 0.0 for c in completions]

    tok = AutoTokenizer.from_pretrained(str(tiny))
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(work / "out" / f"bare-{tag}"), seed=42, data_seed=42, max_steps=steps,
        learning_rate=0.02, adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, warmup_steps=0.0,
        lr_scheduler_type="constant", optim="adamw_torch", per_device_train_batch_size=8,
        gradient_accumulation_steps=1, num_generations=4, max_completion_length=16, save_steps=10,
        save_total_limit=2, save_strategy="steps", max_grad_norm=1.0, logging_steps=1, report_to=[],
        log_completions=False, disable_tqdm=False, save_only_model=False, gradient_checkpointing=False,
        bf16=False, fp16=False, use_cpu=True)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM", bias="none",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    trainer = GRPOTrainer(model=model, args=args, reward_funcs=[keyword_reward], processing_class=tok,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), peft_config=lora,
                          callbacks=[timing_callback(sink)])
    sink["args"] = trainer.args.to_dict()
    trainer.train()
    return sink


def worker(args: argparse.Namespace) -> int:
    work, tiny = Path(args.work), Path(args.tiny)
    sink = (run_node if args.worker == "node" else run_bare)(work, tiny, args.steps, args.tag)
    import threading

    import torch

    sink["threads"] = {"torch": torch.get_num_threads(), "python": [t.name for t in threading.enumerate()]}
    (work / f"result-{args.worker}-{args.tag}.json").write_text(json.dumps(sink, default=str))
    return 0


# -------------------------------------------------------------------------------------------- controller
def mean_after(values: list[float], warmup: int) -> float:
    kept = values[warmup:]
    return sum(kept) / len(kept)


def split_cycles(res: dict, warmup: int, key: str = "cycle") -> tuple[float, float]:
    """Mean cycle time without a checkpoint save, and the mean cost of a save on top of it (whole run: the
    first save, which starts the node's plot worker, is part of what a user pays)."""
    cycles, flags = res[key], res["after_save"]
    plain = [c for c, f in list(zip(cycles, flags))[max(warmup - 1, 0):] if not f]
    saves = [c for c, f in zip(cycles, flags) if f]
    base = sum(plain) / len(plain)
    return base, (sum(saves) / len(saves) - base) if saves else 0.0


def diff_args(node: dict, bare: dict) -> list[str]:
    keys = sorted((set(node) | set(bare)) - IGNORED_ARGS)
    return [f"{k}: node={node.get(k)!r} bare={bare.get(k)!r}" for k in keys if node.get(k) != bare.get(k)]


def spawn(kind: str, work: Path, tiny: Path, steps: int, tag: str, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--work", str(work), "--tiny", str(tiny),
           "--steps", str(steps), "--tag", tag]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run {tag} failed:\n{proc.stderr[-3000:]}")
    return json.loads((work / f"result-{kind}-{tag}.json").read_text())


def controller(args: argparse.Namespace) -> int:
    from pipelines.common.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-step-"))
    tiny = build_tiny_model(work / "tiny", seed=0)
    dump_prompts(work, tiny, args.steps)
    per_run: dict[str, dict[str, list[float]]] = {"node": {}, "bare": {}}
    last: dict[str, dict] = {}
    order = ["node", "bare"]
    for i in range(args.repeats):
        for kind in (order if i % 2 == 0 else order[::-1]):   # ABBA... keeps drift from favouring one side
            res = spawn(kind, work, tiny, args.steps, str(i), args.threads)
            last[kind] = res
            for metric in ("step", "cycle", "step_cpu", "cycle_cpu"):
                per_run[kind].setdefault(metric, []).append(mean_after(res[metric], args.warmup))
            if kind == "node":
                cum = res["monitor_cum"]   # per step: its signal metrics + sentinels (+ the previous log's pop)
                spent = [b - a for a, b in zip(cum, cum[1:])][args.warmup:]
                per_run[kind].setdefault("monitor_share", []).append(sum(spent) / sum(res["step_cpu"][args.warmup + 1:]))
            plain, saving = split_cycles(res, args.warmup)
            per_run[kind].setdefault("save_cpu", []).append(split_cycles(res, args.warmup, "cycle_cpu")[1])
            per_run[kind].setdefault("plain", []).append(plain)
            per_run[kind].setdefault("save", []).append(saving)
            print(f"run {i} {kind}: step {per_run[kind]['step'][-1] * 1000:.1f} ms (cpu "
                  f"{per_run[kind]['step_cpu'][-1] * 1000:.1f} ms), cycle {per_run[kind]['cycle'][-1] * 1000:.1f} ms "
                  f"({len(res['step'])} steps)", flush=True)
    report(per_run, last, args)
    print(f"work dir: {work}")
    return 0


def report(per_run: dict[str, dict[str, list[float]]], last: dict[str, dict], args: argparse.Namespace) -> None:
    diffs = diff_args(last["node"]["args"], last["bare"]["args"])
    print("\nGRPOConfig differences (besides paths/names):", "none" if not diffs else "")
    for line in diffs:
        print("  " + line)
    print(f"\nmean train-step time over steps {args.warmup + 1}..{args.steps}, median of {args.repeats} runs each:")
    for metric in ("step", "cycle", "step_cpu"):
        node, bare = (statistics.median(per_run[k][metric]) for k in ("node", "bare"))
        best = min(per_run["node"][metric]) / min(per_run["bare"][metric])
        print(f"  {metric:8s}: node {node * 1000:.1f} ms  bare TRL {bare * 1000:.1f} ms  ratio {node / bare:.3f}"
              + (f"  (target <= {TARGET})" if metric == "step" else "") + f"  [fastest runs: {best:.3f}]")
    paired = [n / b for n, b in zip(per_run["node"]["step"], per_run["bare"]["step"])]
    print(f"  step, per pair of adjacent runs: median ratio {statistics.median(paired):.3f} "
          f"(pairs: {', '.join(f'{r:.2f}' for r in paired)})")
    plain = [statistics.median(per_run[k]["plain"]) for k in ("node", "bare")]
    save = [statistics.median(per_run[k]["save"]) for k in ("node", "bare")]
    print(f"  cycle without a checkpoint save: node {plain[0] * 1000:.1f} ms  bare TRL {plain[1] * 1000:.1f} ms  "
          f"ratio {plain[0] / plain[1]:.3f}")
    print(f"  extra time per checkpoint save: node {save[0] * 1000:.0f} ms  bare TRL {save[1] * 1000:.0f} ms")
    save_cpu = [statistics.median(per_run[k]["save_cpu"]) for k in ("node", "bare")]
    print(f"  extra CPU time of the training process per save: node {save_cpu[0] * 1000:.0f} ms  bare TRL "
          f"{save_cpu[1] * 1000:.0f} ms (the plot is drawn by a child process)")
    cpu = [statistics.median(per_run[k]["cycle_cpu"]) for k in ("node", "bare")]
    print(f"  whole loop with saves, CPU time of the training process: ratio {cpu[0] / cpu[1]:.3f}")
    whole = [statistics.median(per_run[k]["cycle"]) for k in ("node", "bare")]
    print(f"  whole loop with saves (cycle): ratio {whole[0] / whole[1]:.3f}  (target <= {TARGET})")
    share = statistics.median(per_run["node"]["monitor_share"])
    print(f"  signal metrics + monitor: {share:.2%} of the node's step CPU time, steps {args.warmup + 2}.. (target < 1%; runs: "
          f"{', '.join(f'{x:.2%}' for x in per_run['node']['monitor_share'])})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4, help="runs of each side, alternating (default 4)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per run (default 30, the quickstart's)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the mean (default 5)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1: on a shared 2-core box, 2 spinning OpenMP threads turn "
                        "any other load into 10x step-time spikes)")
    p.add_argument("--worker", choices=["node", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--tiny", help=argparse.SUPPRESS)
    p.add_argument("--tag", default="0", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return worker(args) if args.worker else controller(args)


if __name__ == "__main__":
    raise SystemExit(main())
