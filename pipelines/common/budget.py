"""Budgets: what a run costs (judge tokens at the user's prices, the machine's hours) and caps that stop it.

Costs come from the providers' own ``usage`` fields (prompt and completion tokens of every judge response,
already counted per step by the judge metrics) times the prices the user writes in ``budget.judge_prices``, and
from the node's wall time times ``budget.gpu_usd_per_hour`` (the hourly price of the rented machine: it bills
while the node loads, generates and judges as well as while it trains). A cap (``max_usd``, ``max_judge_usd``,
``max_gpu_hours``) crossed at a step raises :class:`~pipelines.common.guards.GuardStop`: the node saves a
checkpoint and exits 3, and a resume with a raised cap continues the spend from where it stopped (the running
totals are kept in ``metrics.jsonl`` as ``cost/*`` and read back on resume).
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from pydantic import Field

from pipelines.common.guards import GuardStop
from pipelines.common.io import atomic_write_text
from pipelines.common.problems import Problem
from pipelines.common.schema import StrictModel

log = logging.getLogger(__name__)

COST_FILE = "cost.json"      # the totals of a node that has no per-step metrics.jsonl (rollout, grpo_hpo)


class JudgePrice(StrictModel):
    input_usd_per_mtok: float = Field(ge=0, allow_inf_nan=False, description="USD per million prompt (input) "
                                      "tokens, as the provider bills them.")
    output_usd_per_mtok: float = Field(ge=0, allow_inf_nan=False, description="USD per million completion "
                                       "(output) tokens.")

    def usd(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1e6


class BudgetSection(StrictModel):
    """Prices and caps. Every cap is optional; crossing one stops the run with exit 3 (resumable)."""

    gpu_usd_per_hour: Optional[float] = Field(None, ge=0, allow_inf_nan=False, description="Hourly price of the "
                                              "machine the run holds (GPU box); billed on the node's wall time, "
                                              "including model loading, generation and judging.")
    judge_prices: dict[str, JudgePrice] = Field(default_factory=dict, description="Price per judge model, keyed "
                                                "by the judge's eval_llm_name. A self-hosted judge costs what you "
                                                "write here (0 if it is on the same machine).")
    max_usd: Optional[float] = Field(None, gt=0, allow_inf_nan=False, description="Stop (exit 3) when judge + "
                                     "machine spend passes this many USD.")
    max_judge_usd: Optional[float] = Field(None, gt=0, allow_inf_nan=False, description="Stop (exit 3) when "
                                           "judge spend passes this many USD.")
    max_gpu_hours: Optional[float] = Field(None, gt=0, allow_inf_nan=False, description="Stop (exit 3) after "
                                           "this many hours of the node's wall time.")


def check_budget(budget: Optional[BudgetSection], judge_models: Iterable[str], file: str) -> list[Problem]:
    """A cap that could never trip because a price it needs is missing is a config error.

    ``judge_models``: the eval_llm_name of every judge the node uses.
    """
    if budget is None:
        return []
    problems = []
    models = sorted(set(judge_models))
    unpriced = [m for m in models if m not in budget.judge_prices]
    for cap in ("max_judge_usd", "max_usd"):
        if getattr(budget, cap) is not None and unpriced:
            problems.append(Problem(file, f"budget.{cap}", f"judge model(s) {', '.join(map(repr, unpriced))} have no "
                                    "price in budget.judge_prices, so their spend would count as 0 against this cap; "
                                    "add input_usd_per_mtok and output_usd_per_mtok for each (0 for a free one)"))
    if budget.max_usd is not None and budget.gpu_usd_per_hour is None and not models:
        problems.append(Problem(file, "budget.max_usd", "nothing is priced: set budget.gpu_usd_per_hour (and "
                                "judge_prices for judges), or use max_gpu_hours"))
    if budget.max_judge_usd is not None and not models:
        problems.append(Problem(file, "budget.max_judge_usd", "this node uses no LLM judge, so the cap can never "
                                "trip; remove it"))
    for model in sorted(set(budget.judge_prices) - set(models)):
        problems.append(Problem(file, f"budget.judge_prices.{model}", f"no judge of this node uses model {model!r}"
                                f"{'; judges use: ' + ', '.join(models) if models else ''} (a price must be keyed "
                                "by the judge's eval_llm_name)"))
    return problems


class CostMeter:
    """Running totals of one node's spend, fed once per logged step; :meth:`enforce` trips the caps.

    ``started``: when the node started, in ``clock``'s units (``time.time()``: the machine bills from the
    node's start, model loading included). ``judge_models`` maps a reward component name (``<dataset>/<label>``) to its judge's model name; the judge
    metrics of that component (``rewards/<component>/judge/<label>/prompt_tokens``...) are priced with it.
    """

    def __init__(self, budget: BudgetSection, judge_models: Mapping[str, str],
                 clock: Callable[[], float] = time.time, started: Optional[float] = None,
                 state_file: Optional[Path] = None):
        self.budget = budget
        self.state_file = state_file   # where each observe() saves the totals (nodes without metrics.jsonl steps)
        self.judge_models = dict(judge_models)
        self.clock = clock
        self.started = clock() if started is None else started
        self.earlier_hours = 0.0      # spent by the runs this one resumes
        self.judge_usd = 0.0
        self.prompt_tokens = 0.0
        self.completion_tokens = 0.0
        self._warned: set[str] = set()

    def restore(self, record: Optional[Mapping[str, Any]]) -> None:
        """Continue from the totals of an earlier run (the last ``cost/*`` record at or before the resume step)."""
        if not record:
            return
        self.judge_usd = float(record.get("cost/judge_usd") or 0.0)
        self.earlier_hours = float(record.get("cost/gpu_hours") or 0.0)
        self.prompt_tokens = float(record.get("cost/judge_prompt_tokens") or 0.0)
        self.completion_tokens = float(record.get("cost/judge_completion_tokens") or 0.0)
        log.info("budget: continuing from %.4f USD of judge spend and %.3f machine hours", self.judge_usd,
                 self.earlier_hours)

    def hours(self) -> float:
        return self.earlier_hours + max(0.0, self.clock() - self.started) / 3600.0

    def observe(self, logs: Mapping[str, Any]) -> dict[str, float]:
        """Add the judge tokens of one step's ``logs``; returns the running ``cost/*`` totals for that step."""
        for component, model in self.judge_models.items():
            prefix = f"rewards/{component}/judge/"
            prompt = _summed(logs, prefix, "/prompt_tokens")
            completion = _summed(logs, prefix, "/completion_tokens")
            self.add_judge_tokens(model, prompt, completion)
        totals = self.totals()
        if self.state_file is not None:
            atomic_write_text(self.state_file, json.dumps(totals, indent=2) + "\n")
        return totals

    def add_judge_tokens(self, model: str, prompt_tokens: float, completion_tokens: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        price = self.budget.judge_prices.get(model)
        if price is None:
            if (prompt_tokens or completion_tokens) and model not in self._warned:
                self._warned.add(model)
                log.warning("budget: judge model %r has no price in budget.judge_prices; its tokens are counted "
                            "but cost 0 USD", model)
            return
        self.judge_usd += price.usd(prompt_tokens, completion_tokens)

    def totals(self) -> dict[str, float]:
        hours = self.hours()
        gpu_usd = hours * (self.budget.gpu_usd_per_hour or 0.0)
        return {"cost/judge_usd": round(self.judge_usd, 6), "cost/gpu_usd": round(gpu_usd, 6),
                "cost/total_usd": round(self.judge_usd + gpu_usd, 6), "cost/gpu_hours": round(hours, 6),
                "cost/judge_prompt_tokens": self.prompt_tokens, "cost/judge_completion_tokens": self.completion_tokens}

    def crossed(self) -> Optional[tuple[str, str]]:
        """(cap key, message) of the first cap the totals have passed, or None."""
        totals, b = self.totals(), self.budget
        for cap, value, unit in (("max_judge_usd", totals["cost/judge_usd"], "USD of judge spend"),
                                 ("max_usd", totals["cost/total_usd"], "USD in all"),
                                 ("max_gpu_hours", totals["cost/gpu_hours"], "machine hours")):
            limit = getattr(b, cap)
            if limit is not None and value > limit:
                return cap, (f"{value:.4g} {unit} passed budget.{cap} = {limit:g}; raise it (e.g. --set "
                             f"budget.{cap}={_raised(limit, value)}) and resume")
        return None

    def enforce(self, step: Optional[int] = None) -> None:
        """Raises:
            GuardStop: a cap was crossed (kind ``budget.<cap>``).
        """
        hit = self.crossed()
        if hit is not None:
            raise GuardStop(f"budget.{hit[0]}", hit[1], step=step, evidence=self.totals())


def _summed(logs: Mapping[str, Any], prefix: str, suffix: str) -> float:
    total = 0.0
    for key, value in logs.items():
        if key.startswith(prefix) and key.endswith(suffix) and isinstance(value, (int, float)) and math.isfinite(value):
            total += float(value)
    return total


def _raised(limit: float, value: float) -> str:
    """A round number comfortably above ``value`` to suggest as a new cap."""
    target = max(limit, value) * 2
    magnitude = 10 ** math.floor(math.log10(target))
    return f"{math.ceil(target / magnitude) * magnitude:g}"


def last_cost_record(records: Iterable[Mapping[str, Any]], step: Optional[int]) -> Optional[dict[str, Any]]:
    """The latest record holding ``cost/*`` totals at or before ``step`` (None: any step)."""
    found = None
    for rec in records:
        s = rec.get("step")
        if "cost/total_usd" in rec and isinstance(s, int) and (step is None or s <= step):
            found = dict(rec)
    return found



def load_totals(state_file: Path) -> Optional[dict[str, Any]]:
    """The totals an earlier (stopped or killed) run saved in ``state_file``, or None."""
    try:
        return json.loads(Path(state_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
