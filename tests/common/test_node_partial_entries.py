"""Issue 26 G5: a rule that also runs on a list with invalid entries (``partial_lists``) gets each invalid entry as
its raw mapping, and ``{}`` for one that is not a mapping at all, never a None or a string it cannot read."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipelines.common.node import Rule, check_partial
from pipelines.common.problems import Problem


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a path")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Entry] = Field(description="entries")


def _paths(cfg: Any, file: str) -> list[Problem]:
    """Reads each entry as a validated one or a raw mapping, as the shipped rules do."""
    out = []
    for i, item in enumerate(cfg.items):
        path = item.get("path") if isinstance(item, dict) else item.path
        if path == "bad":
            out.append(Problem(file, f"items[{i}].path", "bad path"))
    return out


def test_non_mapping_entries_reach_a_partial_lists_rule_as_empty_mappings():
    rule = Rule(_paths, ("items",), partial_lists=True)
    raw = {"items": [None, "x", 3, [1], {"path": "bad", "extra": 1}, {"path": "ok"}]}
    problems = check_partial(Config, [rule], raw, "cfg.yaml")
    assert [p.key for p in problems] == ["items[4].path"]      # the raw mapping is still read, the rest skipped
