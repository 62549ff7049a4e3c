"""Rendering user Jinja chat templates without letting one crash, hang or exhaust the process.

A chat template is code from a config or a downloaded model folder. Two layers keep ``--validate`` answering:

* :func:`probe_template` compiles and renders the template once on sample conversations in a child process with
  a CPU-time limit and an address-space limit, so nothing it does (``{{ "x" * 1000000000 }}``, a constant
  folded at compile time, nested loops over ``range``) can hang or exhaust this process. It is run once per
  template text (cached) when a config's ``chat_template`` is validated.
* :func:`compile_template` builds the template as transformers does (sandboxed, ``trim_blocks``,
  ``lstrip_blocks``, ``raise_exception``, ``tojson``, ``strftime_now``, the ``{% generation %}`` tag) and returns
  a :class:`BoundedTemplate`, whose ``render`` turns every error raised while rendering (``raise_exception``,
  ``{% include %}``, a sandbox ``SecurityError``, an ``OverflowError``, anything) into :class:`ChatTemplateError`
  and stops an output past :data:`MAX_RENDER_CHARS`; string repetition and powers past that size are refused
  before they are computed.

Both are written here: transformers has no torch-free, bounded entry point for rendering.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from functools import lru_cache
from typing import Any, Optional

log = logging.getLogger(__name__)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_RENDER_CHARS = 1_000_000          # a rendered prompt longer than this is refused (no real prompt comes close)
PROBE_CPU_S = 1                       # CPU seconds the probe may use (load on the machine does not count)
PROBE_WALL_S = 20                     # wall-clock backstop for the probe
PROBE_MEMORY_BYTES = 256 << 20    # address space of the probe process (it needs about 30 MiB)
SAMPLE_CONVERSATIONS = (
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello."}],
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye."}],
)
SAMPLE_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


class ChatTemplateError(ValueError):
    """A chat template failed while rendering (its own ``raise_exception`` included) or produced too much;
    ``kind`` is "own" (its ``raise_exception``: it refuses a conversation), "bound" (a size or memory bound was
    hit: never acceptable) or "error" (any other failure)."""

    def __init__(self, message: str, kind: str = "bound"):
        super().__init__(message)
        self.kind = kind


def _generation_extension() -> Any:
    """A jinja2 extension accepting ``{% generation %}...{% endgeneration %}`` by rendering the body unchanged."""
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return GenerationTag


def _sized(value: Any) -> Optional[int]:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _bounded_environment() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """Refuses ``seq * n`` and ``a ** b`` whose result would pass the output bound, before computing it."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                size, count = (_sized(left), right) if _sized(left) is not None else (_sized(right), left)
                if size is not None and isinstance(count, int) and size * count > MAX_RENDER_CHARS:
                    raise ChatTemplateError(f"a repetition of {size} x {count} items passes the bound of "
                                            f"{MAX_RENDER_CHARS} characters")
            elif isinstance(left, int) and isinstance(right, int) and abs(right) > 64 and abs(left) > 1:
                raise ChatTemplateError(f"the power {left} ** {right} is too large")
            return super().call_binop(context, operator, left, right)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        if isinstance(indent, int) and indent > 64:
            raise ChatTemplateError(f"tojson indent {indent} is too large")
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True,
                         extensions=[_generation_extension(), "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class BoundedTemplate:
    """A compiled chat template whose ``render`` raises only :class:`ChatTemplateError`."""

    def __init__(self, template: Any):
        self.template = template

    def render(self, **variables: Any) -> str:
        """The rendered text. Raises: ChatTemplateError for any error while rendering or an oversized output."""
        parts: list[str] = []
        size = 0
        try:
            for chunk in self.template.generate(**variables):
                size += len(chunk)
                if size > MAX_RENDER_CHARS:
                    raise ChatTemplateError(f"the rendered prompt passes {MAX_RENDER_CHARS} characters")
                parts.append(chunk)
        except ChatTemplateError:
            raise
        except MemoryError:
            raise ChatTemplateError("rendering ran out of memory") from None
        except Exception as exc:  # noqa: BLE001 - every failure of user template code is the template's problem
            raise ChatTemplateError(describe_error(exc), "own" if _is_own(exc) else "error") from None
        return "".join(parts)


def _is_own(exc: BaseException) -> bool:
    import jinja2

    return type(exc) is jinja2.exceptions.TemplateError   # what raise_exception raises, exactly


def describe_error(exc: BaseException) -> str:
    """One line naming a rendering error: the template's own message for ``raise_exception``."""
    if _is_own(exc):
        return f"the template raised an error while rendering: {exc}"
    text = " ".join(str(exc).split())[:300]
    return f"rendering failed: {type(exc).__name__}: {text}"


@lru_cache(maxsize=16)
def compile_template(template: str) -> BoundedTemplate:
    """A chat template compiled like transformers compiles them, with bounded rendering. Raises:
    ChatTemplateError when it cannot be compiled."""
    try:
        return BoundedTemplate(_bounded_environment().from_string(template))
    except ChatTemplateError:
        raise
    except MemoryError:   # a constant the compiler folded (``'x'|center(10**9)``)
        raise ChatTemplateError("compiling ran out of memory") from None
    except Exception as exc:  # noqa: BLE001 - a syntax error, or a constant the compiler folded that failed
        raise ChatTemplateError(describe_error(exc), "error") from None


def _probe_outcomes(template: str) -> list[str]:
    """In the probe process: for each sample conversation, "ok", "raised: <message>" or "error: <message>"."""
    try:
        compiled = compile_template(template)
    except ChatTemplateError as exc:
        return [f"{exc.kind}: {exc}"]
    outcomes = []
    for messages in SAMPLE_CONVERSATIONS:
        try:
            compiled.render(messages=messages, add_generation_prompt=True, **SAMPLE_TOKENS)
            outcomes.append("ok")
        except ChatTemplateError as exc:
            outcomes.append(f"{exc.kind}: {exc}")
    return outcomes


def _limit_resources() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (PROBE_CPU_S, PROBE_CPU_S + 1))
    resource.setrlimit(resource.RLIMIT_AS, (PROBE_MEMORY_BYTES, PROBE_MEMORY_BYTES))


