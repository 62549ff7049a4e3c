"""Merge a LoRA adapter into its base model and save a standalone model folder (weights + tokenizer).

Example::

    .venv/bin/python -m cli_utils.merge_lora --base-model Qwen/Qwen2.5-1.5B-Instruct \\
        --adapter outputs/countdown/final_adapter --output outputs/countdown/merged --dtype bf16

* ``--base-model`` is a Hugging Face id, a local folder, or ``builtin:tiny``.
* The tokenizer is taken from the adapter folder when it holds one (the GRPO node saves it there with the chat
  template used in training), else from the base model, so the chat template survives the merge.
* The merge runs in fp32 with PEFT's ``merge_and_unload``; before saving, the merged model's logits on a
  probe prompt are compared with base + adapter (unmerged) and the merge fails if they differ by more than
  the tolerance. The merged weights are then cast to ``--dtype`` and written atomically.
* A base model that does not fit the adapter (another base recorded in ``adapter_config.json``, other layer
  sizes, missing target modules) is refused with exit code 2 before anything is written.
* The output never touches an input: an ``--output`` that is, contains or lies inside the adapter folder or a
  local base model folder is refused (exit 2), ``--overwrite`` or not. ``--overwrite`` replaces only an earlier
  merged model (``config.json`` and weights, no adapter, no run dir). A damaged adapter (no weights file, a
  truncated one, an ``adapter_config.json`` that is not an object) is exit 2 saying so.
* Augmentoolkit's flag names work too: ``--adapter-model`` for ``--adapter``, ``--save-path`` for ``--output``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

DTYPES = ("auto", "bf16", "fp16", "fp32")
PROBE_MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "Using the numbers [3, 7, 25], create an equation that equals 46."}]
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class MergeError(Exception):
    """A merge that cannot or must not go ahead; ``exit_code`` 2 for a user input problem, 1 for a failed check."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class MergeReport:
    output: Path
    dtype: str
    tokenizer_source: str           # "adapter" | "base"
    max_abs_diff: float             # merged vs base + adapter, probe logits (fp32)
    tolerance: float
    adapter_effect: float           # base vs base + adapter: how much the adapter changes the probe logits
    probe_tokens: int


# ----------------------------------------------------------------------------------------------- checks
def read_adapter_config(adapter: Path) -> dict[str, Any]:
    path = adapter / "adapter_config.json"
    if not path.is_file():
        raise MergeError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json); pass the folder a "
                         "training run wrote, e.g. outputs/<run>/final_adapter or outputs/<run>/checkpoint-N")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MergeError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MergeError(f"{path}: expected a JSON object with the LoRA settings, found {json.dumps(data)[:40]}; "
                         "the adapter folder is damaged (copy it again from the run dir)")
    if "peft_type" not in data:
        raise MergeError(f"{path} is not a PEFT adapter config (it has no peft_type); the adapter folder is damaged "
                         "or was not written by PEFT")
    return data


def check_adapter_weights(adapter: Path) -> Path:
    """The adapter's weights file, readable to its end; MergeError naming what is missing or damaged."""
    found = [adapter / name for name in ADAPTER_WEIGHTS if (adapter / name).is_file()]
    if not found:
        raise MergeError(f"{adapter} has adapter_config.json but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}); "
                         "the folder is incomplete: copy it again, or pass another checkpoint")
    weights = found[0]
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as fh:
                fh.keys()
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for every defect
            raise MergeError(f"{weights} cannot be read ({exc}); the file is truncated or damaged: copy it "
                             "again from the run dir") from None
    return weights


def looks_like_merged_model(folder: Path) -> bool:
    """An earlier output of this tool: config.json and weights, only files, no adapter and no run."""
    entries = list(folder.iterdir())
    names = {p.name for p in entries}
    weights = any(n.endswith(".safetensors") or (n.startswith("pytorch_model") and n.endswith(".bin")) for n in names)
    foreign = {"adapter_config.json", "resolved_config.yaml", "manifest.json"} & names
    return "config.json" in names and weights and not foreign and all(p.is_file() for p in entries)


def check_output(output: Path, inputs: list[tuple[str, Path]], overwrite: bool) -> None:
    """Refuse an output that would touch an input or replace something that is not an earlier merge."""
    from pipelines.common.safe_paths import output_problem

    clash = output_problem(output, inputs)
    if clash:
        raise MergeError(clash)
    if output.exists() and not output.is_dir():
        raise MergeError(f"--output {output} is a file; give a folder for the merged model")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise MergeError(f"{output} exists and is not empty; choose another --output or add --overwrite")
        if not looks_like_merged_model(output):
            raise MergeError(f"{output} is not an earlier merged model (config.json and weights, no adapter, no "
                             "run dir): --overwrite replaces only an earlier output of this tool")


