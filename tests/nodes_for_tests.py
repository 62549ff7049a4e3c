"""Import-path nodes used by the runner tests (``tests.nodes_for_tests:record``)."""
from __future__ import annotations

import json
from pathlib import Path


def record(config: dict, ctx) -> dict:
    """Append this node's label and config to the file named by config['log']."""
    with open(config["log"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"label": ctx.label, "index": ctx.index, "config": config}) + "\n")
    out = Path(ctx.run_dir) / "artifact.txt"
    out.write_text(str(config.get("value", "")), encoding="utf-8")
    return {"artifact": out}


record.outputs = ("artifact",)


def fail(config: dict, ctx) -> dict:
    raise RuntimeError(f"deliberate failure: {config.get('reason', 'boom')}")
