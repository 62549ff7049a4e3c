"""The ``llm_judge`` reward: an OpenAI-compatible LLM scores each completion against a YAML rubric, with our
stricter reading of its reply (judge/parse.py). Augmentoolkit's scoring is ``generic_llm_reward`` (judge/generic.py).

Config entry (a dataset's ``reward_funcs``)::

    - name: llm_judge
      eval_llm_name: Qwen/Qwen3-32B
      eval_llm_base_url: http://localhost:8001/v1
      eval_llm_api_key: ${JUDGE_API_KEY}
      system_prompt_path: prompts/helpfulness.yaml   # cwd first, then pipelines/grpo/
      score_types:
        - {name: helpfulness, type: score, min: 1, max: 10}
        - {name: on_topic, type: autofail}

The returned function is ``async def (prompts, completions, **columns) -> list[float | None]`` with
``.pop_metrics()`` (``judge/<label>/...``), ``.aclose()`` and ``.close()``. See judge/parse.py for how an
answer is read, judge/transport.py for retries and timeouts, judge/metrics.py for the metrics.
"""
from __future__ import annotations

import inspect
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable, Optional, Union

from pipelines.rewards.judge.rubric import (Rubric, RubricError, ScoreType, check_rubric, load_rubric,
                                                 parse_score_types)
from pipelines.rewards.registry import register_reward_function

log = logging.getLogger(__name__)
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_OFF = (None, False, "off", "none", "false", "")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_range(problems: list[str], s: dict[str, Any], name: str, lo: float, hi: float = math.inf,
                 integer: bool = False, optional: bool = False, lo_open: bool = False) -> None:
    value = s[name]
    if value is None and optional:
        return
    ok = _is_number(value) and (not integer or float(value).is_integer())
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        what = "an integer" if integer else "a number"
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
        problems.append(f"{name}: expected {what} {bound}, got {value!r}")


