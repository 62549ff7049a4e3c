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


def record_rank(config: dict, ctx) -> dict:
    """Write this rank's view of the world to <run_dir>/rank<N>.json."""
    import os
    rank = int(os.environ.get("RANK", "0"))
    from pipelines.common.runlock import busy_holder
    info = {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "launched": ctx.launched,
            "lock_held": busy_holder(Path(ctx.run_dir)) is not None}
    (Path(ctx.run_dir) / f"rank{rank}.json").write_text(json.dumps(info), encoding="utf-8")
    return {"rank_file": Path(ctx.run_dir) / "rank0.json"}


def fail_on_rank1(config: dict, ctx) -> dict:
    import os
    if os.environ.get("RANK") == "1":
        raise ValueError("rank one refuses")
    return {}


def leak(config: dict, ctx) -> dict:
    """Logs, logs a traceback and raises with the config's URL and key in the text (the redaction tests)."""
    import logging
    log = logging.getLogger("tests.leak")
    log.info("calling %s with key %s (literal %s)", config["url"], config["key"], config["literal_url"])
    try:
        raise ValueError(f"server said: bad key {config['key']} at {config['url']}")
    except ValueError:
        log.exception("request failed")
    raise RuntimeError(f"giving up on {config['url']} (key {config['key']}, {config['literal_url']})")


def guard(config: dict, ctx) -> dict:
    """Stops as a guard does (a monitor alert, a spending cap)."""
    from pipelines.common.guards import GuardStop

    (Path(ctx.run_dir) / "partial.txt").write_text("kept", encoding="utf-8")
    raise GuardStop("max_usd", "spent 1.20 USD of a 1.00 USD cap", step=4)


def wait_for_signal(config: dict, ctx) -> dict:
    """Writes ``waiting`` in its run dir, then sleeps until the test signals the process."""
    import time

    import os

    (ctx.run_dir / f"waiting.{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    time.sleep(120)
    return {}
