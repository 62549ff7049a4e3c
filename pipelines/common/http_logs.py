"""Log levels of the HTTP clients the LLM judges use (openai over httpx): one INFO line per request would bury
the progress bar and fill run.log (dozens of lines a step), so they log at WARNING unless ``-v``."""
from __future__ import annotations

import logging

# Loggers of the HTTP clients the judges use: they log every request at INFO (dozens of lines a step).
HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "openai")   # openai 3 sends through httpx2
WIRE_LOGGERS = ("httpcore", "httpcore2")   # byte-level traces: not even with -v


def quiet_http_clients(verbose: bool) -> None:
    """Per-request HTTP logs at WARNING by default (console and run.log); with -v each request is logged."""
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