@lru_cache(maxsize=64)
def probe_template(template: str) -> Optional[str]:
    """Why ``template`` cannot be used (None when it renders some sample conversation within the bounds): a
    size bound passed on any sample, an error (its own ``raise_exception`` or any other) on every sample, or
    running out of the probe's CPU time or memory (a template may refuse some conversation shapes: a system
    turn, say). Runs in a child process; the result is cached per template text."""
    try:
        proc = subprocess.run([sys.executable, "-m", __name__], input=template.encode("utf-8", "surrogatepass"),
                              capture_output=True, timeout=PROBE_WALL_S, preexec_fn=_limit_resources,
                              cwd=_PACKAGE_ROOT)   # `-m` finds this module (the project) from its own root
    except subprocess.TimeoutExpired:
        return f"rendering did not finish within {PROBE_WALL_S} s"
    except OSError as exc:   # no child process here: the in-process bounds (errors, size) still apply
        log.warning("chat template not probed (%s); rendering errors are still reported", exc)
        return None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if "MemoryError" in tail[0] or proc.returncode in (-9, -24):
            return (f"rendering a short conversation used more than {PROBE_CPU_S} s of CPU or "
                    f"{PROBE_MEMORY_BYTES >> 20} MiB of memory; a chat template must render quickly")
        return f"rendering failed ({tail[0][:200] or f'exit {proc.returncode}'})"
    outcomes = [o.partition(": ") for o in json.loads(proc.stdout.decode("utf-8"))]
    bounds = [text for kind, _, text in outcomes if kind == "bound"]
    if bounds:
        return bounds[0]
    if outcomes and all(kind != "ok" for kind, _, _ in outcomes):   # it renders no conversation at all
        return outcomes[0][2] + " (on every sample conversation)"
    return None


def _probe_main() -> None:
    template = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    try:
        outcomes = _probe_outcomes(template)
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        raise SystemExit(3) from None
    sys.stdout.write(json.dumps(outcomes))


if __name__ == "__main__":
    _probe_main()
