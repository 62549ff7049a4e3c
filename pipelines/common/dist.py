"""The one collective the project needs: gather a small Python object from every rank.

Nothing here imports torch: when torch.distributed is not already running (one process, or validation), the
gather is just ``[obj]``.
"""
from __future__ import annotations

import sys
from typing import Any


def world_size() -> int:
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order. A collective: every rank must call it at the same point."""
    size = world_size()
    if size < 2:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, obj)
    return gathered
