"""Build the builtin tiny model (random Qwen2 + locally trained BPE tokenizer, ChatML) into a folder.

Example: .venv/bin/python -m cli_utils.make_tiny_model --output outputs/tiny
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path



def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Build the tiny offline test model (what `builtin:tiny` uses).")
    parser.add_argument("--output", required=True, help="Folder to write the model and tokenizer into.")
    parser.add_argument("--seed", type=int, default=0, help="Weight-initialisation seed (default 0, as builtin:tiny).")
    parser.add_argument("--name", choices=["builtin:tiny", "builtin:tiny-vllm"], default="builtin:tiny",
                        help="Which builtin model: builtin:tiny (default) or builtin:tiny-vllm, the same model with "
                             "a head size vLLM's CPU attention accepts (64).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from pipelines.common.tiny_model import build_tiny_model

    out = build_tiny_model(Path(args.output), seed=args.seed, name=args.name)
    print(f"tiny model written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
