"""The ``code_tests`` reward: run the completion's last fenced Python block against the row's tests, in the
sandbox of :mod:`pipelines.common.sandbox`.

One sandbox process per completion runs a small harness: it executes the solution, then each test statement
separately in the solution's namespace, and prints one result line (behind a marker drawn per call) with which
tests passed. The reward is the share passed. A completion without a Python block, one that does not compile or
raises at top level, or a sandbox that timed out, ran out of CPU, printed past the output limit, was killed or
printed no result scores 0.0, counted by reason in the reward's metrics (``rewards/<component>/zero/<reason>``).

The harness is not a defence against a solution that inspects the interpreter it runs in (it could find the
marker); the sandbox is what keeps such code from reaching anything outside.
"""
from __future__ import annotations

import ast
import json
import secrets
import textwrap
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from pydantic import ValidationError

from pipelines.common.sandbox import SandboxResult, SandboxSettings, SandboxStats, run_python, sandbox_problems
from pipelines.rewards.forms import completion_text
from pipelines.rewards.registry import needs_columns, register_reward_function

PYTHON_LABELS = ("python", "py", "python3")
REASONS = ("no_code", "syntax_error", "crash", "timeout", "cpu_time", "output_limit", "killed", "no_result")

# Runs inside the sandbox: the solution and tests arrive as literals; one result line goes to stdout.
HARNESS = '''
import json as _json, os as _os
def _harness(solution, tests):
    ns = {"__name__": "__solution__", "__builtins__": __builtins__}
    try:
        code = compile(solution, "<solution>", "exec")
    except (SyntaxError, ValueError):
        return {"error": "syntax_error"}
    try:
        exec(code, ns)
    except BaseException as exc:
        return {"error": "crash", "detail": type(exc).__name__}
    passed = []
    for test in tests:
        try:
            exec(compile(test, "<test>", "exec"), ns)
            passed.append(True)
        except BaseException:
            passed.append(False)
    return {"passed": passed}
_line = "\\n" + MARKER + _json.dumps(_harness(SOLUTION, TESTS)) + "\\n"
_os.write(1, _line.encode())
'''


def last_python_block(text: str) -> Optional[str]:
    """The last closed ``` fence labelled python/py/python3, else the last unlabelled one, else None.
    One pass over the lines (no regex backtracking on many unclosed fences)."""
    labelled, plain = None, None
    lang: Optional[str] = None
    body: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if lang is None:
            if stripped.startswith("```"):
                lang, body = stripped[3:].strip().lower(), []
        elif stripped == "```":
            block = textwrap.dedent("\n".join(body))
            if lang in PYTHON_LABELS:
                labelled = block
            elif not lang:
                plain = block
            lang = None
        else:
            body.append(line)
    return labelled if labelled is not None else plain


def split_tests(tests: Any) -> list[str]:
    """The row's tests as statements: a list of strings (one test each), one string of statements (each
    top-level statement is a test), or a list of strings stored as text (``'["assert f(1) == 1"]'``, as JSON
    columns often are). ValueError for anything else or a string that does not parse."""
    if hasattr(tests, "tolist"):
        tests = tests.tolist()
    if isinstance(tests, str):
        try:
            tree = ast.parse(tests)
        except SyntaxError as exc:
            raise ValueError(f"the row's tests do not parse as Python: {exc}") from None
        only = tree.body[0].value if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) else None
        if isinstance(only, (ast.List, ast.Tuple)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in only.elts):
            return [e.value for e in only.elts]   # a list stored as text (JSON or repr): its items are the tests
        return [ast.get_source_segment(tests, node) or "" for node in tree.body]
    if isinstance(tests, (list, tuple)) and all(isinstance(t, str) for t in tests):
        return list(tests)
    raise ValueError(f"tests must be a list of Python statements or a string of them, not {type(tests).__name__}")


def harness_program(solution: str, tests: list[str], marker: str) -> str:
    """The program the sandbox runs for one completion."""
    return (f"MARKER = {marker!r}\nSOLUTION = {solution!r}\nTESTS = {tests!r}\n" + HARNESS)


