"""Benchmark: sample 1,000 prompts from a ~2M-row (~1 GB) ShareGPT file, against a naive pandas baseline.

    .venv/bin/python bench/bench_sampling.py                 # 2M rows (generated once under bench/_data/)
    .venv/bin/python bench/bench_sampling.py --rows 100000   # a quick look
    .venv/bin/python bench/bench_sampling.py --case anchor   # issue 13's anchor: 1M rows, Augmentoolkit's shape

The anchor case is Augmentoolkit's own data-preparation anchor: 1M ShareGPT rows in Parquet, 4 turns of 80-120
words each, sampled to 1,000 prompts with a ~300-word system prompt, single_turn_ratio 0.7, max_prompt_length
4000 and chat-template token counting (Augmentoolkit: 32 min 21 s, 5.86 GB peak).

The data layer (``pipelines.data.sampling.sample_datasets``, the real code path, with prompt tokens counted by the
builtin tiny model's tokenizer) is measured on Parquet and on JSONL, and so is the naive way: pandas reads the
whole file, then samples. Each measurement runs in its own subprocess, which reports its peak RSS
(``ru_maxrss``); wall time is measured around the subprocess, interpreter start and imports included.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "_data"
TARGET_RSS_MB, RSS_RATIO, TIME_RATIO = 400, 1 / 5, 1 / 3


def _sentences(rng, n: int):
    """A pool of random word sequences that messages are assembled from (keeps generation fast)."""
    import numpy as np

    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=k)) for k in rng.integers(2, 10, size=4000)]
    lengths = rng.integers(4, 16, size=n)
    return [" ".join(vocab[j] for j in rng.integers(0, len(vocab), size=k)) for k in lengths]


def generate(rows: int, seed: int = 0, chunk: int = 50_000) -> tuple[Path, Path]:
    """Write the ShareGPT dataset as JSONL and Parquet (same rows) unless they already exist."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA.mkdir(parents=True, exist_ok=True)
    jsonl, parquet = DATA / f"sharegpt_{rows}.jsonl", DATA / f"sharegpt_{rows}.parquet"
    if jsonl.exists() and parquet.exists():
        return jsonl, parquet
    rng = np.random.default_rng(seed)
    pool = _sentences(rng, 100_000)
    conv_type = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))
    schema = pa.schema([("conversations", conv_type), ("id", pa.int64()), ("source", pa.string())])
    started = time.time()
    with open(jsonl.with_name(jsonl.name + ".tmp"), "w", encoding="utf-8") as jf, \
            pq.ParquetWriter(parquet.with_name(parquet.name + ".tmp"), schema) as writer:
        for base in range(0, rows, chunk):
            n = min(chunk, rows - base)
            batch = []
            exchanges = rng.integers(1, 4, size=n)
            picks = rng.integers(0, len(pool), size=(n, 12))
            nums = rng.integers(0, 1_000_000, size=(n, 6))
            for i in range(n):
                conv = [{"from": "system", "value": "You are a helpful assistant."}] if i % 3 == 0 else []
                for t in range(exchanges[i]):
                    conv.append({"from": "human", "value": f"{pool[picks[i, 4 * t]]} {nums[i, 2 * t]}?"})
                    conv.append({"from": "gpt", "value": f"{pool[picks[i, 4 * t + 1]]} {pool[picks[i, 4 * t + 2]]}"
                                                        f" {nums[i, 2 * t + 1]}."})
                batch.append({"conversations": conv, "id": base + i, "source": "bench"})
            jf.write("\n".join(json.dumps(r) for r in batch) + "\n")
            writer.write_table(pa.Table.from_pylist(batch, schema=schema), row_group_size=chunk)
            print(f"\r  generated {base + n:,}/{rows:,} rows ({time.time() - started:.0f}s)", end="", flush=True)
    print()
    os.replace(jsonl.with_name(jsonl.name + ".tmp"), jsonl)
    os.replace(parquet.with_name(parquet.name + ".tmp"), parquet)
    return jsonl, parquet


ANCHOR_GOAL_S, ANCHOR_GOAL_MB = 10.0, 500.0
AUGMENTOOLKIT_S, AUGMENTOOLKIT_MB = 32 * 60 + 21, 5.86 * 1024