def same_base(recorded: Optional[str], given: str, resolved: str) -> bool:
    """Whether the base recorded in adapter_config.json names the given base model.

    Equal names, the same folder on disk, or the same final path component (a hub id ``org/name`` and a local
    download ``/models/name``; a builtin:tiny cache folder built elsewhere; Unsloth's re-upload of the same
    model) count as the same base.
    """
    if not recorded:
        return True
    if recorded in (given, resolved):
        return True
    rec, res = Path(recorded), Path(resolved)
    if rec.exists() and res.exists() and rec.resolve() == res.resolve():
        return True
    return _model_key(rec.name) in (_model_key(res.name), _model_key(Path(given).name))


def _model_key(name: str) -> str:
    """A model folder/id name without the suffixes of Unsloth's re-uploads (``-unsloth-bnb-4bit``, ...): Unsloth
    records its own copy of a base (e.g. unsloth/Qwen2.5-1.5B-Instruct-unsloth-bnb-4bit) in adapter_config."""
    key = name.lower()
    for suffix in ("-bnb-4bit", "-unsloth", "-4bit"):
        key = key[: -len(suffix)] if key.endswith(suffix) else key
    return key


def check_base_name(adapter_cfg: dict[str, Any], given: str, resolved: str) -> None:
    recorded = adapter_cfg.get("base_model_name_or_path")
    if not same_base(recorded, given, resolved):
        raise MergeError(f"the adapter was trained on {recorded!r}, not on {given!r}; pass "
                         f"--base-model {recorded} (or, if {given!r} is a copy of that model under another "
                         "name, add --allow-base-mismatch)")


def _check_load_result(result: Any, adapter: Path, base: str) -> None:
    missing = list(getattr(result, "missing_keys", []) or [])
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if missing or unexpected:
        detail = "; ".join(part for part in (
            f"{len(missing)} adapter weight(s) missing, e.g. {missing[0]}" if missing else "",
            f"{len(unexpected)} adapter weight(s) with no place in the base model, e.g. {unexpected[0]}"
            if unexpected else "") if part)
        raise MergeError(f"the adapter in {adapter} does not fit base model {base}: {detail}. Pass the base model "
                         "the adapter was trained on")


# ------------------------------------------------------------------------------------------------ steps
def _torch_dtype(name: str, config: Any):
    import torch

    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name != "auto":
        return table[name]
    found = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(found, str):
        found = getattr(torch, found, None)
    return found if found in table.values() else torch.float32


def load_tokenizer(adapter: Path, base_path: str) -> tuple[Any, str]:
    """The adapter folder's tokenizer (carries the training chat template) when there is one, else the base's."""
    from transformers import AutoTokenizer

    if any((adapter / name).is_file() for name in TOKENIZER_FILES):
        return AutoTokenizer.from_pretrained(str(adapter)), "adapter"
    log.warning("no tokenizer in %s; using the base model's (its chat template may differ from training)", adapter)
    return AutoTokenizer.from_pretrained(base_path), "base"


def probe_inputs(tokenizer: Any) -> dict[str, Any]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n".join(m["content"] for m in PROBE_MESSAGES)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)


def _logits(model: Any, inputs: dict[str, Any]):
    import torch

    with torch.no_grad():
        return model(**inputs).logits.float()


def load_base(base_path: str, given: str):
    from transformers import AutoModelForCausalLM

    import torch

    try:
        # fp32 for the merge itself: the check below is then exact up to float rounding, whatever --dtype is.
        return AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot load base model {given!r}: {exc}".strip()) from None


