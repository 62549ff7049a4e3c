"""Built-in reward functions. Each is a registered factory: its keyword arguments come from the config entry.

Scores: 1.0/0.0 checks unless stated otherwise. Every factory validates its arguments at ``--validate`` time
(through the signature and, where needed, a ``validate=`` hook) so a bad value never surfaces mid-run.

Parsing is linear in the completion's length: tagged blocks are found with :mod:`.textscan`, not lazy regexes
(quadratic on many unclosed tags); a user's own ``pattern`` / ``extract_pattern`` is the user's regex.
"""
from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from typing import Any, Literal, Sequence

from pipelines.rewards.forms import completion_text, per_sample
from pipelines.rewards.registry import needs_columns, register_reward_function
from pipelines.rewards.safe_arith import UnsafeExpression, evaluate
from pipelines.rewards.textscan import tag_contents

DEFAULT_EXTRACT = r"<answer>([\s\S]*?)</answer>"   # answer_match's default, scanned without a regex


def _one_of(value: Any, allowed: Sequence[str], key: str) -> list[str]:
    return [] if value in allowed else [f"{key} must be one of {', '.join(allowed)}, not {value!r}"]


# ----------------------------------------------------------------------------------------------- countdown
def _as_numbers(value: Any) -> list[float]:
    if isinstance(value, str):
        value = json.loads(value)
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [float(v) for v in value]


def countdown_score(completion: str, target: Any, nums: Any, tolerance: float = 1e-5) -> float:
    """1.0 when the single ``<answer>`` equation uses each of ``nums`` exactly once and equals ``target``."""
    tags = tag_contents(completion, "<answer>", "</answer>")
    if len(tags) != 1:
        return 0.0
    try:
        result = evaluate(tags[0].strip())
    except UnsafeExpression:
        return 0.0
    if sorted(float(n) for n in result.numbers) != sorted(_as_numbers(nums)):
        return 0.0
    return 1.0 if abs(result.value - float(target)) < tolerance else 0.0


@register_reward_function("countdown_equation")
@needs_columns(lambda kw: [kw.get("target_column", "target"), kw.get("nums_column", "nums")])
def countdown_equation(target_column: str = "target", nums_column: str = "nums", tolerance: float = 1e-5):
    """1.0 when the completion holds exactly one ``<answer>…</answer>`` whose equation uses each number of the
    row's ``nums_column`` exactly once, only ``+ - * /`` and parentheses, and equals ``target_column`` within
    ``tolerance``; else 0.0.

    The Countdown task (AgileRL tutorial's equation_reward_func), parsed with ``ast``, never ``eval``, with
    bounded sizes. Unlike the tutorial, ``**`` and ``//`` are refused.
    """
    @per_sample
    def countdown_equation(prompt, completion, **row):
        for col in (target_column, nums_column):
            if col not in row:
                raise KeyError(f"the row has no column {col!r} (columns: {', '.join(sorted(row))}); set "
                               f"target_column / nums_column to the dataset's column names")
        return countdown_score(completion, row[target_column], row[nums_column], tolerance)
    return countdown_equation


# ------------------------------------------------------------------------------------------------- formats
def think_answer_ok(completion: str, prefilled_think: bool = False) -> bool:
    """The AgileRL tutorial's format: ``<think>…</think>\\n<answer>…</answer>`` and nothing else (one final
    newline allowed), with no ``<think>`` inside the thinking. The tutorial's regex
    ``^<think>([^<]*(?:<(?!/?think>)[^<]*)*)</think>\\n<answer>([\\s\\S]*?)</answer>$``, as string scans."""
    text = ("<think>" + completion) if prefilled_think else completion
    if not text.startswith("<think>"):
        return False
    think_end = text.find("</think>", 7)
    if think_end < 0 or text.find("<think>", 7, think_end) >= 0:
        return False
    rest = text[think_end + len("</think>"):]
    if not rest.startswith("\n<answer>"):
        return False
    answer = rest[len("\n<answer>"):]
    return answer.endswith("</answer>") or answer.endswith("</answer>\n")


@register_reward_function("think_answer_format")
def think_answer_format(prefilled_think: bool = False):
    """1.0 for ``<think>…</think>\\n<answer>…</answer>`` (no nested think tags), else 0.0.

    Set ``prefilled_think: true`` when the prompt already ends with ``<think>`` (an assistant prefill), so the
    completion starts inside the thinking block.
    """
    def think_answer_format(prompts, completions, **_):
        return [1.0 if think_answer_ok(completion_text(c), prefilled_think) else 0.0 for c in completions]
    return think_answer_format


