"""``generic_llm_reward``: Augmentoolkit's LLM-judge reward, scoring a judge's reply exactly as Augmentoolkit's
``llm_reward_func`` does, over our transport (retries, timeouts, failure metrics, circuit breaker).

How one completion is scored, in order (Augmentoolkit's rules; the README compares them with ``llm_judge``):

1. An empty completion scores 0.0. With both ``cot_start`` and ``cot_end`` set, a completion that does not
   contain ``cot_end`` exactly once, or contains ``cot_start`` (it is prefilled by the chat template), scores
   0.0; one whose reasoning and answer (split at ``cot_end``) are at least 90% similar (difflib ratio) scores
   0.1. These are decided without a judge call.
2. ``{output_text}`` is the whole completion, reasoning included; ``{input_text}`` the prompt's last message.
3. The reply is read per score type, in the configured order: ``<think>…</think>`` blocks are removed, the text
   after the last ``<name>`` and before the next ``</name>`` is taken (the whole text when there is no tag) and
   read as a number. An autofail of 0 makes the reward 0; a non-zero autofail is added to the sum. A score
   outside [min, max] is left out of the sum. The reward is the sum.
4. A reply that cannot be read (a value that is not a number, no text) scores ``format_score`` (0.1), without
   a re-ask.
5. A transport failure (timeout, 5xx, 429, connection refused, a malformed response) is retried by the
   transport; when the retries are spent it counts as a failure, scores ``on_error`` (None: not trained on) and
   feeds the circuit breaker. It never scores ``format_score``: a dead judge must not look like a bad answer.
   (Augmentoolkit scores it format_score; that is the one rule deliberately not reproduced.)
"""
from __future__ import annotations

import logging
import math
import re
from difflib import SequenceMatcher
from typing import Any, Callable, Optional, Sequence, Union

from pipelines.rewards.judge.core import LLMJudge, completion_text
from pipelines.rewards.judge.parse import ParseResult
from pipelines.rewards.judge.reward import build_judge, load_checked, reward_function_for
from pipelines.rewards.judge.rubric import ScoreType
from pipelines.rewards.registry import register_reward_function

log = logging.getLogger(__name__)
SIMILARITY_THRESHOLD = 0.9        # Augmentoolkit's check_thought_answer_similarity(threshold=90)
SIMILAR_SCORE = 0.1               # what Augmentoolkit returns for near-duplicate reasoning and answer
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


def reasoning_precheck(text: str, cot_start: Optional[str], cot_end: Optional[str]) -> Optional[float]:
    """Rule 1: 0.0 for an empty completion or an invalid reasoning format, 0.1 for near-duplicate reasoning
    and answer, None when the judge must be asked."""
    if not text:
        return 0.0
    if not cot_start or not cot_end:
        return None
    if text.count(cot_end) != 1 or cot_start in text:
        return 0.0
    thought, answer = text.split(cot_end, 1)
    if SequenceMatcher(None, thought.strip(), answer.strip()).ratio() >= SIMILARITY_THRESHOLD:
        return SIMILAR_SCORE
    return None


def tag_text(text: str, name: str) -> str:
    """Augmentoolkit's ``extract_xml_answer``: the text after the last ``<name>`` up to ``</name>``, stripped,
    with ``<think>`` blocks removed first (the whole text when the tag is absent)."""
    text = _THINK_RE.sub("", text)
    return text.split(f"<{name}>")[-1].split(f"</{name}>")[0].strip()


def parse_reference(text: Optional[str], score_types: Sequence[ScoreType]) -> ParseResult:
    """Rules 3 and 4 on one reply; ``error`` set means the caller scores ``format_score``."""
    if not text:
        return ParseResult(error="the judge returned no text")
    result, total = ParseResult(), 0.0
    for st in score_types:
        raw = tag_text(text, st.name)
        try:
            value = float(raw)
        except ValueError:
            return ParseResult(values=result.values, error=f"<{st.name}> is not a number: {raw[:40]!r}")
        if not math.isfinite(value):     # Augmentoolkit would sum a nan; a non-finite reward is never trained on
            return ParseResult(values=result.values, error=f"<{st.name}> is not finite: {raw[:40]!r}")
        if st.is_autofail:
            if value == 0:
                return ParseResult(reward=0.0, values={**result.values, st.name: 0.0}, autofailed=st.name)
        elif not st.min <= value <= st.max:
            continue
        result.values[st.name] = value
        total += st.weight * value
    result.reward = total
    return result


