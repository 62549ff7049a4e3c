"""GPU benchmarks, each a ratio measured side by side in one run (issue 17). Needs a CUDA device.

The model is built offline: a random Qwen2 with Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads,
MLP 4864; 358M parameters with the tiny model's 400-token vocabulary), saved in bf16. The task is the quickstart's
(its prompts and keyword reward); batch 16, 8 generations, 128 new tokens.

* (a) GRPO step time, node (``transformers`` backend) vs a bare TRL ``GRPOTrainer`` script with the same
  GRPOConfig values and LoRA. Goal <= 1.05x.
* (b) GRPO step time, node on the ``unsloth`` backend vs the node on the ``transformers`` backend (needs unsloth;
  ``fast_inference`` auto: vLLM when installed). The first ``--warmup`` steps are dropped: Unsloth compiles
  its kernels there.
* (c) new tokens/s of the rollout generators on the same 128 prompts x 128 new tokens: vLLM vs HF ``generate``
  (needs vllm). Goal >= 10x.

Each measurement is its own subprocess (a fresh CUDA context), alternating A B B A ... ``--repeats`` times; the
medians are compared. Step time is on_step_begin -> on_step_end of the same TrainerCallback on every side.

Run on a GPU box:  .venv/bin/python bench/bench_gpu.py [--steps 8] [--warmup 3] [--repeats 2]
Without CUDA it says so and exits 0. ``--smoke`` runs (a) on the CPU with the tiny model and tiny sizes: it checks
the plumbing, it measures nothing worth recording.
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
SHAPE = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
         "num_key_value_heads": 2}
FULL = {"batch": 16, "generations": 8, "new_tokens": 128, "prompt": 64}
SMOKE = {"batch": 4, "generations": 2, "new_tokens": 8, "prompt": 64}


def build_model(work: Path, smoke: bool) -> Path:
    """The benchmark model folder (the tiny model itself under --smoke)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from pipelines.common.tiny_model import build_tiny_model

    tiny = build_tiny_model(work / "tiny", seed=0)
    if smoke:
        return tiny
    small = AutoModelForCausalLM.from_pretrained(tiny).config
    config = Qwen2Config(**SHAPE, vocab_size=small.vocab_size, max_position_embeddings=2048, tie_word_embeddings=True,
                         rms_norm_eps=1e-6, initializer_range=0.02, bos_token_id=None,
                         eos_token_id=small.eos_token_id, pad_token_id=small.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = config.eos_token_id, config.pad_token_id
    out = work / "qwen2.5-0.5b-shape"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters (bf16), {out}", flush=True)
    return out


def node_config(model: Path, sizes: dict, steps: int, backend: str) -> dict:
    from pipelines.common.config_io import load_yaml

    raw = load_yaml(QUICKSTART)
    raw["model"].update(base_model_name=str(model), backend=backend,
                        max_seq_length=sizes["prompt"] + sizes["new_tokens"])
    raw["datasets"][0]["path"] = str(REPO / "inputs" / "quickstart.jsonl")
    raw["training_parameters"].update(
        max_steps=steps, save_steps=steps + 1, per_device_train_batch_size=sizes["batch"],
        num_generations=sizes["generations"], max_completion_length=sizes["new_tokens"],
        max_prompt_length=sizes["prompt"], learning_rate=1e-5)
    raw["logging"]["log_completions_every"] = 0
    return raw


def timing_callback(sink: dict):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        begin = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sink.setdefault("step", []).append(time.perf_counter() - self.begin)

    return StepTimer()


# ----------------------------------------------------------------------------------------------- workers
def run_node(work: Path, model: Path, sizes: dict, steps: int, tag: str, backend: str) -> dict:
    import yaml

    if backend == "unsloth":
        import unsloth  # noqa: F401 - before trl, as the node does
    from pipelines.grpo.trainer import trainer_class
    from pipelines.runner import main

    sink: dict = {}
    cls = trainer_class()
    original_init = cls.__init__

    def init_with_timer(self, *args, callbacks=None, **kwargs):
        original_init(self, *args, callbacks=[*(callbacks or []), timing_callback(sink)], **kwargs)
        sink["args"] = {k: str(v) for k, v in self.args.to_dict().items()}
    cls.__init__ = init_with_timer   # bench-only hook: the node builds its own callback list
    (work / f"node-{tag}.yaml").write_text(yaml.safe_dump(node_config(model, sizes, steps, backend)))
    (work / f"super-{tag}.yaml").write_text(yaml.safe_dump(
        {"pipeline_order": [{"node": "grpo", "config": f"node-{tag}.yaml"}]}))
    code = main(["--super-config", str(work / f"super-{tag}.yaml"), "--outputs", str(work / "out"),
                 "--set", f"run_name={backend}-{tag}"])
    if code != 0:
        raise SystemExit(f"node run failed with exit code {code}")
    return sink


def run_bare(work: Path, model: Path, sizes: dict, steps: int, tag: str) -> dict:
    """A plain TRL script: the node's sampled prompts, a keyword reward, the same GRPOConfig values."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from pipelines.data.sampling import sample_with_tokenizer
    from pipelines.grpo.config import GRPOConfigFile
    from pipelines.grpo.inputs import data_spec

    cfg = GRPOConfigFile.model_validate(node_config(model, sizes, steps, "transformers"))
    tok = AutoTokenizer.from_pretrained(str(model))
    tok.padding_side = "left"
    prompts = [r["prompt"] for r in sample_with_tokenizer(data_spec(cfg), tok, "bench").train]

    def keyword_reward(completions, **kwargs):
        return [1.0 if "Joy" in c[0]["content"] else 0.0 for c in completions]

    on_gpu = torch.cuda.is_available()
    sink: dict = {}
    tp = cfg.training_parameters
    args = GRPOConfig(
        output_dir=str(work / "out" / f"bare-{tag}"), seed=42, data_seed=42, max_steps=steps,
        learning_rate=tp.learning_rate, adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, warmup_steps=0.0,
        lr_scheduler_type="constant", per_device_train_batch_size=sizes["batch"], num_generations=sizes["generations"],
        max_completion_length=sizes["new_tokens"], optim="adamw_torch", save_strategy="steps",
        save_steps=steps + 1, save_total_limit=2, max_grad_norm=1.0, logging_steps=1,
        report_to=[], log_completions=False, gradient_checkpointing=on_gpu, bf16=on_gpu, fp16=False,
        use_cpu=not on_gpu)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM", bias="none",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    hf_model = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.bfloat16 if on_gpu else torch.float32)
    trainer = GRPOTrainer(model=hf_model, args=args, reward_funcs=[keyword_reward], processing_class=tok,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), peft_config=lora,
                          callbacks=[timing_callback(sink)])
    sink["args"] = {k: str(v) for k, v in trainer.args.to_dict().items()}
    trainer.train()
    return sink


def run_generation(work: Path, model: Path, sizes: dict, tag: str, backend: str) -> dict:
    """New tokens/s of the rollout node's generator (``backend`` vllm or transformers) on 128 fixed prompts."""
    from pipelines.rollout.config import RolloutConfigFile
    from pipelines.rollout.generation import load_tokenizer, make_generator

    cfg = RolloutConfigFile.model_validate({
        "seed": 1, "model": {"base_model_name": str(model), "max_seq_length": sizes["prompt"] + sizes["new_tokens"]},
        "generation": {"backend": backend, "num_completions": 1, "max_new_tokens": sizes["new_tokens"],
                       "temperature": 1.0},
        "datasets": [{"path": str(REPO / "inputs" / "quickstart.jsonl"), "percentage": 1.0,
                      "reward_funcs": [{"name": "keyword", "keywords": ["Joy"]}]}],
        "dataset_settings": {"total_rows": 128}})
    tok = load_tokenizer(str(model), None)
    prompts = [[{"role": "user", "content": f"Tell me something about the number {i}."}] for i in range(128)]
    gen = make_generator(cfg, tok)
    gen.generate(prompts[:4])                     # warm-up (CUDA graphs, kernels)
    started = time.perf_counter()
    out = gen.generate(prompts)
    seconds = time.perf_counter() - started
    tokens = sum(c["num_tokens"] for group in out for c in group)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def worker(args: argparse.Namespace) -> int:
    work, model = Path(args.work), Path(args.model)
    sizes = SMOKE if args.smoke else FULL
    kind = args.worker
    if kind == "bare":
        res = run_bare(work, model, sizes, args.steps, args.tag)
    elif kind in ("transformers", "unsloth"):
        res = run_node(work, model, sizes, args.steps, args.tag, kind)
    else:
        res = run_generation(work, model, sizes, args.tag, kind.removeprefix("gen-"))
    (work / f"result-{kind}-{args.tag}.json").write_text(json.dumps(res))
    return 0


# -------------------------------------------------------------------------------------------- controller
def spawn(kind: str, work: Path, model: Path, args: argparse.Namespace, tag: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--work", str(work), "--model",
           str(model), "--steps", str(args.steps), "--tag", tag] + (["--smoke"] if args.smoke else [])
    env = dict(os.environ, VLLM_USE_FLASHINFER_SAMPLER=os.environ.get("VLLM_USE_FLASHINFER_SAMPLER", "0"))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run {tag} failed:\n{proc.stderr[-3000:]}")
    return json.loads((work / f"result-{kind}-{tag}.json").read_text())


IGNORED_ARGS = {"output_dir", "run_name", "logging_dir"}


def step_ratio(a: str, b: str, work: Path, model: Path, args: argparse.Namespace) -> tuple[float, float]:
    """Median mean step time (after warm-up) of ``a`` and ``b``, runs alternating A B B A ...; prints the
    GRPOConfig values that differ between the two sides, so a fair comparison is checked, not assumed."""
    means: dict[str, list[float]] = {a: [], b: []}
    last: dict[str, dict] = {}
    for i in range(args.repeats):
        for kind in ((a, b) if i % 2 == 0 else (b, a)):
            last[kind] = spawn(kind, work, model, args, f"{kind}-{i}")
            steps = last[kind]["step"][args.warmup:]
            means[kind].append(sum(steps) / len(steps))
            print(f"  run {i} {kind}: {means[kind][-1]:.3f} s/step", flush=True)
    ka, kb = last[a]["args"], last[b]["args"]
    diffs = [f"{k}: {a}={ka.get(k)} {b}={kb.get(k)}" for k in sorted((set(ka) | set(kb)) - IGNORED_ARGS)
             if ka.get(k) != kb.get(k)]
    print(f"  GRPOConfig differences {a} vs {b}: " + ("none" if not diffs else "\n    " + "\n    ".join(diffs)))
    return statistics.median(means[a]), statistics.median(means[b])


def versions() -> str:
    from pipelines.common.availability import version_of

    names = ("torch", "transformers", "trl", "peft", "accelerate", "unsloth", "vllm")
    return ", ".join(f"{name} {version_of(name)}" for name in names if version_of(name))


def controller(args: argparse.Namespace) -> int:
    import torch

    from pipelines.common import availability

    if not torch.cuda.is_available() and not args.smoke:
        print("bench_gpu: no CUDA device is visible; these benchmarks need a GPU (see bench/README.md). "
              "Nothing was measured.")
        return 0
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (--smoke)"
    print(f"device: {device}\nversions: {versions()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    model = build_model(work, args.smoke)
    node, bare = step_ratio("transformers", "bare", work, model, args)
    print(f"(a) node {node:.3f} s/step vs bare TRL {bare:.3f} s/step: {node / bare:.3f}x (goal <= 1.05)")
    if args.smoke:
        return 0
    if availability.is_available("unsloth"):
        uns, trf = step_ratio("unsloth", "transformers", work, model, args)
        print(f"(b) unsloth {uns:.3f} s/step vs transformers {trf:.3f} s/step: {uns / trf:.3f}x "
              f"(fast_inference auto: vLLM {'on' if availability.is_available('vllm') else 'off'})")
    else:
        print("(b) skipped: unsloth is not installed")
    if availability.is_available("vllm"):
        fast, slow = (spawn(k, work, model, args, k)["tokens_per_s"] for k in ("gen-vllm", "gen-transformers"))
        print(f"(c) rollout generation, 128 prompts x {FULL['new_tokens']} new tokens: vLLM {fast:,.0f} tokens/s vs "
              f"HF generate {slow:,.0f} tokens/s: {fast / slow:.1f}x (goal >= 10)")
    else:
        print("(c) skipped: vllm is not installed")
    print(f"work dir: {work}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per training run (default 8)")
    p.add_argument("--warmup", type=int, default=3, help="first steps left out of the mean (default 3)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating (default 2)")
    p.add_argument("--smoke", action="store_true", help="CPU plumbing check with the tiny model: no figures")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--tag", default="0", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return worker(args) if args.worker else controller(args)


if __name__ == "__main__":
    raise SystemExit(main())
