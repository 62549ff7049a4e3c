"""Built-in tools a model may call during a rollout: plain typed functions with Google-style docstrings, as TRL's
``tools=`` requires (it builds each tool's JSON schema from the signature and the docstring).

:data:`BUILTIN_TOOLS` maps a registry name to its function. ``python_exec`` runs in the sandbox of
:mod:`pipelines.common.sandbox` with the default settings (``mode: bwrap``); :func:`make_python_exec` builds one
with other settings (larger limits, or the documented ``unsafe_subprocess`` mode where bubblewrap cannot start),
for a user's ``tools.py``. Every sandboxed tool carries its settings as ``sandbox_settings``, so ``--validate``
can check that the sandbox starts here (:func:`pipelines.common.sandbox.sandbox_problems`), and a
:class:`~pipelines.common.sandbox.SandboxStats` as ``sandbox_stats`` (runs, latency p50/p95, runs stopped by a
limit; ``.pop()`` per logging step).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from pipelines.common.sandbox import SandboxResult, SandboxSettings, SandboxStats, run_python, sandbox_problems

TOOL_OUTPUT_CHARS = 4000   # per stream: what a model reads back stays a few thousand characters


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


def format_result(result: SandboxResult, limit: int = TOOL_OUTPUT_CHARS) -> str:
    """The text a model reads back: the exit status (or why the run was stopped), stdout and stderr, each cut
    to ``limit`` characters."""
    if result.killed == "wall_time":
        status = "killed: wall-time limit reached"
    elif result.killed == "output_limit":
        status = "killed: output limit reached"
    elif result.killed:
        status = f"killed: {result.killed}"
    else:
        status = f"exit status {result.exit_code}"
    return (f"{status}\n--- stdout ---\n{_cut(result.stdout, limit)}\n"
            f"--- stderr ---\n{_cut(result.stderr, limit)}")


def make_python_exec(settings: Optional[SandboxSettings] = None) -> Callable[[str], str]:
    """A ``python_exec`` tool that runs with ``settings`` (default: :class:`SandboxSettings` defaults)."""
    settings = settings or SandboxSettings()
    stats = SandboxStats()

    def python_exec(code: str) -> str:
        """Run a Python program in an isolated sandbox and return what it printed.

        The sandbox has the Python standard library only, no network, no files but its own empty temporary
        folder, and limits on time, memory and output. Print the values you want to see.

        Args:
            code: The complete Python program to run.

        Returns:
            The exit status, then the program's stdout and stderr (cut to a few thousand characters each).
        """
        result = run_python(str(code), settings)   # a model may pass a number or a list
        stats.add(result)
        return format_result(result)

    python_exec.sandbox_settings = settings   # type: ignore[attr-defined]
    python_exec.sandbox_stats = stats         # type: ignore[attr-defined]
    return python_exec


python_exec = make_python_exec()

# Registry name -> tool function: the names a config's `tools:` may use for the built-ins.
BUILTIN_TOOLS: dict[str, Callable[..., str]] = {"python_exec": python_exec}



def tool_sandbox_problems(tool: Callable[..., Any]) -> list[str]:
    """What ``--validate`` reports for a tool that runs in the sandbox (it carries ``sandbox_settings``): the
    sandbox cannot start here and the tool's settings do not allow the weaker mode. [] for any other tool."""
    settings = getattr(tool, "sandbox_settings", None)
    return sandbox_problems(settings) if isinstance(settings, SandboxSettings) else []
