"""Generate Countdown rows whose targets are reachable, for pipelines/grpo/configs/countdown.yaml.

Each row draws 3 or 4 numbers and builds its target from a random expression over all of them (only
``+ - * /``, every intermediate a positive integer, each number used once), so every task has at least that
solution. A row is just its columns: ``nums`` and ``target`` (read by the ``countdown_equation`` reward, and by
the config's ``prompt_template``, which writes the question) and ``solution`` (one reachable expression). No
conversation is stored: the rules of the game live in the config's system prompt.

Example: .venv/bin/python -m cli_utils.make_countdown_data --output inputs/countdown.jsonl --rows 2000 --seed 0
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MAX_TARGET = 100
MAX_NUMBER = 99
MAX_TRIES = 1000


@dataclass(frozen=True)
class Term:
    value: int
    text: str
    atom: bool


def _combine(a: Term, b: Term, op: str) -> Optional[Term]:
    """``a op b`` when every value stays a positive integer (Countdown's rule), else None."""
    if op == "-" and a.value <= b.value:
        a, b = b, a
        if a.value == b.value:
            return None
    if op == "/" and (b.value <= 1 or a.value % b.value):
        a, b = b, a
        if b.value <= 1 or a.value % b.value:
            return None
    value = {"+": a.value + b.value, "-": a.value - b.value, "*": a.value * b.value,
             "/": a.value // max(b.value, 1)}[op]

    def wrap(t: Term) -> str:
        return t.text if t.atom else f"({t.text})"
    return Term(value, f"{wrap(a)} {op} {wrap(b)}", atom=False)


def random_expression(nums: list[int], rng: random.Random) -> Optional[Term]:
    """Combine all of ``nums`` pairwise at random; None if some step broke the positive-integer rule."""
    terms = [Term(n, str(n), atom=True) for n in nums]
    while len(terms) > 1:
        i, j = rng.sample(range(len(terms)), 2)
        merged = _combine(terms[i], terms[j], rng.choice("+-*/"))
        if merged is None:
            return None
        terms = [t for k, t in enumerate(terms) if k not in (i, j)] + [merged]
    return terms[0]


def make_row(rng: random.Random) -> dict:
    """One solvable task: ``nums``, a ``target`` in 1..MAX_TARGET, and the expression that reaches it."""
    count = rng.choice((3, 4))  # drawn once: retrying it too would favour 3 numbers (small targets are likelier)
    for _ in range(MAX_TRIES):
        nums = [rng.randint(1, MAX_NUMBER) for _ in range(count)]
        expr = random_expression(nums, rng)
        if expr is not None and 1 <= expr.value <= MAX_TARGET:
            break
    else:  # pragma: no cover - the acceptance rate is far above 1/MAX_TRIES
        raise RuntimeError("could not build a countdown task; raise MAX_TARGET")
    return {"nums": nums, "target": expr.value, "solution": expr.text}


def generate(rows: int, seed: int) -> list[dict]:
    """``rows`` tasks, identical for the same seed."""
    rng = random.Random(seed)
    return [make_row(rng) for _ in range(rows)]


def write_jsonl(rows: list[dict], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    tmp.replace(output)


def main(argv: Optional[list[str]] = None, prog: str = ".venv/bin/python -m cli_utils.make_countdown_data") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write Countdown tasks (rows with nums, target and solution columns; every target reachable).")
    parser.add_argument("--output", default="inputs/countdown.jsonl", help="JSONL file to write "
                        "(default inputs/countdown.jsonl).")
    parser.add_argument("--rows", type=int, default=2000, help="Number of tasks (default 2000).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed; the same seed gives the same file.")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    rows = generate(args.rows, args.seed)
    write_jsonl(rows, Path(args.output))
    print(f"wrote {len(rows)} countdown tasks to {args.output} (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
