"""What the judge calibration gate measures, and its ``calibration:`` settings on a judge reward entry.

The measures, each from a maintained library (scikit-learn, scipy):

- **separation**: ROC-AUC (``sklearn.metrics.roc_auc_score``) of the score for good answers (the reference and
  golden ``expect: high`` examples) against worse ones (the wrong degradations of judge/degrade.py and golden
  ``expect: low`` examples). 0.5 is a coin; 1.0 always ranks good above bad.
- **length bias**: Spearman's rank correlation (``scipy.stats.spearmanr``) of score with length at fixed quality:
  each row's reference and its filler-padded copy, centred on the row's means, so only the length differs.
  Positive: longer scores higher for the same content.
- **saturation**: the larger of the shares of scores at the minimum and at the maximum of the score range.
- **test-retest**: Spearman of two scorings of the same samples at the configured temperature (cache bypassed).
- **agreement**: Spearman of this judge's and ``compare_with``'s scores on the same samples.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml
from pydantic import Field, ValidationError

from pipelines.common.schema import StrictModel

DEFAULT_MIN_AUC = 0.8


class GoldenExample(StrictModel):
    """One golden example: an answer and whether a sound judge scores it high or low."""

    output: str = Field(description="The answer to score, as a policy would write it.")
    expect: Literal["high", "low"] = Field(description="`high`: a good answer; `low`: a bad one.")
    prompt: Optional[str] = Field(None, description="The user message it answers; default: the prompt of the "
                                  "first row drawn from the judge's dataset.")
    answer: Optional[str] = Field(None, description="The reference answer shown to the judge ({answer}); default: "
                                  "that row's answer.")


class CalibrationSettings(StrictModel):
    """``calibration:`` on an ``llm_judge`` or ``generic_llm_reward`` entry: what ``--validate
    --calibrate-judges`` scores and the floors it holds the judge to (exit 2 below any)."""

    rows: int = Field(12, ge=2, le=1000, description="Rows drawn from the judge's dataset; each row's reference "
                      "answer and its degraded variants are scored.")
    retest_rows: int = Field(4, ge=0, le=1000, description="Of those rows, how many are scored a second time for "
                             "the test-retest measure (0: not measured).")
    examples: list[GoldenExample] = Field(default_factory=list, description="Golden examples: "
                                          "[{output, expect: high or low, prompt, answer}].")
    examples_file: Optional[str] = Field(None, description="A JSONL or YAML list file of more golden examples "
                                         "(same keys as `examples`).")
    compare_with: Optional[str] = Field(None, description="The label of another judge reward of this config: it "
                                        "scores the same samples and their agreement is measured.")
    min_auc: float = Field(DEFAULT_MIN_AUC, ge=0, le=1, description="Floor of the separation of good from degraded "
                           "answers (ROC-AUC).")
    max_length_bias: float = Field(0.3, ge=-1, le=1, description="Ceiling of the rank correlation of score with "
                                   "length at fixed quality (reference vs the same text padded with filler).")
    max_saturation: float = Field(0.8, ge=0, le=1, description="Ceiling of the share of scores at the minimum or "
                                  "at the maximum of the score range (whichever is larger).")
    min_retest: float = Field(0.7, ge=-1, le=1, description="Floor of the rank correlation of two scorings of the "
                              "same samples at the configured temperature.")
    min_agreement: float = Field(0.5, ge=-1, le=1, description="Floor of the rank correlation with the "
                                 "`compare_with` judge (only when it is set).")


def load_examples(path: str) -> list[GoldenExample]:
    """Golden examples from a JSONL file (one object a line) or a YAML list; ValueError says what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"examples_file {path!r}: file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".jsonl":
            raw = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            raw = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"examples_file {path!r}: cannot be read: {exc}") from None
    if not isinstance(raw, list):
        raise ValueError(f"examples_file {path!r}: expected a list of {{output, expect: high or low}}")
    try:
        return [GoldenExample.model_validate(item) for item in raw]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"examples_file {path!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def settings_problems(raw: Any) -> list[str]:
    """Every problem with a ``calibration`` value (``calibration.<key>: message``), for the validate hook."""
    if raw is None:
        return []
    try:
        settings = CalibrationSettings.model_validate(raw)
    except ValidationError as exc:
        return [f"calibration.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    if settings.retest_rows > settings.rows:
        return [f"calibration.retest_rows: {settings.retest_rows} is more than rows ({settings.rows})"]
    if settings.examples_file:
        try:
            load_examples(settings.examples_file)
        except ValueError as exc:
            return [f"calibration.{exc}"]
    return []


@dataclass
class Sample:
    """One scored calibration answer."""

    kind: str                       # reference, a degradation name, golden_high / golden_low
    row: int                        # the row it was made from (-1: a golden example without a row)
    text: str
    score: Optional[float] = None
    retest: Optional[float] = None
    other: Optional[float] = None   # the compare_with judge's score

    @property
    def good(self) -> Optional[bool]:
        """True for good answers, False for worse ones, None for the length probe."""
        if self.kind in ("reference", "golden_high"):
            return True
        return None if self.kind == "padded" else False


@dataclass
class Report:
    """The measures of one judge; None where a measure could not be taken (say why in ``notes``)."""

    auc: Optional[float] = None
    length_bias: Optional[float] = None
    saturation: Optional[float] = None
    at_min: float = 0.0
    at_max: float = 0.0
    retest: Optional[float] = None
    agreement: Optional[float] = None
    means: dict[str, float] = field(default_factory=dict)
    unscored: int = 0
    notes: list[str] = field(default_factory=list)


def _spearman(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Spearman's rho; 1.0 for identical sequences (scipy gives nan when one is constant), None if undefined."""
    from scipy.stats import spearmanr

    if len(a) < 2:
        return None
    if list(a) == list(b):
        return 1.0
    if len(set(a)) < 2 or len(set(b)) < 2:      # a constant side: no rank correlation is defined
        return None
    rho = spearmanr(a, b).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def length_bias(samples: Sequence[Sample]) -> Optional[float]:
    """Spearman of score with length within rows (reference and padded copy, centred per row); 0.0 when the
    judge gives each row's copies the same score."""
    from scipy.stats import spearmanr

    by_row: dict[int, list[Sample]] = {}
    for s in samples:
        if s.kind in ("reference", "padded") and s.score is not None:
            by_row.setdefault(s.row, []).append(s)
    lengths, scores = [], []
    for group in by_row.values():
        if len(group) < 2:
            continue
        mean_len = sum(len(s.text) for s in group) / len(group)
        mean_score = sum(s.score for s in group) / len(group)
        lengths += [len(s.text) - mean_len for s in group]
        scores += [s.score - mean_score for s in group]
    if len(lengths) < 4:
        return None
    if all(abs(x) < 1e-12 for x in scores):
        return 0.0
    if len(set(lengths)) < 2:
        return None
    return float(spearmanr(lengths, scores).statistic)


def measure(samples: Sequence[Sample], bounds: tuple[float, float]) -> Report:
    """Every measure of the module docstring over scored ``samples``; ``bounds``: the score range."""
    from sklearn.metrics import roc_auc_score

    report = Report()
    scored = [s for s in samples if s.score is not None]
    report.unscored = len(samples) - len(scored)
    kinds: dict[str, list[float]] = {}
    for s in scored:
        kinds.setdefault(s.kind, []).append(s.score)
    report.means = {k: sum(v) / len(v) for k, v in kinds.items()}
    labelled = [s for s in scored if s.good is not None]
    if len({s.good for s in labelled}) == 2:
        report.auc = float(roc_auc_score([int(s.good) for s in labelled], [s.score for s in labelled]))
    else:
        report.notes.append("separation not measured: no scored good and degraded answers")
    report.length_bias = length_bias(scored)
    if scored:
        lo, hi = bounds
        eps = 1e-9 * max(1.0, hi - lo)
        report.at_min = sum(s.score <= lo + eps for s in scored) / len(scored)
        report.at_max = sum(s.score >= hi - eps for s in scored) / len(scored)
        report.saturation = max(report.at_min, report.at_max)
    pairs = [(s.score, s.retest) for s in scored if s.retest is not None]
    report.retest = _spearman([a for a, _ in pairs], [b for _, b in pairs]) if pairs else None
    others = [(s.score, s.other) for s in scored if s.other is not None]
    report.agreement = _spearman([a for a, _ in others], [b for _, b in others]) if others else None
    return report


def failures(report: Report, settings: CalibrationSettings, compared: bool) -> list[str]:
    """The measures below (or above) their thresholds, each as ``<measure> <value> below/above <key> <limit>``."""
    out = []
    if report.auc is None or report.auc < settings.min_auc:
        shown = "not measured" if report.auc is None else f"{report.auc:.2f}"
        out.append(f"separation (ROC-AUC good vs degraded) {shown} below min_auc {settings.min_auc:g}")
    if report.length_bias is not None and report.length_bias > settings.max_length_bias:
        out.append(f"length bias (Spearman score~length at fixed quality) {report.length_bias:.2f} above "
                   f"max_length_bias {settings.max_length_bias:g}")
    if report.saturation is not None and report.saturation > settings.max_saturation:
        out.append(f"saturation (share at min {report.at_min:.2f} / max {report.at_max:.2f}) {report.saturation:.2f} "
                   f"above max_saturation {settings.max_saturation:g}")
    if report.retest is not None and report.retest < settings.min_retest:
        out.append(f"test-retest (Spearman) {report.retest:.2f} below min_retest {settings.min_retest:g}")
    if compared and (report.agreement is None or report.agreement < settings.min_agreement):
        shown = "not measured" if report.agreement is None else f"{report.agreement:.2f}"
        out.append(f"agreement with compare_with (Spearman) {shown} below min_agreement {settings.min_agreement:g}")
    return out


def report_lines(report: Report, settings: CalibrationSettings, compared: bool) -> list[str]:
    """The printed table of one judge's measures and its mean score per kind of answer."""
    def fmt(v: Optional[float]) -> str:
        return "  n/a" if v is None else f"{v:5.2f}"

    rows = [("separation (ROC-AUC)", report.auc, f">= {settings.min_auc:g}",
             report.auc is not None and report.auc >= settings.min_auc),
            ("length bias (Spearman)", report.length_bias, f"<= {settings.max_length_bias:g}",
             report.length_bias is None or report.length_bias <= settings.max_length_bias),
            ("saturation (min/max share)", report.saturation, f"<= {settings.max_saturation:g}",
             report.saturation is None or report.saturation <= settings.max_saturation),
            ("test-retest (Spearman)", report.retest, f">= {settings.min_retest:g}",
             report.retest is None or report.retest >= settings.min_retest)]
    if compared:
        rows.append(("agreement (Spearman)", report.agreement, f">= {settings.min_agreement:g}",
                     report.agreement is not None and report.agreement >= settings.min_agreement))
    lines = [f"{name:<28}{fmt(value)}  ({limit})  {'ok' if ok else 'FAIL'}" for name, value, limit, ok in rows]
    lines.append("mean score: " + ", ".join(f"{k} {v:.3g}" for k, v in report.means.items()))
    if report.unscored:
        lines.append(f"{report.unscored} sample(s) got no score (judge failures; see -v)")
    return lines + report.notes