def generate_anchor(rows: int, seed: int = 0, chunk: int = 50_000) -> Path:
    """The anchor's Parquet file: ``conversations`` of 4 turns (human, gpt, human, gpt) of 80-120 words, each
    message a distinct slice of a large random-word text (so Parquet cannot deduplicate them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"anchor_{rows}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, size=k)) for k in rng.integers(2, 10, size=20_000)])
    words = vocab[rng.integers(0, len(vocab), size=4_000_000)]
    text = " ".join(words.tolist())
    bounds = np.concatenate(([0], np.cumsum([len(w) + 1 for w in words.tolist()])))
    roles = pa.array(["human", "gpt", "human", "gpt"] * chunk)
    started = time.time()
    schema = pa.schema([("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
                        ("id", pa.int64())])
    with pq.ParquetWriter(path.with_name(path.name + ".tmp"), schema) as writer:
        for base in range(0, rows, chunk):
            n = min(chunk, rows - base)
            starts = rng.integers(0, len(words) - 130, size=4 * n)
            lengths = rng.integers(80, 121, size=4 * n)
            values = pa.array([text[bounds[s]: bounds[s + k] - 1] for s, k in zip(starts, lengths)])
            structs = pa.StructArray.from_arrays([roles[: 4 * n], values], names=["from", "value"])
            convs = pa.ListArray.from_arrays(pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32)), structs)
            writer.write_table(pa.table({"conversations": convs, "id": pa.array(np.arange(base, base + n))},
                                        schema=schema), row_group_size=chunk)
            print(f"\r  generated {base + n:,}/{rows:,} rows ({time.time() - started:.0f}s)", end="", flush=True)
    print()
    os.replace(path.with_name(path.name + ".tmp"), path)
    return path


def anchor_system_prompt() -> str:
    """About 300 words, as in the anchor's config."""
    sentence = ("You are a careful assistant who answers questions about the text in the conversation, citing "
                "the exact words that support each claim and saying plainly when the text does not say. ")
    return (sentence * 12).strip()


def measure_ours(path: str, sample: int, tokenizer: str | None, anchor: bool = False, exact: bool = False) -> dict:
    from pipelines.data.config import DatasetEntry, DatasetSettings
    from pipelines.data.sampling import DataSpec, sample_datasets
    from pipelines.data.tokenization import make_token_counter

    extra = {"system_prompt": anchor_system_prompt(), "single_turn_ratio": 0.7} if anchor else {}
    spec = DataSpec(datasets=[DatasetEntry(path=path, percentage=1.0, reward_funcs=[{"name": "keyword"}], **extra)],
                    settings=DatasetSettings(total_rows=sample), seed=42, max_prompt_length=4000 if anchor else 512)
    counter = make_token_counter(tokenizer, None) if tokenizer else None
    if exact and counter is not None:   # tokenize every prompt: no byte bound deciding the ones that surely fit
        counter = make_token_counter(tokenizer, None)
        counter.at_most = lambda messages: None
    result = sample_datasets(spec, counter)
    stats = result.stats[0]
    return {"rows": len(result.train), "valid": stats.valid_rows, "total": stats.total_rows,
            "read": stats.rows_read, "skipped": dict(stats.skipped)}


def measure_pandas(path: str, sample: int) -> dict:
    import pandas as pd

    df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_json(path, lines=True)
    picked = df.sample(n=sample, random_state=42).to_dict("records")
    return {"rows": len(picked), "valid": len(df)}


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux's ``ru_maxrss`` also counts the parent's peak at the moment it spawned
    this process (the high-water mark survives fork and exec), so a parent that had imported torch inflated the
    figure; ``VmHWM`` is the peak of this process's memory alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024   # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    started = time.time()
    if args.child == "ours":
        out = measure_ours(args.path, args.sample, args.tokenizer, args.case == "anchor", args.exact_counts)
    else:
        out = measure_pandas(args.path, args.sample)
    out["work_s"] = time.time() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = usage.ru_utime + usage.ru_stime   # imports included; unlike wall time, not inflated by load
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out))


