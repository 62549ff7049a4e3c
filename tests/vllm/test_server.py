"""``model.vllm.mode: server`` on CPU, against a real ``trl vllm-serve`` (vLLM's CPU build) started here on
127.0.0.1.

What can run without a GPU runs: the GRPOConfig the node builds from a server-mode config points TRL's client at
the server, and the server generates with that config's sampling settings and stop strings. Server-mode
*training* cannot run on a CPU: before the first step TRL joins the server's NCCL weight-transfer group, which
needs a CUDA device (``test_weight_sync_needs_cuda`` pins TRL's own refusal), so ``--validate`` refuses it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.vllm.vllm_runs import BIN, COLOCATE_CONFIG, run_cli, write_super_config

pytestmark = pytest.mark.vllm
STOP = "e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(host, port, model folder) of a running ``trl vllm-serve`` on builtin:tiny-vllm; stopped afterwards."""
    from pipelines.common.tiny_model import BUILTIN_TINY_VLLM, resolve_model_name

    root = tmp_path_factory.mktemp("vllm_serve")
    model = resolve_model_name(BUILTIN_TINY_VLLM, cache_root=root / "cache")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "trl"), "vllm-serve", "--model", model, "--host", "127.0.0.1", "--port",
                             str(port), "--gpu_memory_utilization", "0.05", "--max_model_len", "256",
                             "--enforce_eager", "true"], stdout=log, stderr=subprocess.STDOUT, cwd=root,
                            start_new_session=True)
    try:
        from trl.generation.vllm_client import VLLMClient

        try:   # connection_timeout: wait for /health/ (vLLM's start takes a minute or more here)
            VLLMClient(host="127.0.0.1", server_port=port, connection_timeout=900)
        except ConnectionError:
            pytest.fail(f"trl vllm-serve did not answer /health/ (exit {proc.poll()}):\n"
                        f"{(root / 'server.log').read_text()[-4000:]}")
        yield "127.0.0.1", port, model
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _server_config(host: str, port: int):
    from pipelines.common.config_io import load_yaml
    from pipelines.grpo.config import GRPOConfigFile

    raw = load_yaml(COLOCATE_CONFIG)
    raw["model"]["vllm"] = {"mode": "server", "host": host, "port": port}
    raw["training_parameters"].update(model_stop_sequences=[STOP], temperature=0.7, top_k=50, max_completion_length=12)
    return GRPOConfigFile.model_validate(raw)


def test_generation_through_the_server_follows_the_config(server, tmp_path):
    """The node's GRPOConfig for a server-mode config (host, port, sampling, stop strings as generation_kwargs)
    drives TRL's client exactly as TRL's server-mode generation does, and the server honours it."""
    from trl.generation.vllm_client import VLLMClient

    from pipelines.grpo.model import load_tokenizer, load_transformers_model
    from pipelines.grpo.trainer import build_grpo_config

    host, port, model = server
    cfg = _server_config(host, port)
    tokenizer = load_tokenizer(model, None)
    loaded = load_transformers_model(cfg, model, tokenizer)
    assert loaded.generates_with_vllm and loaded.grpo_overrides["vllm_mode"] == "server"
    args = build_grpo_config(cfg, tmp_path, loaded.grpo_overrides)
    assert (args.vllm_server_host, args.vllm_server_port) == (host, port)
    client = VLLMClient(host=args.vllm_server_host, server_port=args.vllm_server_port)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
               for text in ("Tell me about a cat.", "Describe the sea.")]
    # TRL's server-mode call (trl/generation/vllm_generation.py), fed from the node's GRPOConfig
    out = client.generate(prompts=prompts, n=args.num_generations, repetition_penalty=args.repetition_penalty,
                          temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                          min_p=args.min_p or 0.0, max_tokens=args.max_completion_length, logprobs=0,
                          generation_kwargs=args.generation_kwargs)
    completions = out["completion_ids"]
    assert len(completions) == len(prompts) * args.num_generations == 8
    assert all(0 < len(ids) <= 12 for ids in completions)
    stopped = 0
    for ids in completions:
        # the stop string ends the completion: it occurs only in its last token
        assert STOP not in tokenizer.decode(ids[:-1], skip_special_tokens=True), tokenizer.decode(ids)
        stopped += STOP in tokenizer.decode(ids[-1:], skip_special_tokens=True)
    assert stopped >= 4, [tokenizer.decode(ids) for ids in completions]
    assert len({tuple(ids) for ids in completions}) > 1        # sampled at temperature 0.7, not greedy


def test_weight_sync_needs_cuda(server):
    """Why server-mode training is refused on a CPU: TRL's weight sync with the server (what its trainer sets up
    before the first step) refuses to start without CUDA. When a TRL release lifts this, lift the check."""
    from trl.generation.vllm_client import VLLMClient

    host, port, _ = server
    with pytest.raises(NotImplementedError, match="NCCL weight-transfer engine, which needs a CUDA device"):
        VLLMClient(host=host, server_port=port).init_communicator(device="cpu")


def test_validate_refuses_server_mode_training_without_cuda(tmp_path):
    sc = write_super_config(tmp_path / "super.yaml", [{"node": "grpo", "config": str(COLOCATE_CONFIG),
                                                       "overrides": {"model.vllm.mode": "server"}}])
    proc = run_cli("validate", "--super-config", str(sc), "--outputs", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "model.vllm.mode: server-mode training needs CUDA" in text and "NCCL" in text
