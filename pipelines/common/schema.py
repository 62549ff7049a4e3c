"""Pydantic helpers: a strict base model and conversion of validation errors into :class:`Problem` s."""
from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.common.problems import Problem, did_you_mean, join_key


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are checked on assignment, and a float
    must be finite (``.inf``/``.nan`` in YAML would otherwise pass every range check and crash mid-run)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# A seed as numpy, torch and Python's random all accept it: 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside ``Model``, ``Model | None`` or ``list[Model]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = submodel(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """Walk field annotations along a pydantic error location to the model that owns its last part."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = submodel(field.annotation)
    return model


def validate_model(model_cls: type[BaseModel], data: Any, file: str,
                   key_prefix: str = "") -> tuple[BaseModel | None, list[Problem]]:
    """Validate ``data``; return the model, or None with one :class:`Problem` per error."""
    try:
        return model_cls.model_validate(data if data is not None else {}), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            # pydantic puts the union branch name into loc for tagged unions; drop class-like names
            loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
            key = join_key(key_prefix, *loc)
            if err["type"] == "extra_forbidden":
                owner = _model_at(model_cls, loc)
                # the YAML names: a field's alias where it has one (`from`, not the attribute `from_`)
                names = [f.alias or n for n, f in owner.model_fields.items()] if owner else []
                hint = did_you_mean(loc[-1], names) if owner else ""
                message = f"unknown key{hint}"
            else:
                message = err["msg"]
                if message.startswith("Value error, "):
                    message = message[len("Value error, "):]
                if err["type"] not in ("missing", "value_error", "assertion_error") and "input" in err:
                    shown = repr(err["input"])
                    message += f" (got {shown[:80]})"
            problems.append(Problem(file, key, message))
        return None, problems
