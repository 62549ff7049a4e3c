"""Combining one completion's scores and scaling a batch, around the user's post-processors.

The rules every combination shares live here, so a user's function never has to handle them: ``None`` scores
are left out, all-``None`` gives ``None``, and a gate that scored 0 zeroes the combination.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pipelines.rewards.config import NamedFunction
from pipelines.rewards.errors import RewardFunctionError


class Score(float):
    """A component's score: a float that also carries its ``name``, ``weight`` and ``gate``."""

    name: str
    weight: float
    gate: bool

    def __new__(cls, value: float, name: str = "", weight: float = 1.0, gate: bool = False) -> "Score":
        obj = super().__new__(cls, value)
        obj.name, obj.weight, obj.gate = name, weight, gate
        return obj

    def __repr__(self) -> str:
        return f"Score({float(self)!r}, name={self.name!r}, weight={self.weight!r}, gate={self.gate!r})"


@dataclass
class PostProcessor:
    """A registered post-processor with its configured kwargs."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, spec: str | NamedFunction, registry: Any) -> "PostProcessor":
        named = spec if isinstance(spec, NamedFunction) else NamedFunction(name=spec)
        return cls(named.name, registry.get(named.name), dict(named.kwargs))


def _as_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RewardFunctionError(f"{what} returned {value!r}; it must return a number or None") from None
    if not math.isfinite(number):   # never trained on, never written (the export must stay strict JSON)
        raise RewardFunctionError(f"{what} returned {value!r}; it must return a finite number or None")
    return number


def combine(scores: Sequence[Score | None], combination: PostProcessor) -> float | None:
    """One completion's combined reward (see the module docstring for the shared rules)."""
    present = [s for s in scores if s is not None]
    if not present:
        return None
    if any(s.gate and float(s) == 0.0 for s in present):
        return 0.0
    try:
        value = combination.fn(present, **combination.kwargs)
    except Exception as exc:
        raise RewardFunctionError(f"combination function {combination.name!r} raised "
                                  f"{type(exc).__name__}: {exc}") from exc
    return _as_float(value, f"combination function {combination.name!r}")


def scale(values: Sequence[float | None], scaling: PostProcessor) -> list[float | None]:
    """The batch scaled by ``scaling``; ``None`` entries are kept out of the call and stay ``None``."""
    positions = [i for i, v in enumerate(values) if v is not None]
    present = [float(values[i]) for i in positions]  # type: ignore[arg-type]
    try:
        scaled = list(scaling.fn(present, **scaling.kwargs)) if present else []
    except Exception as exc:
        raise RewardFunctionError(f"scaling function {scaling.name!r} raised {type(exc).__name__}: {exc}") from exc
    if len(scaled) != len(present):
        raise RewardFunctionError(f"scaling function {scaling.name!r} returned {len(scaled)} values for "
                                  f"{len(present)}; return one per reward, in order")
    out: list[float | None] = [None] * len(values)
    for i, v in zip(positions, scaled):
        out[i] = _as_float(v, f"scaling function {scaling.name!r}")
    return out