def run_child(kind: str, path: Path, sample: int, tokenizer: str | None, case: str = "default",
              exact: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path), "--sample", str(sample), "--case", case]
    cmd += ["--exact-counts"] if exact else []
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - started
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{kind} on {path.name} failed:\n{proc.stdout}\n{proc.stderr}")
    return {**json.loads(line[len("RESULT "):]), "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="rows in the generated dataset")
    p.add_argument("--sample", type=int, default=1000, help="rows to sample")
    p.add_argument("--formats", default="parquet,jsonl", help="comma-separated: parquet, jsonl")
    p.add_argument("--case", choices=["default", "anchor"], default="default",
                   help="default: 2M short rows, Parquet and JSONL; anchor: issue 13's 1M-row Parquet anchor")
    p.add_argument("--exact-counts", action="store_true",
                   help="anchor: also run ours tokenizing every sampled prompt (no byte bound)")
    p.add_argument("--child", choices=["ours", "pandas"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    os.chdir(REPO)
    from pipelines.common.tiny_model import resolve_model_name
    tokenizer = resolve_model_name("builtin:tiny")  # built here, so no measured process imports torch
    if args.case == "anchor":
        return run_anchor(args, tokenizer)
    jsonl, parquet = generate(args.rows)
    files = {"parquet": parquet, "jsonl": jsonl}
    print(f"dataset: {args.rows:,} rows; parquet {parquet.stat().st_size / 1e9:.2f} GB, jsonl "
          f"{jsonl.stat().st_size / 1e9:.2f} GB; sampling {args.sample} rows; {os.cpu_count()} CPUs")
    print(f"{'format':8} {'method':8} {'wall s':>8} {'work s':>8} {'peak RSS MB':>12} {'time ratio':>11} "
          f"{'RSS ratio':>10}  verdict")
    for fmt in args.formats.split(","):
        base = run_child("pandas", files[fmt], args.sample, None)
        ours = run_child("ours", files[fmt], args.sample, tokenizer)
        assert ours["rows"] == base["rows"] == args.sample
        t_ratio, m_ratio = ours["wall_s"] / base["wall_s"], ours["peak_rss_mb"] / base["peak_rss_mb"]
        ok = ours["peak_rss_mb"] <= TARGET_RSS_MB and m_ratio <= RSS_RATIO and t_ratio <= TIME_RATIO
        print(f"{fmt:8} {'pandas':8} {base['wall_s']:8.1f} {base['work_s']:8.1f} {base['peak_rss_mb']:12.0f}")
        print(f"{fmt:8} {'ours':8} {ours['wall_s']:8.1f} {ours['work_s']:8.1f} {ours['peak_rss_mb']:12.0f} "
              f"{t_ratio:11.3f} {m_ratio:10.3f}  {'meets' if ok else 'MISSES'} target (RSS <= {TARGET_RSS_MB} MB"
              f" and <= 1/5 of pandas, time <= 1/3)")


def run_anchor(args: argparse.Namespace, tokenizer: str) -> None:
    """Issue 13's anchor, ours and the pandas baseline side by side, against Augmentoolkit's published figures."""
    rows = 1_000_000 if args.rows == 2_000_000 else args.rows
    path = generate_anchor(rows)
    load = os.getloadavg()[0]
    print(f"anchor: {rows:,} rows, parquet {path.stat().st_size / 1e9:.2f} GB; sampling {args.sample}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start")
    ours = run_child("ours", path, args.sample, tokenizer, "anchor")
    if args.exact_counts:
        exact = run_child("ours", path, args.sample, tokenizer, "anchor", exact=True)
        print(f"ours, every prompt tokenized: {exact['wall_s']:.1f} s wall ({exact['work_s']:.1f} s sampling, "
              f"{exact['cpu_s']:.1f} s CPU), {exact['peak_rss_mb']:.0f} MB peak")
    base = run_child("pandas", path, args.sample, None, "anchor")
    print(f"ours:   {ours['wall_s']:.1f} s wall ({ours['work_s']:.1f} s sampling, {ours['cpu_s']:.1f} s CPU), "
          f"{ours['peak_rss_mb']:.0f} MB peak; "
          f"{ours['read']} rows read of {ours['total']:,}, skipped {ours['skipped'] or 'none'}")
    print(f"pandas: {base['wall_s']:.1f} s wall ({base['cpu_s']:.1f} s CPU), {base['peak_rss_mb']:.0f} MB peak")
    print(f"ratio to pandas: {ours['wall_s'] / base['wall_s']:.3f}x time, {ours['peak_rss_mb'] / base['peak_rss_mb']:.3f}x "
          f"peak RSS; to Augmentoolkit (32 min 21 s, 5.86 GB): {AUGMENTOOLKIT_S / ours['wall_s']:.0f}x faster, "
          f"{AUGMENTOOLKIT_MB / ours['peak_rss_mb']:.1f}x less memory")
    met = ours["wall_s"] <= ANCHOR_GOAL_S and ours["peak_rss_mb"] <= ANCHOR_GOAL_MB
    print(f"goal (<= {ANCHOR_GOAL_S:.0f} s wall, <= {ANCHOR_GOAL_MB:.0f} MB peak): {'met' if met else 'MISSED'}; "
          f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