class GenericJudge(LLMJudge):
    """An :class:`LLMJudge` with Augmentoolkit's reading of completions and replies (module docstring)."""

    def judged_text(self, completion: Any) -> str:
        return completion_text(completion)

    def input_text(self, prompt: Any) -> str:
        if isinstance(prompt, str):
            return prompt
        messages = [m for m in (prompt or []) if isinstance(m, dict)]
        return completion_text(messages[-1]) if messages else ""

    def precheck(self, completion: Any) -> Optional[float]:
        return reasoning_precheck(completion_text(completion), self.options.cot_start, self.options.cot_end)

    def parse(self, text: Optional[str]) -> ParseResult:
        return parse_reference(text, self.options.score_types)


def validate_generic_kwargs(kwargs: dict[str, Any]) -> list[str]:
    """The ``--validate`` hook: the shared judge checks plus format_score."""
    import inspect

    try:
        bound = inspect.signature(generic_llm_reward).bind(**kwargs)
    except TypeError as exc:
        return [str(exc)]
    bound.apply_defaults()
    settings = judge_settings(dict(bound.arguments))
    from pipelines.rewards.judge.calibration import settings_problems

    problems = load_checked(settings)[2] + settings_problems(bound.arguments["calibration"])
    fs = bound.arguments["format_score"]
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not math.isfinite(fs):
        problems.append(f"format_score: expected a number (Augmentoolkit's default 0.1), got {fs!r}")
    return problems


def judge_settings(args: dict[str, Any]) -> dict[str, Any]:
    """The shared judge settings for these arguments (no re-ask, no cache, reasoning shown to the judge)."""
    settings = {k: v for k, v in args.items() if k not in ("format_score", "calibration")}
    settings.update(format_retries=0, cache=None, judge_reasoning=True, normalize=False)
    return settings


def build_generic_judge(args: dict[str, Any], lenient: bool = False) -> GenericJudge:
    """The judge behind :func:`generic_llm_reward`: the shared builder with Augmentoolkit's fixed settings
    (``lenient``: see :func:`~pipelines.rewards.judge.reward.load_checked`)."""
    return build_judge(judge_settings(args), GenericJudge, "generic_llm_reward", lenient=lenient,
                       format_score=float(args["format_score"]))


@register_reward_function("generic_llm_reward", validate=validate_generic_kwargs)
def generic_llm_reward(system_prompt_path: str, score_types: list[dict[str, Any]], temperature: float = 0.7,
                       top_p: float = 0.9, format_score: float = 0.1, max_tokens: int = 5000,
                       eval_llm_name: Optional[str] = None, eval_llm_base_url: Optional[str] = None,
                       eval_llm_api_key: Optional[str] = None, eval_llm_mode: Optional[str] = None,
                       cot_end: Optional[str] = None, cot_start: Optional[str] = None,
                       max_concurrency: int = 16, timeout_s: float = 120.0, max_retries: int = 4,
                       on_error: Union[str, float] = "skip", max_failure_rate: float = 0.5,
                       label: Optional[str] = None, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                       extra_body: Optional[dict[str, Any]] = None,
                       calibration: Optional[dict[str, Any]] = None) -> Callable[..., Any]:
    """Augmentoolkit's LLM judge: an OpenAI-compatible LLM grades the completion against a YAML rubric, with
    Augmentoolkit's scoring, arguments and defaults (plus our transport's). Built once per run.

    system_prompt_path / score_types / eval_llm_*: as for llm_judge; ``eval_llm_mode`` is accepted and ignored
        (every judge speaks the chat-completions API). The eval_llm_* keys may sit on the dataset entry instead,
        as in Augmentoolkit's configs: its judge rewards inherit them.
    temperature / top_p / max_tokens: sent with every request (Augmentoolkit's defaults 0.7, 0.9, 5000).
    format_score: the reward of a reply that cannot be read. cot_start / cot_end: the reasoning markers
        (default none: no format check); the judge sees the reasoning either way.
    max_concurrency / timeout_s / max_retries / backoff_base_s / backoff_max_s / on_error / max_failure_rate /
        label / extra_body: as for llm_judge; they apply to transport failures only.
    calibration: settings of ``--calibrate-judges`` (judge/calibration.py); training does not read them.
    """
    judge = build_generic_judge({k: v for k, v in locals().items()})
    log.info("generic_llm_reward %s: %s at %s, rubric %s (Augmentoolkit scoring, format_score %g)",
             judge.options.label, eval_llm_name, eval_llm_base_url, judge.rubric.path, format_score)
    return reward_function_for(judge)