def attach_adapter(base: Any, adapter: Path, given: str):
    """base + adapter (unmerged), refusing an adapter whose modules or shapes do not fit the base."""
    from peft import PeftConfig, PeftModel

    try:
        config = PeftConfig.from_pretrained(str(adapter))
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise MergeError(f"{adapter / 'adapter_config.json'} is not a PEFT adapter config ({type(exc).__name__}: "
                         f"{str(exc)[:300]}); the adapter folder is damaged") from None
    try:
        model = PeftModel(base, config, adapter_name="default")
        result = model.load_adapter(str(adapter), adapter_name="default", is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # A state_dict error's first line is a bare header; the "size mismatch for ..." line says what is wrong.
        detail = next((line for line in lines if "mismatch" in line), lines[0] if lines else type(exc).__name__)
        detail = detail[:600].rstrip(".")
        raise MergeError(f"the adapter in {adapter} does not fit base model {given}: {detail}. Pass the base model "
                         "the adapter was trained on") from None
    _check_load_result(result, adapter, given)
    return model.eval()


def tolerance_for(reference) -> float:
    """fp32 merge vs unmerged: rounding only. Scaled by the logits' magnitude."""
    return 1e-4 * max(1.0, float(reference.abs().max()))


def save_atomically(model: Any, tokenizer: Any, output: Path, overwrite: bool) -> None:
    """Write into a temp folder beside ``output``, then rename: ``output`` is complete or untouched."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        from pipelines.common.io import replace_dir
        replace_dir(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merge_lora(base_model: str, adapter: str | Path, output: str | Path, dtype: str = "auto",
               overwrite: bool = False, allow_base_mismatch: bool = False,
               cache_root: str | Path = Path("outputs/.cache")) -> MergeReport:
    """Merge ``adapter`` into ``base_model``, check the probe logits, save model + tokenizer to ``output``."""
    from pipelines.common.tiny_model import resolve_model_name

    if dtype not in DTYPES:
        raise MergeError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    adapter, output = Path(adapter), Path(output)
    adapter_cfg = read_adapter_config(adapter)
    check_adapter_weights(adapter)
    base_path = resolve_model_name(base_model, cache_root=cache_root)
    sources = [("adapter folder", adapter)] + ([("base model folder", Path(base_path))] if Path(base_path).exists()
                                               else [])
    check_output(output, sources, overwrite)
    if not allow_base_mismatch:
        check_base_name(adapter_cfg, base_model, base_path)
    tokenizer, tok_source = load_tokenizer(adapter, base_path)
    base = load_base(base_path, base_model)
    vocab = base.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise MergeError(f"the tokenizer has {len(tokenizer)} tokens but {base_model} embeds only {vocab}: the "
                         "adapter was trained on another base model")
    inputs = probe_inputs(tokenizer)
    base_logits = _logits(base, inputs)
    peft_model = attach_adapter(base, adapter, base_model)
    reference = _logits(peft_model, inputs)
    merged = peft_model.merge_and_unload()
    merged_logits = _logits(merged, inputs)
    diff = float((merged_logits - reference).abs().max())
    tol = tolerance_for(reference)
    effect = float((reference - base_logits).abs().max())
    if not diff <= tol:  # also catches NaN
        raise MergeError(f"merged model's logits differ from base + adapter by {diff:.3g} (tolerance {tol:.3g}); "
                         "nothing was written. The adapter may use a PEFT feature that does not merge exactly",
                         exit_code=1)
    if effect == 0.0:
        log.warning("the adapter does not change the probe logits at all (untrained adapter, lora_B all zero?)")
    torch_dtype = _torch_dtype(dtype, merged.config)
    merged = merged.to(torch_dtype)
    check_output(output, sources, overwrite)   # again: the folder may have changed during the merge
    save_atomically(merged, tokenizer, output, overwrite)
    log.info("merged model written to %s", output)
    return MergeReport(output=output, dtype=str(torch_dtype).replace("torch.", ""), tokenizer_source=tok_source,
                       max_abs_diff=diff, tolerance=tol, adapter_effect=effect,
                       probe_tokens=int(inputs["input_ids"].shape[1]))


def build_parser(prog: str = ".venv/bin/python -m cli_utils.merge_lora") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Merge a LoRA adapter into its base model and save a standalone model + tokenizer. The merged "
                    "logits are checked against base + adapter on a probe prompt before anything is written.")
    parser.add_argument("--base-model", required=True, help="Base model: Hugging Face id, local folder or "
                        "builtin:tiny (the one the adapter was trained on).")
    parser.add_argument("--adapter", "--adapter-model", dest="adapter", required=True,
                        help="Adapter folder (e.g. outputs/<run>/final_adapter); --adapter-model is "
                             "Augmentoolkit's name for it.")
    parser.add_argument("--output", "--save-path", dest="output", required=True,
                        help="Folder for the merged model (empty or absent; never the adapter or base folder, nor "
                             "one containing or inside them); --save-path is Augmentoolkit's name for it.")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="dtype of the saved weights (default auto: the base model's dtype, else fp32).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an earlier merged model in --output "
                        "(nothing else: not an adapter, a run dir or another folder).")
    parser.add_argument("--allow-base-mismatch", action="store_true",
                        help="Skip the name check against adapter_config.json's base_model_name_or_path (the "
                             "shape and module checks still apply).")
    return parser


def main(argv: Optional[list[str]] = None, prog: str = ".venv/bin/python -m cli_utils.merge_lora") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        report = merge_lora(args.base_model, args.adapter, args.output, dtype=args.dtype, overwrite=args.overwrite,
                            allow_base_mismatch=args.allow_base_mismatch)
    except MergeError as exc:
        print(f"merge_lora: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"merged model written to {report.output} ({report.dtype}; tokenizer from the {report.tokenizer_source})")
    print(f"probe check: max |merged - (base + adapter)| = {report.max_abs_diff:.3g} over {report.probe_tokens} "
          f"tokens (tolerance {report.tolerance:.3g}); the adapter moves the logits by up to "
          f"{report.adapter_effect:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
