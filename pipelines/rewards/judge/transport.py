"""HTTP transport to an OpenAI-compatible judge: one pooled client, bounded concurrency, retries, timeouts.

The ``openai`` client does the HTTP; its own retries are off (``max_retries=0``) because we need what it does
not give: a hard per-attempt bound (``asyncio.timeout``, since httpx timeouts are per read, so a server
trickling bytes could outlive them), retries that release the concurrency slot while they back off, and
``Retry-After`` capped by ``backoff_max_s`` so nothing waits without bound.

An async client's connection pool belongs to the event loop that first used it. TRL runs async rewards on one
long-lived daemon loop, so in training there is exactly one client per judge; a caller that runs each batch in
a fresh ``asyncio.run`` (a CLI) gets one client per loop, and clients of closed loops are dropped.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Optional

from pipelines.common.redaction import redact_text, register_secrets, register_url_credentials

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {408, 409, 425, 429}     # plus every 5xx


@dataclass
class JudgeAnswer:
    """One successful chat completion."""

    text: Optional[str]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float           # of the attempt that succeeded
    attempts: int              # HTTP attempts it took (1 = no retry)


class JudgeCallFailed(Exception):
    """A judge request still failed after its retries (or failed in a way retrying cannot fix)."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


class MalformedResponse(Exception):
    """The server answered 200 with something that is not a chat completion."""


@dataclass
class _LoopState:
    client: Any
    semaphore: asyncio.Semaphore


def parse_retry_after(headers: Any) -> Optional[float]:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def classify_error(exc: BaseException) -> tuple[bool, Optional[float], str]:
    """(retryable, retry_after seconds, short description) for an exception from one attempt."""
    import openai

    if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
        return True, None, "timed out"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        retryable = status in RETRYABLE_STATUS or status >= 500
        return retryable, retry_after, f"HTTP {status}: {_short(exc.message)}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return True, None, f"connection error: {type(cause).__name__}: {_short(str(cause))}"
    if isinstance(exc, MalformedResponse):
        return True, None, f"malformed response: {_short(str(exc))}"
    if isinstance(exc, openai.APIResponseValidationError):
        return True, None, f"malformed response: {_short(str(exc))}"
    if isinstance(exc, json.JSONDecodeError):      # a 200 whose JSON body is cut or garbled (issue 16, F20)
        return True, None, f"malformed response: body is not valid JSON: {_short(str(exc))}"
    return False, None, f"{type(exc).__name__}: {_short(str(exc))}"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


class JudgeTransport:
    """Sends chat-completion requests to one endpoint with the module's retry and concurrency rules."""

    def __init__(self, base_url: str, api_key: Optional[str], model: str, *, timeout_s: float = 120.0,
                 max_retries: int = 4, max_concurrency: int = 16, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0, seed: Optional[int] = None):
        self.base_url = base_url
        self.model = model
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self._api_key = api_key or "EMPTY"   # local servers accept any key; the client insists on one
        register_secrets([api_key])           # every redacting log handler masks it from now on
        register_url_credentials(base_url)    # a user:pass@ URL becomes a Basic header: mask both forms
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._states: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]" = \
            weakref.WeakKeyDictionary()

    def __repr__(self) -> str:   # never shows the key
        return f"JudgeTransport({self.base_url!r}, model={self.model!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the API key (a whole token of 8+ characters) and URL credentials masked, for messages
        that may echo request details (see :mod:`pipelines.common.redaction`)."""
        return redact_text(text, () if self._api_key == "EMPTY" else (self._api_key,))

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                for old in [lp for lp in list(self._states) if lp.is_closed()]:
                    self._states.pop(old, None)
                state = _LoopState(client=self._new_client(), semaphore=asyncio.Semaphore(self.max_concurrency))
                self._states[loop] = state
            return state

    def _new_client(self) -> Any:
        import httpx
        import openai

        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0,
                                  timeout=self.timeout_s,
                                  http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout_s))

    def backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(self.backoff_max_s, retry_after * self._rng.uniform(1.0, 1.1))
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return delay * self._rng.uniform(0.5, 1.0)

    async def _attempt(self, state: _LoopState, messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        from openai.types.chat import ChatCompletion

        # client.post (the client's documented way to send a custom body) rather than chat.completions.create:
        # create() deep-transforms the TypedDict params on every call, a third of the client's CPU per request;
        # our body is plain JSON already (model, messages of role/content strings, sampling fields).
        params = dict(params)
        body = {"model": self.model, "messages": messages, **params.pop("extra_body", {}), **params}
        async with asyncio.timeout(self.timeout_s):     # the hard bound; no extra task as wait_for makes
            response = await state.client.post("/chat/completions", body=body, cast_to=ChatCompletion,
                                               options={"timeout": self.timeout_s})
        choices = getattr(response, "choices", None)
        if isinstance(response, (str, bytes)) or not choices or getattr(choices[0], "message", None) is None:
            raise MalformedResponse(f"no choices in {str(response)[:80]!r}")
        return response

    async def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> JudgeAnswer:
        """One chat completion, retried per the rules; JudgeCallFailed when it cannot be had."""
        state = self._state()
        attempt = 0
        while True:
            attempt += 1
            async with state.semaphore:
                started = time.monotonic()
                try:
                    response = await self._attempt(state, messages, params)
                except Exception as exc:  # noqa: BLE001 - classified below; anything else is not retried
                    retryable, retry_after, what = classify_error(exc)
                    what = self.scrub(what)
                else:
                    usage = getattr(response, "usage", None)
                    return JudgeAnswer(text=response.choices[0].message.content,
                                       prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                                       completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                                       latency_s=time.monotonic() - started, attempts=attempt)
            if not retryable or attempt > self.max_retries:
                tries = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
                raise JudgeCallFailed(f"{what} ({tries})", attempt)
            delay = self.backoff(attempt, retry_after)
            log.debug("judge %s: %s; retry %d/%d in %.2fs", self.base_url, what, attempt, self.max_retries, delay)
            await asyncio.sleep(delay)

    def open_clients(self) -> int:
        """How many HTTP clients are open (one per event loop that has sent a request and is not closed)."""
        with self._lock:
            return len(self._states)

    async def aclose(self) -> None:
        """Close the client of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None:
            await state.client.close()

    def close(self) -> None:
        """Close every client whose loop can still run its cleanup; drop the rest."""
        with self._lock:
            states = list(self._states.items())
            self._states = weakref.WeakKeyDictionary()
        for loop, state in states:
            try:
                if loop.is_closed():
                    continue
                if loop.is_running():
                    try:
                        current = asyncio.get_running_loop()
                    except RuntimeError:
                        current = None
                    if current is loop:
                        loop.create_task(state.client.close())
                    else:
                        asyncio.run_coroutine_threadsafe(state.client.close(), loop).result(timeout=5)
                else:
                    loop.run_until_complete(state.client.close())
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.debug("closing judge client: %s", exc)