def _check_transport(s: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(s["eval_llm_name"], str) or not s["eval_llm_name"].strip():
        problems.append("eval_llm_name: give the judge model's name as its server knows it")
    url = s["eval_llm_base_url"]
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        problems.append(f"eval_llm_base_url: {url!r} is not an http(s) URL; e.g. http://localhost:8000/v1")
    if s["eval_llm_api_key"] is not None and not isinstance(s["eval_llm_api_key"], str):
        problems.append("eval_llm_api_key: expected text, normally ${SOME_ENV_VAR}")
    _check_range(problems, s, "max_concurrency", 1, integer=True)
    _check_range(problems, s, "timeout_s", 0, lo_open=True)
    _check_range(problems, s, "max_retries", 0, 100, integer=True)
    _check_range(problems, s, "backoff_base_s", 0)
    _check_range(problems, s, "backoff_max_s", 0)
    return problems


def _check_behaviour(s: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    _check_range(problems, s, "temperature", 0, 2, optional=True)
    _check_range(problems, s, "top_p", 0, 1, optional=True, lo_open=True)
    _check_range(problems, s, "max_tokens", 1, integer=True, optional=True)
    _check_range(problems, s, "format_retries", 0, 10, integer=True)
    _check_range(problems, s, "max_failure_rate", 0, 1)
    if s["on_error"] not in ("skip", "fail") and not _is_number(s["on_error"]):
        problems.append(f"on_error: {s['on_error']!r} is not `skip` (score None: the sample is not trained on), "
                        "`fail` (stop the run), or a number to score failed judgements with")
    for name in ("cot_start", "cot_end"):
        if s[name] is not None and (not isinstance(s[name], str) or not s[name]):
            problems.append(f"{name}: expected a non-empty string or null")
    if s["cot_start"] and not s["cot_end"]:
        problems.append("cot_end: needed when cot_start is set (the reasoning is removed up to cot_end)")
    for name in ("judge_reasoning", "normalize"):
        if not isinstance(s[name], bool):
            problems.append(f"{name}: expected true or false, got {s[name]!r}")
    if s["cache"] not in _OFF and not isinstance(s["cache"], (str, Path)):
        problems.append(f"cache: expected a SQLite file path or off, got {s['cache']!r}")
    if s["label"] is not None and (not isinstance(s["label"], str) or not _LABEL_RE.match(s["label"])):
        problems.append(f"label: {s['label']!r} must be letters, digits, _ . - (it names the metrics)")
    if s["extra_body"] is not None and not isinstance(s["extra_body"], dict):
        problems.append("extra_body: expected a mapping of extra request fields")
    return problems


def resolve_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The factory's kwargs with its defaults filled in (TypeError for kwargs it does not take)."""
    bound = inspect.signature(llm_judge).bind(**kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def load_checked(settings: dict[str, Any], lenient: bool = False
                 ) -> tuple[Optional[Rubric], list[ScoreType], list[str]]:
    """Rubric and score types, with every problem of the settings, rubric and score types (``lenient``: not
    the rubric's content, which the calibration gate measures instead)."""
    problems = _check_transport(settings) + _check_behaviour(settings)
    score_types, st_problems = parse_score_types(settings["score_types"])
    problems += st_problems
    rubric = None
    path = settings["system_prompt_path"]
    if not isinstance(path, (str, Path)) or not str(path).strip():
        problems.append("system_prompt_path: give the rubric YAML file, e.g. prompts/helpfulness.yaml")
    else:
        try:
            rubric = load_rubric(path)
        except RubricError as exc:
            problems += exc.problems
    if rubric is not None and not st_problems and not lenient:
        problems += check_rubric(rubric, score_types)
    return rubric, score_types, problems


def validate_judge_kwargs(kwargs: dict[str, Any]) -> list[str]:
    """The registry's ``--validate`` hook: every problem with one judge entry, without network access."""
    try:
        settings = resolve_settings(kwargs)
    except TypeError as exc:
        return [str(exc)]
    from pipelines.rewards.judge.calibration import settings_problems
    from pipelines.rewards.judge.group import group_settings_problems

    return (load_checked(settings)[2] + settings_problems(settings["calibration"])
            + group_settings_problems(settings))


def default_label(settings: dict[str, Any]) -> str:
    if settings["label"]:
        return str(settings["label"])
    stem = Path(str(settings["system_prompt_path"])).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "judge"


def sampling_params(settings: dict[str, Any]) -> dict[str, Any]:
    """Request fields besides model and messages; only the ones set, so servers keep their defaults."""
    params = {k: settings[k] for k in ("temperature", "top_p", "max_tokens") if settings[k] is not None}
    if settings["extra_body"]:
        params["extra_body"] = dict(settings["extra_body"])
    return params


def build_judge(settings: dict[str, Any], judge_cls: Any = None, name: str = "llm_judge", lenient: bool = False,
                **options: Any) -> Any:
    """An :class:`~pipelines.rewards.judge.core.LLMJudge` (or ``judge_cls``) from resolved settings; ValueError if
    invalid. ``options`` adds :class:`~pipelines.rewards.judge.core.JudgeOptions` fields a subclass needs;
    ``lenient`` skips the rubric content checks (see :func:`load_checked`)."""
    from pipelines.rewards.judge.cache import JudgeCache
    from pipelines.rewards.judge.core import JudgeOptions, LLMJudge
    from pipelines.rewards.judge.transport import JudgeTransport

    rubric, score_types, problems = load_checked(settings, lenient)
    if problems or rubric is None:
        raise ValueError(f"{name}: " + "; ".join(problems))
    transport = JudgeTransport(settings["eval_llm_base_url"], settings["eval_llm_api_key"],
                               settings["eval_llm_name"], timeout_s=settings["timeout_s"],
                               max_retries=settings["max_retries"], max_concurrency=settings["max_concurrency"],
                               backoff_base_s=settings["backoff_base_s"], backoff_max_s=settings["backoff_max_s"])
    on_error = settings["on_error"] if settings["on_error"] in ("skip", "fail") else float(settings["on_error"])
    judge_options = JudgeOptions(label=default_label(settings), score_types=score_types,
                                 cot_start=settings["cot_start"], cot_end=settings["cot_end"],
                                 judge_reasoning=settings["judge_reasoning"], params=sampling_params(settings),
                                 format_retries=settings["format_retries"], on_error=on_error,
                                 max_failure_rate=settings["max_failure_rate"], normalize=settings["normalize"],
                                 **options)
    cache = None if settings["cache"] in _OFF else JudgeCache(settings["cache"])
    return (judge_cls or LLMJudge)(rubric, transport, judge_options, cache)


def build_group_judge(settings: dict[str, Any], lenient: bool = False) -> Any:
    """A :class:`~pipelines.rewards.judge.group.GroupJudge` (``mode: group``) from resolved settings; ValueError
    if invalid (``lenient``: see :func:`load_checked`)."""
    from pipelines.rewards.judge.group import GroupJudge, group_settings_problems

    problems = group_settings_problems(settings)
    if problems:
        raise ValueError("llm_judge: " + "; ".join(problems))
    judge = build_judge(settings, GroupJudge, lenient=lenient)
    judge.group_rubric = load_rubric(settings["group_prompt_path"])
    return judge


def reward_function_for(judge: Any) -> Callable[..., Any]:
    """Wrap a judge as a plain ``async def`` (what TRL and the reward stack detect as async)."""

    async def llm_judge_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[Optional[float]]:
        return await judge.score(prompts, completions, **columns)

    llm_judge_reward.__name__ = f"llm_judge_{judge.options.label}"
    llm_judge_reward.__qualname__ = llm_judge_reward.__name__
    llm_judge_reward.pop_metrics = judge.pop_metrics          # type: ignore[attr-defined]
    llm_judge_reward.aclose = judge.aclose                    # type: ignore[attr-defined]
    llm_judge_reward.close = judge.close                      # type: ignore[attr-defined]
    llm_judge_reward.judge = judge                            # type: ignore[attr-defined]
    return llm_judge_reward


@register_reward_function("llm_judge", validate=validate_judge_kwargs)
def llm_judge(eval_llm_name: str, eval_llm_base_url: str, system_prompt_path: str, score_types: list[dict[str, Any]],
              eval_llm_api_key: Optional[str] = None, eval_llm_mode: Optional[str] = None,
              cot_start: Optional[str] = "<think>", cot_end: Optional[str] = "</think>",
              temperature: Optional[float] = None, top_p: Optional[float] = None, max_tokens: Optional[int] = None,
              max_concurrency: int = 16, timeout_s: float = 120.0, max_retries: int = 4, format_retries: int = 1,
              on_error: Union[str, float] = "skip", cache: Union[str, bool, None] = None,
              judge_reasoning: bool = False, max_failure_rate: float = 0.5, normalize: bool = False,
              label: Optional[str] = None, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
              extra_body: Optional[dict[str, Any]] = None, mode: str = "pointwise",
              group_prompt_path: Optional[str] = None, calibration: Optional[dict[str, Any]] = None
              ) -> Callable[..., Any]:
    """An OpenAI-compatible LLM grades the completion against a YAML rubric, its reply read strictly
    (judge/parse.py). Built once per run.

    eval_llm_name / eval_llm_base_url / eval_llm_api_key: the judge model, its OpenAI-compatible ``/v1`` URL
        and key (write ``${ENV_VAR}``; never logged). ``eval_llm_mode`` is accepted for Augmentoolkit configs
        and ignored: every judge speaks the chat-completions API.
    system_prompt_path: the rubric YAML (working directory first, then pipelines/grpo/).
    score_types: ``[{name, type: score|autofail, min, max, weight}]``; see judge/parse.py for the rules.
    cot_start / cot_end / judge_reasoning: the policy's reasoning between the markers is removed before judging
        unless judge_reasoning is true.
    temperature / top_p / max_tokens / extra_body: sent with each request when set.
    max_concurrency / timeout_s / max_retries / backoff_base_s / backoff_max_s: transport bounds (calls in
        flight, seconds per attempt, retries of 429/5xx/timeouts/connection errors, backoff and Retry-After cap).
    format_retries: re-asks when an answer does not parse. on_error: ``skip`` (None), a number, or ``fail``.
    cache: a SQLite file of parsed answers, or off. max_failure_rate: the circuit breaker per batch.
    normalize: map the weighted sum onto [0, 1]. label: names the metrics ``judge/<label>/...``.
    mode / group_prompt_path: ``pointwise`` (one call per completion) or ``group`` (one call per prompt group
        with the group rubric; judge/group.py). calibration: settings of ``--calibrate-judges``
        (judge/calibration.py); training does not read them.
    """
    settings = {k: v for k, v in locals().items()}
    if mode == "group":
        judge = build_group_judge(settings)
    else:
        judge = build_judge(settings)
    log.info("llm_judge %s: %s at %s, rubric %s, max_concurrency %d", judge.options.label, eval_llm_name,
             eval_llm_base_url, judge.rubric.path, max_concurrency)
    return reward_function_for(judge)