def cot_ok(completion: str, cot_start: str, cot_end: str, prefilled: bool, require_answer: bool) -> bool:
    """``cot_start`` opens the completion once (absent if prefilled), ``cot_end`` closes it once."""
    text = completion.lstrip()
    if prefilled:
        if cot_start in text:
            return False
        body = text
    else:
        if not text.startswith(cot_start) or text.count(cot_start) != 1:
            return False
        body = text[len(cot_start):]
    if body.count(cot_end) != 1:
        return False
    thought, _, after = body.partition(cot_end)
    if not thought.strip():
        return False
    return bool(after.strip()) or not require_answer


def _validate_cot(kwargs: dict[str, Any]) -> list[str]:
    start, end = kwargs.get("cot_start", "<think>"), kwargs.get("cot_end", "</think>")
    if not isinstance(start, str) or not isinstance(end, str) or not start or not end:
        return ["cot_start and cot_end must be non-empty strings"]
    if start == end:
        return ["cot_start and cot_end must differ"]
    return []


@register_reward_function("cot_format", validate=_validate_cot)
def cot_format(cot_start: str = "<think>", cot_end: str = "</think>", prefilled: bool = False,
               require_answer: bool = True):
    """1.0 when the completion opens with ``cot_start`` (exactly once) and closes the reasoning with
    ``cot_end`` (exactly once), with reasoning between them and, if ``require_answer``, text after; else 0.0.

    ``prefilled: true``: the prompt already ends with ``cot_start``, so the completion must not repeat it.
    """
    def cot_format(prompts, completions, **_):
        return [1.0 if cot_ok(completion_text(c), cot_start, cot_end, prefilled, require_answer) else 0.0
                for c in completions]
    return cot_format


# -------------------------------------------------------------------------------------------------- length
def _validate_length(kwargs: dict[str, Any]) -> list[str]:
    problems = _one_of(kwargs.get("unit", "chars"), ("chars", "words"), "unit")
    ideal = kwargs.get("ideal_length")
    if not isinstance(ideal, int) or isinstance(ideal, bool) or ideal < 1:
        problems.append(f"ideal_length must be a positive integer, not {ideal!r}")
    return problems


@register_reward_function("length_target", validate=_validate_length)
def length_target(ideal_length: int, unit: Literal["chars", "words"] = "chars", normalize: bool = False):
    """``-abs(ideal_length - length)`` (the HF course's ideal-length reward), or in [0, 1] with
    ``normalize: true``.

    ``unit``: count characters or whitespace-separated words. ``normalize: true`` scores
    ``max(0, 1 - |ideal_length - length| / ideal_length)`` instead.
    """
    def length_target(prompts, completions, **_):
        scores = []
        for c in completions:
            text = completion_text(c)
            length = len(text.split()) if unit == "words" else len(text)
            gap = abs(ideal_length - length)
            scores.append(max(0.0, 1.0 - gap / ideal_length) if normalize else -float(gap))
        return scores
    return length_target


# --------------------------------------------------------------------------------------- regex and keyword
def _validate_regex(kwargs: dict[str, Any]) -> list[str]:
    problems = _one_of(kwargs.get("mode", "search"), ("search", "match", "fullmatch"), "mode")
    try:
        re.compile(kwargs.get("pattern", ""))
    except (re.error, TypeError) as exc:
        problems.append(f"pattern {kwargs.get('pattern')!r} is not a valid regular expression: {exc}")
    return problems


@register_reward_function("regex_match", validate=_validate_regex)
def regex_match(pattern: str, mode: Literal["search", "match", "fullmatch"] = "search", ignore_case: bool = False,
                dotall: bool = True, score: float = 1.0):
    """``score`` when the completion matches ``pattern`` (Python ``re``), else 0.0.

    ``mode``: ``search`` (anywhere), ``match`` (at the start) or ``fullmatch`` (the whole completion).
    """
    flags = (re.IGNORECASE if ignore_case else 0) | (re.DOTALL if dotall else 0)
    compiled = re.compile(pattern, flags)
    method = getattr(compiled, mode)

    def regex_match(prompts, completions, **_):
        return [score if method(completion_text(c)) else 0.0 for c in completions]
    return regex_match


def _validate_keyword(kwargs: dict[str, Any]) -> list[str]:
    problems = _one_of(kwargs.get("mode", "any"), ("any", "all"), "mode")
    keywords = kwargs.get("keywords")
    if isinstance(keywords, str):
        keywords = [keywords]
    if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) and k for k in keywords):
        problems.append(f"keywords must be a non-empty list of non-empty strings, not {keywords!r}")
    return problems


