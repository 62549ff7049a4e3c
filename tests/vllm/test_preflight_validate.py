"""``--preflight`` and ``--validate`` with vLLM's CPU build installed: the shipped vLLM configs validate (model.vllm
without CUDA is allowed for a CPU build), and the preflight runs its worst-case steps with TRL's colocated vLLM
generating (completions held to max_completion_length through vLLM's min_tokens)."""
from __future__ import annotations

import pytest

from tests.vllm.vllm_runs import REPO, check, run_cli

pytestmark = pytest.mark.vllm
GRPO_SUPER = REPO / "pipelines/grpo/configs/super_config_vllm_cpu.yaml"
ROLLOUT_SUPER = REPO / "pipelines/rollout/configs/vllm_cpu/super_config.yaml"


@pytest.mark.parametrize("super_config", [GRPO_SUPER, ROLLOUT_SUPER], ids=["grpo-colocate", "rollout"])
def test_shipped_vllm_configs_validate_with_the_cpu_build(super_config, tmp_path):
    from pipelines.common import availability

    assert availability.vllm_is_cpu_build()
    proc = check(run_cli("validate", "--super-config", str(super_config), "--outputs", str(tmp_path), timeout=300))
    assert "valid" in proc.stdout


def test_preflight_with_model_vllm(tmp_path):
    proc = check(run_cli("preflight", "--super-config", str(GRPO_SUPER), "--outputs", str(tmp_path / "out")))
    out = proc.stdout + proc.stderr
    assert "OK: preflight passed for 1 node(s)" in out
    assert "backend transformers on CPU (completions from vLLM);" in out
    assert "completions forced to 16 tokens" in out and "tokens/s" in out
    assert "trained weights reach the colocated engine through vLLM's reload_weights" in out   # vLLM generated
    assert not (tmp_path / "out" / "vllm-cpu-colocate" / "metrics.jsonl").exists()   # nothing in the run dir
