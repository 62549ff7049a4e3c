"""The node contract's one validation path: schema, then rules on a valid config; on a rejected one, each
section on its own and the rules whose sections validated."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field

from pipelines.common.node import NodeContext, NodeSpec, Rule, check_partial, validate_node_config, \
    validate_sections
from pipelines.common.problems import Problem
from pipelines.common.schema import StrictModel


class Item(StrictModel):
    name: str
    size: int = Field(1, ge=1)


class Limits(StrictModel):
    low: int = 0
    high: int = 10


class Mode(StrictModel):
    kind: Literal["a", "b"] = "a"


class Config(StrictModel):
    items: list[Item] = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)
    mode: Optional[Mode] = None


def limits_rule(cfg, file):
    lim = cfg.limits
    return [Problem(file, "limits", f"low {lim.low} > high {lim.high}")] if lim.low > lim.high else []


def names_rule(cfg, file):
    """Reads names even from entries that did not validate (raw dicts)."""
    out = []
    for i, item in enumerate(cfg.items):
        name = item.get("name") if isinstance(item, dict) else item.name
        if name == "bad":
            out.append(Problem(file, f"items[{i}].name", "is bad"))
    return out


def sizes_rule(cfg, file):
    return [Problem(file, "items", "sizes too big")] if sum(i.size for i in cfg.items) > 5 else []


RULES = (Rule(limits_rule, ("limits",)), Rule(names_rule, ("items",), partial_lists=True),
         Rule(sizes_rule, ("items",)))


def test_sections_validate_on_their_own():
    ns, invalid, holes = validate_sections(Config, {"items": [{"name": "x"}, {"name": "y", "size": 0}],
                                                    "limits": {"low": 3, "hgh": 1}})
    assert invalid == {"items"} and holes == {"items"}
    assert ns.items[0] == Item(name="x") and ns.items[1] == {"name": "y", "size": 0}   # the raw entry kept
    assert ns.limits == Limits(low=3, high=10)      # only an unknown key: the rest still serves the rules
    assert ns.mode is None                          # absent optional section: its default


def test_missing_required_section_is_invalid():
    _, invalid, _ = validate_sections(Config, {"limits": {}})
    assert invalid == {"items"}


def test_partial_check_runs_only_rules_whose_sections_validated():
    raw = {"items": [{"name": "bad"}, {"name": "y", "size": 0}], "limits": {"low": 5, "high": 1}, "mode": 3}
    problems = [str(p) for p in check_partial(Config, RULES, raw, "c.yaml")]
    # limits validated -> its rule ran; names_rule reads through the invalid entry; sizes_rule needs every item
    assert problems == ["c.yaml: limits: low 5 > high 1", "c.yaml: items[0].name: is bad"]


def test_validate_node_config_reports_schema_and_rules_together(tmp_path):
    spec = NodeSpec(name="t", config_model=Config, run="x:y", rules=RULES,
                    check=lambda cfg, ctx: [Problem(ctx.config_file, "run_name", "busy")])
    ctx = NodeContext(label="t", index=0, config_file="c.yaml", raw_config={}, secrets=set(), run_dir=tmp_path,
                      outputs_root=tmp_path)
    cfg, problems = validate_node_config(spec, {"items": [{"name": "a", "size": 9}]}, ctx)
    assert cfg is not None and [str(p) for p in problems] == ["c.yaml: items: sizes too big", "c.yaml: run_name: busy"]
    cfg, problems = validate_node_config(spec, {"items": [{"name": "bad", "size": "x"}], "limits": {"low": 9,
                                                                                              "high": 0}}, ctx)
    assert cfg is None
    assert [p.key for p in problems] == ["items[0].size", "limits", "items[0].name"]   # schema, then rules
    # import-path nodes have no schema: their config is handed over as it is
    plain = NodeSpec(name="p", config_model=None, run="x:y")
    assert validate_node_config(plain, {"any": 1}, ctx) == ({"any": 1}, [])
    assert Path(ctx.run_dir) == tmp_path
