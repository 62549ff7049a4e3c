#!/usr/bin/env python3
"""Print (or write) the config reference in Markdown, generated from the pydantic schemas.

Usage: .venv/bin/python cli_utils/config_reference.py [--output docs/config_reference.md] [--node grpo]
"""
from __future__ import annotations

import argparse
import re
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipelines.common.schema import submodel


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"\bpipelines(\.\w+)*\.(?=[A-Z])", "", text)   # a section model's module path
    text = text.replace("typing.", "").replace("NoneType", "null")
    return text.replace("|", "\\|")


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    return f"`{value!r}`" if value not in (None, "") else "`null`" if value is None else "`''`"


def render_model(model: type[BaseModel], prefix: str, out: list[str], seen: set) -> None:
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"    # the YAML key (`from`, not the attribute `from_`)
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {field.description or ''} |")
        sub = submodel(field.annotation)
        if sub is not None and sub not in seen:
            is_list = typing.get_origin(field.annotation) is list
            nested.append((sub, f"{key}[]." if is_list else f"{key}."))
    out.append(f"\n### `{prefix.rstrip('.') or 'top level'}`\n")
    if model.__doc__ and model.__doc__.strip() and not model.__doc__.startswith("!!!"):
        doc = " ".join(model.__doc__.split())
        if "Usage docs" not in doc:
            out.append(doc + "\n")
    if model.model_config.get("extra") == "allow":
        out.append("Other keys are allowed here (see the description above).\n")
    out.append("| key | type | default | description |\n|---|---|---|---|")
    out.extend(rows)
    for sub, sub_prefix in nested:
        seen.add(sub)
        render_model(sub, sub_prefix, out, seen)


def reference(nodes: list[str]) -> str:
    out = ["# Config reference", "", "Generated from the pydantic schemas by `.venv/bin/python "
           "cli_utils/config_reference.py --output docs/config_reference.md`; do not edit by hand. Unknown keys are "
           "errors. Any string value may use `${ENV_VAR}` or `${ENV_VAR:-default}`; a string `@<node>.<output>` "
           "refers to an earlier node's output (chaining), resolved within the same super-config only.", "",
           "How a config is checked (`run_pipeline.py --validate`, and before every run): every problem is reported "
           "in one pass as `<file>: <key.path>: <message>`, exit 2: schema errors, the cross-field rules (also when "
           "other keys of a section are wrong), extra `training_parameters` keys against the installed TRL's "
           "GRPOConfig (name, type, and the values TRL lists for fields such as `loss_type` or `scale_rewards`), "
           "TRL's names for keys configured elsewhere (`use_vllm`, `report_to`, `bf16`, `seed`, `run_name`, ...: "
           "the message names the key to use), a key given twice in one YAML mapping (both line numbers), and, "
           "once the data is sampled, each LLM judge's rubric placeholders against the rows' columns. Floats must "
           "be finite. Reward metrics are named `rewards/<dataset label>/<reward label>/...` "
           "(`datasets[].label`, `reward_funcs[].label`); the combined reward is `rewards/combined/mean`."]
    from pipelines.registry import get_node
    for node in nodes:
        spec = get_node(node)
        out.append(f"\n## Node `{node}`")
        render_model(spec.config_model, "", out, set())
    from pipelines.rewards.judge.calibration import CalibrationSettings
    out.append("\n## LLM judge `calibration` (a key of an `llm_judge` or `generic_llm_reward` entry of "
               "`reward_funcs`; read by `run_pipeline.py --validate --calibrate-judges`)")
    render_model(CalibrationSettings, "calibration.", out, set())
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, help="write here instead of printing")
    p.add_argument("--node", action="append", help="node(s) to document (default: all registered)")
    args = p.parse_args(argv)
    from pipelines.registry import NODE_FACTORIES
    text = reference(args.node or sorted(NODE_FACTORIES))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
