"""Secrets off every output: one redaction for the console, ``run.log``, rank error files, printed errors and
saved configs.

What is masked as ``***``:

* the value of a config field named like a secret (``api_key``, ``eval_llm_api_key``, ``token``, ``secret``,
  ``password``, ``authorization``; tokenizer fields such as ``eos_token`` are not secrets), whatever its length;
* a value taken from a secret-named environment variable (``JUDGE_API_KEY``, ``HF_TOKEN``, ...): in the field it
  was written into, whatever its length; anywhere else only where it stands as a whole token and is at least
  :data:`MIN_SECRET_LENGTH` characters long;
* the ``user:password@`` part of a URL, and URL query parameters named like a secret (``key``, ``api_key``,
  ``token``, ``sig``, ...); a URL's password and the ``Basic base64(user:password)`` header an HTTP client
  builds from it are registered by :func:`register_url_credentials`;
* the value of an ``Authorization: Basic|Bearer ...`` header written out in text.

A short value (``x``, ``local``) is never replaced inside other text: that garbles every log
(``ma***_failure_rate``, ``http://***host``) and hides nothing worth hiding.

Secrets found anywhere in the process (config interpolation, a judge's API key) are registered here once
(:func:`register_secrets`), so every handler carrying a :class:`RedactingFilter` masks all of them.
"""
from __future__ import annotations

import base64
import functools
import logging
import re
import threading
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit

REDACTED = "***"
MIN_SECRET_LENGTH = 8

_SECRET_LAST_WORDS = {"apikey", "token", "secret", "password", "passwd", "authorization", "credentials"}
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"), ("auth", "token"),
                 ("access", "token"), ("client", "secret")}
# Tokenizer and generation settings whose names end in "token" but hold no secret.
_NOT_SECRET_BEFORE_TOKEN = {"eos", "bos", "pad", "unk", "sep", "cls", "mask", "special", "stop", "start", "end",
                            "max", "min", "num", "image", "audio", "video"}
_QUERY_SECRET_WORDS = _SECRET_LAST_WORDS | {"key", "sig", "signature", "code"}

_URL_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/@?#]+)@")
_AUTH_HEADER_RE = re.compile(r"(?i)(?P<pre>authorization['\"]?\s*[:=]\s*['\"]?(?:basic|bearer)\s+)(?P<value>[^\s'\";,]+)")
_QUERY_RE = re.compile(r"(?P<pre>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s'\"<>]+)")

_registry: set[str] = set()
_registry_lock = threading.Lock()


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))       # camelCase -> camel_Case
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """Whether a config key (or env var) name says its value is a secret: ``eval_llm_api_key``, ``HF_TOKEN``,
    ``password``; not ``max_tokens``, ``eos_token`` or ``keywords``."""
    words = _words(name)
    if not words:
        return False
    if words[-1] == "token" and len(words) > 1 and words[-2] in _NOT_SECRET_BEFORE_TOKEN:
        return False
    return words[-1] in _SECRET_LAST_WORDS or tuple(words[-2:]) in _SECRET_PAIRS


def is_secret_env_name(name: str) -> bool:
    """An environment variable whose value is treated as a secret (also ``OPENAI_KEY``-style names)."""
    words = _words(name)
    return is_secret_name(name) or (bool(words) and words[-1] == "key")


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember secret values for every redacting handler of this process."""
    with _registry_lock:
        _registry.update(v for v in values if isinstance(v, str) and v)


def url_credential_forms(url: str) -> list[str]:
    """The secret forms of a URL's ``user:password@`` part: the password as written and percent-decoded, and
    ``base64(user:password)`` as HTTP clients send it (``Authorization: Basic ...``); [] without credentials."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    forms = {password, unquote(password), userinfo, unquote(user) + ":" + unquote(password)} - {""}
    for pair in {f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"}:
        forms.add(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    return sorted(forms)


def register_url_credentials(url: str) -> None:
    """Register the password of ``url`` and its encoded header forms (see :func:`url_credential_forms`)."""
    register_secrets(url_credential_forms(url))


def registered_secrets() -> frozenset[str]:
    with _registry_lock:
        return frozenset(_registry)


@functools.lru_cache(maxsize=64)
def _token_pattern(secrets: frozenset[str]) -> re.Pattern | None:
    long_ones = sorted((s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)
    if not long_ones:
        return None
    alternation = "|".join(re.escape(s) for s in long_ones)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternation})(?![A-Za-z0-9])")


def _query_sub(match: re.Match) -> str:
    name = match.group("name")
    words = _words(name)
    if (words and words[-1] in _QUERY_SECRET_WORDS) or is_secret_name(name):
        return match.group("pre") + REDACTED
    return match.group(0)


def redact_urls(text: str) -> str:
    """Mask URL credentials (``scheme://user:pass@``) and secret-named query parameters."""
    if "://" in text:
        text = _URL_USERINFO_RE.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    if "=" in text:
        text = _QUERY_RE.sub(_query_sub, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER_RE.sub(lambda m: m.group("pre") + REDACTED, text)
    return text


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials and every known long secret (``secrets`` and the registered ones) masked
    where it stands as a whole token."""
    text = redact_urls(str(text))
    pattern = _token_pattern(frozenset(secrets) | registered_secrets())
    return pattern.sub(REDACTED, text) if pattern is not None else text


def redact_config(data: Any, secrets: Iterable[str] = (), secret_fields: Mapping[str, Iterable[str]] | None = None,
                  key: str = "") -> Any:
    """A deep copy of a config for saving or printing: secret-named fields masked, the secrets interpolated into
    a field (``secret_fields``: dotted key path -> values) masked in that field at any length, and every string
    passed through :func:`redact_text`."""
    fields = {k: tuple(sorted(v, key=len, reverse=True)) for k, v in (secret_fields or {}).items()}
    return _redact_value(data, frozenset(s for s in secrets if s), fields, key)


def _redact_value(data: Any, secrets: frozenset[str], fields: Mapping[str, tuple[str, ...]], key: str) -> Any:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            sub = f"{key}.{k}" if key else str(k)
            scalar = not isinstance(v, (dict, list)) and v not in (None, "")
            out[k] = REDACTED if scalar and is_secret_name(str(k)) else _redact_value(v, secrets, fields, sub)
        return out
    if isinstance(data, list):
        return [_redact_value(v, secrets, fields, f"{key}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str):
        for secret in fields.get(key, ()):   # its own field: any length, any position
            data = data.replace(secret, REDACTED)
        return redact_text(data, secrets)
    return data


class RedactingFilter(logging.Filter):
    """Masks secrets (its own and the registered ones) and URL credentials in a record's message and
    traceback. Put on every handler that writes somewhere a person or a file can read."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's error to report, not ours
            return True
        clean = redact_text(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self.secrets)
        return True


def redact_handlers(handlers: Iterable[logging.Handler], secrets: Iterable[str] = ()) -> None:
    """Give each handler a :class:`RedactingFilter` unless it has one."""
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))