@register_reward_function("keyword", validate=_validate_keyword)
def keyword(keywords: list[str] | str, mode: Literal["any", "all"] = "any", case_sensitive: bool = True):
    """1.0 when the completion contains any (``mode: any``, the default) or all (``mode: all``) of
    ``keywords`` as substrings, else 0.0. Case-sensitive unless ``case_sensitive: false``."""
    words = [keywords] if isinstance(keywords, str) else list(keywords)
    if not case_sensitive:
        words = [w.casefold() for w in words]
    test = any if mode == "any" else all

    def keyword(prompts, completions, **_):
        scores = []
        for c in completions:
            text = completion_text(c)
            text = text if case_sensitive else text.casefold()
            scores.append(1.0 if test(w in text for w in words) else 0.0)
        return scores
    return keyword


# ---------------------------------------------------------------------------------------------- answer match
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def normalize_answer(text: str) -> str:
    """Case-folded, NFKC, whitespace collapsed, surrounding punctuation/quotes and a trailing period removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    return text.strip(string.punctuation + " “”‘’")


def last_number(text: str) -> float | None:
    """The last number in ``text`` (thousands commas allowed), or None."""
    for match in reversed(_NUMBER.findall(text)):
        try:
            value = float(match.replace(",", ""))
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


def answers_match(candidate: str, reference: str, mode: str, tolerance: float) -> bool:
    if mode == "exact":
        return candidate.strip() == reference.strip()
    if mode == "normalized":
        return normalize_answer(candidate) == normalize_answer(reference)
    got, want = last_number(candidate), last_number(reference)
    if got is None or want is None:
        return False
    return abs(got - want) <= tolerance * max(1.0, abs(want))


def _validate_answer_match(kwargs: dict[str, Any]) -> list[str]:
    problems = _one_of(kwargs.get("mode", "normalized"), ("exact", "normalized", "numeric"), "mode")
    pattern = kwargs.get("extract_pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            problems.append(f"extract_pattern {pattern!r} is not a valid regular expression: {exc}")
    return problems


@register_reward_function("answer_match", validate=_validate_answer_match)
@needs_columns(lambda kw: [kw.get("column", "answer")])
def answer_match(mode: Literal["exact", "normalized", "numeric"] = "normalized", column: str = "answer",
                 extract_pattern: str | None = DEFAULT_EXTRACT, require_extract: bool = False,
                 tolerance: float = 1e-6):
    """1.0 when the completion's answer equals the row's ``column`` (default ``answer``), else 0.0; None
    when the row has no reference.

    The completion's answer is the last match of ``extract_pattern`` (group 1 if it has one; default: the
    last ``<answer>…</answer>``), or the whole completion when nothing matches (0.0 instead if
    ``require_extract``; ``extract_pattern: null`` always uses the whole completion). ``mode``: ``exact``
    (after stripping), ``normalized`` (case, whitespace and surrounding punctuation ignored) or ``numeric``
    (the last number of each, within ``tolerance`` relative to max(1, |reference|)).
    """
    compiled = re.compile(extract_pattern) if extract_pattern and extract_pattern != DEFAULT_EXTRACT else None
    default_tags = extract_pattern == DEFAULT_EXTRACT

    @per_sample
    def answer_match(prompt, completion, **row):
        if column not in row:
            raise KeyError(f"the row has no column {column!r} (columns: {', '.join(sorted(row))}); set `column`")
        reference = row[column]
        if reference is None:
            return None
        candidate = completion
        if default_tags:
            found = tag_contents(completion, "<answer>", "</answer>")
            if found:
                candidate = found[-1]
            elif require_extract:
                return 0.0
        elif compiled is not None:
            matches = list(compiled.finditer(completion))
            if matches:
                last = matches[-1]
                candidate = last.group(1) if compiled.groups else last.group(0)
            elif require_extract:
                return 0.0
        return 1.0 if answers_match(candidate, str(reference), mode, tolerance) else 0.0
    return answer_match


# ------------------------------------------------------------------------------------------------ repetition
def repetition_fraction(text: str, ngram_size: int) -> float:
    """Share of word n-grams that repeat an earlier one: 0.0 for none, near 1.0 for a loop."""
    words = text.split()
    if len(words) < ngram_size:
        return 0.0
    grams = [tuple(words[i:i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def _validate_repetition(kwargs: dict[str, Any]) -> list[str]:
    size = kwargs.get("ngram_size", 3)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return [f"ngram_size must be a positive integer, not {size!r}"]
    return []


@register_reward_function("repetition_penalty", validate=_validate_repetition)
def repetition_penalty(ngram_size: int = 3, max_penalty: float = 1.0):
    """``-max_penalty × (share of repeated word n-grams)``: 0.0 for text without repeats, down to
    ``-max_penalty`` for a completion stuck in a loop. Add it to other rewards (e.g. with ``sum``)."""
    def repetition_penalty(prompts, completions, **_):
        return [-abs(max_penalty) * repetition_fraction(completion_text(c), ngram_size) for c in completions]
    return repetition_penalty
