"""The parts of score_completions that report: the closing table of mean scores, and the LLM judges' record
of each line (its errors, and with --show-judge every reply and how it was read)."""
from __future__ import annotations

from typing import Any, Iterable

from pipelines.common.redaction import redact_text


class Summary:
    """Running means per component for the closing table."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # name -> [sum, count, nones]
        self.lines = self.errors = 0

    def add(self, rewards: dict[str, Any], combined: Any, had_error: bool) -> None:
        self.lines += 1
        self.errors += had_error
        for name, value in [*rewards.items(), ("combined", combined)]:
            s = self.stats.setdefault(name, [0.0, 0, 0])
            if value is None:
                s[2] += 1
            else:
                s[0] += value
                s[1] += 1

    def table(self) -> str:
        width = max([len(n) for n in self.stats] + [9])
        out = [f"{'component':<{width}}  {'mean':>9}  {'scored':>6}  {'null':>6}"]
        for name in sorted(self.stats, key=lambda n: (n == "combined", n)):
            total, count, nones = self.stats[name]
            mean = f"{total / count:9.4f}" if count else f"{'-':>9}"
            out.append(f"{name:<{width}}  {mean}  {count:>6}  {nones:>6}")
        out.append(f"{self.lines} line(s) scored, {self.errors} with errors")
        return "\n".join(out)


class JudgeLog:
    """Collects what every LLM judge of the stack did to each row (``LLMJudge.observer``) and turns each row's
    judge failures into its ``errors`` entries. Also switches the judges to "score every line": no circuit
    breaker and no ``on_error: fail`` (a failed call is that line's error)."""

    def __init__(self, stack: Any, show: bool, secrets: Iterable[str] = ()):
        self.show = show
        self.secrets = set(secrets)   # besides the registered ones: a judge may echo its key in a reply
        self.records: dict[Any, list[dict[str, Any]]] = {}
        self.judges = [comp.fn.judge for comps in stack.components for comp in comps
                       if getattr(comp.fn, "judge", None) is not None]
        for judge in self.judges:
            judge.observer = self._add
            judge.options.max_failure_rate = 1.0
            if judge.options.on_error == "fail":
                judge.options.on_error = "skip"

    def _add(self, record: dict[str, Any]) -> None:
        self.records.setdefault(record.get("row_id"), []).append(record)

    def take(self, row_id: Any, where: str) -> list[str]:
        """The judge errors of one row (printing its judge exchanges with --show-judge)."""
        errors = []
        for rec in self.records.pop(row_id, []):
            if rec["error"]:
                errors.append(f"LLM judge {rec['judge']!r}: {rec['error']}")
            if self.show:
                print(redact_text(_judge_lines(rec, where), self.secrets))
        return errors


def _judge_lines(rec: dict[str, Any], where: str) -> str:
    out = [f"{where} judge {rec['judge']!r}: reward {rec['reward']}"
           + (f" ({rec['note']})" if rec.get("note") else "") + (f"; error: {rec['error']}" if rec["error"] else "")]
    for n, ex in enumerate(rec["exchanges"], 1):
        reading = f"score {ex['parsed']}" if ex["parse_error"] is None else f"not read: {ex['parse_error']}"
        out.append(f"    reply {n}: {ex['reply']!r}\n    -> {reading}")
    return "\n".join(out)