def read_outcome(result: SandboxResult, marker: str, n_tests: int) -> tuple[float, Optional[str]]:
    """(score, reason it is 0 by failure) from one sandbox run of the harness."""
    if result.killed is not None:
        return 0.0, {"wall_time": "timeout", "cpu_time": "cpu_time",
                     "output_limit": "output_limit"}.get(result.killed, "killed")
    lines = [line for line in result.stdout.split("\n") if line.startswith(marker)]
    tail = result.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    if len(lines) != 1 or tail != lines[0]:   # none, or a forged one: only the harness's last line counts
        return 0.0, "no_result"
    try:
        outcome = json.loads(lines[0][len(marker):])
        passed = outcome.get("passed")
    except (ValueError, AttributeError):
        return 0.0, "no_result"
    if outcome.get("error"):
        return 0.0, "syntax_error" if outcome["error"] == "syntax_error" else "crash"
    if not isinstance(passed, list) or len(passed) != n_tests:
        return 0.0, "no_result"
    return sum(1 for p in passed if p is True) / n_tests, None


class CodeTestsMetrics:
    """Counters since the last pop: completions scored (``runs``), zero scores by reason, tests run and passed,
    and the sandbox's latency (``sandbox_latency_p50_s`` / ``_p95_s``). Summed over every rank: :meth:`pop` is
    a collective there, as the reward stack's ``pop_metrics`` is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sandbox = SandboxStats()
        self._counts: Counter[str] = Counter()

    def add(self, n_tests: int, score: float, reason: Optional[str], result: Optional[SandboxResult]) -> None:
        with self._lock:
            self._counts.update({"runs": 1, "tests_run": n_tests, "tests_passed": round(score * n_tests)})
            if reason:
                self._counts[f"zero/{reason}"] += 1
        if result is not None:
            self.sandbox.add(result)

    def pop(self) -> dict[str, float]:
        from pipelines.common.dist import all_gather_objects

        with self._lock:
            mine, self._counts = self._counts, Counter()
        counts: Counter[str] = sum(all_gather_objects(mine), Counter())
        sandbox = self.sandbox.pop()
        if not counts["runs"]:
            return {}
        out = {key: float(counts[key]) for key in ("runs", "tests_run", "tests_passed")}
        out.update({f"zero/{r}": float(counts[f"zero/{r}"]) for r in REASONS})
        for key in ("latency_p50_s", "latency_p95_s"):
            if key in sandbox:
                out[f"sandbox_{key}"] = sandbox[key]
        return out


def _validate_code_tests(kwargs: dict[str, Any]) -> list[str]:
    workers = kwargs.get("workers", 4)
    problems = [] if isinstance(workers, int) and not isinstance(workers, bool) and 1 <= workers <= 64 else [
        f"workers must be an integer from 1 to 64, not {workers!r}"]
    try:
        settings = SandboxSettings.model_validate(kwargs.get("sandbox") or {})
    except ValidationError as exc:
        return problems + [f"sandbox.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return problems + sandbox_problems(settings)


@register_reward_function("code_tests", validate=_validate_code_tests)
@needs_columns(lambda kw: [kw.get("tests_column", "tests")])
def code_tests(tests_column: str = "tests", sandbox: Optional[dict[str, Any]] = None, workers: int = 4):
    """Share of the row's ``tests_column`` (Python asserts: a list, or a string of statements) that pass
    when the completion's last fenced Python block runs in the sandbox; 0.0 for no block, a crash, a timeout
    or any limit hit (counted by reason in the metrics); None for a row without tests.

    ``sandbox``: the sandbox's mode and limits (``mode: bwrap`` by default; ``unsafe_subprocess`` only where
    bubblewrap cannot start: see README, Sandbox). ``workers``: completions run at once.
    """
    settings = SandboxSettings.model_validate(sandbox or {})
    metrics = CodeTestsMetrics()

    def score_one(completion: Any, tests: Any) -> Optional[float]:
        if tests is None or (hasattr(tests, "__len__") and len(tests) == 0):
            return None
        statements = split_tests(tests)
        solution = last_python_block(completion_text(completion))
        if solution is None:
            metrics.add(len(statements), 0.0, "no_code", None)
            return 0.0
        marker = f"@@code_tests:{secrets.token_hex(16)}@@"
        result = run_python(harness_program(solution, statements, marker), settings)
        score, reason = read_outcome(result, marker, len(statements))
        metrics.add(len(statements), score, reason, result)
        return score

    def code_tests(prompts, completions, **row):
        if tests_column not in row:
            raise KeyError(f"the rows have no column {tests_column!r} (columns: {', '.join(sorted(row))}); set "
                           f"tests_column")
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code_tests") as pool:
            return list(pool.map(score_one, completions, row[tests_column]))

    code_tests.pop_metrics = metrics.pop   # type: ignore[attr-defined]
    return code_tests
